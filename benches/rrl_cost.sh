#!/usr/bin/env bash
# What response rate limiting costs below its limit, end to end: dnsperf against the
# release spfd with RRL off, then on (loopback taken off the whitelist, a rate no test
# reaches, so every answer passes through the limiter and none is limited), alternated
# RUNS times; queries per second and spfd's CPU microseconds per query for each.
#   bash benches/rrl_cost.sh            (needs dnsperf; RUNS=3 SECONDS_PER_RUN=10)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${SPFD_BIN:-target/release/spfd}
RUNS=${RUNS:-3}
LEN=${SECONDS_PER_RUN:-10}
WORK=$(mktemp -d)
trap 'kill "${PID:-}" 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/policies"
for i in $(seq 0 99); do
    printf 'domain = "d%s.test"\n[spf]\nrecord = "v=spf1 ip4:192.0.2.%s -all"\nmode = "passthrough"\n[dmarc]\np = "reject"\n' \
        "$i" "$i" >"$WORK/policies/d$i.toml"
    printf '_spf.d%s.test TXT\n_dmarc._spf.d%s.test TXT\nnx.d%s._spf.d%s.test TXT\n' "$i" "$i" "$i" "$i" >>"$WORK/queries"
done

run() { # label rrl-table
    cat >"$WORK/spfd.toml" <<EOF
[server]
listen = ["127.0.0.1:5391"]
nameservers = ["ns1.spfd.test"]
hostmaster = "h@spfd.test"
state_dir = "state"
[server.rrl]
$2
EOF
    "$BIN" serve --config "$WORK/spfd.toml" 2>"$WORK/spfd.log" &
    PID=$!
    sleep 1
    local before after out qps
    before=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    out=$(dnsperf -s 127.0.0.1 -p 5391 -d "$WORK/queries" -l "$LEN" -c 8 -q 500 2>&1)
    after=$(awk '{print $14 + $15}' "/proc/$PID/stat")
    kill "$PID"; wait "$PID" 2>/dev/null || true
    qps=$(awk '/Queries per second/ {print $4}' <<<"$out")
    local completed
    completed=$(awk '/Queries completed/ {print $3}' <<<"$out")
    awk -v l="$1" -v q="$qps" -v c="$completed" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%-8s %10.0f qps  %6.2f CPU us/query\n", l, q, t / hz * 1e6 / c }'
}

for _ in $(seq "$RUNS"); do
    run "rrl off" "enabled = false"
    run "rrl on" $'whitelist = []\nresponses_per_second = 1000000'
done
