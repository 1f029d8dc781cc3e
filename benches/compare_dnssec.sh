#!/usr/bin/env bash
# DO=1 load test: spfd with [dnssec] on, answering with and without DO, against Knot DNS
# serving the same records signed (automatic signing: signatures made when the zone
# loads) and with its onlinesign module (signatures made per answer), driven by dnsperf
# over loopback. Prints every command and, at the end, one table: qps, server CPU per
# query, response size. (benches/compare.sh is the unsigned comparison; kept apart.)
#
#   benches/compare_dnssec.sh
#
# Environment: ZONES (200), RUNS (2), DURATION (5), CLIENTS (8), PORT_BASE (25400),
# SPFD (a built spfd binary instead of building one), KEEP (1 keeps the work directory).
# Needs dnsperf, knot and knot-dnsutils (kdig, keymgr); run as root.
set -euo pipefail

ZONES=${ZONES:-200}
RUNS=${RUNS:-2}
DURATION=${DURATION:-5}
CLIENTS=${CLIENTS:-8}
PORT_BASE=${PORT_BASE:-25400}
ADDR=127.0.0.1
export PATH=$PATH:/usr/sbin
declare -A PORT=([spfd]=$((PORT_BASE + 1)) [knot-signed]=$((PORT_BASE + 2)) [knot-online]=$((PORT_BASE + 3)))
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/spfd-compare-dnssec.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
declare -A PID=()

log() { printf '%s\n' "$*"; }
run() { log "+ $*"; "$@"; }

cleanup() {
    local status=$? name
    for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
    for name in "${!PID[@]}"; do wait "${PID[$name]}" 2>/dev/null || true; done
    if [[ ${KEEP:-0} == 1 ]]; then log "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start() {
    local name=$1 logfile=$2
    shift 2
    log "+ $* >$logfile 2>&1 &"
    "$@" >"$logfile" 2>&1 &
    PID[$name]=$!
}

# Waits until NAME answers with a signature (kdig +dnssec), for at most 60 seconds.
wait_signed() {
    local name=$1 qname=$2
    for _ in $(seq 600); do
        kill -0 "${PID[$name]}" 2>/dev/null || { log "# $name exited:"; cat "$WORK/$name.log"; exit 1; }
        if kdig "@$ADDR" -p "${PORT[$name]}" +dnssec +time=1 +retry=0 "$qname" TXT 2>/dev/null | grep -q RRSIG; then
            return
        fi
        sleep 0.1
    done
    log "# $name gave no signed answer for $qname within 60 s:"; cat "$WORK/$name.log"; exit 1
}

for tool in dnsperf knotd kdig; do
    command -v "$tool" >/dev/null || { log "missing $tool (apt-get install dnsperf knot knot-dnsutils)"; exit 1; }
done
if [[ -z ${SPFD:-} ]]; then
    run bash -c "cd '$REPO' && cargo build --release --locked --bin spfd >'$WORK/build.log' 2>&1"
    SPFD="${CARGO_TARGET_DIR:-$REPO/target}/release/spfd"
fi

spf_record() { echo "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.$(($1 % 256))/32 ip6:2001:db8:$(printf %x "$1")::/48 -all"; }
mkdir -p "$WORK"/{policies,state,zones,knot-signed/db,knot-online/db}
for ((i = 0; i < ZONES; i++)); do
    printf 'domain = "d%d.test"\nttl = 300\n[spf]\nrecord = "%s"\nmode = "passthrough"\n[dmarc]\np = "reject"\n' \
        "$i" "$(spf_record "$i")" >"$WORK/policies/d$i.toml"
    cat >"$WORK/zones/_spf.d$i.test.zone" <<EOF
\$ORIGIN _spf.d$i.test.
\$TTL 300
@ IN SOA ns1.spfd.test. hostmaster.spfd.test. 2026010101 3600 900 1209600 300
@ IN NS ns1.spfd.test.
@ IN TXT "$(spf_record "$i")"
_dmarc IN TXT "v=DMARC1; p=reject"
EOF
done
cat >"$WORK/spfd.toml" <<EOF
[server]
listen = ["$ADDR:${PORT[spfd]}"]
nameservers = ["ns1.spfd.test"]
hostmaster = "hostmaster@spfd.test"
state_dir = "$WORK/state"
[server.rrl]
enabled = false
[policies]
dir = "$WORK/policies"
[dnssec]
enabled = true
EOF

