#!/usr/bin/env bash
# Soak test: crypto-ticker under steady connection churn for DURATION. Samples the
# server's RSS, open descriptors and CPU every 10 s into a CSV, draws them (an SVG this
# script writes itself), and prints PASS when RSS and descriptors stay flat after the
# warm-up and no connection failed for a reason other than churn; else FAIL with why.
#
# Usage: tools/soak.sh [DURATION]      DURATION as 90s, 30m or 1h       [default: 1h]
#
# Flat: the largest sample after the warm-up is at most SOAK_MAX_GROWTH % above the
# first sample after it. Errors: ticker-load's errors.total (ramp failures, drops, and
# churn reconnects that failed) must be 0; churned closes are not errors.
#
# Environment (defaults in brackets):
#   SOAK_CONNECTIONS  subscribers                                          [500]
#   SOAK_CHURN        closes + reopens per second (each a token exchange)  [20/s]
#   SOAK_RAMP         connections opened per second                        [500/s]
#   SOAK_THREADS      load-tool threads                                    [1]
#   SOAK_WARMUP       seconds before the flatness baseline     [1/4 of DURATION, 60..300]
#   SOAK_INTERVAL     seconds between samples                              [10]
#   SOAK_MAX_GROWTH   allowed growth after the warm-up, percent            [5]
#   SOAK_TOKEN_TTL    server --token-ttl                                   [20s]
#                     Every reconnect gets a token; the table holds them for the TTL
#                     (purged every 30 s), so a TTL well inside the warm-up lets it reach
#                     its steady size before the baseline. With the server's 1 h default
#                     it would grow for the whole first hour, by design.
#   SOAK_PORT         server port on 127.0.0.1                             [18091]
#   SOAK_SERVER_ARGS  extra server flags, e.g. "--symbols-file syms.txt"   []
#   SOAK_LOAD_ARGS    extra load-tool flags, e.g. "--subscribe-random 5"   []
#                     (with --subscribe-random every churn reconnect takes a new random
#                     set, so symbol sets are interned and released all run long)
#   SOAK_TLS          1: the server speaks TLS (a throwaway certificate) and every
#                     connection, churn reconnects and their token exchanges included,
#                     makes a full TLS handshake                          [0]
#   SOAK_OUT          folder for the results                               [target/soak]
#
# Results in SOAK_OUT: soak.csv (t_s, rss_kib, fds, cpu_percent), soak.svg (the plot),
# load.json and load.html (ticker-load's own summary and report), server.log.
# Exit status: 0 PASS, 1 FAIL, 2 bad arguments.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,38p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
[ $# -le 1 ] || { echo "soak.sh: one argument at most: DURATION (see --help)" >&2; exit 2; }

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
duration="${1:-1h}"
total=$(to_secs "$duration") || { echo "soak.sh: DURATION \`$duration\`: expected e.g. 90s, 30m or 1h" >&2; exit 2; }
[ "$total" -ge 60 ] || { echo "soak.sh: DURATION must be at least 60s" >&2; exit 2; }

connections="${SOAK_CONNECTIONS:-500}"
churn="${SOAK_CHURN:-20/s}"
ramp="${SOAK_RAMP:-500/s}"
threads="${SOAK_THREADS:-1}"
interval="${SOAK_INTERVAL:-10}"
max_growth="${SOAK_MAX_GROWTH:-5}"
token_ttl="${SOAK_TOKEN_TTL:-20s}"
port="${SOAK_PORT:-18091}"
read -r -a server_args <<<"${SOAK_SERVER_ARGS:-}"
read -r -a load_args <<<"${SOAK_LOAD_ARGS:-}"
out="${SOAK_OUT:-target/soak}"
warmup="${SOAK_WARMUP:-$(( total / 4 < 60 ? 60 : (total / 4 > 300 ? 300 : total / 4) ))}"
[ "$warmup" -lt "$total" ] || { echo "soak.sh: the warm-up (${warmup}s) leaves nothing to measure" >&2; exit 2; }

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((connections + 256)) ]; then
    echo "soak.sh: open-files limit $(ulimit -n) is below $((connections + 256)); raise ulimit -Hn" >&2
    exit 1
fi

cargo build --release -p crypto-ticker -p ticker-load >&2

mkdir -p "$out"
work="$(mktemp -d)"
server=""
load=""
trap 'stop_pid "$load"; stop_server; rm -rf "$work"' EXIT

scheme=http
if [ "${SOAK_TLS:-0}" = 1 ]; then
    make_certificate "$work"
    server_args+=(--tls-cert "$work/cert.pem" --tls-key "$work/key.pem")
    load_args+=(--ca "$work/ca.pem")
    scheme=https
