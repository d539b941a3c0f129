#!/usr/bin/env bash
# What compression and changes-only sessions save: for each number of symbols, each
# simulated activity and each wire format (plain, --deflate, --delta, both), one fresh
# server and one load run, then one table of wire bytes and messages per subscriber per
# second, the server's CPU, and the changes-only chain's breaks.
#
# Usage: tools/encoding-bench.sh
#
# Environment (defaults in brackets):
#   ENC_SYMBOLS      symbol counts (every subscriber gets every symbol)   ["3 30 100"]
#   ENC_ACTIVITY     --sim-activity values                                ["1 0.02"]
#   ENC_MODES        wire formats: plain deflate delta both               ["plain deflate delta both"]
#   ENC_SUBSCRIBERS  subscribers per run                                  [200]
#   ENC_DURATION     steady window per run                                [10s]
#   ENC_LOAD_ARGS    extra load-tool flags, e.g. "--subscribe-random 5"   []
#   ENC_PORT         server port on 127.0.0.1                             [18087]
#   ENC_SERVER_BIN   the server binary                                    [target/release/crypto-ticker]
#
# The server and the load tool share this machine; the load tool inflating and checking
# every message costs it CPU of its own (its "tool cpu" is in each run's JSON).
set -euo pipefail
cd "$(dirname "$0")/.."

symbol_counts="${ENC_SYMBOLS:-3 30 100}"
activities="${ENC_ACTIVITY:-1 0.02}"
modes="${ENC_MODES:-plain deflate delta both}"
subscribers="${ENC_SUBSCRIBERS:-200}"
duration="${ENC_DURATION:-10s}"
port="${ENC_PORT:-18087}"
read -r -a load_args <<<"${ENC_LOAD_ARGS:-}"

cargo build --release -p crypto-ticker -p ticker-load >&2

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
work="$(mktemp -d)"
server=""
trap 'stop_server; rm -rf "$work"' EXIT

printf '%7s %8s %-7s %14s %10s %10s %10s %8s\n' symbols activity mode 'bytes/s/sub' \
    'B/message' 'msgs/s/sub' 'srv cores' breaks
for n in $symbol_counts; do
    symbols="$(seq 0 $((n - 1)) | sed 's/.*/S&-USD:100/' | paste -sd, -)"
    for activity in $activities; do
        for mode in $modes; do
            flags=()
            case "$mode" in
                plain) ;;
                deflate) flags=(--deflate) ;;
                delta) flags=(--delta) ;;
                both) flags=(--deflate --delta) ;;
                *) echo "encoding-bench.sh: unknown mode $mode" >&2; exit 2 ;;
            esac
            start_server "$work/server.log" "${ENC_SERVER_BIN:-target/release/crypto-ticker}" \
                --db "$work/auth.db" --addr "127.0.0.1:$port" --public public \
                --symbols "$symbols" --sim-activity "$activity"
            json="$work/run.json"
            rm -f "$json"
            target/release/ticker-load --url "http://127.0.0.1:$port" --api-key "$key" \
                --connections "$subscribers" --ramp 1000/s --warmup 2s --duration "$duration" \
                --server-pid "$server" --json "$json" --quiet ${flags[@]+"${flags[@]}"} \
                ${load_args[@]+"${load_args[@]}"} >/dev/null
            stop_server
            python3 - "$json" "$n" "$activity" "$mode" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
wire, server, delta = run.get("wire") or {}, run.get("server") or {}, run.get("delta") or {}
def num(v, fmt):
    return format(v, fmt) if isinstance(v, (int, float)) else "-"
breaks = delta.get("chain_breaks", "-") if delta else "-"
print("%7s %8s %-7s %14s %10s %10s %10s %8s" % (
    sys.argv[2], sys.argv[3], sys.argv[4],
    num(wire.get("bytes_per_subscriber_per_sec"), ",.0f"),
    num(wire.get("bytes_per_message"), ",.1f"),
    num(wire.get("messages_per_subscriber_per_sec"), ".1f"),
    num(server.get("cpu_cores"), ".3f"), breaks))
EOF
        done
    done
done
