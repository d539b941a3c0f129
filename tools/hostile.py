#!/usr/bin/env python3
"""One hostile client against a running crypto-ticker, beside one ordinary subscriber.

Runs ATTACK on one connection for DURATION seconds while a
plain WebSocket subscriber counts its ticks, and prints one JSON line: the subscriber's
ticks per second during the attack, its longest gap between two ticks, whether
/healthz answered during the attack, what the attack achieved (requests or frames sent,
answers read) and how the server ended it.

Standard library only (sockets, ssl); run by tools/hostile.sh, which starts a fresh
server per attack and samples its memory and CPU. Loopback only, bounded in time.

  hostile.py --port P --key API_KEY --attack NAME [--duration S] [--tls]

Attacks:
  pipeline   pipelined `GET /ws HTTP/1.1` requests, the answers read as they come
  unread     pipelined `GET /metrics` requests, nothing ever read
  pong       an authenticated session sending empty pong frames without pause
  ping       an authenticated session sending ping frames without pause
  symbols    pipelined upgrades with a valid token and 3,000 unknown `?symbols=`
  subscribe  an authenticated session sending 32 KB `subscribe` messages
  bomb       permessage-deflate sessions sending messages that inflate to 16 MiB

TLS handshake floods have their own tool, tools/tls-flood.py.
"""

import argparse
import json
import os
import socket
import ssl
import struct
import threading
import time
import urllib.parse
import zlib

HOST = "127.0.0.1"


def connect(port, tls, timeout=5.0):
    raw = socket.create_connection((HOST, port), timeout=timeout)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if not tls:
        return raw
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(raw, server_hostname="localhost")


