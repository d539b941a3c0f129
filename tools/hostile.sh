#!/usr/bin/env bash
# Hostile clients, one at a time, each against a fresh server: one connection floods the
# server (tools/hostile.py names the attacks) while one ordinary subscriber counts its
# ticks. Prints per attack: the subscriber's ticks/s before and during the flood and its
# longest gap, whether a new client's /healthz was answered during it, the server's peak
# RSS and the CPU it spent, and how the attack ended.
#
# Usage: tools/hostile.sh [ATTACK...]   (default: every attack; TLS handshake floods
#                                        have their own tool, tools/tls-flood.py)
#
# Environment (defaults in brackets):
#   HOSTILE_SERVER    server binary (to compare builds)   [target/release/crypto-ticker]
#   HOSTILE_DURATION  seconds each flood lasts            [5]
#   HOSTILE_PORT      server port on 127.0.0.1            [18095]
#   HOSTILE_ARGS      extra server flags                  []
#   HOSTILE_JSON      1: print hostile.py's JSON lines instead of the table  []
#
# Loopback only; every process it starts is stopped when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."

server_bin="${HOSTILE_SERVER:-target/release/crypto-ticker}"
duration="${HOSTILE_DURATION:-5}"
port="${HOSTILE_PORT:-18095}"
read -r -a extra_args <<<"${HOSTILE_ARGS:-}"
if [ "$#" -gt 0 ]; then
    attacks=("$@")
else
    attacks=(pipeline unread pong ping symbols subscribe bomb)
fi

[ -n "${HOSTILE_SERVER:-}" ] || cargo build --release -p crypto-ticker >&2

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
work="$(mktemp -d)"
server=""
trap 'stop_server; rm -rf "$work"' EXIT

# rss_kib PID / cpu_ticks PID: from /proc (0 once the process is gone).
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

if [ -z "${HOSTILE_JSON:-}" ]; then
    printf '%-10s %9s %9s %8s %8s %9s %7s  %s\n' attack 'ticks/s' '(before)' 'gap ms' \
        healthz 'peak MiB' 'cpu s' 'attack'
fi
for attack in "${attacks[@]}"; do
    args=(--addr "127.0.0.1:$port" --db "$work/auth.db" --public public "${extra_args[@]}")
    rm -f "$work"/auth.db*
    start_server "$work/server.log" "$server_bin" "${args[@]}"
    cpu0="$(cpu_ticks "$server")"
    python3 tools/hostile.py --port "$port" --key "$key" --attack "$attack" \
        --duration "$duration" >"$work/result.json" &
    attacker=$!
    peak=0
    while kill -0 "$attacker" 2>/dev/null; do
        rss="$(rss_kib "$server")"
        [ "$rss" -gt "$peak" ] && peak="$rss"
        sleep 0.05
    done
    wait "$attacker" || true
    cpu1="$(cpu_ticks "$server")"
    stop_server
    hz="$(getconf CLK_TCK)"
    if [ -n "${HOSTILE_JSON:-}" ]; then
        python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r.update(peak_rss_mib=round(int(sys.argv[2])/1024,1), cpu_s=round(int(sys.argv[3])/int(sys.argv[4]),2)); print(json.dumps(r))' \
            "$work/result.json" "$peak" "$((cpu1 - cpu0))" "$hz"
        continue
    fi
    python3 - "$work/result.json" "$peak" "$((cpu1 - cpu0))" "$hz" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
peak, cpu, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
skip = {"attack", "seconds", "ticks_per_s_before", "ticks_per_s", "longest_gap_ms",
        "healthz_answered", "healthz_slowest_ms"}
rest = ", ".join(f"{k}={v}" for k, v in r.items() if k not in skip)
print(f"{r['attack']:<10} {r['ticks_per_s']:>9} {r['ticks_per_s_before']:>9} "
      f"{r['longest_gap_ms']:>8} {r['healthz_answered']:>8} {peak / 1024:>9.1f} "
      f"{cpu / hz:>7.2f}  {rest}")
EOF
done
