//! Real prices (`--source coinbase|binance|kraken`): the real server binary against a
//! fake exchange in the test ([`fake`]), plain `ws://` and TLS from a test CA. Every
//! wait is a hang guard ([`PATIENCE`]), never a timing assertion.

mod fake;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

use crate::tls::Ca;
use crate::util::{Opts, PATIENCE, TestServer, Ws, next_of_type};
use fake::{FakeExchange, Kind, now_ms};

/// A server fed by `fake`, ticking every 20 ms.
fn serve_from(fake: &FakeExchange, extra: &[(&str, &str)]) -> TestServer {
    let mut opts = Opts::default()
        .arg("--source", fake.kind.flag())
        .arg("--source-url", &fake.url())
        .arg("--tick", "20ms");
    for (flag, value) in extra {
        opts = opts.arg(flag, value);
    }
    TestServer::start_with(opts)
}

fn subscriber(s: &TestServer) -> Ws {
    let mut ws = s.ws(&s.token());
    next_of_type(&mut ws, "welcome");
    ws
}

fn entry<'a>(tick: &'a Value, symbol: &str) -> &'a Value {
    tick["data"].as_array().unwrap().iter().find(|e| e["symbol"] == symbol).unwrap()
}

/// Reads ticks until one satisfies `pred`; returns it.
fn until_tick(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let tick = next_of_type(ws, "ticker");
        if pred(&tick) {
            return tick;
        }
        assert!(Instant::now() < deadline, "no tick with {what}; last: {tick}");
    }
}

fn all_stale(tick: &Value) -> bool {
    tick["data"].as_array().unwrap().iter().all(|e| e["stale"] == true)
}

/// The subscribe request is the exchange's documented one, and a price the exchange
/// sends reaches subscribers with its exchange time, fresh.
fn prices_flow(kind: Kind, expected_subscribe: Value) {
    let fake = FakeExchange::start(kind);
    let s = serve_from(&fake, &[]);
    let subscribe: Value = serde_json::from_str(&fake.wait_received(1)[0]).unwrap();
    assert_eq!(subscribe, expected_subscribe);

    let mut ws = subscriber(&s);
    let ts = now_ms() - 1500;
    fake.publish_price("ETH-USD", 2612.34, ts, 77);
    let tick =
        until_tick(&mut ws, "the new ETH-USD price", |t| entry(t, "ETH-USD")["price"] == 2612.34);
    let eth = entry(&tick, "ETH-USD");
    assert_eq!(eth["source_ts"], ts, "{tick}");
    assert_eq!(eth["stale"], false, "{tick}");
    // Symbols without an upstream price yet: start price, no source_ts, stale.
    let sol = entry(&tick, "SOL-USD");
    assert_eq!((sol["price"].as_f64(), sol["stale"].as_bool()), (Some(95.0), Some(true)));
    assert!(sol.get("source_ts").is_none(), "{tick}");
    assert_eq!(s.metric("ticker_source_up"), 1.0);
    assert!(s.metric("ticker_source_messages_total{kind=\"price\"}") >= 1.0);
}

#[test]
fn coinbase_is_subscribed_to_ticker_and_heartbeat_and_its_prices_reach_subscribers() {
    prices_flow(
        Kind::Coinbase,
        serde_json::json!({"type":"subscribe","product_ids":["BTC-USD","ETH-USD","SOL-USD"],
            "channels":["ticker","heartbeat"]}),
    );
}

#[test]
fn binance_is_subscribed_to_usdt_trade_streams_and_its_prices_reach_subscribers() {
    prices_flow(
        Kind::Binance,
        serde_json::json!({"method":"SUBSCRIBE",
            "params":["btcusdt@trade","ethusdt@trade","solusdt@trade"],"id":1}),
    );
}

#[test]
fn kraken_is_subscribed_to_the_ticker_channel_and_its_prices_reach_subscribers() {
    prices_flow(
        Kind::Kraken,
        serde_json::json!({"method":"subscribe",
            "params":{"channel":"ticker","symbol":["BTC/USD","ETH/USD","SOL/USD"]}}),
    );
}

#[test]
fn the_simulation_sends_entries_without_source_ts_or_stale() {
    let s = TestServer::start();
    let mut ws = subscriber(&s);
    let tick = next_of_type(&mut ws, "ticker");
    for e in tick["data"].as_array().unwrap() {
        assert_eq!(e.as_object().unwrap().len(), 3, "symbol, price, timestamp only: {e}");
    }
}