knot_config() { # name module-line
    cat <<EOF
server:
    rundir: "$WORK/$1"
    listen: $ADDR@${PORT[$1]}
    udp-workers: 2
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$WORK/$1/db"
control:
    listen: "$WORK/$1/knot.sock"
policy:
  - id: csk
    algorithm: ecdsap256sha256
    single-type-signing: on
template:
  - id: default
    storage: "$WORK/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
$2
zone:
EOF
    for ((i = 0; i < ZONES; i++)); do printf '  - domain: _spf.d%d.test\n' "$i"; done
}
knot_config knot-signed "    dnssec-signing: on
    dnssec-policy: csk" >"$WORK/knot-signed/knot.conf"
knot_config knot-online "    module: mod-onlinesign/default
mod-onlinesign:
  - id: default
    policy: csk" >"$WORK/knot-online/knot.conf"
# mod-onlinesign must come before template: move its section up.
python3 - "$WORK/knot-online/knot.conf" <<'PY'
import sys
p = sys.argv[1]
s = open(p).read()
block = "mod-onlinesign:\n  - id: default\n    policy: csk\n"
s = s.replace(block, "").replace("template:\n", block + "template:\n", 1)
open(p, "w").write(s)
PY

start spfd "$WORK/spfd.log" "$SPFD" serve --config "$WORK/spfd.toml"
start knot-signed "$WORK/knot-signed.log" knotd -c "$WORK/knot-signed/knot.conf"
start knot-online "$WORK/knot-online.log" knotd -c "$WORK/knot-online/knot.conf"
for name in spfd knot-signed knot-online; do wait_signed "$name" "_spf.d$((ZONES - 1)).test"; done

awk -v n="$ZONES" 'BEGIN { srand(42); for (q = 0; q < 100000; q++) {
    z = int(rand() * n); if (rand() < 1/2) print "_spf.d" z ".test TXT"; else print "_dmarc._spf.d" z ".test TXT" } }' >"$WORK/q-static"
awk -v n="$ZONES" 'BEGIN { srand(43); for (q = 0; q < 100000; q++) {
    z = int(rand() * n); print "nx" int(rand() * 1000000) "._spf.d" z ".test TXT" } }' >"$WORK/q-nx"

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

measure() { # case server queries [dnsperf flags]
    local case=$1 server=$2 queries=$3 before after
    shift 3
    before=$(cpu_ticks "${PID[$server]}")
    local cmd=(dnsperf -s "$ADDR" -p "${PORT[$server]}" -d "$queries" -c "$CLIENTS" -l "$DURATION" -t 2 "$@")
    log "+ ${cmd[*]}"
    "${cmd[@]}" >"$WORK/dnsperf.out" 2>&1 || { cat "$WORK/dnsperf.out"; exit 1; }
    after=$(cpu_ticks "${PID[$server]}")
    awk -v c="$case" -v s="$server" -v t=$((after - before)) -v hz="$CLK_TCK" '
        /Queries completed:/ { n = $3 } /Queries per second:/ { qps = $4 } /Average packet size/ { size = $NF }
        END { printf "%s %s %.0f %.2f %d\n", c, s, qps, n ? t / hz * 1e6 / n : 0, size }' \
        "$WORK/dnsperf.out" | tee -a "$WORK/results"
}

for ((r = 1; r <= RUNS; r++)); do
    measure static/DO=0 spfd "$WORK/q-static"
    for server in spfd knot-signed knot-online; do measure static/DO=1 "$server" "$WORK/q-static" -D; done
    for server in spfd knot-signed knot-online; do measure nxdomain/DO=1 "$server" "$WORK/q-nx" -D; done
done

log ""
log "case            server        qps   cpu_us/query  response_bytes   (median of $RUNS runs)"
sort -k1,1 -k2,2 "$WORK/results" | awk '
    { key = $1 " " $2; v[key] = v[key] " " $3 ":" $4 ":" $5; n[key]++ }
    END { for (k in v) { split(substr(v[k], 2), runs, " "); m = runs[int((n[k] + 1) / 2)]; split(m, f, ":");
          split(k, id, " "); printf "%-15s %-12s %8s %10s %10s\n", id[1], id[2], f[1], f[2], f[3] } }' | sort
