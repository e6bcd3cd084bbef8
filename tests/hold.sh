#!/usr/bin/env bash
# How many connections a thread-per-connection server holds here, and what each costs.
#
#   sudo bash tests/hold.sh             # about 3 minutes
#
# The ladder: one fresh `tcpdemo server` (and tokio's echo, tests/peers, beside it) holding
# 1,000, 5,000, 10,000 and 19,000 idle connections from `tcpdemo bench --mode hold`, each
# echoing a byte a second: resident memory per connection, server threads, and the echo's p50
# and p99 while they are held. Then 80,000: five `--reuse-port` servers on one port, five bench
# processes. A thread takes four memory mappings (its stack and guard page, and the signal
# stack Rust gives each thread, with its guard page), so 19,000 threads need more than
# vm.max_map_count's 65,530, and 80,000 need more than kernel.pid_max's 32,768: the script
# raises both, as root, and puts them back when it ends, however it ends. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

HOLD=${HOLD:-5}
if [[ $(id -u) != 0 ]]; then
    echo "hold.sh needs root: it raises vm.max_map_count and kernel.pid_max for the run" >&2
    exit 2
fi
command -v python3 >/dev/null || { echo "hold.sh needs python3" >&2; exit 2; }
cargo build --release --locked -q
cargo build --release --locked -q --manifest-path tests/peers/Cargo.toml --target-dir target/peers
BIN=$PWD/target/release/tcpdemo
PEERS=$PWD/target/peers/release
tmp=$(mktemp -d)
pids=()
old_maps=$(cat /proc/sys/vm/max_map_count)
old_pids=$(cat /proc/sys/kernel/pid_max)
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    echo "$old_maps" >/proc/sys/vm/max_map_count
    echo "$old_pids" >/proc/sys/kernel/pid_max
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo 262144 >/proc/sys/vm/max_map_count
echo 131072 >/proc/sys/kernel/pid_max
ulimit -n "$(ulimit -Hn)"
echo "vm.max_map_count $old_maps -> 262144, kernel.pid_max $old_pids -> 131072 for the run;" \
    "open files $(ulimit -n)" >&2

# Starts a server and sets $pid and $port: it says `listening on ADDR:PORT` first.
start() {
    local fd line
    exec {fd}< <(exec "$@" 2>>"$tmp/servers.log")
    pid=$!
    pids+=("$pid")
    read -r line <&"$fd"
    port=${line##*:}
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
fds() { ls "/proc/$1/fd" | wc -l; }
# Waits until the servers PIDS... hold N descriptors between them (or 60 s pass).
wait_for_fds() {
    local n=$1 total pid
    shift
    for _ in $(seq 600); do
        total=0
        for pid in "$@"; do total=$((total + $(fds "$pid"))); done
        # Nearly all: a few may still wait in a listen queue.
        ((total >= n * 99 / 100)) && return
        sleep 0.1
    done
    echo "  (only $total of $n descriptors open after 60 s)" >&2
}
threads() { awk '/^Threads/ { print $2 }' "/proc/$1/status"; }

# One step: N connections held against a fresh server, RSS read while they are all open.
step() {
    local name=$1 n=$2
    shift 2
    start "$@"
    local before
    before=$(rss_kib "$pid")
    "$BIN" bench -H 127.0.0.1 -p "$port" --mode hold -c "$n" -d "$HOLD" --json >"$tmp/hold.json" 2>/dev/null &
    local bench=$!
    # Read once every connection is open and has echoed a byte or two.
    wait_for_fds "$n" "$pid"
    sleep 2
    local during threads_now
    during=$(rss_kib "$pid")
    threads_now=$(threads "$pid")
    wait "$bench" || true
    kill "$pid" 2>/dev/null || true
    python3 - "$name" "$n" "$before" "$during" "$threads_now" "$tmp/hold.json" <<'EOF'
import json, sys
name, n, before, during, threads, path = sys.argv[1:]
r = json.load(open(path))
n = int(n)
lat, hold = r["latency_us"], r["hold"]
print(f"| {name} | {n:,} | {hold['open_at_end']:,} | {(int(during) - int(before)) / n:.1f} | "
      f"{threads} | {hold['opening_seconds']:.2f} | {lat['p50']:.0f} | {lat['p99']:,.0f} | {r['errors']} |")
EOF
}

echo
echo "One server, idle connections held for ${HOLD}s, a byte echoed on each every second:"
echo
echo "| server | connections | open at the end | resident KiB per connection | threads | opening s | echo p50 us | echo p99 us | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for n in 1000 5000 10000 19000; do
    step tcpdemo "$n" "$BIN" server --port 0 -q --max-connections 20000
    step tokio "$n" "$PEERS/tokio-echo"
done

# 80,000: five servers share one port; five bench processes hold 16,000 each.
echo
echo "Five --reuse-port servers on one port, five bench processes of 16,000 connections each, a byte"
echo "on each every 10 s (80,000 a second would take both cores):"
# A port nobody else shares: port 0 with SO_REUSEPORT may hand out one another group uses.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
shared=$port
servers=()
for _ in 1 2 3 4 5; do
    start "$BIN" server --port "$shared" -q --reuse-port --max-connections 20000
    servers+=("$pid")
done
port=$shared
before=0
for pid in "${servers[@]}"; do before=$((before + $(rss_kib "$pid"))); done
benches=()
for i in 1 2 3 4 5; do
    "$BIN" bench -H 127.0.0.1 -p "$port" --mode hold -c 16000 -i 10 -d $((HOLD * 4)) --json \
        >"$tmp/hold-$i.json" 2>/dev/null &
    benches+=($!)
done
wait_for_fds 80000 "${servers[@]}"
sleep 2
during=0
held=()
for pid in "${servers[@]}"; do
    during=$((during + $(rss_kib "$pid")))
    held+=("$(threads "$pid")")
done
for pid in "${benches[@]}"; do wait "$pid" || true; done
python3 - "$before" "$during" "${held[*]}" "$tmp"/hold-*.json <<'EOF'
import json, sys
before, during, held, *paths = sys.argv[1:]
# The summary is the last line, after the --interval lines.
runs = [json.loads(open(p).read().strip().splitlines()[-1]) for p in paths]
opened = sum(r["hold"]["opened"] for r in runs)
at_end = sum(r["hold"]["open_at_end"] for r in runs)
echoes = sum(r["operations"] for r in runs)
errors = sum(r["errors"] for r in runs)
kinds = {}
for r in runs:
    for kind, count in r["errors_by_kind"].items():
        kinds[kind] = kinds.get(kind, 0) + count
first = next((r["first_error"] for r in runs if r["first_error"]), None)
p99 = max(r["latency_us"]["p99"] for r in runs)
print(f"  opened {opened:,}, open at the end {at_end:,}, {echoes:,} one-byte echoes, {errors} errors"
      f" {({k: v for k, v in kinds.items() if v})}; worst p99 of the five {p99:,.0f} us")
if first:
    print(f"  first error: {first}")
print(f"  server threads: {held}; resident {(int(during) - int(before)) / max(opened, 1):.1f} KiB a connection")
EOF
grep -h WARN "$tmp/servers.log" | sort | uniq -c | sort -rn | head -5 || true
