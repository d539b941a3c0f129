#!/usr/bin/env bash
# Server CPU per delivered frame and tick latency with real prices against simulated
# ones: 1,000 subscribers, `--source sim` against `--source coinbase` fed by
# examples/fake_exchange.rs (a local Coinbase-style feed) at 1,000 and at 10,000
# updates/s. One fresh server (and fake exchange) per run; prints each run and the
# medians.
#
# Usage: tools/source-bench.sh
#
# Environment (defaults in brackets):
#   SB_RUNS         runs per mode                    [3]
#   SB_CONNECTIONS  subscribers                      [1000]
#   SB_DURATION     steady window per run            [15s]
#   SB_MODES        modes: sim, coinbase@RATE        ["sim coinbase@1000 coinbase@10000"]
#   SB_PORT         server port on 127.0.0.1         [18181]
#   SB_FEED_PORT    fake exchange port               [19100]
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${SB_RUNS:-3}"
connections="${SB_CONNECTIONS:-1000}"
duration="${SB_DURATION:-15s}"
modes="${SB_MODES:-sim coinbase@1000 coinbase@10000}"
port="${SB_PORT:-18181}"
feed_port="${SB_FEED_PORT:-19100}"
target="${CARGO_TARGET_DIR:-target}"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
cargo build --release -p crypto-ticker -p ticker-load >&2
cargo build --release -p crypto-ticker --example fake_exchange >&2

work="$(mktemp -d)"
pids=()
stop_all() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

results="$work/results.tsv"
for mode in $modes; do
    for run in $(seq "$runs"); do
        source_args=()
        if [ "$mode" != sim ]; then
            rate="${mode#coinbase@}"
            "$target/release/examples/fake_exchange" --addr "127.0.0.1:$feed_port" --rate "$rate" \
                2>>"$work/feed.log" &
            pids+=($!)
            sleep 0.3
            source_args=(--source coinbase --source-url "ws://127.0.0.1:$feed_port")
        fi
        : >"$work/server.log"
        "$target/release/crypto-ticker" --db "$work/auth.db" --addr "127.0.0.1:$port" \
            --public public "${source_args[@]}" >>"$work/server.log" 2>&1 &
        server=$!
        pids+=("$server")
        key=""
        for _ in $(seq 100); do
            key="$(sed -n 's/.*demo API key \(created\|exists\).*api_key=\([A-Za-z0-9]*\).*/\2/p' "$work/server.log" | tail -n 1)"
            if [ -n "$key" ] && grep -q "listening" "$work/server.log"; then break; fi
            sleep 0.1
        done
        json="$work/$mode-$run.json"
        "$target/release/ticker-load" --url "http://127.0.0.1:$port" --api-key "$key" \
            --connections "$connections" --ramp 1000/s --warmup 2s --duration "$duration" \
            --server-pid "$server" --json "$json" --quiet >/dev/null
        msgs="$(curl -s "127.0.0.1:$port/metrics" | sed -n 's/^ticker_source_messages_total{kind="price"} //p')"
        stop_all
        python3 - "$json" "$mode" "$run" "${msgs:-0}" >>"$results" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["tick_latency_us"]
print("\t".join(str(x) for x in [sys.argv[2], sys.argv[3], r["server"]["cpu_us_per_frame"],
      r["server"]["cpu_cores"], lat["p50"], lat["p99"], r["steady"]["delivered_percent"], sys.argv[4]]))
EOF
        tail -n 1 "$results" >&2
    done
done

python3 - "$results" "$connections" "$duration" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
print(f"\n{sys.argv[2]} subscribers, 10 ms tick, {sys.argv[3]} steady window; medians of the runs")
print(f"{'mode':<16} {'runs':>4} {'cpu us/frame':>13} {'server cores':>13} {'p50 us':>8} {'p99 us':>8} {'delivered %':>12}  per run (cpu us/frame)")
modes = []
for r in rows:
    if r[0] not in modes:
        modes.append(r[0])
for m in modes:
    rs = [r for r in rows if r[0] == m]
    med = lambda i: statistics.median(float(r[i]) for r in rs)
    per = ", ".join(f"{float(r[2]):.3f}" for r in rs)
    print(f"{m:<16} {len(rs):>4} {med(2):>13.3f} {med(3):>13.2f} {med(4):>8.0f} {med(5):>8.0f} {med(6):>12.2f}  {per}")
EOF
