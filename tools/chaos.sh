#!/usr/bin/env bash
# Chaos run: a crypto-ticker cluster behind Redis Sentinel under connection churn, with a
# fault at random intervals. Starts a Redis master, its replica, three Sentinels
# (down-after-milliseconds 1000) and N nodes with --redis-sentinels, all on loopback in a
# temporary folder; ticker-load churns subscribers over every node, and a watcher (one
# subscriber per node, tools/chaos_watch.py) records every tick's seq and arrival time and
# logs in again whenever its session is lost. Every fault is printed with, per node, the
# longest pause in ticks, whether seq continued, and the sessions, logins and upgrades
# lost; for a master fault the timeline kill → Sentinel promotion → first tick on each
# node. At the end: a table by fault kind, the load tool's failures, RSS and descriptors
# per process, and PASS or FAIL with the reasons.
#
# Usage: tools/chaos.sh [DURATION]     DURATION as 90s, 30m or 1h         [default: 30m]
#
# Faults (CHAOS_FAULTS, comma list; one drawn at random each time):
#   master-kill   SIGKILL the Redis master; restarted after CHAOS_DOWN as a replica of the
#                 master the Sentinels promoted (it had no persistence: never as a master)
#   master-pause  SIGSTOP the Redis master for CHAOS_PAUSE, then SIGCONT (longer than
#                 down-after-milliseconds: the Sentinels fail over while it sleeps)
#   node-kill     SIGKILL a node that does not lead, never n0 (so that one process may
#                 live long enough for its RSS to be judged); restarted after CHAOS_DOWN
#   leader-kill   SIGKILL the node whose /metrics says ticker_cluster_leader 1; restarted
#   node-pause    SIGSTOP a node that does not lead for CHAOS_PAUSE, then SIGCONT
#   leader-pause  SIGSTOP the leader for CHAOS_PAUSE (not in the default list)
#
# One fault per cycle. A cycle lasts CHAOS_EVERY × a random factor in 0.75..1.25: one
# ticker-load run (a segment: ramp, churn, close), the fault CHAOS_LEAD seconds after the
# segment started, the recovery, and at the cycle's end the fault's report. Segments
# because ticker-load does not reopen a dropped connection: each cycle starts again with
# every subscriber. Before each fault the cluster must be healthy (every node 200 on
# /healthz and ticking, the master with its replica online) within 30 s of the window's
# end, or the run fails.
#
# Environment (defaults in brackets):
#   CHAOS_NODES        nodes                                                 [3]
#   CHAOS_SUBSCRIBERS  ticker-load subscribers, round-robin over the nodes   [500]
#   CHAOS_CHURN        closes + reopens per second (each a token exchange)   [20/s]
#   CHAOS_EVERY        mean seconds between faults (at least 20)             [60]
#   CHAOS_FAULTS       fault kinds  [master-kill,master-pause,node-kill,leader-kill,node-pause]
#   CHAOS_PAUSE        seconds a SIGSTOP lasts                               [4]
#   CHAOS_DOWN         seconds a killed process stays down                   [5]
#   CHAOS_LEAD         seconds from a segment's start to its fault [CHAOS_EVERY / 4, at most 10]
#   CHAOS_SEED         seed of the draws (kinds, intervals, targets)         [random, printed]
#   CHAOS_PORT         first node's port (then +1, ...)                      [18301]
#   CHAOS_REDIS_PORT   Redis master's port (the replica +1)                  [16401]
#   CHAOS_SENTINEL_PORT first Sentinel's port (then +1, +2)                  [26401]
#   CHAOS_WARMUP       seconds of each process's life before its RSS and descriptors
#                      are judged                              [1/4 of DURATION, 60..300]
#   CHAOS_MAX_GROWTH   allowed RSS and descriptor growth after the warm-up, % [5]
#   CHAOS_RESUME_LIMIT seconds within which ticks must resume on every node
#                      after a master kill                                   [6]
#   CHAOS_TOKEN_TTL    the nodes' --token-ttl                                [5m]
#   CHAOS_OUT          folder for the results                                [target/chaos]
#
# Results in CHAOS_OUT: chaos.log (what was printed), faults.csv (one row per fault),
# fault-nodes.csv (one row per fault and node), samples.csv (every node's RSS and
# descriptors every 10 s), quiet.csv (the samples judged: just before each fault),
# ticks-NODE.log (every tick a watcher received: arrival_ms seq ts_us session),
# events-NODE.csv (the watchers' logins, upgrades, lost sessions, gaps over 100 ms, seq
# jumps; and one line a second), load-K.json/.txt (ticker-load, one per cycle), and the
# logs of every node, Redis and Sentinel. Everything listens on 127.0.0.1 and is stopped
# on exit (process groups, SIGCONT first). Exit status: 0 PASS, 1 FAIL, 2 bad arguments.
# The whole script is one block, read before it runs: an edit while it runs changes nothing.
{
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in -h|--help) sed -n '2,62p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
[ $# -le 1 ] || { echo "chaos.sh: one argument at most: DURATION (see --help)" >&2; exit 2; }

# shellcheck source=tools/server-common.sh
. tools/server-common.sh
duration="${1:-30m}"
total=$(to_secs "$duration") || { echo "chaos.sh: DURATION \`$duration\`: expected e.g. 90s, 30m or 1h" >&2; exit 2; }

nodes="${CHAOS_NODES:-3}"
subscribers="${CHAOS_SUBSCRIBERS:-500}"
churn="${CHAOS_CHURN:-20/s}"
every="${CHAOS_EVERY:-60}"
IFS=, read -r -a kinds <<<"${CHAOS_FAULTS:-master-kill,master-pause,node-kill,leader-kill,node-pause}"
pause="${CHAOS_PAUSE:-4}"
down="${CHAOS_DOWN:-5}"
lead="${CHAOS_LEAD:-$(( every / 4 < 10 ? every / 4 : 10 ))}"
seed="${CHAOS_SEED:-$(( $(date +%s%N) % 32768 ))}"
port="${CHAOS_PORT:-18301}"
redis_port="${CHAOS_REDIS_PORT:-16401}"
sentinel_port="${CHAOS_SENTINEL_PORT:-26401}"
warmup="${CHAOS_WARMUP:-$(( total / 4 < 60 ? 60 : (total / 4 > 300 ? 300 : total / 4) ))}"
max_growth="${CHAOS_MAX_GROWTH:-5}"
resume_limit="${CHAOS_RESUME_LIMIT:-6}"
token_ttl="${CHAOS_TOKEN_TTL:-5m}"
out="${CHAOS_OUT:-target/chaos}"
master_name=mymaster

[ "$nodes" -ge 2 ] || { echo "chaos.sh: CHAOS_NODES must be at least 2" >&2; exit 2; }
[ "$every" -ge 20 ] || { echo "chaos.sh: CHAOS_EVERY must be at least 20 (seconds)" >&2; exit 2; }
[ "$total" -ge $((every + 30)) ] || { echo "chaos.sh: DURATION must leave room for a fault cycle (at least CHAOS_EVERY + 30 s)" >&2; exit 2; }
for k in "${kinds[@]}"; do
    case "$k" in master-kill|master-pause|node-kill|leader-kill|node-pause|leader-pause) ;;
        *) echo "chaos.sh: unknown fault kind \`$k\` (see --help)" >&2; exit 2 ;; esac
