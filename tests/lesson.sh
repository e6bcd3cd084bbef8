#!/usr/bin/env bash
# TCP and UDP on one impaired path, side by side: the tutorial's lesson, measured.
#
#   sudo bash tests/lesson.sh [SECONDS]     (default 10 s a run; about 3 minutes in all)
#
# Two network namespaces on this machine, joined by a veth pair (10.77.1.0/24) and by a TUN
# "wire" (10.77.2.0/24, tests/lesson_wire.py). `tcpdemo server --udp` runs in one; from the
# other, the same open-loop rr load (50 connections or flows, 500 requests/s, 64 bytes) goes
# over TCP and over UDP, on a clean path, then with 1% loss, reordering (5% of the packets
# held back 120 ms, longer than a flow's 100 ms between requests, so the next overtakes them),
# 1% duplication, and 20 ms +- 5 ms of delay, each way. Impairments come from netem where the kernel has it;
# otherwise loss and duplication from nftables (numgen random, dup) on the veth path, and delay
# and reordering from the TUN wire (a user-space program: the NFQUEUE program the kernel would
# need for it in nftables is missing here too). The script says which it used. It prints one
# table, then checks bench --udp's loss and jitter against iperf3 -u on the same path.
# Everything stays on this machine, is bounded in time, and is removed at the end, even when
# interrupted.
set -euo pipefail

SECS=${1:-10}
RATE=500
FLOWS=50
PORT=4000
cd "$(dirname "$0")/.."

if [[ $(id -u) != 0 ]]; then
    echo "lesson.sh needs root: it makes network namespaces" >&2
    exit 2
fi
need() {
    command -v "$1" >/dev/null || { apt-get install -y "$2" >/dev/null 2>&1 || true; }
    command -v "$1" >/dev/null || { echo "lesson.sh needs $1 (apt-get install $2)" >&2; exit 2; }
}
need ip iproute2
need nft nftables
need python3 python3
need iperf3 iperf3
cargo build --release --locked -q
BIN=$PWD/target/release/tcpdemo