#[test]
fn a_killed_upstream_marks_every_symbol_stale_then_reconnects_and_resubscribes() {
    let mut fake = FakeExchange::start(Kind::Coinbase);
    // Staleness by age is out of the way: only the disconnection can make prices stale.
    let s = serve_from(&fake, &[("--stale-after", "10m")]);
    fake.wait_received(1);
    let mut ws = subscriber(&s);
    for (i, sym) in ["BTC-USD", "ETH-USD", "SOL-USD"].iter().enumerate() {
        fake.publish_price(sym, 100.0 + i as f64, now_ms(), 10);
    }
    until_tick(&mut ws, "every symbol fresh", |t| {
        t["data"].as_array().unwrap().iter().all(|e| e["stale"] == false)
    });
    let health = s.get("/healthz");
    assert_eq!((health.status, health.json()["source"].as_str()), (200, Some("live")));

    fake.kill();
    let stale = until_tick(&mut ws, "every symbol stale", all_stale);
    assert_eq!(entry(&stale, "ETH-USD")["price"], 101.0, "the last price stays: {stale}");
    s.wait_for_log("source: connection lost");
    // A node whose own source is down does not look healthy.
    let health = s.get("/healthz");
    assert_eq!(health.status, 503, "{}", health.text());
    assert_eq!(health.json()["reason"], "price source down");
    assert_eq!(health.json()["source"], "down");

    fake.revive();
    let requests = fake.wait_received(2);
    assert_eq!(requests[1], requests[0], "the same subscription again");
    // Sequence numbers start afresh on a new connection (a restarted exchange).
    fake.publish_price("BTC-USD", 200.5, now_ms(), 1);
    until_tick(&mut ws, "the price after the reconnect", |t| {
        entry(t, "BTC-USD")["price"] == 200.5 && entry(t, "BTC-USD")["stale"] == false
    });
    assert!(s.metric("ticker_source_reconnects_total") >= 1.0);
    assert_eq!(s.get("/healthz").status, 200, "live again");
}

