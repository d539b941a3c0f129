#!/usr/bin/python3
"""An independent client of the changes-only feed over permessage-deflate.

Uses only the standard library and `websockets` (Debian's python3-websockets, 10.4, which
only /usr/bin/python3 imports; its asyncio client offers permessage-deflate and
compresses what it sends). Two sessions at once:

- a changes-only session (`?delta=1`, deflate): it checks the negotiated extension, keeps
  the prices from full messages (replace) and changes messages (apply), checks that every
  `prev_seq` is the seq of the message before, sends a ping and a subscribe (compressed)
  and checks their answers and the full message of the new set;
- a plain session (no `?delta`, no extension) alongside: every tick, whole.

Then it compares the changes-only state with the plain session's prices at every seq both
saw, and prints a JSON summary on stdout (exit 0; 2 when the sessions could not be held).

    /usr/bin/python3 tools/delta_client.py --addr 127.0.0.1:8080 --token TOKEN
"""

import argparse
import asyncio
import json
import sys

import websockets

# How long one phase may wait for what it expects before the summary says it did not come.
PHASE_SECONDS = 10.0


class Wire:
    """Counts the data frames that crossed the wire compressed (RSV1) and not, by wrapping
    the permessage-deflate extension's encode and decode."""

    def __init__(self, ws):
        self.received = {"compressed": 0, "uncompressed": 0}
        self.sent = {"compressed": 0, "uncompressed": 0}
        for ext in ws.extensions:
            ext.decode = self._wrap(ext.decode, self.received, before=True)
            ext.encode = self._wrap(ext.encode, self.sent, before=False)

    @staticmethod
    def _wrap(inner, counts, before):
        def wrapped(frame, *args, **kwargs):
            out = inner(frame, *args, **kwargs)
            if frame.opcode in (1, 2):  # text, binary: the first frame of a message
                flagged = frame.rsv1 if before else out.rsv1
                counts["compressed" if flagged else "uncompressed"] += 1
            return out

        return wrapped


class Chain:
    """The state of a changes-only session: prices per symbol and the prev_seq chain."""

    def __init__(self):
        self.prices = {}  # symbol -> price, of the session's set
        self.session = set()  # the symbols of the last full message
        self.last_seq = None
        self.exact = False  # False before the first full message and after a break
        self.counts = {"full": 0, "changes": 0, "heartbeat": 0, "no_delta_key": 0}
        self.breaks = []
        self.outside_set = 0  # entries of a changes message outside the session's set
        self.snapshots = {}  # seq -> prices, while exact
        self.events = []  # in order: every message but a changes message with data

    def apply(self, m):
        if "delta" not in m:
            self.counts["no_delta_key"] += 1
            return
        if m["delta"] is False:
            self.counts["full"] += 1
            self.events.append(f"full {m['seq']} {len(m['data'])}")
            self.prices = {d["symbol"]: d["price"] for d in m["data"]}
            self.session = set(self.prices)
            self.exact = True
        else:
            self.counts["changes" if m["data"] else "heartbeat"] += 1
            if not m["data"]:
                self.events.append(f"heartbeat {m['seq']}")
            if self.last_seq is None or m.get("prev_seq") != self.last_seq:
                self.breaks.append({"seq": m["seq"], "prev_seq": m.get("prev_seq"), "last_seq": self.last_seq})
                self.exact = False
            for d in m["data"]:
                if d["symbol"] not in self.session:
                    self.outside_set += 1
                self.prices[d["symbol"]] = d["price"]
        self.last_seq = m["seq"]
        if self.exact:
            self.snapshots[m["seq"]] = dict(self.prices)


