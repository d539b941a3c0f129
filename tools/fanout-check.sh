#!/bin/bash
# Interim fan-out check until ticker-load lands: starts the release server, opens SUBS
# subscribers with a minimal Python client that only drains bytes, and reports frames/s,
# delivered %, server CPU and CPU µs per frame from /proc and /metrics.
# Build first: cargo build --release
# usage: measure.sh SUBS SECONDS
set -e
SUBS=$1; DUR=$2; PORT=$((20000 + RANDOM % 10000)); D=$(mktemp -d)
ulimit -n $(ulimit -Hn) || true
"$(dirname "$0")/../"target/release/crypto-ticker --addr 127.0.0.1:$PORT --db $D/auth.db --public "$(dirname "$0")/../"public > $D/log 2>&1 &
PID=$!; sleep 0.5
KEY=$(grep -o 'api_key=[A-Za-z0-9]*' $D/log | cut -d= -f2)
python3 "$(dirname "$0")/drain_subscribers.py" 127.0.0.1 $PORT $KEY $SUBS $((DUR + 3)) > $D/client &
CL=$!
sleep 3   # connections up
m() { curl -s 127.0.0.1:$PORT/metrics | awk -v n="$1" '$1==n {print $2}'; }
cpu() { awk '{print $14+$15}' /proc/$PID/stat; }
F0=$(m ticker_frames_sent_total); T0=$(m ticker_ticks_total); C0=$(cpu); RSS0=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
sleep $DUR
F1=$(m ticker_frames_sent_total); T1=$(m ticker_ticks_total); C1=$(cpu); RSS1=$(awk '/VmRSS/{print $2}' /proc/$PID/status)
SESS=$(m ticker_ws_sessions_open); CONF=$(m ticker_conflated_frames_total)
HZ=$(getconf CLK_TCK)
python3 -c "
f=$F1-$F0; t=$T1-$T0; c=($C1-$C0)/$HZ; s=$SESS
print(f'subs={s:.0f} dur=${DUR}s ticks={t:.0f} frames={f:.0f} frames/s={f/$DUR:.0f} delivered={100*f/(t*s):.2f}% server_cpu={100*c/$DUR:.1f}% cpu_us_per_frame={1e6*c/f:.2f} rss_kb=$RSS1 conflated_total=$CONF')"
wait $CL; kill -INT $PID; wait $PID || true
