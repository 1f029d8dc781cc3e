#!/usr/bin/env bash
# Side-by-side load test: spfd against NSD and Knot DNS serving the same records, driven
# by dnsperf over loopback (127.0.0.1 only). Prints every command it runs and, at the end,
# one table: qps, server CPU per query, latency and lost queries, with spfd/peer ratios.
#
#   benches/compare.sh [--macro] [--no-install]
#   benches/compare.sh --saturation [--no-install]
#
#   --macro       run the macro-mode section (spfd's per-address answers against rbldnsd
#                 ip4trie/ip6trie data sets) even when spfd does not answer macro-mode
#                 names; by default it runs only when a probe (`spfd check` and one query
#                 on a macro-mode policy) shows that it does.
#   --saturation  only the saturation cases : dnsperf -c 4 unthrottled (SAT_ZONES
#                 policies, 200) against spfd with its default workers and with 1, NSD with
#                 server-count 1 and 2, Knot with 1 and 2 UDP workers; then macro answers from a
#                 5,000 + 500 CIDR tree (six includes served by a second spfd) against
#                 rbldnsd. Prints qps and CPU per answer (server user+system CPU from
#                 /proc/PID/stat before and after, over the answers) for each.
#   --no-install  do not apt-get install missing tools.
#
# Environment: ZONES (1000), RUNS (3), DURATION (10: seconds of a throughput run),
# LAT_DURATION (5: seconds of a latency run), LAT_QPS (100000: -Q of a latency run),
# CLIENTS (8: dnsperf -c), PORT_BASE (25300: servers listen on PORT_BASE+1..+5),
# KEEP (1 keeps the work directory), SPFD (a built spfd binary instead of building one).
# Runs as root (apt-get; NSD and Knot run as root). With the defaults: about 5 minutes
# once spfd is built, 6.5 with the macro-mode section.
set -euo pipefail

ZONES=${ZONES:-1000}
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
LAT_DURATION=${LAT_DURATION:-5}
LAT_QPS=${LAT_QPS:-100000}
CLIENTS=${CLIENTS:-8}
TREE_ZONES=${TREE_ZONES:-20}
PORT_BASE=${PORT_BASE:-25300}
MACRO=auto
INSTALL=yes
SATURATION=no
for arg in "$@"; do
    case $arg in
        --macro) MACRO=yes ;;
        --no-install) INSTALL=no ;;
        --saturation) SATURATION=yes CLIENTS=${SAT_CLIENTS:-4} ZONES=${SAT_ZONES:-200} ;;
        *) echo "usage: $0 [--macro] [--no-install] | --saturation [--no-install]" >&2; exit 2 ;;
    esac
done

ADDR=127.0.0.1
export PATH=$PATH:/usr/sbin
declare -A PORT=([spfd]=$((PORT_BASE + 1)) [nsd]=$((PORT_BASE + 2)) [knot]=$((PORT_BASE + 3))
    [spfd-macro]=$((PORT_BASE + 4)) [rbldnsd]=$((PORT_BASE + 5)) [spfd-w1]=$((PORT_BASE + 6))
    [nsd-1]=$((PORT_BASE + 7)) [knot-1]=$((PORT_BASE + 8)) [upstream]=$((PORT_BASE + 9))
    [spfd-macro-w1]=$((PORT_BASE + 10)))
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/spfd-compare.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
START=$SECONDS
declare -A PID=()
# A copy of the DKIM key the tests use: 2048 bits, 392 base64 characters.
DKIM_KEY=$(grep -v -- ----- "$REPO/tests/data/keys/rsa2048.pub.pem" | tr -d '\n')

log() { printf '%s\n' "$*"; }
# Prints a command, then runs it.
run() { log "+ $*"; "$@"; }

# ---------------------------------------------------------------------------------------
# Servers: started in the background, every one stopped on exit.

stop_servers() {
    local name pid
    for name in "${!PID[@]}"; do
        pid=${PID[$name]}
        kill -TERM "$pid" 2>/dev/null || true
    done
    for name in "${!PID[@]}"; do
        pid=${PID[$name]}
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            log "# $name (pid $pid) did not stop on TERM: KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PID=()
}

