# Sourced by benches/compare.sh (not run on its own): the saturation cases of
# `compare.sh --saturation`, using its servers, configuration writers and `measure`.
# shellcheck shell=bash

# ---------------------------------------------------------------------------------------
# Saturation (--saturation): each server alone at full load, dnsperf -c 4 without
# -Q, every peer at each of its efficient settings; CPU per answer is what decides how far
# one machine goes.

# Waits (at most 60 s) until every server named has used under 5% of a core for a second:
# work left from startup (spfd's first expansion round, a zone load) is not an answer's.
wait_idle() {
    local server before after
    for server in "$@"; do
        for _ in $(seq 60); do
            before=$(cpu_ticks "${PID[$server]}")
            sleep 1
            after=$(cpu_ticks "${PID[$server]}")
            ((after - before < CLK_TCK / 20)) && break
        done
    done
}

saturate() { # CASE QUERYFILE SERVER...
    local case=$1 queries=$2 run server
    shift 2
    wait_idle "$@"
    for ((run = 1; run <= RUNS; run++)); do
        for server in "$@"; do measure "$case" "$server" "$queries" "$DURATION"; done
    done
}

# The macro tree: five includes of 1,000 IPv4 /24s each and one of 500 IPv6 /48s (random,
# fixed seed), served as written by a second spfd (the upstream); TREE_ZONES macro-mode
# policies include all six. rbldnsd answers the same ranges "+all", every other address
# "-all", as spfd's table does.
setup_macro_tree() {
    local i soa='$SOA 300 ns1.spfd.test. hostmaster.spfd.test. 2026010101 3600 900 1209600 300'
    mkdir -p "$WORK"/{up-policies,up-state,tree-policies,tree-state,rbl}
    awk -v dir="$WORK" 'function policy(p, r) {
            printf "domain = \"prov%d.test\"\nttl = 300\n\n[spf]\nrecord = \"%s -all\"\nmode = \"passthrough\"\n", p, r >(dir "/up-policies/prov" p ".toml") }
        BEGIN { srand(46)
            for (p = 0; p < 5; p++) { r = "v=spf1"
                for (i = 0; i < 1000; i++) {
                    n = sprintf("%d.%d.%d.0/24", 1 + int(rand() * 223), int(rand() * 256), int(rand() * 256))
                    r = r " ip4:" n; print n >(dir "/tree-v4") }
                policy(p, r) }
            r = "v=spf1"
            for (i = 0; i < 500; i++) { n = sprintf("2001:db8:%x::/48", int(rand() * 65536)); r = r " ip6:" n; print n >(dir "/tree-v6") }
            policy(5, r) }'
    for ((i = 0; i < TREE_ZONES; i++)); do
        printf 'domain = "t%d.test"\nttl = 300\n\n[spf]\nrecord = "v=spf1 %s -all"\nmode = "macro"\n' "$i" \
            "$(printf 'include:_spf.prov%d.test ' 0 1 2 3 4 5 | sed 's/ $//')" >"$WORK/tree-policies/t$i.toml"
    done
    spfd_config "${PORT[upstream]}" "$WORK/up-policies" "$WORK/up-state" >"$WORK/upstream.toml"
    spfd_config "${PORT[spfd-macro]}" "$WORK/tree-policies" "$WORK/tree-state" "" "${PORT[upstream]}" >"$WORK/spfd-macro.toml"
    mkdir -p "$WORK/tree-state-w1"
    spfd_config "${PORT[spfd-macro-w1]}" "$WORK/tree-policies" "$WORK/tree-state-w1" 1 "${PORT[upstream]}" >"$WORK/spfd-macro-w1.toml"
    { echo "$soa"; echo '0/0 :127.0.0.2:v=spf1 -all'; sed 's/$/ :127.0.0.2:v=spf1 +all/' "$WORK/tree-v4"; } >"$WORK/rbl/tree-v4"
    { echo "$soa"; echo '::/0 :127.0.0.2:v=spf1 -all'; sed 's/$/ :127.0.0.2:v=spf1 +all/' "$WORK/tree-v6"; } >"$WORK/rbl/tree-v6"
    chmod 755 "$WORK" "$WORK/rbl"
    chmod 644 "$WORK"/rbl/*
    # 40% an address inside the tree, 40% any IPv4 address, 20% IPv6 in 2001:db8::/32
    # (half of them inside the tree).
    awk -v n="$TREE_ZONES" -v dir="$WORK" 'function nib(k, s, i) { s = ""; for (i = 0; i < k; i++) s = s sprintf("%x", int(rand() * 16)); return s }
        BEGIN { srand(47)
            while ((getline line <(dir "/tree-v4")) > 0) { split(line, a, /[.\/]/); v4[c4++] = a[3] "." a[2] "." a[1] }
            while ((getline line <(dir "/tree-v6")) > 0) { split(line, a, ":"); v6[c6++] = sprintf("%04s", a[3]) }
            for (q = 0; q < 100000; q++) {
                z = int(rand() * n); r = rand()
                if (r < 0.4) printf "%d.%s.in-addr._spf.t%d.test TXT\n", int(rand() * 256), v4[int(rand() * c4)], z
                else if (r < 0.8) printf "%d.%d.%d.%d.in-addr._spf.t%d.test TXT\n", int(rand() * 256), int(rand() * 256), int(rand() * 256), 1 + int(rand() * 223), z
                else {
                    h = (r < 0.9) ? v6[int(rand() * c6)] : nib(4); gsub(/ /, "0", h)
                    full = "20010db8" h nib(20); name = ""
                    for (i = 32; i >= 1; i--) name = name substr(full, i, 1) "."
                    printf "%sip6._spf.t%d.test TXT\n", name, z } } }' >"$WORK/q-tree"
}

# Waits until SERVER answers NAME TXT with text containing WANT (spfd's macro table is
# ready only after the includes have been resolved).
wait_answer() {
    local server=$1 name=$2 want=$3
    for _ in $(seq 300); do
        kdig "@$ADDR" -p "${PORT[$server]}" +short +time=1 +retry=0 TXT "$name" 2>/dev/null | grep -qF -- "$want" && return
        sleep 0.2
    done
    log "# $server never answered $name TXT with $want; its log:"; tail -20 "$WORK/$server.log"; exit 1
}

start_tree_servers() {
    local zones=() i name hit miss6 server
    for ((i = 0; i < TREE_ZONES; i++)); do
        zones+=("in-addr._spf.t$i.test:ip4trie:tree-v4" "ip6._spf.t$i.test:ip6trie:tree-v6")
    done
    start upstream "$WORK/upstream.log" "$SPFD" serve --config "$WORK/upstream.toml"
    wait_ready upstream _spf.prov5.test TXT
    start spfd-macro "$WORK/spfd-macro.log" "$SPFD" serve --config "$WORK/spfd-macro.toml"
    start spfd-macro-w1 "$WORK/spfd-macro-w1.log" "$SPFD" serve --config "$WORK/spfd-macro-w1.toml"
    log "+ rbldnsd -n -q -b $ADDR/${PORT[rbldnsd]} -w $WORK/rbl -t 300 in-addr._spf.t0.test:ip4trie:tree-v4 ip6._spf.t0.test:ip6trie:tree-v6 ... (every zone) >$WORK/rbldnsd.log 2>&1 &"
    rbldnsd -n -q -b "$ADDR/${PORT[rbldnsd]}" -w "$WORK/rbl" -t 300 "${zones[@]}" >"$WORK/rbldnsd.log" 2>&1 &
    PID[rbldnsd]=$!
    hit=$(head -1 "$WORK/tree-v4" | awk -F'[./]' '{ print "7." $3 "." $2 "." $1 }')
    for ((i = 0; i < TREE_ZONES; i++)); do
        for server in spfd-macro spfd-macro-w1; do wait_answer "$server" "$hit.in-addr._spf.t$i.test" "+all"; done
    done
    wait_answer rbldnsd "$hit.in-addr._spf.t$((TREE_ZONES - 1)).test" "+all"
    miss6=$(printf '1.%.0s' $(seq 24))8.b.d.0.1.0.0.2.ip6._spf.t0.test
    for name in "$hit.in-addr._spf.t0.test" 5.2.0.10.in-addr._spf.t0.test "$miss6" \
        "$(head -4 "$WORK/q-tree" | tail -1 | cut -d' ' -f1)"; do
        for server in spfd-macro spfd-macro-w1 rbldnsd; do
            log "# $server: $name TXT -> $(kdig "@$ADDR" -p "${PORT[$server]}" +short TXT "$name" | tr '\n' ' ')"
            [[ $(kdig "@$ADDR" -p "${PORT[spfd-macro]}" +short TXT "$name") == "$(kdig "@$ADDR" -p "${PORT[$server]}" +short TXT "$name")" ]] \
                || { log "# spfd-macro and $server differ at $name"; exit 1; }
        done
    done
}

saturation_main() {
    log "# spfd saturation: $ZONES policies, macro tree in $TREE_ZONES zones, $RUNS runs, dnsperf -c $CLIENTS, work directory $WORK"
    prepare
    mkdir -p "$WORK/spfd-w1-state"
    spfd_config "${PORT[spfd-w1]}" "$WORK/policies" "$WORK/spfd-w1-state" 1 >"$WORK/spfd-w1.toml"
    : >"$WORK/results"
    log "# versions: spfd $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), NSD $(nsd -v 2>&1 | head -1 | awk '{ print $3 }'), Knot $(knotd --version | awk '{ print $NF }'), $(dnsperf -h 2>&1 | grep Version); $(uptime)"
    start spfd "$WORK/spfd.log" "$SPFD" serve --config "$WORK/spfd.toml"
    start spfd-w1 "$WORK/spfd-w1.log" "$SPFD" serve --config "$WORK/spfd-w1.toml"
    start nsd-1 "$WORK/nsd-1.log" nsd -d -c "$WORK/nsd-1/nsd.conf"
    start nsd "$WORK/nsd.log" nsd -d -c "$WORK/nsd/nsd.conf"
    start knot-1 "$WORK/knot-1.log" knotd -c "$WORK/knot-1/knot.conf"
    start knot "$WORK/knot.log" knotd -c "$WORK/knot/knot.conf"
    for server in spfd spfd-w1 nsd-1 nsd knot-1 knot; do wait_ready "$server" "_spf.d$((ZONES - 1)).test"; done
    check_same_answers spfd spfd-w1 nsd-1 nsd knot-1 knot
    log "# spfd: workers = $(nproc) (default) and 1; nsd: server-count 2, nsd-1: 1; knot: udp-workers 2, knot-1: 1"
    saturate static/sat "$WORK/q-static" spfd spfd-w1 nsd-1 nsd knot-1 knot
    stop_servers
    setup_macro_tree
    start_tree_servers
    saturate macro-tree/sat "$WORK/q-tree" spfd-macro spfd-macro-w1 rbldnsd
    stop_servers
    print_table
    log "# $(uptime)"
    log "# finished in $((SECONDS - START)) s"
}
