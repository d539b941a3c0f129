// Crypto Ticker page: API key -> token (POST /auth/token) -> WebSocket /ws/ticker.
//
// Test hooks (stable): #api-key, #connect,
// #status[data-state=needs-key|connecting|live|stale|resyncing|reconnecting],
// tr[data-symbol="BTC-USD"] with .price, .time, a data-updates counter,
// data-stale="true|false" and data-subscribed="true|false", its canvas with data-points, data-x-min and data-x-max (the
// drawn sparkline's x range in canvas pixels), #latency-ms, #msgs-per-sec, #gaps, #ping,
// #ping-rtt; the picker: #symbol-list input[type=checkbox][value="BTC-USD"], #pick-all,
// #pick-none, #subscribed[data-symbols="A,B"][data-pending=true|false], #picker-error.
// The feed: #feed[data-mode=delta|plain][data-deflate=true|false] with data-fulls,
// data-changes and data-heartbeats (messages of each kind applied), #seq, #breaks,
// #last-msg[data-live=true|false], #sync-note[data-kind=broken|resynced|""], and on each
// row data-known="true|false", data-price (the number as received), data-seq (the last
// message that gave or confirmed that price; data-updates counts the entries applied, so
// a price that does not move gets none in a changes-only feed) and .age (how long ago its
// price last changed). #seq and the rows are written in the same frame, so they
// agree: the rows show the state as of that seq.
//
// Changes only: the page asks for `?delta=1` (`?delta=0` in the page's address asks for
// every tick) and the browser offers permessage-deflate by itself. A full message
// (`"delta":false`) replaces the prices of the session's symbols; a changes message
// (`"delta":true`) applies on top of the message named by its `prev_seq`, which must be the
// last one received. When it is not, the chain is broken: the break is counted (once until
// the state is exact again), the rows are marked unknown until an entry or the next full
// message gives their price again, and the status says so; a full message ends it
// ("resynced", naming the break). If none comes within RESYNC_MS
// the page reconnects, since a new session starts with a full message. A symbol missing
// from a changes message kept its price, and that message confirms it as of its seq.
//
// Stale prices: with a real price source each entry says whether its price is stale (the
// exchange is unreachable, silent, or does not list the symbol) and when the exchange
// priced it (`source_ts`). A stale row is marked and its "Updated" is the exchange's time
// (or "never"), not the tick's; while every shown price is stale the status says so
// instead of "Live", so a start price is never mistaken for a live one.
//
// Ticks arrive every 10 ms (changes only: those that moved a price, and one a second at
// least); messages only update state, and the screen is drawn once per
// animation frame. The token lives in sessionStorage, never in the address bar or console,
// and the page sets no cookie.
//
// Subscriptions: a session starts with every symbol, so the first ticker message after
// `welcome` names them all (the picker's list). The symbols the user wants (`wanted`) are
// kept apart from the set the server confirmed (`serverSet`, from `subscriptions`); `sync`
// sends one `subscribe`/`unsubscribe` at a time to bring the second to the first, through
// a message budget well under the server's rate limit, and again after every reconnect.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { symbols: new Map(), lastSeq: null, gaps: 0, msgs: 0, rate: 0, latency: null, dirty: false,
                  // The feed: "delta" or "plain" (from the first ticker message), whether the
                  // browser agreed permessage-deflate, when the last message came, chain breaks
                  // (kept across sessions, like gaps), messages of each kind, the time a broken
                  // chain was noticed (null: the state is exact) and the symbols of the last
                  // full message (the session's set, which every changes message confirms).
                  mode: null, deflate: false, lastMsgAt: null, breaks: 0,
                  counts: { fulls: 0, changes: 0, heartbeats: 0 }, broken: null, brokenAt: null, session: new Set(),
                  noteTimer: 0,
                  ws: null, attempt: 0, failuresBeforeOpen: 0, pingSent: 0, key: null,
                  // Every symbol the server has, in its display order (kept across reconnects).
                  all: [],
                  // Per connection: `all` learned from this session's first tick; the set the
                  // server confirmed (null: never changed, so every symbol); a change in flight.
                  learned: false, serverSet: null, inFlight: false, syncTimer: 0,
                  // What the user picked (null: every symbol); kept for the tab.
                  wanted: loadWanted(),
                  // Client messages: a token bucket of BUDGET a second, bursts of BUDGET.
                  budget: 0, budgetAt: 0 };
  const SPARK_MS = 60000; // the sparkline shows the last minute...
  const SPARK_STEP = 250; // ...at one point per 250 ms
  const SPARK_BREAK = 2000; // a longer silence (not subscribed, reconnecting) breaks the line
  const BUDGET = 5; // messages a second; the server closes a session beyond 10 (1008)
  const SILENT_MS = 3000; // a delta session hears at least one message a second
  const RESYNC_MS = 5000; // a broken chain with no full message by then: reconnect
  const NOTE_MS = 8000; // how long "resynced" stays on screen
  const DELTA = new URLSearchParams(location.search).get("delta") !== "0";
  state.budget = BUDGET;

  function setStatus(kind, text) { const s = $("status"); s.dataset.state = kind; s.textContent = text; }

  function loadWanted() {
    try { const v = JSON.parse(sessionStorage.getItem("ticker-symbols")); return Array.isArray(v) ? new Set(v) : null; }
    catch { return null; }
  }

  async function getToken(key) {
    const r = await fetch("/auth/token", { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify({ api_key: key }) });
    const body = await r.json().catch(() => ({}));
    if (!r.ok) { const e = new Error(body.error || ("HTTP " + r.status)); e.status = r.status; throw e; }
    return body.token;
  }

  function needKey(message) {
    sessionStorage.removeItem("ticker-token");
    if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
    resetSession();
    $("key-form").hidden = false; $("board").hidden = true;
    $("form-error").textContent = message || "";
    setStatus("needs-key", "Enter your API key");
    $("api-key").focus();
  }

  // What belongs to one WebSocket session; a new one starts with every symbol.
  function resetSession() {
    state.learned = false; state.serverSet = null; state.inFlight = false; state.lastSeq = null;
    // `broken` outlives the session: the prices stay unknown until a full message.
    state.mode = null; state.deflate = false; state.lastMsgAt = null; state.session = new Set();
    clearTimeout(state.syncTimer); state.syncTimer = 0;
    renderSubscribed(); renderFeed();
  }

  function connect() {
    const token = sessionStorage.getItem("ticker-token");
    if (!token) return needKey();
    $("key-form").hidden = true; $("board").hidden = false;
    setStatus(state.attempt ? "reconnecting" : "connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws/ticker?x-auth-token=${encodeURIComponent(token)}${DELTA ? "&delta=1" : ""}`);
    let opened = false;
    state.ws = ws;
    resetSession();
    ws.onopen = () => {
      opened = true; state.attempt = 0; state.failuresBeforeOpen = 0; setStatus("live", "Live");
      // What the browser and the server agreed, e.g. "permessage-deflate; server_no_context_takeover".
      state.deflate = /(^|,)\s*permessage-deflate\b/.test(ws.extensions); renderFeed();
      if (state.broken !== null) state.broken = performance.now(); // the new session's full message is due
    };
    ws.onmessage = (ev) => onMessage(ev.data);
    ws.onclose = () => {
      state.ws = null;
      resetSession();
      if (!opened) state.failuresBeforeOpen += 1;
      // A 401 before the upgrade looks like a plain failure to a browser; after a few
      // failed opens in a row, re-check the token by asking for a new one with the key.
      if (state.failuresBeforeOpen >= 3) return recheck();
      scheduleReconnect();
    };
  }

  async function recheck() {
    state.failuresBeforeOpen = 0;
    if (!state.key) return needKey("Your session ended; enter the key again.");
    try { sessionStorage.setItem("ticker-token", await getToken(state.key)); scheduleReconnect(); }
    catch (e) { if (e.status === 401) needKey("The API key was refused."); else scheduleReconnect(); }
  }

  function scheduleReconnect() {
    state.attempt += 1;
    const base = Math.min(30000, 500 * 2 ** Math.min(state.attempt, 6));
    const delay = base / 2 + Math.random() * base / 2; // jitter so clients do not return in step
    setStatus("reconnecting", `Reconnecting in ${Math.ceil(delay / 1000)} s`);
    setTimeout(connect, delay);
  }

  // Takes one message from the budget: 0 when it may be sent now, else the ms to wait.
  function takeBudget() {
    const now = performance.now();
    state.budget = Math.min(BUDGET, state.budget + (now - state.budgetAt) * BUDGET / 1000);
    state.budgetAt = now;
    if (state.budget >= 1) { state.budget -= 1; return 0; }
    return Math.ceil((1 - state.budget) * 1000 / BUDGET);
  }

  function send(message) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    ws.send(JSON.stringify(message));
    return true;
  }

  function onMessage(text) {
    let m; try { m = JSON.parse(text); } catch { return; }
    switch (m.type) {
      case "pong": $("ping-rtt").textContent = `${(performance.now() - state.pingSent).toFixed(1)} ms`; return;
      case "ticker": return onTick(m);
      case "subscriptions": return onSubscriptions(m.symbols);
      case "error": return onSubscriptionError(m);
      default: return;
    }
  }

  function onTick(m) {
    if (!Array.isArray(m.data) || typeof m.seq !== "number") return;
    state.msgs += 1;
    const now = performance.now();
    state.lastMsgAt = now;
    const lat = Date.now() - m.ts_us / 1000;
    state.latency = state.latency === null ? lat : state.latency * 0.9 + lat * 0.1;
    // A server without changes-only sessions ignores `?delta=1`: its frames have no "delta".
    state.mode = "delta" in m ? "delta" : "plain";
    if (state.mode === "delta") onChanges(m, now); else onEveryTick(m, now);
    if (!state.learned && (state.mode === "plain" || m.delta === false)) {
      // The session's first tick (or full message) carries every symbol the server has.
      state.learned = true;
      state.all = m.data.map((d) => d.symbol);
      for (const name of state.all) row(name); // rows in display order, before the first draw
      renderPicker(); renderSubscribed(); sync();
    }
    renderFeed();
    state.dirty = true;
  }

  // Every tick, whole: seq is global and every tick goes to every set, so only a jump is a
  // missed tick. The snapshot after `subscriptions` repeats the latest seq (neither a gap
  // nor counted).
  function onEveryTick(m, now) {
    if (state.lastSeq !== null && m.seq > state.lastSeq + 1) state.gaps += m.seq - state.lastSeq - 1;
    state.lastSeq = state.lastSeq === null ? m.seq : Math.max(state.lastSeq, m.seq);
    for (const d of m.data) { const s = apply(d, now); s.seq = m.seq; addPoint(s, d.price, now); }
    if (state.broken !== null) resynced(m.seq); // every tick carries the whole set
  }

  // Changes only: seq jumps are normal (a tick that moved none of the session's symbols
  // sends nothing); the `prev_seq` chain says whether the state is exact.
  function onChanges(m, now) {
    if (m.delta === false) {
      state.counts.fulls += 1;
      state.session = new Set(m.data.map((d) => d.symbol));
      for (const d of m.data) apply(d, now).known = true;
      if (state.broken !== null) resynced(m.seq);
    } else {
      state.counts[m.data.length ? "changes" : "heartbeats"] += 1;
      if (state.lastSeq === null || m.prev_seq !== state.lastSeq) chainBroken(m);
      // An entry is the symbol's whole price, so its row is exact again even in a broken chain.
      for (const d of m.data) apply(d, now).known = true;
    }
    state.lastSeq = m.seq;
    // The message confirms every price of the session's set as of its seq: the sparkline
    // goes on through a stretch without changes instead of breaking.
    for (const name of state.session) {
      const s = state.symbols.get(name);
      if (s && s.known) { s.seq = m.seq; s.dirty = true; addPoint(s, s.price, now); }
    }
  }

  // A break counts once: until a full message the state is unknown anyway, and the
  // changes that follow chain on from the message that broke it.
  function chainBroken(m) {
    if (state.broken !== null) return;
    state.breaks += 1;
    state.broken = performance.now();
    state.brokenAt = m.seq;
    for (const name of state.session) { const s = state.symbols.get(name); if (s) { s.known = false; s.dirty = true; } }
    note("broken", `Chain break at seq ${m.seq}: it follows ${m.prev_seq}, the last one here was ${state.lastSeq ?? "none"}. `
                   + "Prices marked ? are unknown until they change or a full update comes.", 0);
  }

  function resynced(seq) {
    state.broken = null;
    for (const s of state.symbols.values()) { s.known = true; s.dirty = true; }
    // Says what it repaired, so a break that a full message follows at once is still seen.
    note("resynced", `Resynced at seq ${seq} after the chain break at seq ${state.brokenAt}: a full update replaced every price.`, NOTE_MS);
  }

  // One entry onto its symbol's state; returns the state.
  function apply(d, now) {
    let s = state.symbols.get(d.symbol);
    if (!s) {
      s = { first: d.price, price: d.price, prev: d.price, updates: 0, seq: null, at: 0, stale: false, known: true,
            changedAt: now, spark: [], lastPoint: -Infinity, dirty: true };
      state.symbols.set(d.symbol, s);
    }
    // The simulation sends neither `stale` nor `source_ts`: its prices are made now, never stale.
    const stale = d.stale === true;
    if (d.price !== s.price || stale !== s.stale) s.changedAt = now;
    s.prev = s.price; s.price = d.price; s.updates += 1; s.dirty = true;
    s.stale = stale;
    // A real source's entries carry `stale`, and `source_ts` once the exchange priced the
    // symbol: "Updated" is the exchange's time then, not the tick's.
    s.at = "stale" in d ? ("source_ts" in d ? d.source_ts / 1000 : null) : d.timestamp;
    return s;
  }

  function addPoint(s, price, now) {
    if (now - s.lastPoint < SPARK_STEP) return;
    s.spark.push({ t: now, p: price }); s.lastPoint = now; s.dirty = true;
    while (s.spark.length > 1 && now - s.spark[0].t > SPARK_MS) s.spark.shift();
  }

  // A short line above the table: a chain break stays until the resync, which stays `ms`.
  function note(kind, text, ms) {
    const el = $("sync-note");
    el.dataset.kind = kind; el.textContent = text;
    clearTimeout(state.noteTimer);
    state.noteTimer = ms ? setTimeout(() => { el.dataset.kind = ""; el.textContent = ""; }, ms) : 0;
  }

  function onSubscriptions(symbols) {
    if (!Array.isArray(symbols)) return;
    // With an empty set the server sends no ticks, so the seq jump on the next one is not
    // a gap: start counting afresh.
    // (A changes-only session is judged by its prev_seq chain, which a full message restarts.)
    if (state.mode !== "delta" && state.serverSet !== null && state.serverSet.length === 0) state.lastSeq = null;
    state.serverSet = symbols; state.inFlight = false;
    // A symbol dropped from the set is no longer confirmed by the changes that follow (the
    // new set's full message comes after this answer, except for the empty set).
    state.session = new Set([...state.session].filter((s) => symbols.includes(s)));
    $("picker-error").textContent = "";
    markRows(); renderSubscribed(); sync();
  }

  function onSubscriptionError(m) {
    state.inFlight = false;
    const names = Array.isArray(m.symbols) && m.symbols.length ? `: ${m.symbols.join(", ")}` : "";
    $("picker-error").textContent = `The server refused the change (${m.error || "error"}${names}).`;
    // The session keeps its previous set; so does the picker, rather than asking again.
    setWanted(state.serverSet === null ? state.all : state.serverSet, false);
  }

  // Sends the next change that brings the server's set to the wanted one: removals first
  // (a smaller set never hits a limit), one message in flight, within the budget.
  function sync() {
    clearTimeout(state.syncTimer); state.syncTimer = 0;
    if (!state.learned || state.inFlight || !state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    const current = new Set(state.serverSet ?? state.all);
    const wanted = state.wanted ?? new Set(state.all);
    const remove = state.all.filter((s) => current.has(s) && !wanted.has(s));
    const add = state.all.filter((s) => wanted.has(s) && !current.has(s));
    // A session that never chose has every symbol, so its first change is a removal: a
    // first `unsubscribe` starts from all (a first `subscribe` would start from none).
    const message = remove.length ? { type: "unsubscribe", symbols: remove }
                  : add.length ? { type: "subscribe", symbols: add } : null;
    if (!message) return;
    const wait = takeBudget();
    if (wait > 0) { state.syncTimer = setTimeout(sync, wait); return; }
    if (send(message)) state.inFlight = true;
  }

  function setWanted(list, apply = true) {
    const all = state.all.length > 0 && state.all.every((s) => list.includes(s));
    state.wanted = all ? null : new Set(list);
    if (state.wanted) sessionStorage.setItem("ticker-symbols", JSON.stringify([...state.wanted]));
    else sessionStorage.removeItem("ticker-symbols");
    if (apply) $("picker-error").textContent = "";
    renderPicker(); renderSubscribed();
    if (apply) sync();
  }

  function isSubscribed(symbol) { return state.serverSet === null || state.serverSet.includes(symbol); }

  function markRows() { for (const s of state.symbols.values()) s.dirty = true; state.dirty = true; }

  function describe(list) {
    if (list.length === 0) return "none";
    if (list.length === state.all.length && state.all.every((s) => list.includes(s))) return "all symbols";
    return list.length > 8 ? `${list.slice(0, 8).join(", ")} and ${list.length - 8} more` : list.join(", ");
  }

  function renderPicker() {
    const list = $("symbol-list");
    const names = state.all.join(",");
    if (list.dataset.symbols !== names) {
      list.textContent = "";
      for (const symbol of state.all) {
        const label = document.createElement("label");
        const input = document.createElement("input");
        input.type = "checkbox"; input.name = "symbol"; input.value = symbol;
        label.append(input, document.createTextNode(symbol));
        list.append(label);
      }
      list.dataset.symbols = names;
    }
    for (const input of list.querySelectorAll("input")) input.checked = !state.wanted || state.wanted.has(input.value);
    $("picker").disabled = state.all.length === 0;
  }

  function renderSubscribed() {
    const el = $("subscribed");
    if (!state.learned) {
      el.dataset.symbols = ""; el.dataset.pending = "true";
      el.textContent = state.all.length ? "Subscribed: (re)connecting…" : "Subscribed: waiting for the server";
      return;
    }
    const current = state.serverSet ?? state.all;
    const wanted = state.wanted ?? new Set(state.all);
    const pending = current.length !== state.all.filter((s) => wanted.has(s)).length || current.some((s) => !wanted.has(s));
    el.dataset.symbols = current.join(","); el.dataset.pending = String(pending);
    el.textContent = `Subscribed: ${describe(current)}${pending ? " (updating…)" : ""}`;
  }

  function row(symbol) {
    let tr = document.querySelector(`tr[data-symbol="${CSS.escape(symbol)}"]`);
    if (tr) return tr;
    tr = document.createElement("tr");
    tr.dataset.symbol = symbol; tr.dataset.updates = "0"; tr.dataset.subscribed = "true";
    tr.dataset.known = "true";
    tr.innerHTML = `<th scope="row"><span class="name"></span><span class="tag">not subscribed</span></th><td class="price"></td><td class="change"></td><td><canvas width="320" height="72" aria-hidden="true"></canvas></td><td><span class="time"></span><span class="age"></span></td>`;
    tr.querySelector(".name").textContent = symbol;
    $("rows").appendChild(tr);
    return tr;
  }

  const fmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function draw() {
    requestAnimationFrame(draw);
    if (!state.dirty) return;
    state.dirty = false;
    for (const [symbol, s] of state.symbols) {
      if (!s.dirty) continue;
      s.dirty = false;
      const tr = row(symbol);
      const subscribed = isSubscribed(symbol);
      tr.dataset.subscribed = String(subscribed);
      tr.classList.toggle("unsubscribed", !subscribed);
      tr.dataset.updates = String(s.updates);
      tr.dataset.known = String(s.known); tr.dataset.price = String(s.price); tr.dataset.seq = String(s.seq ?? "");
      tr.classList.toggle("unknown", subscribed && !s.known);
      const price = tr.querySelector(".price");
      price.textContent = (subscribed && !s.known ? "? " : "") + fmt.format(s.price);
      price.classList.toggle("up", s.price > s.prev); price.classList.toggle("down", s.price < s.prev);
      const diff = s.price - s.first, pct = (diff / s.first) * 100;
      const change = tr.querySelector(".change");
      change.textContent = `${diff >= 0 ? "+" : ""}${fmt.format(diff)} (${pct >= 0 ? "+" : ""}${pct.toFixed(3)}%)`;
      change.className = "change " + (diff > 0 ? "up" : diff < 0 ? "down" : "");
      tr.dataset.stale = String(s.stale);
      tr.classList.toggle("stale", s.stale);
      tr.querySelector(".tag").textContent = !subscribed ? "not subscribed" : !s.known ? "unknown" : s.stale ? "stale" : "not subscribed";
      tr.querySelector(".time").textContent = s.at === null ? "never" : new Date(s.at * 1000).toLocaleTimeString();
      tr.querySelector(".age").textContent = `changed ${ago(performance.now() - s.changedAt)}`;
      spark(tr.querySelector("canvas"), s.spark, diff >= 0);
    }
    showFreshness();
    if (state.latency !== null) $("latency-ms").textContent = state.latency.toFixed(1);
    $("gaps").textContent = String(state.gaps);
    $("breaks").textContent = String(state.breaks);
    $("seq").textContent = state.lastSeq === null ? "–" : String(state.lastSeq);
  }

  function ago(ms) {
    const sec = Math.floor(ms / 1000);
    return sec < 1 ? "just now" : sec < 120 ? `${sec} s ago` : `${Math.floor(sec / 60)} min ago`;
  }

  // How the feed arrives: changes only or every tick, compressed or not, and how many
  // messages of each kind were applied.
  function renderFeed() {
    const el = $("feed");
    el.dataset.mode = state.mode ?? ""; el.dataset.deflate = String(state.deflate);
    for (const [k, v] of Object.entries(state.counts)) el.dataset[k] = String(v);
    const mode = state.mode === "delta" ? "changes only" : state.mode === "plain" ? "every tick" : "–";
    el.textContent = state.deflate ? `${mode} · deflate` : mode;
    $("gaps-stat").hidden = state.mode === "delta"; $("breaks-stat").hidden = state.mode !== "delta";
  }

  // How long the subscribed feed has been silent, in ms (0 while nothing is expected).
  function silence() {
    const open = state.ws && state.ws.readyState === WebSocket.OPEN;
    if (!open || state.lastMsgAt === null || (state.serverSet !== null && state.serverSet.length === 0)) return 0;
    return performance.now() - state.lastMsgAt;
  }

  // Once a second: the rate, the age of the last message and of each price, and a broken
  // chain that no full message has repaired (a new session starts with one).
  function everySecond() {
    state.rate = state.msgs; state.msgs = 0; $("msgs-per-sec").textContent = String(state.rate);
    const last = $("last-msg"), open = state.ws && state.ws.readyState === WebSocket.OPEN;
    last.textContent = open && state.lastMsgAt !== null ? ago(performance.now() - state.lastMsgAt) : "–";
    last.dataset.live = String(open && state.lastMsgAt !== null && silence() < SILENT_MS && state.broken === null);
    if (open && state.broken !== null && performance.now() - state.broken > RESYNC_MS) {
      note("broken", "No full update came after the chain break: reconnecting.", 0);
      state.ws.close();
    }
    markRows();
  }

  // "Live" only while some shown price is live: a session whose every subscribed price
  // is stale says so (the connection is up, the prices are not).
  function showFreshness() {
    const status = $("status");
    if (!["live", "stale", "resyncing"].includes(status.dataset.state)) return;
    const shown = [...state.symbols.entries()].filter(([name]) => isSubscribed(name));
    const stale = shown.filter(([, s]) => s.stale).length, quiet = silence();
    const [kind, text] = state.broken !== null ? ["resyncing", "Resyncing: some prices unknown"]
      : quiet >= SILENT_MS ? ["stale", `No update for ${Math.floor(quiet / 1000)} s`]
      : shown.length > 0 && stale === shown.length ? ["stale", "Prices stale: price source unreachable"]
      : ["live", stale > 0 ? `Live (${stale} stale)` : "Live"];
    // Only a change is written, so a screen reader hears it once.
    if (status.dataset.state !== kind || status.textContent !== text) setStatus(kind, text);
  }

  // The x axis is the last minute once there is a minute of points; before that it is
  // the span the points cover, so a young line fills the width instead of hugging the
  // left edge. Points are placed by time, so a silence shows as a break, not a slope.
  function spark(canvas, points, up) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    canvas.dataset.points = String(points.length);
    if (points.length < 2) { canvas.dataset.xMin = canvas.dataset.xMax = ""; return; }
    const end = points[points.length - 1].t;
    const span = Math.min(SPARK_MS, end - points[0].t) || 1, start = end - span;
    let lo = Infinity, hi = -Infinity;
    for (const { p } of points) { lo = Math.min(lo, p); hi = Math.max(hi, p); }
    const range = hi - lo || 1;
    let xMin = Infinity, xMax = -Infinity;
    ctx.beginPath();
    points.forEach(({ t, p }, i) => {
      const x = Math.max(0, (t - start) / span) * w, y = h - 4 - ((p - lo) / range) * (h - 8);
      xMin = Math.min(xMin, x); xMax = Math.max(xMax, x);
      i && t - points[i - 1].t <= SPARK_BREAK ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.strokeStyle = up ? "#3fb950" : "#f85149"; ctx.lineWidth = 3; ctx.stroke();
    canvas.dataset.xMin = xMin.toFixed(1); canvas.dataset.xMax = xMax.toFixed(1);
  }

  setInterval(everySecond, 1000);

  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const key = $("api-key").value.trim();
    $("form-error").textContent = "";
    $("connect").disabled = true;
    try {
      sessionStorage.setItem("ticker-token", await getToken(key));
      state.key = key; // kept in memory only, to renew the token after a server restart
      $("api-key").value = "";
      state.attempt = 0; connect();
    } catch (e) { $("form-error").textContent = e.message; }
    finally { $("connect").disabled = false; }
  });
  $("ping").addEventListener("click", () => {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
    // Pings share the message budget with subscription changes: a fast clicker is slowed
    // down here, never closed by the server's rate limit.
    if (takeBudget() > 0) { $("ping-rtt").textContent = "slow down"; return; }
    state.pingSent = performance.now(); send({ type: "ping" });
  });
  $("symbol-list").addEventListener("change", () => {
    setWanted([...$("symbol-list").querySelectorAll("input:checked")].map((i) => i.value));
  });
  $("pick-all").addEventListener("click", () => setWanted(state.all));
  $("pick-none").addEventListener("click", () => setWanted([]));
  $("forget").addEventListener("click", () => { state.key = null; needKey(); });

  // A page left for another keeps no session open (in the back-forward cache it would hold
  // one the server keeps feeding); it connects again if it is shown again.
  addEventListener("pagehide", () => { if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; } });
  addEventListener("pageshow", (ev) => { if (ev.persisted && !state.ws && sessionStorage.getItem("ticker-token")) connect(); });

  requestAnimationFrame(draw);
  if (sessionStorage.getItem("ticker-token")) connect(); else needKey();
})();
