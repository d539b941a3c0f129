#!/usr/bin/env bash
# Benchmarks a cluster on this machine: one redis-server, N crypto-ticker nodes with
# --redis, and ticker-load spreading subscribers round-robin over the nodes (--url
# repeated). Prints, per node and for Redis, CPU over the steady window, CPU per
# delivered frame, and the tick delay (leader's ts_us → this node's fan-out start) read
# off each node's ticker_tick_delay_seconds histogram; then the load tool's summary.
#
# Usage: tools/cluster-bench.sh
#
# Environment (defaults in brackets):
#   CLUSTER_NODES      nodes                            [3]
#   CLUSTER_PER_NODE   subscribers per node             [300]
#   BENCH_DURATION     steady window                    [20s]
#   BENCH_WARMUP       settle time after the ramp       [2s]
#   BENCH_RAMP         connections opened per second    [1000/s]
#   BENCH_PORT         first node's port (then +1, ...) [18181]
#   REDIS_PORT         redis-server's port              [16379]
#   BENCH_SINGLE=1     one node without --redis instead: the same measurement of a
#                      single node, for the comparison
#
# Needs redis-server (Debian package redis-server). Everything shares this machine's
# cores: compare a follower with a single node at the same subscribers per node
# (tools/bench.sh with BENCH_COUNTS=CLUSTER_PER_NODE) on the same machine.
set -euo pipefail
cd "$(dirname "$0")/.."

nodes="${CLUSTER_NODES:-3}"
per_node="${CLUSTER_PER_NODE:-300}"
duration="${BENCH_DURATION:-20s}"
warmup="${BENCH_WARMUP:-2s}"
ramp="${BENCH_RAMP:-1000/s}"
port="${BENCH_PORT:-18181}"
redis_port="${REDIS_PORT:-16379}"
total=$((nodes * per_node))

command -v redis-server >/dev/null || { echo "cluster-bench.sh: redis-server not found (apt-get install redis-server)" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p crypto-ticker -p ticker-load >&2

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    sleep 0.5
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

single="${BENCH_SINGLE:-}"
[ -n "$single" ] && nodes=1 && total=$per_node
redis_args=(--redis "redis://127.0.0.1:$redis_port/")
[ -n "$single" ] && redis_args=()

redis-server --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no --dir "$work" \
    --logfile "$work/redis.log" &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.05; done

export TICKER_TOKEN_KEY="cluster-bench-key-0123456789"
urls=()
node_pids=()
for i in $(seq 0 $((nodes - 1))); do
    p=$((port + i))
    target/release/crypto-ticker --addr "127.0.0.1:$p" --db "$work/n$i.db" --public public \
        "${redis_args[@]}" >"$work/node$i.log" 2>&1 &
    node_pids+=($!)
    pids+=($!)
    urls+=(--url "http://127.0.0.1:$p")
done
key=""
for _ in $(seq 100); do
    key="$(sed -n 's/.*demo API key \(created\|exists\).*api_key=\([A-Za-z0-9]*\).*/\2/p' "$work"/node*.log | head -n 1)"
    [ -n "$key" ] && break
    sleep 0.1
done
[ -n "$key" ] || { echo "cluster-bench.sh: no demo key in the node logs" >&2; cat "$work"/node*.log >&2; exit 1; }

# CPU ticks (user + system) of a process.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
metric() { curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }
buckets() { curl -s "http://127.0.0.1:$1/metrics" | sed -n 's/^ticker_tick_delay_seconds_bucket{le="\([^"]*\)"} \([0-9]*\)$/\1 \2/p'; }

secs() { local d="$1"; case "$d" in *ms) echo "scale=3; ${d%ms}/1000" | bc ;; *s) echo "${d%s}" ;; esac; }
# Measure inside the load tool's steady window, with half a second of slack each side.
ramp_secs=$(echo "scale=3; $total / ${ramp%/s}" | bc)
settle=$(echo "$ramp_secs + $(secs "$warmup") + 0.5" | bc)
window=$(echo "$(secs "$duration") - 1" | bc)

echo "cluster-bench.sh: $nodes nodes × $per_node subscribers, ramp $ramp, warmup $warmup, steady $duration" >&2
target/release/ticker-load "${urls[@]}" --api-key "$key" --connections "$total" --ramp "$ramp" \
    --warmup "$warmup" --duration "$duration" --json "$work/load.json" --quiet >"$work/load.out" 2>&1 &
load=$!
sleep "$settle"

declare -A cpu0 frames0
for i in $(seq 0 $((nodes - 1))); do
    cpu0[$i]=$(cpu "${node_pids[$i]}"); frames0[$i]=$(metric $((port + i)) ticker_frames_sent_total)
    buckets $((port + i)) >"$work/b0-$i"
done
rcpu0=$(cpu "$redis_pid")
sleep "$window"
hz=$(getconf CLK_TCK)
printf '%-8s %-8s %12s %10s %14s %12s %12s\n' node role frames/s "cpu %" "µs cpu/frame" "delay p50" "delay p99"
for i in $(seq 0 $((nodes - 1))); do
    p=$((port + i))
    c=$(( $(cpu "${node_pids[$i]}") - ${cpu0[$i]} ))
    f=$(echo "$(metric $p ticker_frames_sent_total) - ${frames0[$i]}" | bc)
    role=follower; [ "$(metric $p ticker_cluster_leader)" = 1 ] && role=leader
    [ -n "$single" ] && role=single
    buckets $p >"$work/b1-$i"
    # p50/p99 = the first bucket bound whose count (window only) reaches the quantile.
    read -r p50 p99 < <(paste "$work/b0-$i" "$work/b1-$i" | awk '
        { le[NR] = $1; n[NR] = $4 - $2 } END {
            total = n[NR]; a = ""; b = ""
            for (i = 1; i <= NR; i++) {
                if (a == "" && n[i] >= 0.5 * total) a = le[i]
                if (b == "" && n[i] >= 0.99 * total) b = le[i]
            }
            print "≤" a * 1000 "ms", "≤" b * 1000 "ms"
        }')
    printf '%-8s %-8s %12.0f %10.1f %14.2f %12s %12s\n' "n$i" "$role" \
        "$(echo "$f / $window" | bc -l)" "$(echo "100 * $c / $hz / $window" | bc -l)" \
        "$(echo "if ($f > 0) 1000000 * $c / $hz / $f else 0" | bc -l)" "$p50" "$p99"
done
rc=$(( $(cpu "$redis_pid") - rcpu0 ))
printf '%-8s %-8s %12s %10.1f\n' redis - - "$(echo "100 * $rc / $hz / $window" | bc -l)"
wait "$load" || true
grep -E '^(  (connections|delivered|latency|ticks)|warning)' "$work/load.out" || tail -n 15 "$work/load.out"