fi
start_server "$out/server.log" target/release/crypto-ticker --addr "127.0.0.1:$port" \
    --db "$work/auth.db" --public public --token-ttl "$token_ttl" ${server_args[@]+"${server_args[@]}"}

# The load tool's run: ramp + 2 s warmup + steady window + closing ≈ DURATION.
ramp_secs=$(awk -v n="$connections" -v r="${ramp%/s}" 'BEGIN { printf "%d", n / r + 1 }')
steady=$(( total - ramp_secs - 5 ))
[ "$steady" -ge 10 ] || steady=10
echo "soak.sh: $connections subscribers, churn $churn, ${total}s (warm-up ${warmup}s), server pid $server, sampling every ${interval}s into $out/soak.csv" >&2
target/release/ticker-load --url "$scheme://127.0.0.1:$port" --api-key "$key" \
    --connections "$connections" --ramp "$ramp" --warmup 2s --duration "${steady}s" \
    --churn "$churn" --threads "$threads" --server-pid "$server" \
    ${load_args[@]+"${load_args[@]}"} \
    --json "$out/load.json" --report "$out/load.html" --quiet >"$out/load.txt" 2>&1 &
load=$!

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
echo "t_s,rss_kib,fds,cpu_percent" >"$out/soak.csv"
start=$(date +%s%N)
prev_ticks=$(cpu_ticks "$server")
prev_ns=$start
next=0
while kill -0 "$load" 2>/dev/null; do
    now=$(date +%s%N)
    if [ $(( (now - start) / 1000000000 )) -ge "$next" ]; then
        kill -0 "$server" 2>/dev/null || break
        ticks=$(cpu_ticks "$server")
        rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server/status")
        fds=$(ls "/proc/$server/fd" | wc -l)
        cpu=$(awk -v d=$((ticks - prev_ticks)) -v hz="$hz" -v ns=$((now - prev_ns)) \
            'BEGIN { printf "%.1f", (ns > 0 ? 100 * d / hz / (ns / 1e9) : 0) }')
        echo "$next,$rss,$fds,$cpu" >>"$out/soak.csv"
        prev_ticks=$ticks
        prev_ns=$now
        next=$(( next + interval ))
    fi
    sleep 1
done
load_status=0
wait "$load" || load_status=$?
load=""
server_alive=1
kill -0 "$server" 2>/dev/null || server_alive=0

# The plot: RSS, descriptors and CPU against time, the warm-up shaded, the limit dashed.
awk -F, -v warm="$warmup" -v growth="$max_growth" -v every="$interval" -v title="crypto-ticker soak: $connections subscribers, churn $churn, $duration" '
    # A step of 1, 2 or 5 times a power of ten giving about five ticks up to max.
    function nice(max,    raw, mag, f) {
        if (max <= 0) return 1
        raw = max / 5; mag = exp(log(10) * int(log(raw) / log(10) + (raw < 1 ? -1 : 0)))
        f = raw / mag
        return mag * (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10)
    }
    NR == 1 { next }
    { n++; t[n] = $1; v[1, n] = $2 / 1024; v[2, n] = $3; v[3, n] = $4
      if (base == 0 && $1 >= warm) base = n }
    END {
        W = 760; H = 220; L = 70; R = 30; T = 34; B = 40; pw = W - L - R; ph = H - T - B
        name[1] = "server RSS (MiB)"; name[2] = "open descriptors"; name[3] = "server CPU (% of a core)"
        tmax = n > 0 ? t[n] : 1; if (tmax <= 0) tmax = 1
        tstep = nice(tmax)
        printf "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" font-family=\"system-ui,sans-serif\" font-size=\"11\">", W, 3 * H + 40, W, 3 * H + 40
        printf "<rect width=\"%d\" height=\"%d\" fill=\"#fff\"/><text x=\"16\" y=\"24\" font-size=\"15\" font-weight=\"600\">%s</text>", W, 3 * H + 40, title
        for (k = 1; k <= 3; k++) {
            oy = 40 + (k - 1) * H; top = 0
            for (i = 1; i <= n; i++) if (v[k, i] > top) top = v[k, i]
            limit = (k < 3 && base > 0) ? v[k, base] * (1 + growth / 100) : 0
            if (limit > top) top = limit
            ystep = nice(top * 1.05); ymax = ystep * (int(top * 1.05 / ystep) + 1)
            printf "<g transform=\"translate(0,%d)\"><text x=\"%d\" y=\"20\" font-size=\"13\" font-weight=\"600\">%s</text>", oy, L, name[k]
            wx = L + (warm < tmax ? warm : tmax) / tmax * pw
            printf "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#f1f5f9\"/><text x=\"%d\" y=\"%d\" fill=\"#64748b\">warm-up</text>", L, T, wx - L, ph, L + 4, T + 12
            for (y0 = 0; y0 <= ymax + ystep / 2; y0 += ystep) {
                y = T + ph - y0 / ymax * ph
                printf "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e2e8f0\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#475569\">%g</text>", L, L + pw, y, y, L - 6, y + 4, y0
            }
            for (x0 = 0; x0 <= tmax + tstep / 100; x0 += tstep) {
                x = L + x0 / tmax * pw
                printf "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" fill=\"#475569\">%g s</text>", x, T + ph + 15, x0
            }
            if (limit > 0) {
                y = T + ph - limit / ymax * ph
                printf "<line x1=\"%.1f\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#dc2626\" stroke-dasharray=\"5 4\"/><text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" fill=\"#dc2626\">+%s %% limit</text>", wx, L + pw, y, y, L + pw - 4, y - 4, growth
            }
            printf "<polyline fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.8\" points=\""
            for (i = 1; i <= n; i++) printf "%.1f,%.1f ", L + t[i] / tmax * pw, T + ph - v[k, i] / ymax * ph
            printf "\"/><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#cbd5e1\"/></g>", L, T, pw, ph
        }
        printf "<text x=\"%d\" y=\"%d\" fill=\"#334155\" text-anchor=\"middle\">seconds since the load started; one sample every %d s</text></svg>\n", L + pw / 2, 3 * H + 34, every
    }' "$out/soak.csv" >"$out/soak.svg"