done
for tool in redis-server redis-sentinel redis-cli curl python3; do
    command -v "$tool" >/dev/null || { echo "chaos.sh: $tool not found (apt-get install redis-server redis-sentinel curl python3)" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((subscribers * 2 + 512)) ]; then
    echo "chaos.sh: open-files limit $(ulimit -n) is below $((subscribers * 2 + 512)); raise ulimit -Hn" >&2
    exit 1
fi
node_ports=(); for i in $(seq 0 $((nodes - 1))); do node_ports+=($((port + i))); done
redis_ports=("$redis_port" $((redis_port + 1)))
sentinel_ports=("$sentinel_port" $((sentinel_port + 1)) $((sentinel_port + 2)))
for p in "${node_ports[@]}" "${redis_ports[@]}" "${sentinel_ports[@]}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "chaos.sh: port $p on 127.0.0.1 is in use (set CHAOS_PORT, CHAOS_REDIS_PORT, CHAOS_SENTINEL_PORT)" >&2
        exit 1
    fi
done

cargo build --release -p crypto-ticker -p ticker-load >&2

rm -rf "$out"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
exec > >(tee "$out/chaos.log") 2>&1
work="$(mktemp -d)"

# Every process this script starts runs in a process group of its own (setsid: it is
# not a group leader, so setsid execs in place and $! is the program). Their ids are in
# `started`; the exit trap wakes any stopped one and stops them all.
started=()
declare -A redis_pid node_pid
load_pid=""
watch_pid=""
sampler_pid=""
stop_group() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -CONT -- "-$pid" 2>/dev/null || true
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local p
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    stop_group "$load_pid"
    stop_group "$watch_pid"
    # All at once (a node takes up to its shutdown grace), then whatever is left.
    for p in "${started[@]}"; do
        kill -CONT -- "-$p" 2>/dev/null || true
        kill -TERM -- "-$p" 2>/dev/null || true
    done
    for p in "${started[@]}"; do stop_group "$p"; done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ms() { echo $(( $(date +%s%N) / 1000000 )); }
