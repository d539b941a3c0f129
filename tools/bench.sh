#!/usr/bin/env bash
# Benchmarks crypto-ticker with its own load tool: 500, 1000, 2000 and 5000 subscribers
# at the 10 ms tick, one fresh server per run, and prints one table.
#
# Usage: tools/bench.sh [--report DIR]
#   --report DIR   also write DIR/subscribers-N.html and .svg (the load report) and keep the JSON
#
# Environment (defaults in brackets):
#   BENCH_COUNTS    subscriber counts              ["500 1000 2000 5000"]
#   BENCH_DURATION  steady window per run          [20s]
#   BENCH_WARMUP    settle time after each ramp    [2s]
#   BENCH_RAMP      connections opened per second  [1000/s]
#   BENCH_THREADS   load-tool threads              [1]
#   BENCH_PORT      server port on 127.0.0.1       [18081]
#   BENCH_SERVER_ARGS  extra server flags, e.g. "--symbols-file syms.txt"   []
#   BENCH_LOAD_ARGS    extra load-tool flags, e.g. "--subscribe-random 5"     []
#   BENCH_PIN       1: the server runs on CPU 0 and the load tool on CPU 1 (taskset), so
#                   every run schedules them alike: unpinned, the two sometimes share a
#                   core and sometimes not, which moves the kernel's wake-up work (charged
#                   to the sender on loopback) and the CPU per frame by up to 30 %.
#                   shared: both on CPU 0 (the tool drains after each fan-out)   [0]
#   BENCH_TLS       1: the server speaks TLS with a fresh self-signed certificate
#                   (openssl), and the load tool connects over https/wss   [0]
#   BENCH_SERVER_BIN  the server binary, to compare builds  [target/release/crypto-ticker]
#
# The server and the load tool share this machine: the "tool cpu" column says how busy
# the generator was (a saturated generator overstates latency; see its warnings).
set -euo pipefail
cd "$(dirname "$0")/.."

report_dir=""
while [ $# -gt 0 ]; do
    case "$1" in
        --report) report_dir="${2:?--report needs a folder}"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

counts="${BENCH_COUNTS:-500 1000 2000 5000}"
duration="${BENCH_DURATION:-20s}"
warmup="${BENCH_WARMUP:-2s}"
ramp="${BENCH_RAMP:-1000/s}"
threads="${BENCH_THREADS:-1}"
port="${BENCH_PORT:-18081}"
read -r -a server_args <<<"${BENCH_SERVER_ARGS:-}"
read -r -a load_args <<<"${BENCH_LOAD_ARGS:-}"
scheme=http
server_pin=()
load_pin=()
case "${BENCH_PIN:-0}" in
    1) server_pin=(taskset -c 0); load_pin=(taskset -c 1) ;;
    shared) server_pin=(taskset -c 0); load_pin=(taskset -c 0) ;;
esac

# Every subscriber is a socket on each side, and both processes inherit this limit.
max=0
for n in $counts; do [ "$n" -gt "$max" ] && max=$n; done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((max + 256)) ]; then
    echo "bench.sh: open-files limit $(ulimit -n) is below $((max + 256)); raise the hard limit (ulimit -Hn)" >&2
    exit 1
fi

cargo build --release -p crypto-ticker -p ticker-load >&2

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
work="$(mktemp -d)"
server=""
trap 'stop_server; rm -rf "$work"' EXIT
[ -n "$report_dir" ] && mkdir -p "$report_dir"
if [ "${BENCH_TLS:-0}" = 1 ]; then
    make_certificate "$work"
    server_args+=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    load_args+=(--ca "$work/ca.pem")
    scheme=https
fi

jsons=()
for n in $counts; do
    start_server "$work/server.log" ${server_pin[@]+"${server_pin[@]}"} \
        "${BENCH_SERVER_BIN:-target/release/crypto-ticker}" --db "$work/auth.db" \
        --addr "127.0.0.1:$port" --public public ${server_args[@]+"${server_args[@]}"}
    echo "bench.sh: $n subscribers, ramp $ramp, warmup $warmup, steady $duration" >&2
    report_args=()
    [ -n "$report_dir" ] && report_args=(--report "$report_dir/subscribers-$n.html" --report "$report_dir/subscribers-$n.svg")
    json="$work/subscribers-$n.json"
    ${load_pin[@]+"${load_pin[@]}"} target/release/ticker-load --url "$scheme://127.0.0.1:$port" --api-key "$key" \
        --connections "$n" --ramp "$ramp" --warmup "$warmup" --duration "$duration" \
        --threads "$threads" --server-pid "$server" --json "$json" --quiet "${report_args[@]}" \
        ${load_args[@]+"${load_args[@]}"} \
        | grep -E '^(warning|  (connections|failed|dropped)\b)' >&2 || true
    if [ ! -f "$json" ]; then
        echo "bench.sh: the run with $n subscribers wrote no result; server log:" >&2
        tail -n 20 "$work/server.log" >&2
        exit 1
    fi
    [ -n "$report_dir" ] && cp "$json" "$report_dir/"
    jsons+=("$json")
    stop_server
done

echo
echo "crypto-ticker, 10 ms tick, $duration steady window per run ($(nproc) cores shared by server and load tool)"
target/release/ticker-load compare "${jsons[@]}"
