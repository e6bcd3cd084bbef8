#!/usr/bin/env bash
# Side-by-side performance of tcpdemo: `tcpdemo bench` in every mode against `tcpdemo server` and
# a socat uppercase server, interleaved round by round; the client against `nc -N`; memory per
# idle connection. Prints one table with ratios.
#
# Loopback only. Every load is bounded: each bench run by --duration, the pipe tests by a 1 GiB
# file, the memory test by 10,000 connections; everything started here is stopped on exit.
#
#   bash tests/bench.sh                  # about 3 minutes
#   ROUNDS=5 DURATION=5 bash tests/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-3}
HOST=127.0.0.1

missing=()
command -v socat >/dev/null || missing+=(socat)
command -v nc >/dev/null || missing+=(netcat-openbsd)
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
    echo "installing ${missing[*]}" >&2
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

cargo build --release --locked -q
BIN=$PWD/target/release/tcpdemo
tmp=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# tcpdemo prints its port on its first line: read it, no guessing, no sleeping.
exec {server_out}< <(exec "$BIN" server --port 0 -q)
pids+=($!)
read -r line <&"$server_out"
TCPDEMO_PORT=${line##*:}

# socat cannot report a port it picked, so take one the kernel just handed out and released.
SOCAT_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# stdbuf: tr would otherwise hold replies back in its 4 KiB stdio buffer, stalling request/response.
socat TCP-LISTEN:"$SOCAT_PORT",bind=$HOST,fork,reuseaddr,backlog=1024 SYSTEM:'stdbuf -o0 tr a-z A-Z' &
pids+=($!)
for _ in $(seq 100); do
    (exec 9<>"/dev/tcp/$HOST/$SOCAT_PORT") 2>/dev/null && break
    sleep 0.05
done

results=$tmp/results
bench() { # name port mode connections
    "$BIN" bench -H "$HOST" -p "$2" --mode "$3" --connections "$4" --duration "$DURATION" --json |
        python3 -c 'import json, sys; j = json.load(sys.stdin); print(sys.argv[1], sys.argv[2], j["operations_per_second"], j["received_mib_per_second"], j["latency_us"].get("p50", 0), j["latency_us"].get("p99", 0), j["errors"])' "$1" "$3-$4" >>"$results"
}

echo "bench: $ROUNDS rounds of ${DURATION}s per mode and server" >&2
for round in $(seq "$ROUNDS"); do
    for spec in "rr 50" "stream 1" "connect 4"; do
        set -- $spec
        bench tcpdemo "$TCPDEMO_PORT" "$1" "$2"
        bench socat "$SOCAT_PORT" "$1" "$2"
    done
    echo "  round $round done" >&2
done

echo "client: 1 GiB through the server, tcpdemo client vs nc -N" >&2
head -c 1G /dev/urandom >"$tmp/1GiB.bin"
hyperfine --warmup 1 --runs 5 --export-json "$tmp/pipe.json" \
    "$BIN client -H $HOST -p $TCPDEMO_PORT --timeout 30 < $tmp/1GiB.bin > /dev/null" \
    "nc -N $HOST $TCPDEMO_PORT < $tmp/1GiB.bin > /dev/null" >/dev/null
hyperfine --warmup 5 --runs 100 --export-json "$tmp/oneshot.json" \
    "$BIN client -H $HOST -p $TCPDEMO_PORT hello" \
    "printf hello | nc -N $HOST $TCPDEMO_PORT" --output null >/dev/null 2>&1

echo "memory: 10,000 idle connections" >&2
python3 - "$TCPDEMO_PORT" "${pids[0]}" >>"$results" <<'EOF'
import os, resource, socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
def rss():
    return next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS"))
def threads():
    return len(os.listdir(f"/proc/{pid}/task"))
n = min(10000, hard - 100)
before, before_threads = rss(), threads()
conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
deadline = time.time() + 60
while threads() < before_threads + n and time.time() < deadline:
    time.sleep(0.1)  # the server accepts them in its own time; no signal to wait on
print("tcpdemo", "memory", n, (rss() - before) / n, 0, 0, 0)
EOF

python3 - "$results" "$tmp/pipe.json" "$tmp/oneshot.json" "$ROUNDS" "$DURATION" <<'EOF'
import json, statistics, sys, platform, os
results, pipe, oneshot, rounds, duration = sys.argv[1:]
rows = {}
for line in open(results):
    name, mode, ops, mib, p50, p99, errors = line.split()
    rows.setdefault((mode, name), []).append((float(ops), float(mib), float(p50), float(p99), int(errors)))
def med(mode, name, i):
    return statistics.median(r[i] for r in rows[(mode, name)])
def errs(mode, name):
    return sum(r[4] for r in rows[(mode, name)])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"machine: {os.cpu_count()} cores, {cpu}, Linux {platform.release()}; "
      f"median of {rounds} interleaved rounds of {duration}s\n")
print(f"| measure | tcpdemo | socat + tr | tcpdemo / socat |")
print(f"| --- | ---: | ---: | ---: |")
for mode, label, i, unit in [
    ("rr-50", "rr, 50 conns x 64 B: requests/s", 0, ""),
    ("rr-50", "rr, 50 conns x 64 B: p99 latency", 3, " us"),
    ("stream-1", "stream, 1 conn: MiB/s each way", 1, ""),
    ("connect-4", "connect+echo+close, 4 workers: conns/s", 0, ""),
]:
    a, b = med(mode, "tcpdemo", i), med(mode, "socat", i)
    print(f"| {label} | {a:,.0f}{unit} | {b:,.0f}{unit} | {a / b:.2f}x |")
print()
print(f"errors: tcpdemo {sum(errs(m, 'tcpdemo') for m, _ in [('rr-50',0),('stream-1',0),('connect-4',0)])}, "
      f"socat {sum(errs(m, 'socat') for m, _ in [('rr-50',0),('stream-1',0),('connect-4',0)])}\n")
p = {r["command"].split()[0].split("/")[-1]: r for r in json.load(open(pipe))["results"]}
o = {r["command"].split()[0].split("/")[-1]: r for r in json.load(open(oneshot))["results"]}
client, nc = p["tcpdemo"]["median"], p["nc"]["median"]
stream_secs = 1024 / med("stream-1", "tcpdemo", 1)
print("| client | tcpdemo client | reference | client / reference |")
print("| --- | ---: | ---: | ---: |")
print(f"| 1 GiB pipe vs `nc -N` (s) | {client:.2f} | {nc:.2f} | {client / nc:.2f}x |")
print(f"| 1 GiB pipe vs `bench --mode stream` (s) | {client:.2f} | {stream_secs:.2f} | {client / stream_secs:.2f}x |")
print(f"| one-shot `client hello` vs `printf hello \\| nc -N` (ms) | {o['tcpdemo']['median'] * 1e3:.2f} | "
      f"{o['printf']['median'] * 1e3:.2f} | {o['tcpdemo']['median'] / o['printf']['median']:.2f}x |")
mem = rows[("memory", "tcpdemo")][0]
print(f"\nmemory: {mem[1]:.1f} KiB resident per idle connection, {mem[0]:.0f} connections held")
EOF
