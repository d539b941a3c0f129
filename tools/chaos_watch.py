#!/usr/bin/env python3
"""The watchers and the arithmetic of tools/chaos.sh (standard library only).

  chaos_watch.py watch --out DIR --key API_KEY NAME=PORT...
      One WebSocket subscriber per node (a thread each), until SIGTERM or SIGINT. Each
      logs in (POST /auth/token), upgrades, and records every ticker message's seq and
      arrival time in DIR/ticks-NAME.log ("arrival_ms seq ts_us session"), answers the
      server's pings, and when its session is lost (EOF, reset, close frame) logs in
      again and reopens, on the same node, as a client would. Every login, upgrade and
      session end goes to DIR/events-NAME.csv (t_ms,event,detail), and once a second
      a line "t_ms,second,TICKS,MAX_GAP_MS,LAST_SEQ,CONNECTED" for a quick look.

  chaos_watch.py fault --out DIR --index K
      After fault K (a row of DIR/faults.csv): per node, the longest gap between two
      ticks around it, whether seq continued, the sessions lost and the logins and
      upgrades refused; for a Redis master fault the timeline kill → promotion → first
      tick on each node. Appends one row per node to DIR/fault-nodes.csv.

  chaos_watch.py summary --out DIR [--warmup S] [--max-growth P] [--resume-limit S]
      The table over every fault, the load tool's segments (DIR/load-*.json), the RSS
      and descriptor samples (DIR/quiet.csv), and the verdict: exit 0 PASS, 1 FAIL.
"""

import argparse
import csv
import datetime
import glob
import json
import os
import signal
import socket
import statistics
import struct
import sys
import threading
import time

HOST = "127.0.0.1"
GAP_NOTE_MS = 100  # gaps at least this long get an event line of their own
PAUSE_MS = 500  # a longest gap shorter than this is no pause: nothing "resumed"


def now_ms():
    return int(time.time() * 1000)


# ---------------------------------------------------------------- the watchers


class Closed(Exception):
    """The session ended: the reason is the message."""