#[test]
fn a_silent_upstream_is_declared_dead_and_replaced() {
    let fake = FakeExchange::start(Kind::Kraken);
    let s = serve_from(&fake, &[("--source-timeout", "1s")]);
    fake.wait_received(1);
    fake.set_silent(true);
    s.wait_for_log("silent for");
    let deadline = Instant::now() + PATIENCE;
    while fake.connections() < 2 {
        assert!(Instant::now() < deadline, "no reconnect after the silence");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut ws = subscriber(&s);
    fake.set_silent(false);
    fake.publish_price("BTC-USD", 321.0, now_ms(), 5);
    until_tick(&mut ws, "the price after the silence", |t| entry(t, "BTC-USD")["price"] == 321.0);
}

#[test]
fn malformed_and_unknown_upstream_messages_are_skipped_and_counted() {
    for kind in [Kind::Coinbase, Kind::Binance, Kind::Kraken] {
        let fake = FakeExchange::start(kind);
        let s = serve_from(&fake, &[]);
        fake.wait_received(1);
        fake.publish("not json at all".into());
        fake.publish(r#"{"truncated":"#.into());
        fake.publish(kind.price("BTC-USD", 1.0, now_ms(), 3).replace("1", "x"));
        let unknown = match kind {
            Kind::Coinbase => r#"{"type":"l2update","product_id":"BTC-USD","changes":[]}"#,
            Kind::Binance => r#"{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,"b":[],"a":[]}"#,
            Kind::Kraken => r#"{"channel":"book","type":"update","data":[]}"#,
        };
        fake.publish(unknown.into());
        fake.publish_price("BTC-USD", 4242.42, now_ms(), 9);
        let mut ws = subscriber(&s);
        until_tick(&mut ws, "the price after the junk", |t| {
            entry(t, "BTC-USD")["price"] == 4242.42
        });
        assert!(s.metric("ticker_source_messages_total{kind=\"malformed\"}") >= 2.0, "{kind:?}");
        assert!(s.metric("ticker_source_messages_total{kind=\"unknown\"}") >= 1.0, "{kind:?}");
        assert_eq!(s.metric("ticker_source_reconnects_total"), 0.0, "{kind:?}: no reconnect");
    }
}

#[test]
fn out_of_order_coinbase_updates_are_dropped_and_gaps_are_not_errors() {
    let fake = FakeExchange::start(Kind::Coinbase);
    let s = serve_from(&fake, &[]);
    fake.wait_received(1);
    let ts = now_ms();
    fake.publish_price("BTC-USD", 500.0, ts, 100);
    fake.publish_price("BTC-USD", 400.0, ts, 90); // older: dropped
    fake.publish_price("ETH-USD", 600.0, ts, 95); // another product's sequence
    fake.publish_price("BTC-USD", 700.0, ts, 250); // a gap: taken
    let mut ws = subscriber(&s);
    until_tick(&mut ws, "the newest prices", |t| {
        entry(t, "BTC-USD")["price"] == 700.0 && entry(t, "ETH-USD")["price"] == 600.0
    });
    assert_eq!(s.metric("ticker_source_messages_total{kind=\"out_of_order\"}"), 1.0);
}

#[test]
fn an_upstream_flood_of_10k_messages_per_second_does_not_stop_or_skip_ticks() {
    let fake = FakeExchange::start(Kind::Coinbase);
    let s = serve_from(&fake, &[]);
    fake.wait_received(1);
    let mut ws = subscriber(&s);
    let first = next_of_type(&mut ws, "ticker")["seq"].as_u64().unwrap();
    fake.flood(10_000);
    let (mut last, mut ticks, mut gaps) = (first, 0u64, 0u64);
    let mut prices = std::collections::HashSet::new();
    let deadline = Instant::now() + PATIENCE;
    // Three seconds of ticks while the flood runs.
    while ticks < 150 || fake.flood_sent() < 10_000 {
        assert!(Instant::now() < deadline, "ticks stopped: {ticks} after seq {first}");
        let tick = next_of_type(&mut ws, "ticker");
        let seq = tick["seq"].as_u64().unwrap();
        assert!(seq > last, "seq went back: {last} then {seq}");
        gaps += seq - last - 1;
        last = seq;
        ticks += 1;
        prices.insert(entry(&tick, "BTC-USD")["price"].to_string());
    }
    fake.flood(0);
    let conflated = s.metric("ticker_conflated_frames_total");
    assert!(gaps as f64 <= conflated, "{gaps} seq gaps, only {conflated} conflated frames");
    assert!(prices.len() > 10, "the flood's prices reached the ticks: {}", prices.len());
    // The server may still be reading the tail of the flood.
    let deadline = Instant::now() + PATIENCE;
    while s.metric("ticker_source_messages_total{kind=\"price\"}") < 10_000.0 {
        assert!(Instant::now() < deadline, "the flood's prices were not all taken");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(s.metric("ticker_source_reconnects_total"), 0.0);
}

/// PEM of a DER certificate (the test CA's, for `--source-ca`).
fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> =
        b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[test]
fn tls_to_an_untrusted_certificate_fails_clearly_and_retries_and_source_ca_trusts_it() {
    let ca = Ca::new("fake exchange CA");
    let (cert, key, _) = ca.leaf("localhost", 7);
    let fake = FakeExchange::start_tls(Kind::Kraken, &cert, &key);

    let untrusting = serve_from(&fake, &[]);
    let line = untrusting.wait_for_log("TLS certificate not trusted");
    assert!(line.contains("--source-ca"), "{line}");
    let deadline = Instant::now() + PATIENCE;
    while untrusting.logs().matches("TLS certificate not trusted").count() < 2 {
        assert!(Instant::now() < deadline, "no retry:\n{}", untrusting.logs());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut ws = subscriber(&untrusting);
    assert!(all_stale(&next_of_type(&mut ws, "ticker")));
    assert!(untrusting.metric("ticker_source_connect_failures_total") >= 2.0);
    assert_eq!(fake.connections(), 0);
    drop(untrusting);

    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, pem(ca.cert_der())).unwrap();
    let trusting = serve_from(&fake, &[("--source-ca", ca_path.to_str().unwrap())]);
    fake.wait_received(1);
    let mut ws = subscriber(&trusting);
    fake.publish_price("BTC-USD", 51234.5, now_ms(), 1);
    until_tick(&mut ws, "the price over wss", |t| entry(t, "BTC-USD")["price"] == 51234.5);
}

#[test]
fn a_symbol_the_exchange_does_not_list_is_reported_and_stays_stale() {
    let fake = FakeExchange::start(Kind::Coinbase);
    fake.unlist("FOO-USD");
    let s = serve_from(&fake, &[("--symbols", "BTC-USD:42000,FOO-USD:1,BAR:2")]);
    let line = s.wait_for_log("the exchange does not list this symbol");
    assert!(line.contains("FOO-USD"), "{line}");
    assert!(s.logs().contains("symbol has no name on the exchange"), "BAR has no quote currency");
    // Coinbase refused the whole request: the rest is subscribed again without FOO-USD.
    let again: Value = serde_json::from_str(&fake.wait_received(2)[1]).unwrap();
    assert_eq!(again["product_ids"], serde_json::json!(["BTC-USD"]));
    fake.publish_price("BTC-USD", 43000.5, now_ms(), 1);
    let mut ws = subscriber(&s);
    let tick = until_tick(&mut ws, "BTC-USD priced", |t| entry(t, "BTC-USD")["price"] == 43000.5);
    assert_eq!(entry(&tick, "BTC-USD")["stale"], false);
    assert_eq!(entry(&tick, "FOO-USD")["stale"], true);
    assert_eq!(entry(&tick, "BAR")["stale"], true);
}

#[test]
fn source_check_prints_symbols_prices_rate_and_skew() {
    let fake = FakeExchange::start(Kind::Binance);
    let check = {
        let url = fake.url();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
                .args(["source-check", "--source", "binance", "--source-url", &url])
                .args(["--for", "3s"])
                .output()
                .expect("run source-check")
        })
    };
    fake.wait_received(1);
    fake.publish_price("BTC-USD", 64000.25, now_ms() - 40, 1);
    let out = check.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("messages:"), "{stdout}");
    let btc = stdout.lines().find(|l| l.starts_with("BTC-USD")).expect("a BTC-USD line");
    assert!(btc.contains("BTCUSDT") && btc.contains("64000.25"), "{stdout}");
    assert!(btc.contains('+'), "a clock skew: {btc}");
}