async def plain_session(uri, headers, plain, stop):
    """Every tick of a plain session, by seq, until `stop` is set."""
    async with websockets.connect(uri, extra_headers=headers, compression=None) as ws:
        plain["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions")
        plain["opened"].set()
        while not stop.is_set():
            try:
                text = await asyncio.wait_for(ws.recv(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            m = json.loads(text)
            if m.get("type") != "ticker":
                continue
            plain["frames"] += 1
            if "delta" in m:
                plain["with_delta_key"] += 1
            plain["ticks"][m["seq"]] = {d["symbol"]: d["price"] for d in m["data"]}


async def until(ws, chain, want, answers):
    """Reads messages into `chain` until `want(message)` holds; returns it, or None when
    PHASE_SECONDS pass first. Answers other than ticker messages are kept in `answers`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PHASE_SECONDS
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return None
        try:
            text = await asyncio.wait_for(ws.recv(), timeout=left)
        except asyncio.TimeoutError:
            return None
        m = json.loads(text)
        if m.get("type") == "ticker":
            chain.apply(m)
        else:
            answers.append(m)
            chain.events.append(m.get("type"))
        if want(m):
            return m


async def delta_session(uri, headers, args, summary):
    chain = Chain()
    answers = []
    async with websockets.connect(uri, extra_headers=headers, compression="deflate") as ws:
        summary["extensions"] = ws.response_headers.get("Sec-WebSocket-Extensions")
        summary["agreed"] = [type(e).__name__ for e in ws.extensions]
        wire = Wire(ws)
        # The session's first message, then enough changes to see partial ones.
        first = await until(ws, chain, lambda m: m.get("type") == "ticker", answers)
        summary["first"] = None if first is None else {k: first.get(k) for k in ("delta", "prev_seq")}
        await until(ws, chain, lambda m: chain.counts["changes"] >= args.changes, answers)

        await ws.send(json.dumps({"type": "ping"}))
        pong = await until(ws, chain, lambda m: m.get("type") == "pong", answers)
        summary["pong"] = pong is not None

        # A first subscribe starts from no symbol: the set becomes exactly these.
        await ws.send(json.dumps({"type": "subscribe", "symbols": args.subscribe}))
        subs = await until(ws, chain, lambda m: m.get("type") == "subscriptions", answers)
        summary["subscriptions"] = None if subs is None else subs.get("symbols")
        fulls = chain.counts["full"]
        full = await until(ws, chain, lambda m: chain.counts["full"] > fulls, answers)
        summary["full_after_subscribe"] = None if full is None else sorted(d["symbol"] for d in full["data"])
        changes = chain.counts["changes"]
        await until(ws, chain, lambda m: chain.counts["changes"] >= changes + args.changes, answers)

        summary["answers"] = [a.get("type") for a in answers]
        summary["wire"] = {"received": wire.received, "sent": wire.sent}
    summary["counts"] = chain.counts
    summary["breaks"] = chain.breaks
    summary["events"] = chain.events
    summary["entries_outside_set"] = chain.outside_set
    summary["final"] = {"seq": chain.last_seq, "prices": chain.prices, "exact": chain.exact}
    return chain


def compare(chain, ticks):
    """The changes-only state against the plain session's prices at every seq both saw."""
    common = sorted(seq for seq in chain.snapshots if seq in ticks)
    mismatches = []
    for seq in common:
        state = chain.snapshots[seq]
        plain = {s: ticks[seq].get(s) for s in state}
        if state != plain:
            mismatches.append({"seq": seq, "delta": state, "plain": plain})
    last = common[-1] if common else None
    return {
        "compared_seqs": len(common),
        "mismatches": mismatches[:5],
        "mismatch_count": len(mismatches),
        "last_common_seq": last,
        "last_common_equal": last is not None and not any(x["seq"] == last for x in mismatches),
    }


async def main(args):
    headers = {"Authorization": f"Bearer {args.token}"}
    base = f"ws://{args.addr}/ws/ticker"
    plain = {"opened": asyncio.Event(), "frames": 0, "with_delta_key": 0, "ticks": {}, "extensions": None}
    stop = asyncio.Event()
    # The plain session first, so that it has every tick the changes-only one is told of.
    plain_task = asyncio.create_task(plain_session(base, headers, plain, stop))
    await asyncio.wait_for(plain["opened"].wait(), PHASE_SECONDS)
    summary = {"websockets": websockets.__version__}
    try:
        chain = await delta_session(f"{base}?delta=1", headers, args, summary)
    finally:
        stop.set()
        await plain_task
    summary["plain"] = {k: plain[k] for k in ("frames", "with_delta_key", "extensions")}
    summary["comparison"] = compare(chain, plain["ticks"])
    return summary


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True, help="HOST:PORT of the server")
    p.add_argument("--token", required=True, help="a token from POST /auth/token")
    p.add_argument("--changes", type=int, default=50, help="changes messages to read in each phase")
    p.add_argument("--subscribe", default="BTC-USD", help="the symbols to subscribe to, comma-separated")
    a = p.parse_args()
    a.subscribe = a.subscribe.split(",")
    try:
        print(json.dumps(asyncio.run(main(a))))
    except (OSError, websockets.exceptions.WebSocketException, asyncio.TimeoutError) as e:
        print(f"delta_client: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(2)
