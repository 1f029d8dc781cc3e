# spfd in a container: a static binary in an image built FROM scratch.
#
#   docker build -t spfd .
#   docker run -d --name spfd -p 53:53/udp -p 53:53/tcp -p 127.0.0.1:8053:8053 \
#     -v "$PWD/policies:/etc/spfd/policies:ro" -v spfd-state:/var/lib/spfd spfd
#
# Without a registry (the rust image cannot be pulled), build the binary on the host
# and use Dockerfile.local instead; see docs/deployment.md.

# Stage 1: a statically linked glibc binary, so the runtime stage needs no libc.
# (The full name: podman does not guess docker.io for short names.)
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN RUSTFLAGS='-C target-feature=+crt-static' \
      cargo build --release --locked --target x86_64-unknown-linux-gnu \
 && cp target/x86_64-unknown-linux-gnu/release/spfd /spfd

# Stage 2: the binary, a default config and an empty state directory; nothing else.
FROM scratch
COPY --from=build /spfd /usr/local/bin/spfd
COPY deploy/container/spfd.toml /etc/spfd/spfd.toml
COPY --chown=65534:65534 deploy/container/state/ /var/lib/spfd/
USER 65534:65534
VOLUME ["/etc/spfd/policies", "/var/lib/spfd"]
# DNS, and the admin server (/healthz, /metrics): publish that on 127.0.0.1 only.
EXPOSE 53/udp 53/tcp 8053/tcp
# No curl in a FROM scratch image: the binary asks its own admin server.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/spfd", "healthcheck", "--addr", "127.0.0.1:8053"]
ENTRYPOINT ["/usr/local/bin/spfd"]
CMD ["serve", "--config", "/etc/spfd/spfd.toml"]