def http_exchange(port, request, timeout):
    """Sends one request on a new connection; returns (status, head, body, sock, rest).
    The socket stays open (an upgrade continues on it); the caller closes it."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sock.close()
            raise Closed("eof before the answer")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if status != 101:
        while len(rest) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            rest += chunk
    return status, head, rest, sock


def login(port, key):
    body = json.dumps({"api_key": key}).encode()
    req = (
        b"POST /auth/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    status, _, rest, sock = http_exchange(port, req, timeout=5.0)
    sock.close()
    if status != 200:
        return status, rest[:120].decode("utf-8", "replace")
    return 200, json.loads(rest)["token"]


def upgrade(port, token):
    req = (
        f"GET /ws/ticker HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    status, _, rest, sock = http_exchange(port, req, timeout=5.0)
    if status != 101:
        sock.close()
        return status, rest[:120].decode("utf-8", "replace"), None
    return 101, rest, sock


def pong(payload):
    """A masked pong (zero mask: the payload goes as it is)."""
    return struct.pack("!BB", 0x8A, 0x80 | len(payload)) + b"\0\0\0\0" + payload


def frames(sock, buf):
    """Yields (opcode, payload) from the socket; raises Closed at its end."""
    while True:
        while True:
            if len(buf) < 2:
                break
            opcode, n, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, at = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, at = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < at + n:
                break
            payload = bytes(buf[at : at + n])
            del buf[: at + n]
            yield opcode, payload
        try:
            chunk = sock.recv(262144)
        except socket.timeout:
            yield None, None  # nothing for a second: lets the caller look at the clock
            continue
        except OSError as e:
            raise Closed(f"reset ({e.__class__.__name__})")
        if not chunk:
            raise Closed("eof")
        buf += chunk


def field(payload, name):
    """The integer after `"name":` in a JSON text (the ticker's own fields are flat)."""
    at = payload.find(b'"' + name + b'":')
    if at < 0:
        return None
    at += len(name) + 3
    end = at
    while end < len(payload) and payload[end : end + 1].isdigit():
        end += 1
    return int(payload[at:end]) if end > at else None


class Watcher(threading.Thread):
    def __init__(self, name, port, key, out, stop):
        super().__init__(daemon=True)
        self.name, self.port, self.key, self.stop = name, port, key, stop
        self.ticks = open(os.path.join(out, f"ticks-{name}.log"), "a", buffering=1)
        self.events = open(os.path.join(out, f"events-{name}.csv"), "a", buffering=1)
        self.session = 0
        self.last_seq = None  # across sessions
        self.last_arrival = None
        self.second = now_ms() // 1000
        self.sec_ticks = 0
        self.sec_gap = 0
        self.connected = 0

    def event(self, kind, detail=""):
        self.events.write(f"{now_ms()},{kind},{str(detail).replace(',', ';')}\n")

    def per_second(self, t):
        while t // 1000 > self.second:
            last = self.last_seq if self.last_seq is not None else ""
            self.events.write(
                f"{(self.second + 1) * 1000},second,{self.sec_ticks},{self.sec_gap},{last},{self.connected}\n"
            )
            self.second += 1
            self.sec_ticks = 0
            self.sec_gap = 0

    def run(self):
        backoff = 0.1
        token = None
        while not self.stop.is_set():
            self.per_second(now_ms())
            try:
                if token is None:
                    status, answer = login(self.port, self.key)
                    if status != 200:
                        self.event("login_failed", f"{status} {answer}")
                        raise Closed("login")
                    token = answer
                    self.event("login", 200)
                status, rest, sock = upgrade(self.port, token)
                if status != 101:
                    self.event("upgrade_failed", f"{status} {rest}")
                    if status == 401:
                        token = None  # the token is gone (lost in a failover): log in again
                    raise Closed("upgrade")
            except Closed:
                self.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            except OSError as e:
                what = "login_failed" if token is None else "upgrade_failed"
                self.event(what, f"connect {e.__class__.__name__}")
                self.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            backoff = 0.1
            self.session += 1
            self.connected = 1
            self.event("open", self.session)
            reason = self.read(sock, bytearray(rest))
            self.connected = 0
            sock.close()
            if not self.stop.is_set():
                self.event("lost", reason)
                token = None  # a new login, as a client that lost its session does
        self.per_second(now_ms())
        self.ticks.flush()
        self.events.flush()

    def sleep(self, seconds):
        self.stop.wait(seconds)

    def read(self, sock, buf):
        sock.settimeout(1.0)
        prev = None  # this session's last seq
        try:
            for opcode, payload in frames(sock, buf):
                t = now_ms()
                self.per_second(t)
                if self.stop.is_set():
                    return "stopped"
                if opcode is None:
                    continue
                if opcode == 1 and payload.startswith(b'{"type":"ticker"'):
                    seq, ts = field(payload, b"seq"), field(payload, b"ts_us")
                    self.ticks.write(f"{t} {seq} {ts} {self.session}\n")
                    if self.last_arrival is not None:
                        gap = t - self.last_arrival
                        self.sec_gap = max(self.sec_gap, gap)
                        if gap >= GAP_NOTE_MS:
                            self.event("gap", f"{gap} ms seq {self.last_seq}->{seq}")
                    if prev is not None and seq <= prev:
                        self.event("seq_back", f"{prev}->{seq}")
                    elif prev is not None and seq > prev + 1:
                        self.event("seq_jump", f"{prev}->{seq} ({seq - prev - 1} missed)")
                    elif prev is None and self.last_seq is not None and seq <= self.last_seq:
                        self.event("seq_back_new_session", f"{self.last_seq}->{seq}")
                    prev = seq
                    self.last_seq = seq
                    self.last_arrival = t
                    self.sec_ticks += 1
                elif opcode == 9:
                    sock.sendall(pong(payload))
                elif opcode == 8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 0
                    return f"close {code} {payload[2:60].decode('utf-8', 'replace')}"
        except Closed as e:
            return str(e)
        except OSError as e:
            return f"reset ({e.__class__.__name__})"
        return "ended"


def watch(args):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    watchers = []
    for spec in args.nodes:
        name, _, port = spec.partition("=")
        w = Watcher(name, int(port), args.key, args.out, stop)
        w.start()
        watchers.append(w)
    while not stop.is_set():
        stop.wait(1.0)
    for w in watchers:
        w.join(timeout=3.0)


# ---------------------------------------------------------------- the arithmetic


def read_faults(out):
    with open(os.path.join(out, "faults.csv")) as f:
        return list(csv.DictReader(f))


def nodes_of(out):
    return sorted(
        os.path.basename(p)[len("ticks-") : -len(".log")]
        for p in glob.glob(os.path.join(out, "ticks-*.log"))
    )


def ticks_between(out, node, start_ms, end_ms):
    """(arrival_ms, seq, session) of the ticks that arrived in [start_ms, end_ms), plus
    the last one before start_ms (to measure the gap that straddles it). The logs are in
    arrival order; the reading starts at an offset remembered per (node, start)."""
    path = os.path.join(out, f"ticks-{node}.log")
    rows, before = [], None
    with open(path, "rb") as f:
        # Skip ahead by bisection on the file: each line starts with its arrival time.
        size = os.fstat(f.fileno()).st_size
        lo, hi = 0, size
        while hi - lo > 65536:
            mid = (lo + hi) // 2
            f.seek(mid)
            f.readline()
            line = f.readline()
            if not line:
                hi = mid
                continue
            if int(line.split()[0]) < start_ms - 5000:
                lo = mid
            else:
                hi = mid
        f.seek(lo)
        if lo:
            f.readline()
        for line in f:
            parts = line.split()
            if len(parts) < 4:
                continue
            t = int(parts[0])
            if t >= end_ms:
                break
            seq = int(parts[1]) if parts[1] != b"None" else -1
            if t < start_ms:
                before = (t, seq, int(parts[3]))
            else:
                rows.append((t, seq, int(parts[3])))
    return before, rows


def events_between(out, node, start_ms, end_ms):
    found = []
    path = os.path.join(out, f"events-{node}.csv")
    if not os.path.exists(path):
        return found
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split(",", 2)
            if len(parts) < 2 or not parts[0].isdigit():
                continue
            t = int(parts[0])
            if start_ms <= t < end_ms and parts[1] != "second":
                found.append((t, parts[1], parts[2] if len(parts) > 2 else ""))
    return found


def analyse_node(out, node, start_ms, end_ms, fault_ms):
    """The figures of one node in a fault's window [start_ms, end_ms)."""
    before, rows = ticks_between(out, node, start_ms, end_ms)
    seq_back = seq_jumps = missed = 0
    back_across = 0
    longest, gap_end, gap_start = 0, None, None
    resumed_ms = None
    prev = before
    for row in rows:
        if prev is not None:
            gap = row[0] - prev[0]
            if gap > longest:
                longest, gap_start, gap_end = gap, prev[0], row[0]
            if row[2] == prev[2]:
                if row[1] <= prev[1]:
                    seq_back += 1
                elif row[1] > prev[1] + 1:
                    seq_jumps += 1
                    missed += row[1] - prev[1] - 1
            elif row[1] <= prev[1]:
                back_across += 1
        prev = row
    # Ticks still missing at the window's end count as a gap up to it.
    last = rows[-1][0] if rows else (before[0] if before else start_ms)
    if end_ms - last > longest:
        longest, gap_start, gap_end = end_ms - last, last, None
    if gap_end is not None and gap_end >= fault_ms and longest >= PAUSE_MS:
        resumed_ms = gap_end
    ev = events_between(out, node, start_ms, end_ms)
    count = lambda kind: sum(1 for e in ev if e[1] == kind)
    http_refusals = [e for e in ev if e[1].endswith("_failed") and not e[2].startswith("connect")]
    return {
        "node": node,
        "ticks": len(rows),
        "max_gap_ms": longest,
        "gap_start_ms": gap_start,
        "resumed_ms": resumed_ms,
        "stuck": gap_end is None and bool(rows or before),
        "seq_back": seq_back,
        "seq_back_across": back_across,
        "seq_jumps": seq_jumps,
        "missed": missed,
        "lost": count("lost"),
        "lost_reasons": sorted({e[2] for e in ev if e[1] == "lost"}),
        # A refused or timed-out connect is the node being down or stopped, not an answer.
        "connect_failed": sum(1 for e in ev if e[1].endswith("_failed") and e[2].startswith("connect")),
        "login_failed": sum(1 for e in http_refusals if e[1] == "login_failed"),
        "login_reasons": sorted({e[2][:40] for e in http_refusals if e[1] == "login_failed"}),
        "upgrade_failed": sum(1 for e in http_refusals if e[1] == "upgrade_failed"),
        "upgrade_reasons": sorted({e[2][:40] for e in http_refusals if e[1] == "upgrade_failed"}),
    }


def fmt_s(ms):
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def fault(args):
    faults = read_faults(args.out)
    f = next(r for r in faults if r["index"] == str(args.index))
    t0 = int(f["t_ms"])
    end = int(f["window_end_ms"])
    start = t0 - 1000
    lines = []
    rows = []
    for node in nodes_of(args.out):
        a = analyse_node(args.out, node, start, end, t0)
        seq_ok = "seq continued" if a["seq_back"] == 0 else f"SEQ WENT BACK {a['seq_back']}x"
        if a["seq_jumps"]:
            seq_ok += f", {a['seq_jumps']} jump(s), {a['missed']} missed"
        if a["seq_back_across"]:
            seq_ok += f", {a['seq_back_across']} lower seq after a reconnect"
        extra = []
        if a["lost"]:
            extra.append(f"{a['lost']} session(s) lost ({'; '.join(a['lost_reasons'])})")
        if a["login_failed"]:
            extra.append(f"{a['login_failed']} login(s) refused ({'; '.join(a['login_reasons'])})")
        if a["upgrade_failed"]:
            extra.append(f"{a['upgrade_failed']} upgrade(s) refused ({'; '.join(a['upgrade_reasons'])})")
        if a["connect_failed"]:
            extra.append(f"{a['connect_failed']} connect(s) failed while it was down")
        stuck = " STUCK: no tick to the window's end" if a["stuck"] else ""
        resumed = (
            f", resumed {fmt_s(a['resumed_ms'] - t0)} after the fault" if a["resumed_ms"] else ""
        )
        lines.append(
            f"    {node}: longest tick gap {a['max_gap_ms']} ms{resumed}; {seq_ok}"
            + (f"; {', '.join(extra)}" if extra else "")
            + stuck
        )
        rows.append(
            [
                f["index"], f["kind"], node, a["max_gap_ms"],
                (a["resumed_ms"] - t0) if a["resumed_ms"] else "",
                a["seq_back"], a["seq_back_across"], a["seq_jumps"], a["missed"], a["lost"],
                a["login_failed"], a["upgrade_failed"], a["connect_failed"], int(a["stuck"]), a["ticks"],
            ]
        )
    path = os.path.join(args.out, "fault-nodes.csv")
    new = not os.path.exists(path)
    with open(path, "a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(
                ["index", "kind", "node", "max_gap_ms", "resumed_after_ms", "seq_back",
                 "seq_back_across", "seq_jumps", "missed", "lost", "login_failed",
                 "upgrade_failed", "connect_failed", "stuck", "ticks"]
            )
        w.writerows(rows)
    if f.get("promoted_ms"):
        switched = switch_master_ms(args.out, t0, end)
        if switched:
            print(f"  Sentinel log: +switch-master {(switched - t0) / 1000:.2f}s after the fault (the first of the three)")
        resumes = []
        for r in rows:
            if r[4] != "":
                resumes.append(f"{r[2]} {int(r[4]) / 1000:.2f}s")
            else:
                resumes.append(f"{r[2]} -")
        print(
            f"  timeline: {f['kind']} at 0 → Sentinel named {f['new_master']} at "
            f"{(int(f['promoted_ms']) - t0) / 1000:.2f}s → first tick after the pause: "
            + ", ".join(resumes)
        )
    print("\n".join(lines))
    seg = load_segment(os.path.join(args.out, f"load-{args.index}.json"))
    if seg:
        print(
            f"    load ({seg['opened']} subscribers): {seg['logins']} failed logins ({fmt_counts(seg['login_by'])}), "
            f"{seg['upgrades']} failed reconnects ({fmt_counts(seg['upgrade_by'])}), "
            f"{seg['dropped']} lost sessions ({fmt_counts(seg['dropped_by'])}); "
            f"seq repeats {seg['repeats']}, out of order {seg['out_of_order']}"
        )


def switch_master_ms(out, after_ms, before_ms):
    """The first `+switch-master` a Sentinel logged after `after_ms` (their clock is local
    time, as this process's), in Unix ms; None if none did."""
    first = None
    for path in glob.glob(os.path.join(out, "sentinel-*.log")):
        with open(path, errors="replace") as f:
            for line in f:
                if "+switch-master" not in line:
                    continue
                # "pid:X 07 Dec 2026 14:30:05.339 # +switch-master ..."
                parts = line.split()
                try:
                    stamp = datetime.datetime.strptime(" ".join(parts[1:5]), "%d %b %Y %H:%M:%S.%f")
                except (ValueError, IndexError):
                    continue
                t = int(stamp.timestamp() * 1000)
                if after_ms <= t < before_ms and (first is None or t < first):
                    first = t
    return first


def fmt_counts(d):
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"


def load_segment(path):
    """One ticker-load run's failures, sorted into logins, upgrades and lost sessions."""
    try:
        with open(path) as f:
            j = json.load(f)
    except (OSError, ValueError):
        return None
    c, ch, st = j["connections"], j.get("churn") or {}, j["steady"]
    churn_failed = ch.get("failed_by") or {}
    login_by = {k: v for k, v in churn_failed.items() if is_login(k)}
    upgrade_by = {k: v for k, v in churn_failed.items() if not is_login(k)}
    for k, v in c["failed_by"].items():
        upgrade_by["ramp " + k] = upgrade_by.get("ramp " + k, 0) + v
    return {
        "opened": c["opened"],
        "logins": sum(login_by.values()), "login_by": login_by,
        "upgrades": sum(upgrade_by.values()), "upgrade_by": upgrade_by,
        "dropped": sum(c["dropped_by"].values()), "dropped_by": c["dropped_by"],
        "closes": ch.get("closes", 0), "reconnected": ch.get("reconnected", 0),
        "ticks": st.get("ticks") or 0, "missed": st.get("missed") or 0,
        "repeats": st.get("repeats") or 0, "out_of_order": st.get("out_of_order") or 0,
    }


def load_segments(out):
    totals = {
        "segments": 0, "opened": 0, "ramp_failed": {}, "dropped": {}, "churn_failed": {},
        "closes": 0, "reconnected": 0, "ticks": 0, "missed": 0, "repeats": 0, "out_of_order": 0,
    }
    for path in sorted(glob.glob(os.path.join(out, "load-*.json"))):
        try:
            with open(path) as f:
                j = json.load(f)
        except (OSError, ValueError):
            continue
        totals["segments"] += 1
        c = j["connections"]
        totals["opened"] += c["opened"]
        for k, v in c["failed_by"].items():
            totals["ramp_failed"][k] = totals["ramp_failed"].get(k, 0) + v
        for k, v in c["dropped_by"].items():
            totals["dropped"][k] = totals["dropped"].get(k, 0) + v
        ch = j.get("churn") or {}
        totals["closes"] += ch.get("closes", 0)
        totals["reconnected"] += ch.get("reconnected", 0)
        for k, v in (ch.get("failed_by") or {}).items():
            totals["churn_failed"][k] = totals["churn_failed"].get(k, 0) + v
        s = j["steady"]
        for k in ("ticks", "missed", "repeats", "out_of_order"):
            totals[k] += s.get(k) or 0
    return totals


def is_login(reason):
    return reason.startswith("token")


def flat(out, warmup_s, max_growth):
    """Per process (node + pid) series of the quiet samples: growth after its warm-up."""
    series = {}
    path = os.path.join(out, "quiet.csv")
    if not os.path.exists(path):
        return [], []
    with open(path) as f:
        for r in csv.DictReader(f):
            series.setdefault((r["node"], r["pid"]), []).append(
                (float(r["age_s"]), int(r["rss_kib"]), int(r["fds"]))
            )
    results, problems = [], []
    for (node, pid), rows in sorted(series.items()):
        after = [r for r in rows if r[0] >= warmup_s]
        if len(after) < 2:
            results.append((node, pid, len(rows), None, None, None, None))
            continue
        rss0, fd0 = after[0][1], after[0][2]
        rss_max = max(r[1] for r in after[1:])
        fd_max = max(r[2] for r in after[1:])
        rg = (rss_max - rss0) * 100 / rss0
        fg = (fd_max - fd0) * 100 / fd0
        results.append((node, pid, len(rows), (rss0, rss_max, rg), (fd0, fd_max, fg), rows[0][0], rows[-1][0]))
        if rg > max_growth:
            problems.append(f"{node} (pid {pid}) RSS grew {rg:.1f} % after its warm-up ({rss0} → {rss_max} KiB)")
        if fg > max_growth:
            problems.append(f"{node} (pid {pid}) descriptors grew {fg:.1f} % after its warm-up ({fd0} → {fd_max})")
    return results, problems


def summary(args):
    out = args.out
    faults = read_faults(out)
    per = []
    path = os.path.join(out, "fault-nodes.csv")
    if os.path.exists(path):
        with open(path) as f:
            per = list(csv.DictReader(f))
    why = []
    kinds = []
    for f in faults:
        if f["kind"] not in kinds:
            kinds.append(f["kind"])
    segs = {f["index"]: load_segment(os.path.join(out, f"load-{f['index']}.json")) for f in faults}
    print()
    print("faults by kind")
    head = (
        f"{'kind':<13}{'faults':>7}{'pause max':>10}{'med':>8}{'others':>8}{'resume':>8}"
        f"{'seq back':>9}{'jumps':>7}{'lost':>6}{'login':>7}{'upgr':>6}"
        f"{'load lost':>10}{'login':>7}{'upgr':>6}{'restarts':>9}"
    )
    print(f"{'':<13}{'':>7}{'ticks (worst node), s':>26}{'':>8}{'watchers (seq, failures)':>35}{'load tool':>23}")
    print(head)
    print("-" * len(head))
    secs = lambda ms: f"{ms / 1000:.2f}"
    for kind in kinds + ["all"]:
        fs = [f for f in faults if kind in ("all", f["kind"])]
        rows = [r for r in per if kind in ("all", r["kind"])]
        worst, others, resumes = [], [], []
        for f in fs:
            mine = [r for r in rows if r["index"] == f["index"]]
            if not mine:
                continue
            worst.append(max(int(r["max_gap_ms"]) for r in mine))
            bystanders = [int(r["max_gap_ms"]) for r in mine if r["node"] != f["target"]]
            if bystanders:
                others.append(max(bystanders))
            got = [int(r["resumed_after_ms"]) for r in mine if r["resumed_after_ms"]]
            if got:
                resumes.append(max(got))
        s = lambda k: sum(int(r[k]) for r in rows)
        ls = [segs[f["index"]] for f in fs if segs.get(f["index"])]
        restarts = sum(int(f["restarts"] or 0) for f in fs)
        print(
            f"{kind:<13}{len(fs):>7}"
            f"{secs(max(worst)) if worst else '-':>10}"
            f"{secs(statistics.median(worst)) if worst else '-':>8}"
            f"{secs(max(others)) if others else '-':>8}"
            f"{secs(max(resumes)) if resumes else '-':>8}"
            f"{s('seq_back'):>9}{s('seq_jumps'):>7}{s('lost'):>6}"
            f"{s('login_failed'):>7}{s('upgrade_failed'):>6}"
            f"{sum(x['dropped'] for x in ls):>10}{sum(x['logins'] for x in ls):>7}{sum(x['upgrades'] for x in ls):>6}"
            f"{restarts:>9}"
        )
    print(
        "pause: the longest gap between two ticks on the worst node around each fault (max, median over\n"
        "the faults); others: the same on the nodes that were not the target; resume: the first tick\n"
        "after that gap, after the fault (worst node). Watchers: one subscriber per node (seq back within\n"
        "a session, seq jumps, sessions lost, logins and upgrades refused with an HTTP status; connects\n"
        "to a node that is down are not counted). Load tool: the cycle's ticker-load run (sessions\n"
        "dropped, churn logins refused, churn reconnects and ramp connections that failed)."
    )

    # Master kills: the failover timeline.
    mk = [f for f in faults if f.get("promoted_ms")]
    if mk:
        print()
        print("failover timeline (seconds after the fault; resume = first tick after the longest gap)")
        for f in mk:
            t0 = int(f["t_ms"])
            rows = [r for r in per if r["index"] == f["index"]]
            res = ", ".join(
                f"{r['node']} {int(r['resumed_after_ms']) / 1000:.2f}" if r["resumed_after_ms"] else f"{r['node']} -"
                for r in rows
            )
            switched = switch_master_ms(out, t0, int(f["window_end_ms"]))
            logged = f" (+switch-master logged at {(switched - t0) / 1000:.2f})" if switched else ""
            print(
                f"  #{f['index']} {f['kind']} {f['target']}: Sentinel named {f['new_master']} at "
                f"{(int(f['promoted_ms']) - t0) / 1000:.2f}{logged}; ticks resumed: {res}"
            )
            if f["kind"] == "master-kill":
                late = [r for r in rows if not r["resumed_after_ms"] or int(r["resumed_after_ms"]) > args.resume_limit * 1000]
                for r in late:
                    why.append(
                        f"fault #{f['index']} (master-kill): {r['node']} resumed "
                        + (f"{int(r['resumed_after_ms']) / 1000:.2f} s" if r["resumed_after_ms"] else "never")
                        + f" after the kill (limit {args.resume_limit} s)"
                    )
        no_promo = [f for f in faults if f["kind"] == "master-kill" and not f.get("promoted_ms")]
        for f in no_promo:
            why.append(f"fault #{f['index']} (master-kill): no Sentinel promotion seen")

    # The load tool.
    lt = load_segments(out)
    print()
    print(
        f"load tool: {lt['segments']} segments, {lt['opened']} connections opened by the ramps, "
        f"{lt['closes']} churn closes, {lt['reconnected']} churn reconnects opened"
    )
    fmt = lambda d: ", ".join(f"{k} {v}" for k, v in sorted(d.items())) or "none"
    logins = {k: v for k, v in lt["churn_failed"].items() if is_login(k)}
    upgrades = {k: v for k, v in lt["churn_failed"].items() if not is_login(k)}
    print(f"  failed logins (churn token exchanges): {sum(logins.values())} ({fmt(logins)})")
    print(f"  failed upgrades/connects (churn reconnects): {sum(upgrades.values())} ({fmt(upgrades)})")
    print(f"  failed ramp connections: {sum(lt['ramp_failed'].values())} ({fmt(lt['ramp_failed'])})")
    print(f"  lost sessions (dropped): {sum(lt['dropped'].values())} ({fmt(lt['dropped'])})")
    print(
        f"  steady ticks {lt['ticks']}, missed {lt['missed']} "
        f"({100 * lt['missed'] / max(1, lt['ticks'] + lt['missed']):.1f} %: conflated while a subscriber or its node fell behind, or paused), "
        f"repeats {lt['repeats']}, out of order {lt['out_of_order']}"
    )
    if lt["repeats"] or lt["out_of_order"]:
        why.append(f"the load tool's subscribers saw seq repeat {lt['repeats']}x and go back {lt['out_of_order']}x")
    if lt["segments"] == 0:
        why.append("no load segment wrote its JSON")

    # Watchers over the whole run.
    seq_back = sum(int(r["seq_back"]) for r in per)
    if seq_back:
        why.append(f"a watcher saw seq go back {seq_back} time(s) within a session (see events-*.csv: seq_back)")
    stuck = [r for r in per if r["stuck"] == "1"]
    for r in stuck:
        why.append(f"fault #{r['index']} ({r['kind']}): {r['node']} had no tick up to the end of the fault's window")
    for f in faults:
        if f.get("note"):
            print(f"  note on fault #{f['index']}: {f['note']}")
        if f.get("healthy_after") == "0":
            why.append(f"fault #{f['index']} ({f['kind']}): the cluster was not healthy again before the next fault")

    # RSS and descriptors.
    results, problems = flat(out, args.warmup, args.max_growth)
    print()
    print(f"RSS and descriptors per process (quiet samples: just before each fault; warm-up {args.warmup:.0f} s of each process's life)")
    for node, pid, n, rss, fds, first, last in results:
        if rss is None:
            print(f"  {node} pid {pid}: {n} samples, too few after its warm-up to judge")
        else:
            print(
                f"  {node} pid {pid}: {n} samples over {first:.0f}–{last:.0f} s of its life; "
                f"RSS {rss[0] / 1024:.1f} → max {rss[1] / 1024:.1f} MiB ({rss[2]:+.1f} %), "
                f"descriptors {fds[0]} → max {fds[1]} ({fds[2]:+.1f} %)"
            )
    judged = [r for r in results if r[3] is not None]
    if not judged:
        why.append("no process had two quiet samples after its warm-up: RSS and descriptors not judged")
    why.extend(problems)

    final = os.path.join(out, "final.txt")
    if os.path.exists(final):
        with open(final) as f:
            for line in f:
                line = line.strip()
                if line.startswith("FAIL "):
                    why.append(line[5:])
                elif line:
                    print(f"  {line}")

    print()
    if why:
        print("FAIL:")
        for w in why:
            print(f"  - {w}")
        return 1
    print(f"PASS: {len(faults)} faults; every node serving at the end, seq never went back, no node stuck, RSS and descriptors within {args.max_growth} %")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("watch")
    w.add_argument("--out", required=True)
    w.add_argument("--key", required=True)
    w.add_argument("nodes", nargs="+")
    f = sub.add_parser("fault")
    f.add_argument("--out", required=True)
    f.add_argument("--index", required=True, type=int)
    s = sub.add_parser("summary")
    s.add_argument("--out", required=True)
    s.add_argument("--warmup", type=float, default=60)
    s.add_argument("--max-growth", type=float, default=5)
    s.add_argument("--resume-limit", type=float, default=6)
    args = p.parse_args()
    if args.cmd == "watch":
        watch(args)
        return 0
    if args.cmd == "fault":
        fault(args)
        return 0
    return summary(args)


if __name__ == "__main__":
    sys.exit(main())