#[test]
#[cfg(feature = "cluster")]
fn in_a_cluster_only_the_leader_consumes_the_upstream_and_frames_stay_byte_identical() {
    let Some(redis) = crate::redis_server::RedisServer::start() else { return };
    let fake = FakeExchange::start(Kind::Coinbase);
    let node = || {
        TestServer::start_with(
            Opts::default()
                .arg("--redis", &redis.url())
                .arg("--source", "coinbase")
                .arg("--source-url", &fake.url()),
        )
    };
    let mut nodes = vec![node(), node()];
    fake.wait_received(1);
    let token = nodes[0].token();
    let mut sessions: Vec<Ws> = nodes.iter().map(|n| n.ws(&token)).collect();
    for ws in &mut sessions {
        next_of_type(ws, "welcome");
    }
    fake.publish_price("BTC-USD", 45678.9, now_ms(), 1);
    // The same seq carrying the new price, read on both nodes: the same bytes.
    let first = until_tick(&mut sessions[0], "the price on node 0", |t| {
        entry(t, "BTC-USD")["price"] == 45678.9
    });
    let seq = first["seq"].as_u64().unwrap();
    let on_other = until_tick(&mut sessions[1], "the same seq on node 1", |t| {
        t["seq"].as_u64().unwrap() >= seq
    });
    if on_other["seq"] == seq {
        assert_eq!(on_other, first);
    }
    let later = until_tick(&mut sessions[0], "a later tick", |t| t["seq"].as_u64().unwrap() > seq);
    let later_seq = later["seq"].as_u64().unwrap();
    let same = until_tick(&mut sessions[1], "that tick on node 1", |t| {
        t["seq"].as_u64().unwrap() >= later_seq
    });
    if same["seq"] == later_seq {
        assert_eq!(same, later, "frames for one seq differ between nodes");
    }
    assert_eq!(entry(&later, "BTC-USD")["stale"], false);
    // Only BTC-USD has had a price: every node, the follower too, reports the leader's
    // source as partial (an exchange's trouble is the whole cluster's: 200 either way).
    for n in &nodes {
        let health = n.get("/healthz");
        assert_eq!(health.status, 200, "{}", health.text());
        assert_eq!(health.json()["source"], "partial", "{}", health.text());
        assert_eq!(health.json()["stale_symbols"], 2, "{}", health.text());
    }
    // Every upstream connection belongs to a node that took the lease (normally one; a
    // CPU-starved leader may have lost it once): followers never connect.
    let leads: f64 =
        nodes.iter().map(|n| n.metric("ticker_cluster_lease_acquisitions_total")).sum();
    assert!(
        fake.connections() >= 1 && fake.connections() as f64 <= leads,
        "{} connections, {leads} leads",
        fake.connections()
    );

    // The leader dies: the other node takes the lease and the upstream.
    let leader = nodes.iter().position(|n| n.metric("ticker_cluster_leader") == 1.0).unwrap();
    drop(sessions);
    nodes.remove(leader);
    let deadline = Instant::now() + PATIENCE;
    while fake.connections() < 2 {
        assert!(Instant::now() < deadline, "the new leader never connected upstream");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut ws = nodes[0].ws(&nodes[0].token());
    fake.publish_price("BTC-USD", 45999.1, now_ms(), 2);
    until_tick(&mut ws, "the price through the new leader", |t| {
        entry(t, "BTC-USD")["price"] == 45999.1
    });
}