# Flatness: first sample at or after the warm-up against the largest one after it.
# Prints "base max growth_percent" for a column, or nothing without two such samples.
flat() {
    awk -F, -v col="$1" -v warm="$warmup" 'NR > 1 && $1 >= warm {
        if (!seen) { base = $col; max = $col; seen = 1; next }
        if ($col > max) max = $col; more = 1
    } END { if (more && base > 0) printf "%d %d %.2f\n", base, max, (max - base) * 100 / base }' "$out/soak.csv"
}
# A number from the load JSON: the first "KEY": N inside the object "SECTION": {...}.
json_num() {
    awk -v section="\"$1\": {" -v key="\"$2\":" '
        index($0, section) { inside = 1; next }
        inside && index($0, key) { sub(/.*: */, ""); sub(/,$/, ""); print; exit }
        inside && /^  }/ { inside = 0 }' "$out/load.json"
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
why=()
[ "$server_alive" = 1 ] || why+=("the server exited during the soak (see $out/server.log)")
[ "$load_status" = 0 ] || why+=("ticker-load exited with status $load_status (see $out/load.txt)")
read -r rss_base rss_max rss_growth < <(flat 2) || true
read -r fd_base fd_max fd_growth < <(flat 3) || true
if [ -z "${rss_growth:-}" ] || [ -z "${fd_growth:-}" ]; then
    why+=("fewer than two samples after the ${warmup}s warm-up")
else
    awk -v g="$rss_growth" -v m="$max_growth" 'BEGIN { exit !(g > m) }' &&
        why+=("RSS grew ${rss_growth} % after the warm-up ($(mib "$rss_base") → $(mib "$rss_max") MiB), over ${max_growth} %")
    awk -v g="$fd_growth" -v m="$max_growth" 'BEGIN { exit !(g > m) }' &&
        why+=("open descriptors grew ${fd_growth} % after the warm-up ($fd_base → $fd_max), over ${max_growth} %")
fi
errors=""; closes=""; reconnected=""
if [ -s "$out/load.json" ]; then
    errors=$(json_num errors total)
    closes=$(json_num churn closes)
    reconnected=$(json_num churn reconnected)
    [ "$errors" = 0 ] || why+=("$errors connections failed for a reason other than churn: $(grep -E '^  (failed|dropped|churn failed) ' "$out/load.txt" | sed 's/^ *//' | tr '\n' ';')")
    [ "${closes:-0}" != 0 ] || why+=("no connection was churned")
else
    why+=("ticker-load wrote no $out/load.json")
fi

samples=$(( $(wc -l <"$out/soak.csv") - 1 ))
echo "soak: $samples samples in $out/soak.csv, plot $out/soak.svg, load report $out/load.html"
grep -E '^  (connections|churn|churn failed|reconnect|token|ticks|tick latency|fairness|dropped|failed) ' "$out/load.txt" || true
if [ ${#why[@]} -eq 0 ]; then
    echo "PASS: after the ${warmup}s warm-up RSS +${rss_growth} % ($(mib "$rss_base") → $(mib "$rss_max") MiB max), descriptors +${fd_growth} % ($fd_base → $fd_max max); $closes churn closes, $reconnected reopened, 0 other failures"
    exit 0
fi
echo "FAIL:"
for w in "${why[@]}"; do echo "  - $w"; done
exit 1
