#!/usr/bin/env python3
"""A ClientHello replay flood against a fresh local crypto-ticker over TLS while one
`wss://` subscriber counts its ticks (the README's handshake-flood table). Loopback only,
bounded in time; the server is started here on a free port and stopped at the end.

usage: tools/tls-flood.py SERVER_BIN CERT KEY [--style answer|linger|close]
                          [--seconds 5] [--procs 4] [--threads 8] [--nice N]

Each flood connection replays one ClientHello captured from Python's `ssl`, then:
  answer  reads the server's answer (it did the key exchange and signed), closes;
  linger  stays 20 ms without reading (the server sees no EOF), closes;
  close   closes at once.
--nice runs the flood processes at that niceness (as tools/storm.sh runs its generator:
on one machine, so that the figures measure the server more than the wait for a core
behind the attacker). Prints one JSON line: ticks/s before and during the flood, the longest gap between two
ticks during it, and the ClientHellos sent. SERVER_ARGS adds server flags.
"""
import argparse, json, multiprocessing as mp, os, re, socket, ssl, subprocess, tempfile, threading, time

ap = argparse.ArgumentParser()
ap.add_argument("bin"); ap.add_argument("cert"); ap.add_argument("key")
ap.add_argument("--style", choices=["answer", "linger", "close"], default="answer")
ap.add_argument("--seconds", type=float, default=5.0)
ap.add_argument("--procs", type=int, default=4)
ap.add_argument("--threads", type=int, default=8)
ap.add_argument("--nice", type=int, default=0)
ARGS = ap.parse_args()
BIN, CERT, KEY = ARGS.bin, ARGS.cert, ARGS.key
FLOOD_S, PROCS, THREADS = ARGS.seconds, ARGS.procs, ARGS.threads
EXTRA = os.environ.get("SERVER_ARGS", "").split()
NOWAIT = ARGS.style == "close"
LINGER = 0.02 if ARGS.style == "linger" else 0.0


def client_hello():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def flood_proc(port, hello, until, counter):
    os.nice(ARGS.nice)
    def one():
        n = 0
        while time.time() < until:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=3)
                s.sendall(hello)
                if LINGER:
                    time.sleep(LINGER)  # open, answer unread: the server cannot see an EOF
                elif not NOWAIT:
                    s.recv(512)  # the server's answer: it did the key exchange and signed
                s.close()
                n += 1
            except OSError:
                pass
        return n

    results = []
    ts = [threading.Thread(target=lambda: results.append(one())) for _ in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with counter.get_lock():
        counter.value += sum(results)


def main():
    d = tempfile.mkdtemp()
    srv = subprocess.Popen(
        [BIN, "--addr", "127.0.0.1:0", "--db", d + "/auth.db", "--public", d,
         "--tls-cert", CERT, "--tls-key", KEY] + EXTRA,
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
        env=dict(os.environ, TICKER_TOKEN_KEY="measure-key-0123456789abcdef"))
    port = key = None
    while port is None or key is None:
        line = srv.stderr.readline()
        if not line:
            raise SystemExit("server died")
        m = re.search(r"addr=(\S+)", line)
        if "listening" in line and m:
            port = int(m.group(1).rsplit(":", 1)[1])
        m = re.search(r"api_key=(\S+)", line)
        if m:
            key = m.group(1).strip('"')
    threading.Thread(target=lambda: [None for _ in srv.stderr], daemon=True).start()
    try:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        body = json.dumps({"api_key": key})
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        s.sendall(("POST /auth/token HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode())
        resp = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            resp += chunk
        token = json.loads(resp.split(b"\r\n\r\n", 1)[1])["token"]
        ws = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        ws.sendall((f"GET /ws/ticker HTTP/1.1\r\nHost: l\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += ws.recv(4096)
        assert b" 101 " in buf.split(b"\r\n", 1)[0], buf[:100]
        buf = buf.split(b"\r\n\r\n", 1)[1]
        ticks = []  # (time, seq)
        stop = threading.Event()

        def reader():
            nonlocal buf
            while not stop.is_set():
                while True:
                    if len(buf) < 2:
                        break
                    ln = buf[1] & 0x7F
                    off = 2
                    if ln == 126:
                        if len(buf) < 4:
                            break
                        ln = int.from_bytes(buf[2:4], "big"); off = 4
                    elif ln == 127:
                        if len(buf) < 10:
                            break
                        ln = int.from_bytes(buf[2:10], "big"); off = 10
                    if len(buf) < off + ln:
                        break
                    payload, buf = buf[off:off + ln], buf[off + ln:]
                    m = re.search(rb'"type":"ticker".*?"seq":(\d+)|"seq":(\d+).*?"type":"ticker"', payload)
                    if m:
                        ticks.append((time.time(), int(m.group(1) or m.group(2))))
                try:
                    chunk = ws.recv(65536)
                except OSError:
                    return
                if not chunk:
                    return
                buf += chunk

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        time.sleep(2.0)
        hello = client_hello()
        t0 = time.time()
        until = t0 + FLOOD_S
        counter = mp.Value("q", 0)
        procs = [mp.Process(target=flood_proc, args=(port, hello, until, counter)) for _ in range(PROCS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        t1 = time.time()
        time.sleep(1.0)
        stop.set()
        base = [t for t, _ in ticks if t0 - 2.0 <= t < t0]
        during = [(t, q) for t, q in ticks if t0 <= t < min(t1, until)]
        gaps = [b[0] - a[0] for a, b in zip(during, during[1:])]
        span = min(t1, until) - t0
        seqs = [q for _, q in during]
        out = {
            "baseline_ticks_per_s": round(len(base) / 2.0, 1),
            "flood_ticks_per_s": round(len(during) / span, 1),
            "flood_longest_gap_ms": round(max(gaps) * 1000, 1) if gaps else None,
            "flood_seq_made": (seqs[-1] - seqs[0] + 1) if seqs else 0,
            "flood_received": len(during),
            "flood_rounds": counter.value,
            "flood_rounds_per_s": round(counter.value / span, 1),
            "flood_s": round(span, 2),
        }
        print(json.dumps(out), flush=True)
    finally:
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()


if __name__ == "__main__":
    main()
