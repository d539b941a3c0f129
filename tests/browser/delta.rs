//! The page's changes-only feed (`?delta=1`) in Chromium, which offers permessage-deflate by
//! itself: the server counts a deflate + delta session, the page applies full and changes
//! messages on an unbroken `prev_seq` chain, and its prices at a seq equal those of an
//! independent plain session at the same seq. Then a message dropped inside the browser
//! breaks the chain: the page counts and shows it, and resyncs; and `?delta=0` in the
//! page's address gets every tick again.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::json;

use super::*;

/// Open sessions of one mode, from the server's gauge.
fn sessions(s: &TestServer, mode: &str) -> f64 {
    s.metric(&format!("ticker_ws_sessions_by_mode{{mode=\"{mode}\"}}"))
}

/// Waits until the server counts `n` open sessions of `mode` (a closed one is counted
/// until the server reads its close).
fn wait_sessions(s: &TestServer, mode: &str, n: f64) {
    let deadline = Instant::now() + PATIENCE;
    while sessions(s, mode) != n {
        assert!(Instant::now() < deadline, "{mode} sessions: {} not {n}", sessions(s, mode));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The page's feed readout, as a JavaScript expression.
const FEED: &str = "document.getElementById('feed').dataset";
const BREAKS: &str = "Number(document.getElementById('breaks').textContent)";

/// Waits until the page shows `mode` ("delta" or "plain") over a deflate connection.
fn wait_for_feed(b: &mut Browser, mode: &str) {
    b.wait_for(
        &format!("a {mode} feed over permessage-deflate"),
        &format!("{FEED}.mode === '{mode}' && {FEED}.deflate === 'true'"),
    );
}

/// The page's state in one evaluation (between two frames): the seq its rows are as of,
/// and each subscribed row's price as received; `None` while it shows no seq (a new
/// session whose first message is not drawn yet).
fn page_state(b: &mut Browser) -> Option<(u64, Vec<(String, f64)>)> {
    let v = b.eval(
        "[Number(document.getElementById('seq').textContent), \
          [...document.querySelectorAll('tr[data-symbol]')] \
            .filter(tr => tr.dataset.subscribed === 'true') \
            .map(tr => [tr.dataset.symbol, Number(tr.dataset.price)])]",
    );
    let seq = v[0].as_u64()?;
    let rows = v[1]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[0].as_str().expect("symbol").to_owned(), r[1].as_f64().expect("price")))
        .collect();
    Some((seq, rows))
}

/// Prices of a plain session's ticks, by seq.
type Ticks = HashMap<u64, Vec<(String, f64)>>;

/// Reads the plain session until it has had tick `seq`; returns that tick's prices (`None`
/// if it was not sent to it). Every tick read is kept, so the page may lag behind.
fn plain_prices_at(ws: &mut Ws, ticks: &mut Ticks, seq: u64) -> Option<Vec<(String, f64)>> {
    while ticks.keys().max().is_none_or(|&last| last < seq) {
        let tick = next_of_type(ws, "ticker");
        assert!(tick.get("delta").is_none(), "a plain session's frame has no delta: {tick}");
        let data = tick["data"].as_array().expect("data");
        let prices = data
            .iter()
            .map(|d| (d["symbol"].as_str().unwrap().to_owned(), d["price"].as_f64().unwrap()))
            .collect();
        ticks.insert(tick["seq"].as_u64().expect("seq"), prices);
    }
    ticks.get(&seq).cloned()
}

