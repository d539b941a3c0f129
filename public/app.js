// Crypto Ticker page: API key -> token (POST /auth/token) -> WebSocket /ws/ticker.
//
// Test hooks (stable): #api-key, #connect, #status[data-state=needs-key|connecting|live|reconnecting],
// tr[data-symbol="BTC-USD"] with .price and a data-updates counter, #latency-ms,
// #msgs-per-sec, #gaps, #ping, #ping-rtt.
//
// Ticks arrive every 10 ms; messages only update state, and the screen is drawn once per
// animation frame. The token lives in sessionStorage, never in the address bar or console.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { symbols: new Map(), lastSeq: null, gaps: 0, msgs: 0, rate: 0, latency: null, dirty: false,
                  ws: null, attempt: 0, failuresBeforeOpen: 0, pingSent: 0, key: null };
  const SPARK_POINTS = 240; // 60 s at one point per 250 ms

  function setStatus(kind, text) { const s = $("status"); s.dataset.state = kind; s.textContent = text; }

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
    $("key-form").hidden = false; $("board").hidden = true;
    $("form-error").textContent = message || "";
    setStatus("needs-key", "Enter your API key");
    $("api-key").focus();
  }

  function connect() {
    const token = sessionStorage.getItem("ticker-token");
    if (!token) return needKey();
    $("key-form").hidden = true; $("board").hidden = false;
    setStatus(state.attempt ? "reconnecting" : "connecting", state.attempt ? "Reconnecting…" : "Connecting…");
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${proto}//${location.host}/ws/ticker?x-auth-token=${encodeURIComponent(token)}`);
    let opened = false;
    state.ws = ws;
    ws.onopen = () => { opened = true; state.attempt = 0; state.failuresBeforeOpen = 0; state.lastSeq = null; setStatus("live", "Live"); };
    ws.onmessage = (ev) => onMessage(ev.data);
    ws.onclose = () => {
      state.ws = null;
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

  function onMessage(text) {
    let m; try { m = JSON.parse(text); } catch { return; }
    if (m.type === "pong") { $("ping-rtt").textContent = `${(performance.now() - state.pingSent).toFixed(1)} ms`; return; }
    if (m.type !== "ticker") return;
    state.msgs += 1;
    if (state.lastSeq !== null && m.seq > state.lastSeq + 1) state.gaps += m.seq - state.lastSeq - 1;
    state.lastSeq = m.seq;
    const lat = Date.now() - m.ts_us / 1000;
    state.latency = state.latency === null ? lat : state.latency * 0.9 + lat * 0.1;
    const now = performance.now();
    for (const d of m.data) {
      let s = state.symbols.get(d.symbol);
      if (!s) { s = { first: d.price, price: d.price, prev: d.price, updates: 0, at: 0, spark: [], lastPoint: 0 }; state.symbols.set(d.symbol, s); }
      s.prev = s.price; s.price = d.price; s.updates += 1; s.at = d.timestamp;
      if (now - s.lastPoint >= 250) { s.spark.push(d.price); if (s.spark.length > SPARK_POINTS) s.spark.shift(); s.lastPoint = now; }
    }
    state.dirty = true;
  }

  function row(symbol) {
    let tr = document.querySelector(`tr[data-symbol="${CSS.escape(symbol)}"]`);
    if (tr) return tr;
    tr = document.createElement("tr");
    tr.dataset.symbol = symbol; tr.dataset.updates = "0";
    tr.innerHTML = `<th scope="row"></th><td class="price"></td><td class="change"></td><td><canvas width="320" height="72" aria-hidden="true"></canvas></td><td class="time"></td>`;
    tr.querySelector("th").textContent = symbol;
    $("rows").appendChild(tr);
    return tr;
  }

  const fmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function draw() {
    requestAnimationFrame(draw);
    if (!state.dirty) return;
    state.dirty = false;
    for (const [symbol, s] of state.symbols) {
      const tr = row(symbol);
      tr.dataset.updates = String(s.updates);
      const price = tr.querySelector(".price");
      price.textContent = fmt.format(s.price);
      price.classList.toggle("up", s.price > s.prev); price.classList.toggle("down", s.price < s.prev);
      const diff = s.price - s.first, pct = (diff / s.first) * 100;
      const change = tr.querySelector(".change");
      change.textContent = `${diff >= 0 ? "+" : ""}${fmt.format(diff)} (${pct >= 0 ? "+" : ""}${pct.toFixed(3)}%)`;
      change.className = "change " + (diff > 0 ? "up" : diff < 0 ? "down" : "");
      tr.querySelector(".time").textContent = new Date(s.at * 1000).toLocaleTimeString();
      spark(tr.querySelector("canvas"), s.spark, diff >= 0);
    }
    if (state.latency !== null) $("latency-ms").textContent = state.latency.toFixed(1);
    $("gaps").textContent = String(state.gaps);
  }

  function spark(canvas, points, up) {
    const ctx = canvas.getContext("2d"), w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    if (points.length < 2) return;
    const lo = Math.min(...points), hi = Math.max(...points), span = hi - lo || 1;
    ctx.beginPath();
    points.forEach((p, i) => {
      const x = (i / (SPARK_POINTS - 1)) * w, y = h - 4 - ((p - lo) / span) * (h - 8);
      i ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
    });
    ctx.strokeStyle = up ? "#3fb950" : "#f85149"; ctx.lineWidth = 3; ctx.stroke();
  }

  setInterval(() => { state.rate = state.msgs; state.msgs = 0; $("msgs-per-sec").textContent = String(state.rate); }, 1000);

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
    state.pingSent = performance.now(); state.ws.send(JSON.stringify({ type: "ping" }));
  });
  $("forget").addEventListener("click", () => { state.key = null; needKey(); });

  requestAnimationFrame(draw);
  if (sessionStorage.getItem("ticker-token")) connect(); else needKey();
})();