t0_ms=$(ms)
stamp() { awk -v t="$(ms)" -v s="$t0_ms" 'BEGIN { printf "t+%6.1fs", (t - s) / 1000 }'; }
say() { echo "$(stamp) $*"; }

start_redis() {  # PORT [MASTER_PORT]
    local p="$1" args=()
    [ -n "${2:-}" ] && args=(--replicaof 127.0.0.1 "$2")
    mkdir -p "$work/redis-$p"
    setsid redis-server --bind 127.0.0.1 --port "$p" --save "" --appendonly no \
        --repl-diskless-sync-delay 0 --dir "$work/redis-$p" --logfile "$out/redis-$p.log" \
        ${args[@]+"${args[@]}"} </dev/null >/dev/null 2>&1 &
    redis_pid[$p]=$!
    started+=($!)
    for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "chaos.sh: redis-server on port $p did not start" >&2; tail "$out/redis-$p.log" >&2; exit 1
}

start_sentinel() {  # INDEX
    local i="$1" p="${sentinel_ports[$1]}" dir="$work/sentinel-$1"
    mkdir -p "$dir"
    cat >"$dir/sentinel.conf" <<EOF
port $p
bind 127.0.0.1
daemonize no
dir $dir
logfile $out/sentinel-$i.log
sentinel monitor $master_name 127.0.0.1 ${redis_ports[0]} 2
sentinel down-after-milliseconds $master_name 1000
sentinel failover-timeout $master_name 5000
sentinel parallel-syncs $master_name 1
EOF
    setsid redis-sentinel "$dir/sentinel.conf" </dev/null >/dev/null 2>&1 &
    started+=($!)
    for _ in $(seq 100); do redis-cli -p "$p" ping >/dev/null 2>&1 && return 0; sleep 0.05; done
    echo "chaos.sh: redis-sentinel on port $p did not start" >&2; exit 1
}

sentinels="$(printf '127.0.0.1:%s,' "${sentinel_ports[@]}")"
sentinels="${sentinels%,}"
export TICKER_TOKEN_KEY="chaos-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
start_node() {  # INDEX
    local i="$1"
    setsid target/release/crypto-ticker --addr "127.0.0.1:${node_ports[$i]}" --db "$work/n$i.db" \
        --public public --token-ttl "$token_ttl" --redis-sentinels "$sentinels" \
        --redis-master "$master_name" </dev/null >>"$out/node-n$i.log" 2>&1 &
    node_pid[$i]=$!
    started+=($!)
    echo "$!" >"$work/n$i.pid"
    date +%s >"$work/n$i.start"
}