/// The page's prices at its seq are the plain session's prices at that tick: every change
/// applied, and a price missing from a changes message kept (it had not moved).
fn page_agrees_with_a_plain_session(b: &mut Browser, s: &TestServer) {
    let mut plain = s.ws(&s.token());
    let mut ticks = Ticks::new();
    let deadline = Instant::now() + PATIENCE;
    loop {
        // The plain session is open before the page's seq is read, so that tick is on its way.
        let state = page_state(b);
        if let Some((seq, mut page)) = state.clone()
            && let Some(mut expected) = plain_prices_at(&mut plain, &mut ticks, seq)
        {
            page.sort_by(|a, b| a.0.cmp(&b.0));
            expected.sort_by(|a, b| a.0.cmp(&b.0));
            // The same decimal, read by two JSON parsers.
            let same = page.len() == expected.len()
                && page
                    .iter()
                    .zip(&expected)
                    .all(|(p, e)| p.0 == e.0 && (p.1 - e.1).abs() <= 1e-9 * e.1.abs().max(1.0));
            assert!(same, "the page's prices as of seq {seq}: {page:?}, the tick's: {expected:?}");
            return;
        }
        // No seq drawn yet, the page's seq before the plain session opened, or a tick
        // conflated away.
        assert!(
            Instant::now() < deadline,
            "no tick of the page's seq ({state:?}) reached the plain session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_page_applies_a_compressed_changes_only_feed_in_chromium() {
    let Some(chromium) = chromium_or_skip() else { return };
    // A realistic feed: each symbol moves in about a third of the ticks.
    let s = TestServer::start_with(Opts::default().arg("--sim-activity", "0.3"));
    let mut b = Browser::launch(&chromium, &[]);
    b.call("Page.addScriptToEvaluateOnNewDocument", json!({ "source": DROP_ONE_CHANGE }));
    open_and_sign_in(&mut b, &format!("http://{}/", s.addr), &s.demo_key);
    wait_for_feed(&mut b, "delta");
    assert_eq!(sessions(&s, "delta_deflate"), 1.0, "the server sees the page's deflate + delta");
    assert_eq!(sessions(&s, "plain"), 0.0);

    // Several changes applied to every row, and prices move on screen.
    b.wait_for("changes applied", &format!("Number({FEED}.changes) > 50"));
    wait_for_live_prices(&mut b, &THREE_NAMES);
    b.wait_for(
        "live readouts",
        "document.getElementById('last-msg').dataset.live === 'true' \
         && /^[0-9]+$/.test(document.getElementById('seq').textContent)",
    );
    page_agrees_with_a_plain_session(&mut b, &s);
    // Changes only: fewer entries than every symbol in every message.
    let v = b.eval(&format!("[Number({FEED}.fulls), Number({FEED}.changes), {UPDATES}]"));
    let [fulls, changes, entries] = [0, 1, 2].map(|i| v[i].as_f64().unwrap());
    assert!(fulls >= 1.0, "a full message at the start of the session");
    assert!(entries < (fulls + changes) * 3.0, "{entries} entries in {changes} changes messages");
    assert_eq!(b.eval(BREAKS), json!(0), "no chain break");
    assert_eq!(b.eval("document.getElementById('sync-note').dataset.kind"), json!(""));
    assert_eq!(b.eval("document.getElementById('breaks-stat').hidden"), json!(false));
    assert_eq!(b.eval("document.getElementById('status').dataset.state"), json!("live"));
    b.screenshot("delta-live.png");

    // A message lost inside the browser: the next one's prev_seq names it.
    let sessions_before = s.metric("ticker_ws_sessions_total");
    b.eval("window.dropNextChanges = true");
    b.wait_for("the break counted", &format!("{BREAKS} === 1"));
    b.wait_for(
        "the break shown",
        "document.getElementById('sync-note').dataset.kind === 'broken' \
         && document.getElementById('status').dataset.state === 'resyncing'",
    );
    b.screenshot("delta-break.png");
    // The page waits for a full message; in this session none reaches it (the server knows
    // of no gap, and any full one it sends after a conflation is dropped too), so it
    // reconnects, and the new session's full message resyncs it.
    b.wait_for(
        "resynced",
        "document.getElementById('sync-note').dataset.kind === 'resynced' \
         && document.getElementById('status').dataset.state === 'live' \
         && [...document.querySelectorAll('tr[data-symbol]')].every(tr => tr.dataset.known === 'true')",
    );
    assert_eq!(b.eval(BREAKS), json!(1), "one break, counted once");
    let note = b.eval("document.getElementById('sync-note').textContent");
    assert!(
        note.as_str().is_some_and(|n| n.contains("after the chain break at seq")),
        "the resync says what it repaired: {note}"
    );
    assert_eq!(s.metric("ticker_ws_sessions_total"), sessions_before + 1.0, "one reconnection");
    page_agrees_with_a_plain_session(&mut b, &s);
    wait_sessions(&s, "delta_deflate", 1.0); // the page's new session only

    // `?delta=0` asks for every tick: a deflate session without changes only.
    b.call("Page.navigate", json!({ "url": format!("http://{}/?delta=0", s.addr) }));
    b.wait_for(
        "the page again",
        "document.readyState === 'complete' && !!document.getElementById('feed')",
    );
    wait_for_feed(&mut b, "plain");
    wait_for_live_prices(&mut b, &THREE_NAMES);
    wait_sessions(&s, "delta_deflate", 0.0);
    assert_eq!(sessions(&s, "deflate"), 1.0);
    assert_eq!(b.eval("document.getElementById('gaps-stat').hidden"), json!(false));
}

/// Installed before the page's own script: when the test sets `window.dropNextChanges`, the
/// next changes message with data never reaches the page, nor does any full message of that
/// connection after it (so only a new session repairs the chain).
const DROP_ONE_CHANGE: &str = r#"
(() => {
  const Real = window.WebSocket;
  window.WebSocket = class extends Real {
    set onmessage(handler) {
      let dropped = false;
      super.onmessage = (ev) => {
        if (window.dropNextChanges && /"delta":true/.test(ev.data) && !/"data":\[\]/.test(ev.data)) {
          window.dropNextChanges = false;
          dropped = true;
          return;
        }
        if (dropped && /"delta":false/.test(ev.data)) return;
        handler(ev);
      };
    }
  };
})();
"#;

/// The checks a page in a changes-only session passes at the end of any run.
pub(super) fn no_chain_break(b: &mut Browser) {
    assert_eq!(b.eval(&format!("{FEED}.mode")), json!("delta"));
    assert_eq!(b.eval(BREAKS), json!(0), "no chain break");
}
