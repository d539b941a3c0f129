#!/usr/bin/env bash
# What the server costs on a small host when nobody listens: per run a fresh server in a
# fresh folder (the first start creates its database), no client. Prints the stripped
# binary's size once, then per run: start to listening, RSS (and its private part) a few
# seconds after start, idle CPU over the window, and RSS at its end.
#
# Usage: tools/idle.sh [RUNS]             (default 3)
#
# Environment (defaults in brackets):
#   IDLE_SMALL     1: the small-host build (`--no-default-features`: no TLS, cluster or
#                  exchange clients), built into target/small   []
#   IDLE_SERVER    server binary to measure instead of building one  []
#   IDLE_SECONDS   the idle window                             [60]
#   IDLE_PORT      server port on 127.0.0.1                    [18093]
#
# RSS counts the pages the process has mapped: its own private memory (`RssAnon`) and
# read-only file pages (its binary, libc) that the page cache shares with every process
# using them, mapped 64 KiB around each page touched when they are cached. Each run
# starts from a warm page cache (the binary was just built or read), the usual case.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

runs="${1:-3}"
seconds="${IDLE_SECONDS:-60}"
port="${IDLE_PORT:-18093}"
if [ -n "${IDLE_SERVER:-}" ]; then
    server_bin="$IDLE_SERVER"
elif [ -n "${IDLE_SMALL:-}" ]; then
    CARGO_TARGET_DIR=target/small cargo build --release --no-default-features -p crypto-ticker >&2
    server_bin=target/small/release/crypto-ticker
else
    cargo build --release -p crypto-ticker >&2
    server_bin=target/release/crypto-ticker
fi

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
work="$(mktemp -d)"
server=""
trap 'stop_server; rm -rf "$work"' EXIT

# The stripped copy is what runs: the size a deployment ships and the pages it maps.
strip -o "$work/crypto-ticker" "$server_bin"
server_bin="$work/crypto-ticker"
echo "binary (stripped): $(stat -c %s "$server_bin") bytes"

status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz="$(getconf CLK_TCK)"

for run in $(seq "$runs"); do
    dir="$work/run$run"
    mkdir -p "$dir"
    started_ms="$(date +%s%3N)"
    (cd "$dir" && exec "$server_bin" --addr "127.0.0.1:$port" --public "$repo/public" --log-format json) >"$dir/log" 2>&1 &
    server=$!
    for _ in $(seq 200); do
        grep -q '"listening"' "$dir/log" && break
        kill -0 "$server" 2>/dev/null || { cat "$dir/log" >&2; exit 1; }
        sleep 0.01
    done
    listening_ts="$(grep '"listening"' "$dir/log" | sed 's/.*"ts":"\([^"]*\)".*/\1/')"
    listening_ms="$(date -d "$listening_ts" +%s%3N)"
    sleep 5
    rss_start="$(status_kib "$server" VmRSS)"
    anon_start="$(status_kib "$server" RssAnon)"
    cpu0="$(cpu_ticks "$server")"
    sleep "$seconds"
    cpu1="$(cpu_ticks "$server")"
    rss_end="$(status_kib "$server" VmRSS)"
    cpu_pct="$(awk -v t="$((cpu1 - cpu0))" -v hz="$hz" -v s="$seconds" \
        'BEGIN { printf "%.3f", 100 * t / hz / s }')"
    echo "run $run: listening after $((listening_ms - started_ms)) ms;" \
        "RSS $rss_start KiB (private $anon_start KiB) at 5 s, $rss_end KiB after ${seconds} s idle;" \
        "idle CPU $cpu_pct % of a core"
    stop_server
done