cleanup() {
    local status=$?
    stop_servers
    if [[ ${KEEP:-0} == 1 ]]; then log "# work directory kept: $WORK"; else rm -rf "$WORK"; fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a server in the background: `start NAME LOGFILE COMMAND...`.
start() {
    local name=$1 logfile=$2
    shift 2
    log "+ $* >$logfile 2>&1 &"
    "$@" >"$logfile" 2>&1 &
    PID[$name]=$!
}

port_free() { ! ss -Hlnu "sport = :$1" | grep -q . && ! ss -Hlnt "sport = :$1" | grep -q .; }

# Waits until NAME answers a question (kdig prints the answer), for at most 30 seconds.
wait_ready() {
    local name=$1 qname=$2 qtype=${3:-SOA}
    for _ in $(seq 300); do
        if ! kill -0 "${PID[$name]}" 2>/dev/null; then
            log "# $name exited; its log:"; cat "$WORK/$name.log"; exit 1
        fi
        if kdig "@$ADDR" -p "${PORT[$name]}" +short +time=1 +retry=0 "$qname" "$qtype" 2>/dev/null | grep -q .; then
            return
        fi
        sleep 0.1
    done
    log "# $name did not answer $qname $qtype within 30 s; its log:"; cat "$WORK/$name.log"; exit 1
}

# ---------------------------------------------------------------------------------------
# Tools.

install_tools() {
    local missing=() tool
    declare -A package=([dnsperf]=dnsperf [nsd]=nsd [knotd]=knot [kdig]=knot-dnsutils [rbldnsd]=rbldnsd [ss]=iproute2)
    for tool in "${!package[@]}"; do
        command -v "$tool" >/dev/null || missing+=("${package[$tool]}")
    done
    ((${#missing[@]})) || return 0
    [[ $INSTALL == yes ]] || { log "missing: ${missing[*]} (run without --no-install)"; exit 1; }
    # The packages' own services (NSD on every address, port 53) must not start: a
    # policy-rc.d that denies every start, only for the time of the install.
    local policy=/usr/sbin/policy-rc.d own_policy=no
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=yes
    fi
    # Package lists are fetched only when apt does not know every package yet.
    if (($(apt-cache policy "${missing[@]}" | grep -c 'Candidate: [0-9]') < ${#missing[@]})); then
        run apt-get update -q
    fi
    local status=0
    log "+ DEBIAN_FRONTEND=noninteractive apt-get install -y -q ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >"$WORK/apt.log" 2>&1 || status=$?
    [[ $own_policy == no ]] || rm -f "$policy"
    ((status == 0)) || { tail -20 "$WORK/apt.log"; exit 1; }
}

build_spfd() {
    if [[ -n ${SPFD:-} ]]; then log "# using SPFD=$SPFD"; return; fi
    log "+ (cd $REPO && cargo build --release --locked --bin spfd)"
    (cd "$REPO" && cargo build --release --locked --bin spfd) >"$WORK/build.log" 2>&1 \
        || { cat "$WORK/build.log"; exit 1; }
    SPFD="${CARGO_TARGET_DIR:-$REPO/target}/release/spfd"
}

# ---------------------------------------------------------------------------------------
# The same records for every server: zone _spf.d<i>.test with SPF at the apex, DMARC at
# _dmarc and a 2048-bit DKIM key at s1._domainkey, TTL 300, NS ns1/ns2.spfd.test.

spf_record() { echo "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.$(($1 % 256))/32 ip6:2001:db8:$(printf %x "$1")::/48 mx a:mail.d$1.test -all"; }
dmarc_record() { echo "v=DMARC1; p=reject; adkim=s; rua=mailto:dmarc-reports@d$1.test"; }
DKIM_RECORD="v=DKIM1; k=rsa; p=$DKIM_KEY"

spfd_policy() { # index mode
    cat <<EOF
domain = "d$1.test"
ttl = 300

[spf]
record = "$(spf_record "$1")"
mode = "$2"

[dmarc]
p = "reject"
rua = ["mailto:dmarc-reports@d$1.test"]
adkim = "s"

[dkim.s1]
p = "$DKIM_KEY"
EOF
}

spfd_config() { # port policy-dir state-dir [workers [upstream-port]]
    cat <<EOF
[server]
listen = ["$ADDR:$1"]
nameservers = ["ns1.spfd.test", "ns2.spfd.test"]
hostmaster = "hostmaster@spfd.test"
state_dir = "$3"
${4:+workers = $4}

[server.rrl]
enabled = false   # dnsperf asks from one address; NSD and Knot run without RRL here too

[policies]
dir = "$2"
EOF
    [[ -z ${5:-} ]] || printf '\n[upstream]\nnameservers = ["%s:%s"]\ntimeout = "1s"\n' "$ADDR" "$5"
}

# A zone file (NSD and Knot read the same one); the DKIM text is split every 255
# octets like spfd does.
zone_file() {
    cat <<EOF
\$ORIGIN _spf.d$1.test.
\$TTL 300
@ IN SOA ns1.spfd.test. hostmaster.spfd.test. 2026010101 3600 900 1209600 300
@ IN NS ns1.spfd.test.
@ IN NS ns2.spfd.test.
@ IN TXT "$(spf_record "$1")"
_dmarc IN TXT "$(dmarc_record "$1")"
s1._domainkey IN TXT "${DKIM_RECORD:0:255}" "${DKIM_RECORD:255}"
EOF
}

nsd_config() { # name server-count (its files under $WORK/name)
    local d="$WORK/$1"
    cat <<EOF
server:
    ip-address: $ADDR
    port: ${PORT[$1]}
    do-ip6: no
    server-count: $2
    reuseport: yes
    username: ""
    chroot: ""
    database: ""
    zonesdir: "$WORK/zones"
    zonelistfile: "$d/zone.list"
    xfrdfile: "$d/xfrd.state"
    xfrdir: "$d"
    pidfile: "$d/nsd.pid"
    logfile: "$d/nsd.log"
    verbosity: 0
    hide-version: yes
    # Like spfd and Knot: no NS RRset in the authority section of answers.
    minimal-responses: yes
    # NSD's response rate limiting (200 qps per /24 by default) would drop most of a
    # load test that comes from one address.
    rrl-ratelimit: 0
remote-control:
    control-enable: no
EOF
    for ((i = 0; i < ZONES; i++)); do
        printf 'zone:\n    name: _spf.d%d.test\n    zonefile: _spf.d%d.test.zone\n' "$i" "$i"
    done
}

knot_config() { # name udp-workers (its files under $WORK/name)
    local d="$WORK/$1"
    cat <<EOF
server:
    rundir: "$d"
    listen: $ADDR@${PORT[$1]}
    udp-workers: $2
    tcp-workers: 1
    background-workers: 1
log:
  - target: stderr
    any: warning
database:
    storage: "$d/db"
control:
    listen: "$d/knot.sock"
template:
  - id: default
    storage: "$WORK/zones"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
EOF
    for ((i = 0; i < ZONES; i++)); do printf '  - domain: _spf.d%d.test\n' "$i"; done
}

generate_records() {
    mkdir -p "$WORK"/{policies,spfd-state,zones,nsd,knot/db,nsd-1,knot-1/db}
    for ((i = 0; i < ZONES; i++)); do
        spfd_policy "$i" passthrough >"$WORK/policies/d$i.toml"
        zone_file "$i" >"$WORK/zones/_spf.d$i.test.zone"
    done
    spfd_config "${PORT[spfd]}" "$WORK/policies" "$WORK/spfd-state" >"$WORK/spfd.toml"
    nsd_config nsd 2 >"$WORK/nsd/nsd.conf"
    nsd_config nsd-1 1 >"$WORK/nsd-1/nsd.conf"
    knot_config knot 2 >"$WORK/knot/knot.conf"
    knot_config knot-1 1 >"$WORK/knot-1/knot.conf"
}

# ---------------------------------------------------------------------------------------
# Query files (dnsperf loops over them): a fixed random mix, the same for every server.

write_queries() {
    awk -v n="$ZONES" 'BEGIN { srand(42); for (q = 0; q < 100000; q++) {
        z = int(rand() * n); r = rand()
        if (r < 1/3) print "_spf.d" z ".test TXT"
        else if (r < 2/3) print "_dmarc._spf.d" z ".test TXT"
        else print "s1._domainkey._spf.d" z ".test TXT" } }' >"$WORK/q-static"
    # Half NXDOMAIN: names under an existing zone that do not exist.
    awk -v n="$ZONES" 'BEGIN { srand(43); for (q = 0; q < 100000; q++) {
        z = int(rand() * n); r = rand()
        if (r < 1/2) print "nx" int(rand() * 1000000) "._spf.d" z ".test TXT"
        else if (r < 2/3) print "_spf.d" z ".test TXT"
        else if (r < 5/6) print "_dmarc._spf.d" z ".test TXT"
        else print "s1._domainkey._spf.d" z ".test TXT" } }' >"$WORK/q-nx50"
}

# ---------------------------------------------------------------------------------------
# Measuring.

# CPU ticks (user + system) of a process and all its descendants (NSD forks servers).
cpu_ticks() {
    local pids=("$1") i=0 child total=0 fields
    while ((i < ${#pids[@]})); do
        for child in $(ps -o pid= --ppid "${pids[i]}" 2>/dev/null); do pids+=("$child"); done
        i=$((i + 1))
    done
    for child in "${pids[@]}"; do
        # Fields 14 and 15 of /proc/PID/stat, counted after the ")" that closes comm.
        fields=$(sed 's/.*) //' "/proc/$child/stat" 2>/dev/null) || continue
        total=$((total + $(awk '{ print $12 + $13 }' <<<"$fields")))
    done
    echo "$total"
}

# One dnsperf run: `measure CASE SERVER QUERYFILE SECONDS [-Q QPS -v]`. Appends one line
# to $WORK/results: case server qps cpu_us_per_query avg_latency_ms p99_ms lost
# response_bytes. p99 needs -v (one line per query), which costs dnsperf about a tenth of
# its throughput: only the latency runs use it.
measure() {
    local case=$1 server=$2 queries=$3 seconds=$4
    shift 4
    local out="$WORK/dnsperf.out" before after
    before=$(cpu_ticks "${PID[$server]}")
    local cmd=(dnsperf -s "$ADDR" -p "${PORT[$server]}" -d "$queries" -c "$CLIENTS" -l "$seconds" -e -t 2 "$@")
    log "+ ${cmd[*]} >$out"
    "${cmd[@]}" >"$out" 2>&1 || { cat "$out"; exit 1; }
    server_alive "$server"
    after=$(cpu_ticks "${PID[$server]}")
    # -v prints one line per query: "> RCODE name type latency-in-seconds" ("> T ..." for
    # a timeout). p99 from a histogram in microseconds; the rest from the summary.
    awk -v cname="$case" -v sname="$server" -v ticks=$((after - before)) -v hz="$CLK_TCK" '
        $1 == ">" && $2 != "T" && NF >= 5 { h[int($NF * 1e6)]++; n++ }
        /Queries completed:/ { completed = $3 }
        /Queries lost:/ { lost = $3 }
        /Queries per second:/ { qps = $4 }
        /Average Latency/ { avg = $4 * 1000 }
        /Average packet size/ { size = $NF }
        END {
            for (us in h) if (us + 0 > max) max = us + 0
            for (us = 0; us <= max; us++) { seen += h[us]; if (seen >= 0.99 * n) break }
            p99 = n ? sprintf("%.3f", us / 1000) : "-"
            cpu = completed ? ticks / hz * 1e6 / completed : 0
            printf "%s %s %.0f %.2f %.3f %s %d %d\n", cname, sname, qps, cpu, avg, p99, lost, size
        }' "$out" | tee -a "$WORK/results" | awk '{ printf "# -> %.0f qps, %s us CPU/query, avg %s ms, p99 %s ms, %s lost, response %s B\n", $3, $4, $5, $6, $7, $8 }' | sed 's/p99 - ms/p99 -/'
    grep -m1 'Response codes' "$out" | sed 's/^ */#    /'
}

# A server that died during a run makes the rest meaningless: say how it ended, show the
# end of its log and the table so far, and fail.
server_alive() {
    local server=$1 pid=${PID[$1]} status=0
    kill -0 "$pid" 2>/dev/null && return
    wait "$pid" || status=$?
    unset "PID[$server]"
    log "# $server (pid $pid) exited during this run with status $status; the end of its log:"
    tail -20 "$WORK/$server.log"
    print_table
    exit 1
}

# Every case against every server, runs interleaved so that background noise spreads
# over all of them: `compare CASE QUERYFILE SERVER...`.
compare() {
    local case=$1 queries=$2 run server
    shift 2
    for ((run = 1; run <= RUNS; run++)); do
        for server in "$@"; do measure "$case/max" "$server" "$queries" "$DURATION"; done
    done
    for ((run = 1; run <= RUNS; run++)); do
        for server in "$@"; do measure "$case/${LAT_QPS}qps" "$server" "$queries" "$LAT_DURATION" -Q "$LAT_QPS" -v; done
    done
}

# The servers must publish identical records, or the comparison is not fair.
check_same_answers() {
    local reference=$1 qname server mine theirs
    shift
    for qname in _spf.d0.test _dmarc._spf.d1.test s1._domainkey._spf.d$((ZONES - 1)).test; do
        mine=$(kdig "@$ADDR" -p "${PORT[$reference]}" +short TXT "$qname")
        for server in "$@"; do
            theirs=$(kdig "@$ADDR" -p "${PORT[$server]}" +short TXT "$qname")
            if [[ $mine != "$theirs" || -z $mine ]]; then
                log "# $reference and $server differ at $qname TXT:"; log "$mine"; log "$theirs"; exit 1
            fi
        done
    done
    log "# $reference and $* publish the same TXT records"
}

# ---------------------------------------------------------------------------------------
# Macro mode: the zone apex says `v=spf1 redirect=%{ir}.%{v}._spf.<domain>`, and spfd
# answers every name under in-addr.<zone> and ip6.<zone> from a per-address table. The
# peer is rbldnsd answering the same names from ip4trie and ip6trie data sets.

macro_spf_record() { echo "v=spf1 ip4:192.0.2.0/24 ip4:198.51.100.$(($1 % 256))/32 ip6:2001:db8:$(printf %x "$1")::/48 -all"; }

macro_policy() { # index
    cat <<EOF
domain = "d$1.test"
ttl = 300

[spf]
record = "$(macro_spf_record "$1")"
mode = "macro"
EOF
}

# Whether this spfd serves macro-mode answers: `spfd check` accepts a macro-mode policy
# and a server started on it answers a per-address name with an SPF record.
macro_available() {
    local dir="$WORK/macro-check" answer=""
    mkdir -p "$dir/policies"
    macro_policy 0 >"$dir/policies/d0.toml"
    spfd_config "${PORT[spfd-macro]}" "$dir/policies" "$dir" >"$dir/spfd.toml"
    log "+ $SPFD check --config $dir/spfd.toml"
    "$SPFD" check --config "$dir/spfd.toml" >"$dir/check.log" 2>&1 || { sed 's/^/# /' "$dir/check.log"; return 1; }
    start spfd-macro "$dir/spfd.log" "$SPFD" serve --config "$dir/spfd.toml"
    for _ in $(seq 50); do
        answer=$(kdig "@$ADDR" -p "${PORT[spfd-macro]}" +short +time=1 +retry=0 TXT 5.2.0.192.in-addr._spf.d0.test 2>/dev/null)
        [[ -z $answer ]] || break
        sleep 0.1
    done
    kill -TERM "${PID[spfd-macro]}" && wait "${PID[spfd-macro]}" 2>/dev/null || true
    unset 'PID[spfd-macro]'
    log "# spfd macro probe: 5.2.0.192.in-addr._spf.d0.test TXT -> ${answer:-no answer}"
    [[ $answer == *v=spf1* ]]
}

setup_macro() {
    mkdir -p "$WORK/macro-policies" "$WORK/macro-state" "$WORK/rbl"
    for ((i = 0; i < ZONES; i++)); do macro_policy "$i" >"$WORK/macro-policies/d$i.toml"; done
    spfd_config "${PORT[spfd-macro]}" "$WORK/macro-policies" "$WORK/macro-state" >"$WORK/spfd-macro.toml"
    # rbldnsd: per zone, the policy's ranges answer "+all" (pass), every other address
    # "-all" (0/0, ::/0), as spfd's table does: NOERROR for every address, never NXDOMAIN.
    local soa='$SOA 300 ns1.spfd.test. hostmaster.spfd.test. 2026010101 3600 900 1209600 300'
    for ((i = 0; i < ZONES; i++)); do
        printf '%s\n0/0 :127.0.0.2:v=spf1 -all\n192.0.2.0/24 :127.0.0.2:v=spf1 +all\n198.51.100.%d/32 :127.0.0.2:v=spf1 +all\n' \
            "$soa" $((i % 256)) >"$WORK/rbl/v4-$i"
        printf '%s\n::/0 :127.0.0.2:v=spf1 -all\n2001:db8:%x::/48 :127.0.0.2:v=spf1 +all\n' "$soa" "$i" >"$WORK/rbl/v6-$i"
    done
    # rbldnsd refuses to run as root and reads its data as user rbldns.
    chmod 755 "$WORK" "$WORK/rbl"
    chmod 644 "$WORK"/rbl/*
    # 40% in 192.0.2.0/24 (pass), 40% any IPv4 (mostly -all), 20% IPv6 in 2001:db8::/32.
    awk -v n="$ZONES" 'BEGIN { srand(44); for (q = 0; q < 100000; q++) {
        z = int(rand() * n); r = rand()
        if (r < 0.4) printf "%d.2.0.192.in-addr._spf.d%d.test TXT\n", int(rand() * 256), z
        else if (r < 0.8) printf "%d.%d.%d.%d.in-addr._spf.d%d.test TXT\n", int(rand() * 256), int(rand() * 256), int(rand() * 256), 1 + int(rand() * 223), z
        else { name = ""; for (i = 0; i < 24; i++) name = name sprintf("%x.", int(rand() * 16))
               printf "%s8.b.d.0.1.0.0.2.ip6._spf.d%d.test TXT\n", name, z } } }' >"$WORK/q-macro"
}

start_macro_servers() {
    local zones=() i name
    for ((i = 0; i < ZONES; i++)); do
        zones+=("in-addr._spf.d$i.test:ip4trie:v4-$i" "ip6._spf.d$i.test:ip6trie:v6-$i")
    done
    start spfd-macro "$WORK/spfd-macro.log" "$SPFD" serve --config "$WORK/spfd-macro.toml"
    log "+ rbldnsd -n -q -b $ADDR/${PORT[rbldnsd]} -w $WORK/rbl -t 300 in-addr._spf.d0.test:ip4trie:v4-0 ip6._spf.d0.test:ip6trie:v6-0 ... (every zone) >$WORK/rbldnsd.log 2>&1 &"
    rbldnsd -n -q -b "$ADDR/${PORT[rbldnsd]}" -w "$WORK/rbl" -t 300 "${zones[@]}" >"$WORK/rbldnsd.log" 2>&1 &
    PID[rbldnsd]=$!
    name="5.2.0.192.in-addr._spf.d$((ZONES - 1)).test"
    wait_ready spfd-macro "$name" TXT
    wait_ready rbldnsd "$name" TXT
    for name in 5.2.0.192.in-addr._spf.d0.test 5.2.0.10.in-addr._spf.d0.test \
        1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.d0.test; do
        for server in spfd-macro rbldnsd; do
            log "# $server: $name TXT -> $(kdig "@$ADDR" -p "${PORT[$server]}" +short TXT "$name" | tr '\n' ' ')"
        done
    done
}

# ---------------------------------------------------------------------------------------
# Saturation (--saturation): saturate, wait_idle, the macro tree and saturation_main.

# shellcheck source=benches/compare_saturation.sh
source "$REPO/benches/compare_saturation.sh"

# ---------------------------------------------------------------------------------------
# The table: medians over the runs of each case and server, and spfd/peer ratios.

# The median of numbers on stdin ("-" when there are none).
median() {
    grep -v '^-$' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

print_table() {
    local case server col qps cpu avg p99 lost size ref_qps ref_cpu
    printf '\n%-18s %-11s %9s %9s %9s %9s %7s %7s %9s %9s\n' case server "qps" "CPU us/q" "avg ms" "p99 ms" lost "resp B" "qps s/p" "CPU s/p"
    for case in $(awk '!seen[$1]++ { print $1 }' "$WORK/results"); do
        ref_qps=""
        for server in $(awk -v c="$case" '$1 == c && !seen[$2]++ { print $2 }' "$WORK/results"); do
            for col in 3 4 5 6 8; do
                declare "v$col=$(awk -v c="$case" -v s="$server" -v k="$col" '$1 == c && $2 == s { print $k }' "$WORK/results" | median)"
            done
            qps=$v3 cpu=$v4 avg=$v5 p99=$v6 size=$v8
            lost=$(awk -v c="$case" -v s="$server" '$1 == c && $2 == s { n += $7 } END { print n }' "$WORK/results")
            # Ratios against the first server of the case (spfd with its defaults).
            if [[ -z $ref_qps ]]; then
                ref_qps=$qps ref_cpu=$cpu
                ratios=("-" "-")
            else
                ratios=("$(awk -v a="$ref_qps" -v b="$qps" 'BEGIN { printf "%.2f", b ? a / b : 0 }')"
                    "$(awk -v a="$ref_cpu" -v b="$cpu" 'BEGIN { printf "%.2f", b ? a / b : 0 }')")
            fi
            printf '%-18s %-11s %9.0f %9.2f %9.3f %9s %7.0f %7.0f %9s %9s\n' "$case" "$server" "$qps" "$cpu" "$avg" "$p99" "$lost" "$size" "${ratios[@]}"
        done
    done
    printf '\nmedians of %d runs (lost: the sum); throughput runs (max) %d s without -Q, latency runs %d s with\n' "$RUNS" "$DURATION" "$LAT_DURATION"
    printf -- '-Q %d -v (p99 from the per-query latencies); dnsperf -c %d -e (EDNS) over UDP.\n' "$LAT_QPS" "$CLIENTS"
    printf 'CPU us/q: server user+system CPU (all its processes) per completed query. s/p: spfd divided by the peer\n'
    printf '(qps s/p above 1 and CPU s/p below 1 favour spfd). dnsperf shares the %d cores with the server.\n' "$(nproc)"
}

# ---------------------------------------------------------------------------------------

# The tools, spfd's release build, free ports, the records and the query files: what
# every comparison starts from (also the saturation cases in compare_saturation.sh).
prepare() {
    install_tools
    build_spfd
    for name in "${!PORT[@]}"; do
        port_free "${PORT[$name]}" || { log "port ${PORT[$name]} is in use; set PORT_BASE"; exit 1; }
    done
    generate_records
    write_queries
}

main() {
    log "# spfd side-by-side: $ZONES zones, $RUNS runs per case, work directory $WORK"
    prepare
    : >"$WORK/results"
    log "# versions: spfd built from $REPO (commit $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?') plus any uncommitted changes), NSD $(nsd -v 2>&1 | head -1 | awk '{ print $3 }'), Knot $(knotd --version | awk '{ print $NF }'), $(dnsperf -h 2>&1 | grep Version)"
    start spfd "$WORK/spfd.log" "$SPFD" serve --config "$WORK/spfd.toml"
    start nsd "$WORK/nsd.log" nsd -d -c "$WORK/nsd/nsd.conf"
    start knot "$WORK/knot.log" knotd -c "$WORK/knot/knot.conf"
    for server in spfd nsd knot; do wait_ready "$server" "_spf.d$((ZONES - 1)).test"; done
    check_same_answers spfd nsd knot
    log "# spfd: one process, a UDP socket and a worker thread per core ($(nproc)); NSD: server-count 2; Knot: udp-workers 2"

    compare static "$WORK/q-static" spfd nsd knot
    compare nx50 "$WORK/q-nx50" spfd nsd knot

    if [[ $MACRO == yes ]] || macro_available; then
        log "# macro mode: spfd answers per address, against rbldnsd (one process: it has no workers)"
        setup_macro
        start_macro_servers
        compare macro "$WORK/q-macro" spfd-macro rbldnsd
    else
        log "# macro-mode section skipped: this spfd does not answer macro-mode names yet (--macro forces it)"
    fi
    stop_servers
    print_table
    log "# finished in $((SECONDS - START)) s"
}

if [[ $SATURATION == yes ]]; then saturation_main; else main; fi
