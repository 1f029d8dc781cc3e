#!/usr/bin/env bash
# Scale check: 100,000 policies, flatten and macro mixed, resolved
# against a loopback upstream (a second spfd serving five provider zones as written),
# then served under dnsperf load while policy edits force snapshot swaps.
# Reports resident memory, the time to build and swap a snapshot, and the latency of
# the queries answered during the swaps. Loopback only; stops everything it started.
#
#   bash benches/scale.sh [POLICIES]      (default 100000)
set -euo pipefail
cd "$(dirname "$0")/.."

N=${1:-100000}
UP_PORT=25410
PORT=25411
QPS=${QPS:-50000}
SECONDS_UNDER_LOAD=${SECONDS_UNDER_LOAD:-20}

command -v dnsperf >/dev/null || { apt-get update -qq && apt-get install -y -qq dnsperf >/dev/null; }
# SPFD_BIN: another build (e.g. with frame pointers or line tables for a profiler).
[ -n "${SPFD_BIN:-}" ] || cargo build --release --locked -q
BIN=${SPFD_BIN:-$PWD/target/release/spfd}

WORK=$(mktemp -d /tmp/spfd-scale.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

echo "== generating $N policies in $WORK"
python3 - "$WORK" "$N" "$UP_PORT" "$PORT" <<'PY'
import os, sys
work, n, up_port, port = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
def conf(dirname, port, upstream):
    os.makedirs(f"{work}/{dirname}/policies", exist_ok=True)
    with open(f"{work}/{dirname}/spfd.toml", "w") as f:
        f.write(f'[server]\nlisten = ["127.0.0.1:{port}"]\nnameservers = ["ns1.scale.test"]\n'
                f'hostmaster = "hostmaster@scale.test"\nstate_dir = "state"\n'
                # dnsperf and the upstream queries come from one address: no RRL.
                f'[server.rrl]\nenabled = false\n')
        if upstream:
            f.write(f'[upstream]\nnameservers = ["127.0.0.1:{upstream}"]\ntimeout = "1s"\n')
conf("upstream", up_port, None)
conf("spfd", port, up_port)
for p in range(5):
    nets = " ".join(f"ip4:10.{p}.{i}.0/24" for i in range(40))
    nets6 = " ".join(f"ip6:2001:db8:{p}:{i:x}::/64" for i in range(10))
    with open(f"{work}/upstream/policies/prov{p}.toml", "w") as f:
        f.write(f'domain = "prov{p}.test"\nttl = 300\n[spf]\nrecord = "v=spf1 -ip4:10.{p}.0.1 {nets} {nets6} ~all"\nmode = "passthrough"\n')
queries = []
for i in range(n):
    mode = "flatten" if i % 2 == 0 else "macro"
    a, b = i % 5, (i + 2) % 5
    rec = f"v=spf1 include:_spf.prov{a}.test include:_spf.prov{b}.test ip4:203.0.{(i // 256) % 256}.{i % 256} -all"
    with open(f"{work}/spfd/policies/c{i}.toml", "w") as f:
        f.write(f'domain = "c{i}.test"\n[spf]\nrecord = "{rec}"\nmode = "{mode}"\n'
                f'[dmarc]\np = "reject"\nrua = ["mailto:dmarc@c{i}.test"]\n')
    if mode == "flatten":
        queries.append(f"_spf.c{i}.test TXT")
    else:
        queries.append(f"{i % 256}.{(i // 256) % 256}.0.203.in-addr._spf.c{i}.test TXT")
        queries.append(f"1.1.{a}.10.in-addr._spf.c{i}.test TXT")
    queries.append(f"_dmarc._spf.c{i}.test TXT")
import random
random.seed(5)
random.shuffle(queries)
with open(f"{work}/queries", "w") as f:
    f.write("\n".join(queries[:200000]) + "\n")
PY

echo "== starting the upstream and spfd"
(cd "$WORK/upstream" && SPFD_LOG=warn exec "$BIN" serve --config spfd.toml 2>"$WORK/upstream.log") &
PIDS+=($!)
sleep 1
START=$(date +%s.%N)
# WRAP runs spfd under a profiler, e.g. WRAP="valgrind --tool=massif --massif-out-file=/tmp/massif.out"
(cd "$WORK/spfd" && SPFD_LOG=info exec ${WRAP:-} "$BIN" serve --config spfd.toml 2>"$WORK/spfd.log") &
PIDS+=($!)
SPFD_PID=$!

# Ready when the first expansion round has been swapped in.
for _ in $(seq 1 1200); do
  if grep -q "expansion round" "$WORK/spfd.log" && [ "$(grep -c 'snapshot swapped' "$WORK/spfd.log")" -ge 2 ]; then break; fi
  sleep 0.5
done
READY=$(date +%s.%N)
grep -E "expansion round|snapshot swapped" "$WORK/spfd.log" | sed 's/^/  /'
printf "  all %d policies loaded, resolved and served after %.1f s\n" "$N" "$(echo "$READY - $START" | bc)"
RSS=$(awk '/VmRSS/ {print $2}' /proc/$SPFD_PID/status)
HWM=$(awk '/VmHWM/ {print $2}' /proc/$SPFD_PID/status)
echo "  resident memory: $((RSS / 1024)) MiB (peak $((HWM / 1024)) MiB)"

# The same load with no swap first: the latency a swap adds is what exceeds this.
echo "== $SECONDS_UNDER_LOAD s of dnsperf at $QPS qps with no edit (baseline)"
dnsperf -s 127.0.0.1 -p $PORT -d $WORK/queries -l $SECONDS_UNDER_LOAD -Q $QPS -c 4 -t 1 > "$WORK/baseline.out" 2>&1 || true
grep -E "Queries lost|Average Latency" "$WORK/baseline.out" | sed 's/^/  /'

echo "== $SECONDS_UNDER_LOAD s of dnsperf at $QPS qps while a policy edit forces a swap every 2 s"
(
  for i in $(seq 1 $((SECONDS_UNDER_LOAD / 2 - 1))); do
    sleep 2
    sed -i "s/^ttl = .*//; 1a ttl = $((300 + i))" "$WORK/spfd/policies/c$((i * 7)).toml"
  done
) &
EDITOR_PID=$!
CMD="dnsperf -s 127.0.0.1 -p $PORT -d $WORK/queries -l $SECONDS_UNDER_LOAD -Q $QPS -c 4 -t 1"
echo "  \$ $CMD"
$CMD > "$WORK/dnsperf.out" 2>&1 || true
wait $EDITOR_PID || true
grep -E "Queries sent|Queries completed|Queries lost|Average Latency|Latency StdDev" "$WORK/dnsperf.out" | sed 's/^/  /'
echo "  swaps during the load:"
grep "snapshot swapped" "$WORK/spfd.log" | tail -n $((SECONDS_UNDER_LOAD / 2 - 1)) | grep -o "generation=[0-9]*.*build_ms=[0-9]*" | sed 's/^/    /'
RSS=$(awk '/VmRSS/ {print $2}' /proc/$SPFD_PID/status)
echo "  resident memory after: $((RSS / 1024)) MiB"
