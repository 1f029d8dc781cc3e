#!/usr/bin/env bash
# The container image, for real: build the static binary, build the image from
# Dockerfile.local with podman, run it on the examples in zones/ (config, policies and
# keys mounted, state in a named volume), ask it with dig over UDP and TCP, check its
# JSON logs, its state volume and its HEALTHCHECK command, then remove everything.
#
# Then the image as shipped: its default config on port 53, as user 65534, on a
# bridge network with published ports.
#
# Run as root (rootful podman). Installs podman, runc and dig with apt-get if missing.
# podman runs with runc and cgroupfs and without default ulimits: crun fails on
# cgroups and setrlimit on our machines. Host networking: DNS on a free high port of
# 127.0.0.1, the admin server on another.
set -euo pipefail
cd "$(dirname "$0")/../.."
start=$(date +%s)

need=()
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
command -v dig >/dev/null || need+=(bind9-dnsutils)
if ((${#need[@]})); then
    echo "== apt-get install ${need[*]}"
    apt-get install -y -q "${need[@]}" >/dev/null
fi

echo "== static binary (cargo build --release --target x86_64-unknown-linux-gnu, crt-static)"
RUSTFLAGS='-C target-feature=+crt-static' \
    cargo build --release --locked --target x86_64-unknown-linux-gnu
bin=target/x86_64-unknown-linux-gnu/release/spfd
if ! ldd "$bin" 2>&1 | grep -qE 'statically linked|not a dynamic executable'; then
    echo "FAIL: $bin is dynamically linked; a FROM scratch image cannot run it" >&2
    exit 1
fi

work=$(mktemp -d)
name="spfd-test-$$"
image="localhost/spfd:test-$$"
volume="spfd-test-state-$$"
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
EOF
export CONTAINERS_CONF="$work/containers.conf"
podman() { command podman --runtime runc --cgroup-manager cgroupfs "$@"; }
cleanup() {
    podman rm -f -v -t 2 "$name" >/dev/null 2>&1 || true
    podman volume rm -f "$volume" >/dev/null 2>&1 || true
    podman rmi -f "$image" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== podman build -f Dockerfile.local"
# --format docker: the OCI image format has no HEALTHCHECK, podman would drop it.
podman build -q --format docker -f Dockerfile.local -t "$image" . >/dev/null
size=$(podman image inspect --format '{{.Size}}' "$image")
echo "image size: $((size / 1024 / 1024)) MiB ($size bytes)"
healthcheck=$(podman image inspect --format '{{json .Config.Healthcheck.Test}}' "$image")
[[ "$healthcheck" == *'"spfd","healthcheck"'* || "$healthcheck" == *'/usr/local/bin/spfd","healthcheck"'* ]] ||
    { echo "FAIL: no HEALTHCHECK in the image: $healthcheck" >&2; exit 1; }
user=$(podman image inspect --format '{{.Config.User}}' "$image")
[[ "$user" == 65534:65534 ]] || { echo "FAIL: image user is '$user'" >&2; exit 1; }

# A free port for TCP and UDP both, and another for the admin server.
free_port() {
    python3 -c 'import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(type=socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'
}
dns_port=$(free_port)
admin_port=$(free_port)
config() {
    cat <<EOF
[server]
listen = ["127.0.0.1:$dns_port"]
nameservers = ["ns1.spfd.example.net", "ns2.spfd.example.net"]
hostmaster = "hostmaster@example.net"
state_dir = "/var/lib/spfd"
[upstream]
# Nothing answers here: flattening fails and the records are served as written.
nameservers = ["127.0.0.1:9"]
timeout = "1s"
[policies]
dir = "/etc/spfd/policies"
EOF
}
config >"$work/spfd.toml"
printf '[admin]\nlisten = "127.0.0.1:%s"\n' "$admin_port" >>"$work/spfd.toml"
mounts=(-v "$PWD/zones/policies:/etc/spfd/policies:ro" -v "$PWD/zones/keys:/etc/spfd/keys:ro")
# The admin server may not be in this build yet: then the config goes without it and
# the healthcheck must fail (it has nothing to ask).
admin=yes
if ! out=$(podman run --rm "${mounts[@]}" -v "$work/spfd.toml:/etc/spfd/spfd.toml:ro" \
    "$image" check --config /etc/spfd/spfd.toml 2>&1); then
    if [[ "$out" == *"unknown field \`admin\`"* ]]; then
        echo "note: this build has no [admin] server; the healthcheck is expected to fail"
        admin=no
        config >"$work/spfd.toml"
    else
        echo "FAIL: spfd check in the container: $out" >&2
        exit 1
    fi
fi

echo "== podman run (DNS on 127.0.0.1:$dns_port, admin on 127.0.0.1:$admin_port)"
podman volume create "$volume" >/dev/null
podman run -d --name "$name" --network host \
    "${mounts[@]}" -v "$work/spfd.toml:/etc/spfd/spfd.toml:ro" -v "$volume:/var/lib/spfd" \
    -e SPFD_LOG_FORMAT=json \
    --health-cmd "[\"/usr/local/bin/spfd\", \"healthcheck\", \"--addr\", \"127.0.0.1:$admin_port\"]" \
    "$image" >/dev/null

fail() {
    echo "FAIL: $*" >&2
    podman logs "$name" 2>&1 | tail -20 >&2
    exit 1
}
ask() { dig @127.0.0.1 -p "$dns_port" +norec +short +time=1 +tries=1 "$@" 2>/dev/null || true; }
spf=""
for _ in $(seq 60); do
    spf=$(ask TXT _spf.example.com)
    [[ -n "$spf" ]] && break
    sleep 0.5
done
expected='"v=spf1 mx include:_spf.google.com include:servers.mcsv.net ip4:203.0.113.0/24 ~all"'
[[ "$spf" == "$expected" ]] || fail "TXT _spf.example.com over UDP: '$spf', expected $expected"
echo "ok: UDP TXT _spf.example.com: $spf"
dkim=$(ask +tcp TXT s2026._domainkey._spf.example.com)
[[ "$dkim" == '"v=DKIM1; k=rsa; p='* ]] || fail "DKIM over TCP: '$dkim'"
echo "ok: TCP TXT s2026._domainkey._spf.example.com (the key file from the keys volume)"

# Every log line is JSON, and one of them says it is serving.
podman logs "$name" 2>&1 | python3 -c '
import json, sys
lines = sys.stdin.read().splitlines()
for line in lines:
    json.loads(line)
assert any(json.loads(l)["fields"]["message"] == "serving" for l in lines), lines
print("ok: %d log lines, all JSON" % len(lines))' || fail "logs are not JSON lines"

# The state volume is writable by user 65534: the zone serials were saved there.
state_dir=$(podman volume inspect --format '{{.Mountpoint}}' "$volume")
[[ -s "$state_dir/serials" ]] || fail "no serials in the state volume: $(ls -la "$state_dir")"
[[ $(stat -c %u "$state_dir/serials") == 65534 ]] || fail "serials not written by 65534"
echo "ok: state volume written by uid 65534"

echo "== podman healthcheck run"
if [[ "$admin" == yes ]]; then
    podman healthcheck run "$name" || fail "the healthcheck failed with the admin server on 127.0.0.1:$admin_port"
    echo "ok: healthy (spfd's own admin server)"
else
    if podman healthcheck run "$name"; then fail "the healthcheck passed with nothing on 127.0.0.1:$admin_port"; fi
    echo "ok: unhealthy while nothing answers on 127.0.0.1:$admin_port"
    # A stand-in for the admin server on the same port (host network): the
    # HEALTHCHECK command inside the container must now report healthy.
    mkdir "$work/www" && echo ok >"$work/www/healthz"
    python3 -m http.server --bind 127.0.0.1 --directory "$work/www" "$admin_port" >/dev/null 2>&1 &
    stand_in=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$admin_port") 2>/dev/null && break
        sleep 0.1
    done
    podman healthcheck run "$name" || { kill "$stand_in"; fail "unhealthy although /healthz answers 200"; }
    kill "$stand_in"
    echo "ok: healthy once /healthz answers 200 (a stand-in admin server)"
fi

podman stop -t 10 "$name" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
[[ "$code" == 0 ]] || fail "spfd exited with $code on SIGTERM"
echo "ok: stopped cleanly on SIGTERM"
podman rm -v "$name" >/dev/null

# The image's own config: port 53 as user 65534 in a network namespace of its own,
# which needs net.ipv4.ip_unprivileged_port_start=0 under podman (Docker sets it).
echo "== the image's default config: port 53 as 65534 on a bridge network"
default_config=()
if [[ "$admin" == no ]]; then
    sed '/^\[admin\]/,$d' deploy/container/spfd.toml >"$work/default.toml"
    default_config=(-v "$work/default.toml:/etc/spfd/spfd.toml:ro")
fi
port53=$(free_port)
podman run -d --name "$name" --sysctl net.ipv4.ip_unprivileged_port_start=0 \
    -p "127.0.0.1:$port53:53/udp" -p "127.0.0.1:$port53:53/tcp" \
    "${mounts[@]}" "${default_config[@]}" "$image" >/dev/null
dns_port=$port53
spf=""
for _ in $(seq 60); do
    spf=$(ask TXT _spf.example.com)
    [[ -n "$spf" ]] && break
    sleep 0.5
done
[[ "$spf" == v=spf1* || "$spf" == '"v=spf1 '* ]] || fail "TXT _spf.example.com via 127.0.0.1:$port53 -> 53/udp: '$spf'"
tcp=$(ask +tcp TXT _dmarc.example.org)
[[ "$tcp" == '"v=DMARC1;'* ]] || fail "TXT _dmarc.example.org via 127.0.0.1:$port53 -> 53/tcp: '$tcp'"
echo "ok: answers on port 53 inside the container (UDP and TCP), published on 127.0.0.1:$port53"
if [[ "$admin" == yes ]]; then
    # The image's own HEALTHCHECK against the default config's admin server.
    for _ in $(seq 20); do
        podman healthcheck run "$name" >/dev/null 2>&1 && health=ok && break
        health=""
        sleep 0.5
    done
    [[ -n "$health" ]] || fail "the image's HEALTHCHECK is not healthy with its default config"
    echo "ok: the image's HEALTHCHECK is healthy with its default config"
fi

echo "container test passed in $(($(date +%s) - start)) s"