C=tcpdemo-lesson-client-$$
S=tcpdemo-lesson-server-$$
WORK=$(mktemp -d)
SERVER_PID=
WIRE_PID=
cleanup() {
    [[ -n $WIRE_PID ]] && kill "$WIRE_PID" 2>/dev/null || true
    [[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null || true
    ip netns pids "$S" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns pids "$C" 2>/dev/null | xargs -r kill 2>/dev/null || true
    ip netns del "$C" 2>/dev/null || true
    ip netns del "$S" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$C"
ip netns add "$S"
ip -n "$C" link set lo up
ip -n "$S" link set lo up
ip link add lsn-vc-$$ type veth peer name lsn-vs-$$
ip link set lsn-vc-$$ netns "$C" name vc
ip link set lsn-vs-$$ netns "$S" name vs
ip -n "$C" addr add 10.77.1.1/24 dev vc
ip -n "$S" addr add 10.77.1.2/24 dev vs
ip -n "$C" link set vc up
ip -n "$S" link set vs up

if ip netns exec "$C" tc qdisc add dev vc root netem delay 0ms 2>/dev/null; then
    ip netns exec "$C" tc qdisc del dev vc root
    NETEM=1
    echo "impairments: netem on the veth pair"
else
    NETEM=
    echo "impairments: this kernel has no netem: loss and duplication from nftables on the veth"
    echo "pair, delay and reordering from tests/lesson_wire.py on a TUN pair (no NFQUEUE either)"
fi

ip netns exec "$S" "$BIN" server -H 0.0.0.0 -p "$PORT" --udp --udp-rate 1000000 -q \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.out" && break; sleep 0.05; done
grep -q "listening on" "$WORK/server.out" || { cat "$WORK/server.err" >&2; exit 1; }

# The TUN wire with these arguments, between the namespaces; one at a time.
wire() {
    stop_wire
    python3 tests/lesson_wire.py lsn-wc-$$ lsn-ws-$$ "$@" >"$WORK/wire.out" &
    WIRE_PID=$!
    for _ in $(seq 100); do grep -q ready "$WORK/wire.out" && break; sleep 0.05; done
    ip link set lsn-wc-$$ netns "$C" name wc
    ip link set lsn-ws-$$ netns "$S" name ws
    ip -n "$C" addr add 10.77.2.1 peer 10.77.2.2 dev wc
    ip -n "$S" addr add 10.77.2.2 peer 10.77.2.1 dev ws
    ip -n "$C" link set wc up
    ip -n "$S" link set ws up
}
stop_wire() {
    if [[ -n $WIRE_PID ]]; then
        kill "$WIRE_PID" 2>/dev/null || true
        wait "$WIRE_PID" 2>/dev/null || true
        WIRE_PID=
    fi
}

# nftables rules on the veth, each way: "loss PCT" (dropped as they arrive: a drop on the way
# out would tell the sender, with EPERM) or "dup PCT" (copied as they leave); none clears.
nft_both() {
    for ns in "$C" "$S"; do ip netns exec "$ns" nft delete table ip lesson 2>/dev/null || true; done
    [[ $# == 0 ]] && return
    local kind=$1 pct=$2
    for side in "$C vc 10.77.1.2" "$S vs 10.77.1.1"; do
        read -r ns dev peer <<<"$side"
        nft_rule "$ns" "$dev" "$peer" "$kind" "$pct"
    done
}

# One side's rule: NS, its veth DEV, the PEER's address, loss or dup, PCT, and what else a
# packet must match.
nft_rule() {
    local ns=$1 dev=$2 peer=$3 kind=$4 pct=$5 also=${6:-}
    local hook=input match="iifname \"$dev\" $also" action=drop
    if [[ $kind == dup ]]; then
        hook=output match="oifname \"$dev\"" action="dup to $peer device \"$dev\""
    fi
    ip netns exec "$ns" nft -f - <<EOF
table ip lesson {
    chain impair {
        type filter hook $hook priority 0; policy accept;
        $match numgen random mod 1000 < $((pct * 10)) $action
    }
}
EOF
}

# netem on both ends of the veth: its arguments, or none to clear.
netem_both() {
    for side in "$C vc" "$S vs"; do
        read -r ns dev <<<"$side"
        ip netns exec "$ns" tc qdisc del dev "$dev" root 2>/dev/null || true
        [[ $# -gt 0 ]] && ip netns exec "$ns" tc qdisc add dev "$dev" root netem "$@"
    done
}

retransmits() {
    local total=0 n
    for ns in "$C" "$S"; do
        n=$(ip netns exec "$ns" awk '/^Tcp:/ { if (h) print $13; h = 1 }' /proc/net/snmp)
        total=$((total + n))
    done
    echo "$total"
}

ROWS=()
# One path, both protocols: bench against HOST, a row each.
measure() {
    local path=$1 host=$2
    for proto in TCP UDP; do
        local extra=()
        [[ $proto == UDP ]] && extra=(--udp)
        local before after
        before=$(retransmits)
        ip netns exec "$C" "$BIN" bench -H "$host" -p "$PORT" "${extra[@]}" -c "$FLOWS" \
            --rate "$RATE" -d "$SECS" --json >"$WORK/run.json" 2>"$WORK/run.err" || true
        after=$(retransmits)
        ROWS+=("$(python3 - "$path" "$proto" $((after - before)) "$WORK/run.json" "$WORK/run.err" <<'EOF'
import json, sys
path, proto, retrans, out, err = sys.argv[1:]
try:
    r = json.load(open(out))
except Exception:
    print(f"| {path} | {proto} | failed: {open(err).read().strip()[:80]} |||||||")
    sys.exit()
lat = r["latency_us"]
udp = r.get("udp")
ms = lambda us: f"{us / 1000:.1f}"
if udp:
    lost, reord, dup = udp["lost"], udp["reordered"], udp["duplicated"]
    note = "-"
else:
    lost = reord = dup = 0
    note = f"{int(retrans):,}"
exact = "yes" if r["errors_by_kind"]["wrong_bytes"] == 0 else "NO"
print(f"| {path} | {proto} | {r['operations_per_second']:,.0f} | {ms(lat['p50'])} | "
      f"{ms(lat['p99'])} | {ms(lat['max'])} | {lost:,} | {reord:,} | {dup:,} | {note} | {exact} |")
EOF
)")
        echo "${ROWS[-1]}"
    done
}

echo
echo "rr, $FLOWS connections (TCP) or flows (UDP), $RATE requests/s in all, 64 bytes, ${SECS}s each:"
echo
HEADER="| path | protocol | requests/s | p50 ms | p99 ms | max ms | lost | reordered | duplicated | TCP retransmits | every byte exact |"
echo "$HEADER"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
if [[ -n $NETEM ]]; then
    measure "clean" 10.77.1.2
    netem_both loss 1%; measure "loss 1% each way" 10.77.1.2
    netem_both delay 120ms reorder 95% gap 1; measure "reordering: 5% held 120 ms, each way" 10.77.1.2
    netem_both duplicate 1%; measure "duplication 1% each way" 10.77.1.2
    netem_both delay 20ms 5ms; measure "delay 20 ms +- 5 ms each way" 10.77.1.2
    netem_both
else
    measure "clean" 10.77.1.2
    nft_both loss 1; measure "loss 1% each way" 10.77.1.2
    nft_both
    wire --reorder 5 --gap 120; measure "reordering: 5% held 120 ms, each way" 10.77.2.2
    nft_both dup 1; measure "duplication 1% each way" 10.77.1.2
    nft_both
    wire --delay 20 --jitter 5; measure "delay 20 ms +- 5 ms each way" 10.77.2.2
    stop_wire
fi

# bench --udp against iperf3 -u on one path impaired one way (iperf3 measures one way, bench
# the round trip, with the way back clean), 10 flows each. Loss: 10,000 datagrams/s with 2%
# dropped. Jitter: 10 ms +- 2 ms of delay at 200 datagrams/s a flow, 5 ms apart, so that none
# overtakes another (both tools take jitter in arrival order, and how much reordering sorts
# out depends on how each paces); RFC 3550's jitter is a running mean over the last 16 or
# so, so each tool's figure is the mean of its 10 flows' (theory: 4/3 ms for +- 2 ms uniform).
echo
echo "bench --udp against iperf3 -u, 10 flows of 64-byte datagrams, impaired one way:"
ip netns exec "$S" iperf3 -s -p 5201 >/dev/null 2>&1 &
IPERF_PID=$!
sleep 0.5
compare() {
    local what=$1 host=$2 per_flow=$3
    ip netns exec "$C" iperf3 -u -c "$host" -p 5201 -P 10 -b $((per_flow * 64 * 8)) -l 64 \
        -t "$SECS" --json >"$WORK/iperf.json" 2>/dev/null || true
    ip netns exec "$C" "$BIN" bench --udp -H "$host" -p "$PORT" -c 10 --rate $((per_flow * 10)) \
        -d "$SECS" --json >"$WORK/bench.json" 2>/dev/null || true
    python3 - "$what" "$WORK/iperf.json" "$WORK/bench.json" <<'EOF'
import json, sys
what, iperf, bench = sys.argv[1:]
try:
    d = json.load(open(iperf))
except ValueError:
    d = {}
i = d.get("end", {}).get("sum")
if not i:
    sys.exit(f"  {what}: iperf3 failed: {d.get('error', 'no output')}")
b = json.load(open(bench))["udp"]
print(f"  {what}: iperf3 lost {i['lost_percent']:.2f}%, jitter {i['jitter_ms'] * 1000:.0f} us; "
      f"bench --udp lost {b['lost_percent']:.2f}%, jitter {b['jitter_us']:.0f} us")
EOF
}
if [[ -n $NETEM ]]; then
    # netem drops setup datagrams too, and iperf3 may then give up on a stream.
    ip netns exec "$C" tc qdisc add dev vc root netem loss 2%
    compare "loss 2% (netem)" 10.77.1.2 1000
    ip netns exec "$C" tc qdisc change dev vc root netem delay 10ms 2ms
    compare "delay 10 ms +- 2 ms (netem)" 10.77.1.2 200
else
    # The 64-byte datagrams only: iperf3 gives up on a stream whose setup datagram is lost.
    nft_rule "$S" vs 10.77.1.1 loss 2 "udp length 72"
    compare "loss 2% (nftables)" 10.77.1.2 1000
    nft_both
    wire --one-way --delay 10 --jitter 2
    compare "delay 10 ms +- 2 ms (TUN wire)" 10.77.2.2 200
    stop_wire
fi
kill "$IPERF_PID" 2>/dev/null || true
