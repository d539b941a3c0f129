# Shared by the scripts in tools/ (sourced, not run): one crypto-ticker server at a time
# in the background, a throwaway certificate for TLS runs, and durations (90s, 30m, 1h).
#
# The caller sets `server` to "" before use, and calls `stop_server` on exit.

# to_secs DURATION: 90s, 30m or 1h as seconds; fails on anything else.
to_secs() {
    case "$1" in
        *[!0-9smh]* | "" | [smh]*) return 1 ;;
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *) return 1 ;;
    esac
}

# stop_pid PID: TERM, then KILL after 5 s; nothing if PID is empty or gone.
stop_pid() {
    local pid="$1"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Stops the server started by `start_server`.
stop_server() {
    stop_pid "$server"
    server=""
}

# start_server LOG COMMAND...: runs COMMAND (the server and its flags, maybe behind
# taskset) in the background with its output in LOG, and waits until it listens. Sets
# `server` (its pid) and `key` (the demo API key it logged); exits the script with the
# log if it does not start.
start_server() {
    local log="$1"
    shift
    : >"$log"
    "$@" >>"$log" 2>&1 &
    server=$!
    for _ in $(seq 100); do
        key="$(sed -n 's/.*demo API key \(created\|exists\).*api_key=\([A-Za-z0-9]*\).*/\2/p' "$log" | tail -n 1)"
        if [ -n "$key" ] && grep -q "listening" "$log"; then return 0; fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    echo "$(basename "$0"): the server did not start; its log:" >&2
    cat "$log" >&2
    exit 1
}

# make_certificate DIR: a throwaway CA (DIR/ca.pem) and an ECDSA P-256 leaf for
# 127.0.0.1 and localhost signed by it (DIR/cert.pem, DIR/key.pem); a CA certificate
# itself may not serve as the leaf.
make_certificate() {
    local dir="$1"
    local ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -days 1 -subj /CN=throwaway-ca \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req "${ec[@]}" -subj /CN=localhost -keyout "$dir/key.pem" -out "$dir/leaf.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/leaf.ext"
    openssl x509 -req -in "$dir/leaf.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -days 1 -extfile "$dir/leaf.ext" -out "$dir/cert.pem" 2>/dev/null
}
