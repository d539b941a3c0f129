#!/usr/bin/env bash
# A reconnect storm against a loaded server: EXISTING subscribers hold a steady window;
# a few seconds into it CLIENTS more arrive at once, each with its own token exchange
# (POST /auth/token) and upgrade, stay a second and leave. One fresh server per run.
# Prints per run: when all storm clients were live, their handshake p50/p99 (token +
# upgrade), and the existing subscribers' tick latency over the window and in its worst
# second.
#
# Usage: tools/storm.sh [RUNS]            (default 3)
#
# Environment (defaults in brackets):
#   STORM_CLIENTS    clients in the storm                       [5000]
#   STORM_EXISTING   subscribers connected before it            [1000]
#   STORM_WINDOW     the existing subscribers' steady window    [20s]
#   STORM_AT         seconds into the window the storm starts   [5]
#   STORM_RAMP       the storm's opening rate                   [100000/s]
#   STORM_HOLD       how long the storm's clients stay once all are live  [1s]
#   STORM_SERVER     server binary (to compare builds)  [target/release/crypto-ticker]
#   STORM_SERVER_ARGS  extra server flags                       []
#   STORM_TLS        1: the server speaks TLS (a fresh ECDSA P-256 certificate), and both
#                    load tools connect over https/wss, every storm client making a
#                    full TLS handshake for its token and another for its upgrade  [0]
#   STORM_NICE       niceness of the storm's generator          [10]
#   STORM_PORT       server port on 127.0.0.1                   [18091]
#   STORM_KEEP       1: keep the work folder (logs, JSON) and print where  []
#
# Server, both load-tool processes and the kernel share this machine. In production the
# storm's clients are other machines; here the storm's generator runs niced (STORM_NICE)
# so that the existing subscribers' figures measure the server more than the wait for a
# core behind the generator. The generator, served last, then makes the storm's own
# figures (time to all live, handshake latency) pessimistic.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-3}"
clients="${STORM_CLIENTS:-5000}"
existing="${STORM_EXISTING:-1000}"
window="${STORM_WINDOW:-20s}"
at="${STORM_AT:-5}"
ramp="${STORM_RAMP:-100000/s}"
server_bin="${STORM_SERVER:-target/release/crypto-ticker}"
port="${STORM_PORT:-18091}"
read -r -a server_args <<<"${STORM_SERVER_ARGS:-}"

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
need=$((clients + existing + 256))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need" ]; then
    echo "storm.sh: open-files limit $(ulimit -n) is below $need; raise the hard limit" >&2
    exit 1
fi

cargo build --release -p crypto-ticker -p ticker-load >&2

# Every storm client comes from 127.0.0.1, where a real storm's come from many addresses:
# lift the bound on token exchanges in flight per address (--login-concurrency, a flood
# guard) so it does not refuse the storm. Through the environment, so that builds from
# before the option (STORM_SERVER) still start.
export TICKER_LOGIN_CONCURRENCY="${TICKER_LOGIN_CONCURRENCY:-0}"

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
work="$(mktemp -d)"
[ -n "${STORM_KEEP:-}" ] && echo "storm.sh: work folder $work" >&2
server=""
trap 'stop_server; [ -n "${STORM_KEEP:-}" ] || rm -rf "$work"' EXIT

scheme=http
load_args=()
if [ "${STORM_TLS:-0}" = 1 ]; then
    make_certificate "$work"
    server_args+=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    load_args+=(--ca "$work/ca.pem")
    scheme=https
fi

printf '%-4s %-10s %-14s %-13s %-13s %-16s %-16s\n' run storm_live all_live_after \
    handshake_p50 handshake_p99 existing_tick_p99 worst_second_p99
for run in $(seq "$runs"); do
    rm -f "$work/auth.db"*
    start_server "$work/server.log" "$server_bin" --db "$work/auth.db" \
        --addr "127.0.0.1:$port" --public public ${server_args[@]+"${server_args[@]}"}
    url="$scheme://127.0.0.1:$port"
    target/release/ticker-load --url "$url" --api-key "$key" --connections "$existing" \
        --ramp 2000/s --warmup 2s --duration "$window" --quiet --json "$work/existing.json" \
        ${load_args[@]+"${load_args[@]}"} \
        >"$work/existing.out" &
    steady=$!
    # The existing subscribers' window opens after their ramp and warmup.
    sleep "$(awk -v n="$existing" -v at="$at" 'BEGIN { print n / 2000 + 2 + at }')"
    nice -n "${STORM_NICE:-10}" target/release/ticker-load --url "$url" --api-key "$key" --token-per-connection \
        --connections "$clients" --ramp "$ramp" --warmup 0 --duration "${STORM_HOLD:-1s}" --quiet \
        --json "$work/storm.json" ${load_args[@]+"${load_args[@]}"} >"$work/storm.out" || true
    wait "$steady" || true
    python3 - "$run" "$work/existing.json" "$work/storm.json" <<'EOF'
import json, sys
run, existing, storm = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
s = storm["storm"]
ms = lambda us: f"{us / 1000:.1f} ms"
a, b = existing["window_seconds"]
worst = max((t["p99_us"] or 0) for t in existing["timeline"] if a <= t["t"] <= b)
live = f"{s['live']}/{s['requested']}"
after = s["all_live_seconds"]
after = f"{after:.2f} s" if after is not None else "never"
print(f"{run:<4} {live:<10} {after:<14} {ms(s['handshake_us']['p50']):<13} "
      f"{ms(s['handshake_us']['p99']):<13} {ms(existing['tick_latency_us']['p99']):<16} "
      f"{ms(worst):<16}")
EOF
    stop_server
done