# The master's port as the first Sentinel that answers names it ("" if none does).
master_port() {
    local p a
    for p in "${sentinel_ports[@]}"; do
        a=$(timeout 2 redis-cli -p "$p" --raw sentinel get-master-addr-by-name "$master_name" 2>/dev/null | sed -n 2p) || true
        [ -n "$a" ] && { echo "$a"; return 0; }
    done
    echo ""
}
other_redis() { [ "$1" = "${redis_ports[0]}" ] && echo "${redis_ports[1]}" || echo "${redis_ports[0]}"; }
metric() { curl -s --max-time 1 "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m { print $2 }'; }
healthz() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$1/healthz" 2>/dev/null || true; }
# The node index whose /metrics says it leads ("" if none does).
leader() {
    local i
    for i in $(seq 0 $((nodes - 1))); do
        [ "$(metric "${node_ports[$i]}" ticker_cluster_leader)" = 1 ] && { echo "$i"; return 0; }
    done
    echo ""
}
# A watcher's last one-second line: "TICKS CONNECTED" (ticks in that second).
watcher_second() {
    tail -n 40 "$out/events-n$1.csv" 2>/dev/null | awk -F, -v now="$(ms)" '$2 == "second" { t = $1; n = $3; c = $6 }
        END { if (t != "" && now - t < 2500) print n, c; else print 0, 0 }'
}
# Healthy: every node answers /healthz 200 and its watcher got ticks in the last second;
# the master has its replica online. Prints what is not, and returns 1, when not.
unhealthy() {
    local i m bad=()
    for i in $(seq 0 $((nodes - 1))); do
        [ "$(healthz "${node_ports[$i]}")" = 200 ] || bad+=("n$i /healthz not 200")
        read -r n c < <(watcher_second "$i")
        [ "$n" -gt 0 ] || bad+=("n$i no tick in the last second")
    done
    m=$(master_port)
    if [ -z "$m" ]; then bad+=("no Sentinel names a master")
    elif ! timeout 2 redis-cli -p "$m" info replication 2>/dev/null | grep -q '^slave0:.*state=online'; then
        bad+=("master $m has no replica online")
    fi
    [ ${#bad[@]} -eq 0 ] && return 1
    printf '%s; ' "${bad[@]}"
    return 0
}
wait_healthy() {  # SECONDS → 0 when healthy within them; prints the last complaint if not
    local deadline=$(( $(date +%s) + $1 )) why=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        why=$(unhealthy) || return 0
        sleep 0.5
    done
    echo "$why"
    return 1
}

pid_age() { echo $(( $(date +%s) - $(cat "$work/n$1.start") )); }
sample_line() {  # T_S NODE_INDEX → "t_s,node,pid,age_s,rss_kib,fds" or nothing
    local pid rss fds
    pid=$(cat "$work/n$2.pid")
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || return 0
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    [ -n "$rss" ] && echo "$1,n$2,$pid,$(pid_age "$2"),$rss,$fds"
}
sampler() {
    local i
    while sleep 10; do
        for i in $(seq 0 $((nodes - 1))); do sample_line $(( ($(ms) - t0_ms) / 1000 )) "$i" >>"$out/samples.csv"; done
    done
}

say "chaos.sh: $nodes nodes, $subscribers subscribers, churn $churn, a fault every ~${every}s (${kinds[*]}), pause ${pause}s, down ${down}s, seed $seed, ${total}s; results in $out"
RANDOM=$seed
start_redis "${redis_ports[0]}"
start_redis "${redis_ports[1]}" "${redis_ports[0]}"
for i in 0 1 2; do start_sentinel "$i"; done
for _ in $(seq 400); do
    # Each Sentinel: "OTHER_SENTINELS REPLICAS"; ready when all three say "2 1".
    info=$(for p in "${sentinel_ports[@]}"; do redis-cli -p "$p" sentinel master "$master_name" 2>/dev/null | paste - - |
        awk '$1 == "num-other-sentinels" { s = $2 } $1 == "num-slaves" { r = $2 } END { print s, r }'; done)
    [ "$(grep -c '^2 1$' <<<"$info")" = 3 ] && break
    sleep 0.1
done
[ "$(grep -c '^2 1$' <<<"$info")" = 3 ] || { echo "chaos.sh: the Sentinels did not find each other and the replica" >&2; exit 1; }
say "Redis master :${redis_ports[0]}, replica :${redis_ports[1]}, Sentinels $sentinels (down-after 1000 ms, failover-timeout 5000 ms)"

# The first node starts alone and creates the cluster's demo key; the others find it.
# Node n0 is never the target of node-kill (only of leader-kill when it leads), so at
# least one process is likely to live long enough for its RSS to be judged.
for i in $(seq 1 $((nodes - 1))) 0; do start_node "$i"; done
key=""
for _ in $(seq 200); do
    key="$(sed -n 's/.*demo API key \(created\|exists\).*api_key=\([A-Za-z0-9]*\).*/\2/p' "$out"/node-n*.log | head -n 1)"
    ok=1
    for i in $(seq 0 $((nodes - 1))); do [ "$(healthz "${node_ports[$i]}")" = 200 ] || ok=0; done
    [ -n "$key" ] && [ "$ok" = 1 ] && break
    sleep 0.1
done
[ -n "$key" ] && [ "$ok" = 1 ] || { echo "chaos.sh: the nodes did not start (see $out/node-n*.log)" >&2; exit 1; }
export TICKER_LOAD_API_KEY="$key"

watch_args=()
for i in $(seq 0 $((nodes - 1))); do watch_args+=("n$i=${node_ports[$i]}"); done
setsid python3 tools/chaos_watch.py watch --out "$out" --key "$key" "${watch_args[@]}" </dev/null >"$out/watch.txt" 2>&1 &
watch_pid=$!
started+=($!)
echo "t_s,node,pid,age_s,rss_kib,fds" >"$out/samples.csv"
echo "t_s,node,pid,age_s,rss_kib,fds" >"$out/quiet.csv"
echo "index,kind,target,pid,t_ms,recover_ms,promoted_ms,new_master,restarts,window_end_ms,healthy_after,note" >"$out/faults.csv"
sampler &
sampler_pid=$!
if why=$(wait_healthy 60); then :; else echo "chaos.sh: the cluster did not become healthy: $why" >&2; exit 1; fi
say "nodes ${node_ports[*]} serving (leader n$(leader)); watchers on every node"

urls=()
for p in "${node_ports[@]}"; do urls+=(--url "http://127.0.0.1:$p"); done
ramp_secs=$(( subscribers / 500 + 1 ))
start_segment() {  # INDEX SECONDS
    local steady=$(( $2 - ramp_secs - 4 ))
    [ "$steady" -ge 5 ] || steady=5
    setsid target/release/ticker-load "${urls[@]}" --connections "$subscribers" --ramp 500/s \
        --warmup 2s --duration "${steady}s" --churn "$churn" --connect-timeout 5s \
        --json "$out/load-$1.json" --quiet </dev/null >"$out/load-$1.txt" 2>&1 &
    load_pid=$!
}

# The Redis fault's promotion: polls the Sentinels every 100 ms for up to $1 seconds;
# sets promoted_ms and new_master when they name another master than $2.
promoted_ms=""; new_master=""
watch_promotion() {
    local until=$(( $(ms) + $1 * 1000 )) m
    while [ "$(ms)" -lt "$until" ]; do
        m=$(master_port)
        if [ -n "$m" ] && [ "$m" != "$2" ]; then promoted_ms=$(ms); new_master="127.0.0.1:$m"; return 0; fi
        sleep 0.1
    done
    return 1
}
say_promotion() {
    if [ -n "$promoted_ms" ]; then
        say "  Sentinel named $new_master $(( promoted_ms - t_ms )) ms after the fault"
    else
        say "  no Sentinel named another master"
        note="$note; no promotion"
    fi
}
sleep_until_ms() { local d=$(( $1 - $(ms) )); [ "$d" -le 0 ] || sleep "$(awk -v d="$d" 'BEGIN { printf "%.3f", d / 1000 }')"; }
pick_follower() {  # INDEX of a random node that does not lead (never n0 when $1 = nokill0)
    local l="$2" c=() i
    for i in $(seq 0 $((nodes - 1))); do
        [ "$i" = "$l" ] && continue
        [ "$1" = nokill0 ] && [ "$i" = 0 ] && [ "$nodes" -gt 2 ] && continue
        c+=("$i")
    done
    echo "${c[$((RANDOM % ${#c[@]}))]}"
}

end_ms=$(( t0_ms + total * 1000 ))
index=0
while :; do
    cycle=$(( every * (750 + RANDOM % 501) / 1000 ))
    # Room for the fault, the recovery, and ten seconds to see ticks come back.
    shortest=$(( lead + (down > pause ? down : pause) + 10 ))
    [ "$cycle" -ge "$shortest" ] || cycle=$shortest
    [ $(( $(ms) + (cycle + 15) * 1000 )) -le "$end_ms" ] || break
    index=$((index + 1))
    kind="${kinds[$((RANDOM % ${#kinds[@]}))]}"
    cycle_start=$(ms)
    start_segment "$index" "$cycle"
    sleep_until_ms $(( cycle_start + lead * 1000 ))
    for i in $(seq 0 $((nodes - 1))); do sample_line $(( ($(ms) - t0_ms) / 1000 )) "$i" >>"$out/quiet.csv"; done

    l=$(leader)
    promoted_ms=""; new_master=""; recover_ms=""; restarts=0; note="leader before: n${l:-?}"
    case "$kind" in
        master-kill|master-pause)
            m=$(master_port); pid="${redis_pid[$m]}"; target="redis:$m"
            t_ms=$(ms)
            if [ "$kind" = master-kill ]; then
                kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
                say "fault #$index master-kill: SIGKILL Redis master :$m (pid $pid)"
                watch_promotion 30 "$m" || true
                say_promotion
                sleep_until_ms $(( t_ms + down * 1000 ))
                nm="${new_master#127.0.0.1:}"
                if [ -z "$nm" ]; then
                    note="$note; no promotion within 30 s: restarted as a replica of :$(other_redis "$m") anyway"
                    nm=$(other_redis "$m")
                fi
                start_redis "$m" "$nm"
                recover_ms=$(ms); restarts=1
                say "  Redis :$m restarted as a replica of :$nm (pid ${redis_pid[$m]})"
            else
                kill -STOP "$pid"
                say "fault #$index master-pause: SIGSTOP Redis master :$m (pid $pid) for ${pause}s"
                watch_promotion "$pause" "$m" || true
                sleep_until_ms $(( t_ms + pause * 1000 ))
                kill -CONT "$pid"
                recover_ms=$(ms)
                say "  SIGCONT Redis :$m"
                [ -n "$promoted_ms" ] || watch_promotion 3 "$m" || true
                say_promotion
            fi
            ;;
        node-kill|leader-kill)
            if [ "$kind" = leader-kill ]; then
                n="$l"
                [ -n "$n" ] || { note="$note; no leader found: killed a random node"; n=$((RANDOM % nodes)); }
            else
                n=$(pick_follower nokill0 "$l")
            fi
            pid="${node_pid[$n]}"; target="n$n"
            t_ms=$(ms)
            kill -KILL "$pid"; wait "$pid" 2>/dev/null || true
            say "fault #$index $kind: SIGKILL node n$n :${node_ports[$n]} (pid $pid)"
            sleep_until_ms $(( t_ms + down * 1000 ))
            start_node "$n"
            recover_ms=$(ms); restarts=1
            say "  node n$n restarted (pid ${node_pid[$n]}); leader now n$(leader)"
            ;;
        node-pause|leader-pause)
            if [ "$kind" = leader-pause ] && [ -n "$l" ]; then n="$l"; else n=$(pick_follower any "$l"); fi
            pid="${node_pid[$n]}"; target="n$n"
            t_ms=$(ms)
            kill -STOP "$pid"
            say "fault #$index $kind: SIGSTOP node n$n :${node_ports[$n]} (pid $pid) for ${pause}s"
            sleep_until_ms $(( t_ms + pause * 1000 ))
            kill -CONT "$pid"
            recover_ms=$(ms)
            say "  SIGCONT n$n; leader now n$(leader)"
            ;;
    esac

    # The cycle's end: the segment's last subscribers close, then the fault's window ends.
    sleep_until_ms $(( cycle_start + cycle * 1000 ))
    for _ in $(seq 100); do kill -0 "$load_pid" 2>/dev/null || break; sleep 0.1; done
    stop_group "$load_pid"; load_pid=""
    window_end=$(ms)
    healthy=1
    if why=$(wait_healthy 30); then :; else healthy=0; note="$note; not healthy 30 s after the window: $why"; fi
    echo "$index,$kind,$target,$pid,$t_ms,$recover_ms,$promoted_ms,$new_master,$restarts,$window_end,$healthy,\"$note\"" >>"$out/faults.csv"
    python3 tools/chaos_watch.py fault --out "$out" --index "$index"
    [ "$healthy" = 1 ] || say "  NOT HEALTHY: $why"
done

# The end: every node still serving, every watcher ticking.
: >"$out/final.txt"
sleep 3
for i in $(seq 0 $((nodes - 1))); do
    s=$(healthz "${node_ports[$i]}")
    read -r n c < <(watcher_second "$i")
    echo "at the end n$i (pid ${node_pid[$i]}): /healthz $s, $n ticks in the last second" >>"$out/final.txt"
    [ "$s" = 200 ] || echo "FAIL at the end n$i answers /healthz $s" >>"$out/final.txt"
    [ "$n" -gt 0 ] || echo "FAIL at the end n$i's watcher got no tick in the last second" >>"$out/final.txt"
done
say "$index faults in $(( ($(ms) - t0_ms) / 1000 ))s"
kill "$sampler_pid" 2>/dev/null || true; sampler_pid=""
stop_group "$watch_pid"; watch_pid=""
status=0
python3 tools/chaos_watch.py summary --out "$out" --warmup "$warmup" --max-growth "$max_growth" \
    --resume-limit "$resume_limit" || status=$?
exit "$status"
}