def read_head(sock):
    """Reads until a response head is complete; returns (head, the bytes after it)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def read_http_response(sock):
    """Reads one HTTP response; returns (status, headers dict, body bytes)."""
    head, rest = read_head(sock)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def token_for(port, key, tls):
    body = json.dumps({"api_key": key}).encode()
    sock = connect(port, tls)
    sock.sendall(
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )
    status, _, payload = read_http_response(sock)
    sock.close()
    if status != 200:
        raise RuntimeError(f"token exchange answered {status}: {payload!r}")
    return json.loads(payload)["token"]


def upgrade_request(token, query="", extra=""):
    return (
        f"GET /ws/ticker?x-auth-token={token}{query} HTTP/1.1\r\nHost: x\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"{extra}\r\n"
    ).encode()


def open_session(port, token, tls, extra=""):
    sock = connect(port, tls)
    sock.sendall(upgrade_request(token, "", extra))
    head, rest = read_head(sock)
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"upgrade refused: {head[:60]!r}")
    return sock, rest


def client_frame(opcode, payload=b"", rsv1=False):
    """A masked client frame (the mask is zero, so the payload goes as it is); `rsv1`
    marks it compressed (permessage-deflate)."""
    n = len(payload)
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class FrameReader:
    """Server frames (unmasked) from a socket."""

    def __init__(self, sock, leftover=b""):
        self.sock, self.buf = sock, leftover

    def next(self):
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            chunk = self.sock.recv(262144)
            if not chunk:
                return None
            self.buf += chunk

    def _take(self):
        b = self.buf
        if len(b) < 2:
            return None
        opcode, n, at = b[0] & 0x0F, b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack("!H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < at + n:
            return None
        self.buf = b[at + n :]
        return opcode, b[at : at + n]


class Subscriber(threading.Thread):
    """An ordinary subscriber: records the arrival time of every tick."""

    def __init__(self, port, token, tls):
        super().__init__(daemon=True)
        self.sock, leftover = open_session(port, token, tls)
        self.reader = FrameReader(self.sock, leftover)
        self.arrivals = []
        self.stop = False

    def run(self):
        self.sock.settimeout(1.0)
        while not self.stop:
            try:
                frame = self.reader.next()
            except (socket.timeout, ssl.SSLError):
                continue
            except OSError:
                return
            if frame is None:
                return
            opcode, payload = frame
            if opcode == 1 and payload.startswith(b'{"type":"ticker"'):
                self.arrivals.append(time.monotonic())
            elif opcode == 9:  # answer the heartbeat like a browser would
                self.sock.sendall(client_frame(0xA, payload))

    def window(self, start, end):
        inside = [t for t in self.arrivals if start <= t <= end]
        edges = [start] + inside + [end]
        gap = max(b - a for a, b in zip(edges, edges[1:]))
        return len(inside) / (end - start), gap


def health_probe(port, tls, deadline, results):
    """A new client asking /healthz during the attack, once a second."""
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            sock = connect(port, tls, timeout=2.0)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            status, _, _ = read_http_response(sock)
            sock.close()
            results.append((status, time.monotonic() - started))
        except OSError:
            results.append((None, time.monotonic() - started))
        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))


class Repeater:
    """Sends one unit (a request, a frame) over and over on a nonblocking socket, never
    breaking a unit: a short send is finished before the next unit starts."""

    def __init__(self, sock, unit):
        self.sock, self.unit = sock, unit
        self.batch = unit * max(1, 65536 // len(unit))
        self.rest = memoryview(self.batch)
        self.sent_bytes = 0

    def send(self):
        """Sends what the socket takes; raises OSError when the server is gone."""
        try:
            n = self.sock.send(self.rest)
        except BlockingIOError:
            time.sleep(0.001)
            return
        self.sent_bytes += n
        self.rest = self.rest[n:]
        if not self.rest:
            self.rest = memoryview(self.batch)

    def units(self):
        return self.sent_bytes // len(self.unit)


def drain(sock, keep):
    """Reads what is there; returns (bytes read, the last bytes seen, EOF?)."""
    read = 0
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                return read, keep, True
            read += len(chunk)
            keep = (keep + chunk)[-4096:]
    except BlockingIOError:
        return read, keep, False


def pipelined(sock, request, deadline, read_answers):
    """Sends `request` over and over; returns (requests sent, bytes of answers read,
    how it ended)."""
    sock.setblocking(False)
    out, read, ended = Repeater(sock, request), 0, "attack over"
    while time.monotonic() < deadline:
        try:
            out.send()
            if read_answers:
                n, _, eof = drain(sock, b"")
                read += n
                if eof:
                    ended = "server closed (EOF)"
                    break
        except OSError as e:
            ended = f"server closed: {e.__class__.__name__}"
            break
    return out.units(), read, ended


def frames_flood(open_session_fn, frame, deadline):
    """Sends `frame` over and over on a session, reading (and discarding) what comes; a
    session the server closes is replaced by a new one. Returns (frames sent, bytes
    read, sessions the server closed, the close codes seen)."""
    sent = read = closed = 0
    codes = {}
    while time.monotonic() < deadline:
        sock = open_session_fn()
        sock.setblocking(False)
        out, tail = Repeater(sock, frame), b""
        try:
            while time.monotonic() < deadline:
                out.send()
                n, tail, eof = drain(sock, tail)
                read += n
                if eof:
                    break
        except OSError:
            pass
        sent += out.units()
        if time.monotonic() < deadline:
            closed += 1
            code = close_code(tail)
            codes[str(code)] = codes.get(str(code), 0) + 1
        sock.close()
    return sent, read, closed, codes


def close_code(tail):
    """The code of a close frame near the end of what was read, if any."""
    at = tail.rfind(b"\x88")
    while at >= 0:
        if at + 4 <= len(tail) and tail[at + 1] & 0x7F >= 2:
            return struct.unpack("!H", tail[at + 2 : at + 4])[0]
        at = tail.rfind(b"\x88", 0, at)
    return None


def attack(args, token):
    deadline = time.monotonic() + args.duration
    result = {}

    def session():
        return open_session(args.port, token, args.tls)[0]

    if args.attack == "pipeline":
        sock = connect(args.port, args.tls)
        sent, read, ended = pipelined(sock, b"GET /ws HTTP/1.1\r\n\r\n", deadline, True)
        result.update(requests_sent=sent, answer_bytes_read=read, ended=ended)
    elif args.attack == "unread":
        sock = connect(args.port, args.tls)
        sent, read, ended = pipelined(
            sock, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", deadline, False
        )
        result.update(requests_sent=sent, ended=ended)
        result["_keep"] = sock  # held open (unread) until the measurement ends
    elif args.attack in ("pong", "ping"):
        opcode = 0xA if args.attack == "pong" else 0x9
        sent, read, closed, codes = frames_flood(session, client_frame(opcode), deadline)
        result.update(frames_sent=sent, bytes_read=read, sessions_closed=closed, codes=codes)
    elif args.attack == "symbols":
        names = ",".join(f"{i:x}" for i in range(3000))  # fits the 16 KiB head limit
        query = "&symbols=" + urllib.parse.quote(names, safe=",")
        sock = connect(args.port, args.tls)
        request = upgrade_request(token, query)
        sent, read, ended = pipelined(sock, request, deadline, True)
        result.update(upgrades_sent=sent, answer_bytes_read=read, ended=ended)
    elif args.attack == "subscribe":
        names = [f"NOPE{i}" for i in range(2900)]
        message = json.dumps({"type": "subscribe", "symbols": names})[:32700]
        message = message[: message.rfind('",') + 1] + "]}"
        frame = client_frame(0x1, message.encode())
        sent, read, closed, codes = frames_flood(session, frame, deadline)
        result.update(messages_sent=sent, bytes_read=read, sessions_closed=closed, codes=codes)
    elif args.attack == "bomb":
        # permessage-deflate agreed, then text messages that inflate to 16 MiB of
        # spaces from 16 KiB on the wire (under the 32 KiB limit as received).
        deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = deflater.compress(b" " * (16 << 20)) + deflater.flush(zlib.Z_SYNC_FLUSH)
        frame = client_frame(0x1, body[:-4], rsv1=True)
        offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"

        def deflate_session():
            return open_session(args.port, token, args.tls, offer)[0]

        sent, read, closed, codes = frames_flood(deflate_session, frame, deadline)
        result.update(bombs_sent=sent, bytes_read=read, sessions_closed=closed, codes=codes)
    else:
        raise SystemExit(f"unknown attack {args.attack}")
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--attack", required=True)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--tls", action="store_true")
    args = p.parse_args()

    token = token_for(args.port, args.key, args.tls)
    sub = Subscriber(args.port, token, args.tls)
    sub.start()
    time.sleep(1.0)  # a second of normal ticks first
    before_rate, _ = sub.window(time.monotonic() - 1.0, time.monotonic())

    health = []
    start = time.monotonic()
    prober = threading.Thread(
        target=health_probe, args=(args.port, args.tls, start + args.duration, health), daemon=True
    )
    prober.start()
    result = attack(args, token)
    end = time.monotonic()
    prober.join(timeout=5)
    time.sleep(0.5)
    sub.stop = True
    rate, gap = sub.window(start, end)
    result.pop("_keep", None)
    answered = [h for h in health if h[0] == 200]
    print(
        json.dumps(
            {
                "attack": args.attack,
                "seconds": round(end - start, 2),
                "ticks_per_s_before": round(before_rate, 1),
                "ticks_per_s": round(rate, 1),
                "longest_gap_ms": round(gap * 1000, 1),
                "healthz_answered": f"{len(answered)}/{len(health)}",
                "healthz_slowest_ms": round(max((h[1] for h in health), default=0) * 1000, 1),
                **result,
            }
        ),
        flush=True,
    )
    os._exit(0)


if __name__ == "__main__":
    main()
