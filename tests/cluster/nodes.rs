//! Whole nodes on one Redis: each test starts its own `redis-server` and real server
//! processes with `--redis`, and checks what a user sees with tungstenite clients.
//! Durations the issue names (failover within 3 s, revocation within 1 s) are measured
//! and printed, not asserted: the assertions are on what arrives, and a generous hang
//! guard bounds each wait.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use tungstenite::Message;
use tungstenite::client::IntoClientRequest;

use crate::redis_server::RedisServer;
use crate::util::*;

/// Bound on every wait for something that must happen (not a performance target).
const HANG_GUARD: Duration = Duration::from_secs(20);

fn node(redis: &RedisServer) -> TestServer {
    TestServer::start_with(Opts::default().arg("--redis", &redis.url()))
}

/// A tick's seq and its raw text, or `None` for other messages.
fn read_tick(ws: &mut Ws) -> Option<(u64, String)> {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "ticker" {
                    return Some((v["seq"].as_u64().expect("seq"), t.to_string()));
                }
            }
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Waits until `check` holds, polling; panics after the hang guard.
fn wait_until(what: &str, check: impl FnMut() -> bool) -> Duration {
    wait_for(what, HANG_GUARD, check)
}

fn leader_index(nodes: &[TestServer]) -> usize {
    let mut found = None;
    wait_until("a leader", || {
        found = nodes.iter().position(|n| n.metric("ticker_cluster_leader") == 1.0);
        found.is_some()
    });
    found.unwrap_or_default()
}

fn cli(args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(args)
        .env_remove("TICKER_DB")
        .env_remove("TICKER_REDIS")
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

#[test]
fn three_nodes_send_byte_identical_frames_and_a_token_from_one_opens_the_others() {
    let Some(redis) = RedisServer::start() else { return };
    let nodes: Vec<TestServer> = (0..3).map(|_| node(&redis)).collect();
    // The demo key is made once for the cluster: every node logs the same one.
    assert!(nodes.iter().all(|n| n.demo_key == nodes[0].demo_key));

    // A token from node A opens a session on every node, C included.
    let token = nodes[0].token();
    let mut sessions: Vec<Ws> = nodes.iter().map(|n| n.ws(&token)).collect();
    for ws in &mut sessions {
        assert_eq!(next_of_type(ws, "welcome")["user_id"], "user:demo");
    }
    let mut seen: Vec<BTreeMap<u64, String>> = vec![BTreeMap::new(); 3];
    for (i, ws) in sessions.iter_mut().enumerate() {
        while seen[i].len() < 60 {
            let (seq, text) = read_tick(ws).expect("a tick");
            seen[i].insert(seq, text);
        }
    }
    let common: Vec<u64> = seen[0]
        .keys()
        .filter(|seq| seen[1].contains_key(seq) && seen[2].contains_key(seq))
        .copied()
        .collect();
    assert!(common.len() >= 30, "only {} ticks seen on all three nodes", common.len());
    for seq in &common {
        assert_eq!(seen[0][seq], seen[1][seq], "seq {seq} differs between nodes 0 and 1");
        assert_eq!(seen[0][seq], seen[2][seq], "seq {seq} differs between nodes 0 and 2");
    }
    // Sessions that chose a set get that set's frame, byte-identical on every node too
    // (each node builds it from the leader's tick data).
    let mut chosen: Vec<Ws> = nodes
        .iter()
        .map(|n| {
            let url = format!("{}?symbols=SOL-USD,BTC-USD&x-auth-token={token}", n.ws_url());
            n.ws_request(url.into_client_request().expect("url")).expect("upgrade")
        })
        .collect();
    let mut seen: Vec<BTreeMap<u64, String>> = vec![BTreeMap::new(); 3];
    for (i, ws) in chosen.iter_mut().enumerate() {
        while seen[i].len() < 40 {
            let (seq, text) = read_tick(ws).expect("a tick");
            let v: serde_json::Value = serde_json::from_str(&text).expect("json");
            let names: Vec<&str> = v["data"]
                .as_array()
                .expect("data")
                .iter()
                .filter_map(|e| e["symbol"].as_str())
                .collect();
            assert_eq!(names, ["BTC-USD", "SOL-USD"], "node {i}: {text}");
            seen[i].insert(seq, text);
        }
    }
    let common = seen[0].keys().filter(|s| seen[1].contains_key(s) && seen[2].contains_key(s));
    let common: Vec<u64> = common.copied().collect();
    assert!(common.len() >= 20, "only {} set ticks seen on all three nodes", common.len());
    for seq in &common {
        assert_eq!(seen[0][seq], seen[1][seq], "set frame of seq {seq} differs");
        assert_eq!(seen[0][seq], seen[2][seq], "set frame of seq {seq} differs");
    }
    // Exactly one node leads; each received the same ticks from the channel.
    let leaders: f64 = nodes.iter().map(|n| n.metric("ticker_cluster_leader")).sum();
    assert_eq!(leaders, 1.0);
    for n in &nodes {
        assert!(n.metric("ticker_cluster_ticks_received_total") > 0.0);
        assert_eq!(n.get("/healthz").status, 200);
    }
}

#[test]
fn compressed_and_changes_only_frames_are_byte_identical_on_every_node() {
    use crate::compression::Raw;
    let Some(redis) = RedisServer::start() else { return };
    let nodes: Vec<TestServer> = (0..2)
        .map(|_| {
            TestServer::start_with(
                Opts::default().arg("--redis", &redis.url()).arg("--sim-activity", "0.3"),
            )
        })
        .collect();
    let token = nodes[0].token();
    for (query, what) in [("", "compressed frames"), ("delta=1", "changes messages")] {
        let mut sessions: Vec<Raw> =
            nodes.iter().map(|n| Raw::open(n, &token, query, Some("permessage-deflate"))).collect();
        // Per node: seq → the frame's wire bytes (compressed, or plain under 160 bytes);
        // a node's first second of changes may differ (see ticker/changes.rs).
        let mut seen: Vec<BTreeMap<u64, (u8, Vec<u8>)>> = vec![BTreeMap::new(); 2];
        for (i, r) in sessions.iter_mut().enumerate() {
            let mut first = None;
            while seen[i].len() < 250 {
                let (v, b0, wire) = r.ticker();
                let seq = v["seq"].as_u64().expect("seq");
                let first = *first.get_or_insert(seq);
                if v["delta"] != false && seq > first + 110 {
                    seen[i].insert(seq, (b0, wire));
                }
            }
        }
        let common: Vec<u64> =
            seen[0].keys().filter(|s| seen[1].contains_key(s)).copied().collect();
        assert!(common.len() >= 50, "{what}: only {} seen on both nodes", common.len());
        for seq in &common {
            assert_eq!(seen[0][seq], seen[1][seq], "{what} of seq {seq} differ");
        }
        let compressed = common.iter().filter(|seq| seen[0][seq].0 == 0xC1).count();
        assert!(compressed >= 10, "{what}: only {compressed} compressed frames compared");
    }
}

#[test]
fn kill_9_of_the_leader_moves_the_ticker_and_seq_and_prices_continue() {
    let Some(redis) = RedisServer::start() else { return };
    let mut nodes: Vec<TestServer> = (0..3).map(|_| node(&redis)).collect();
    let leader = leader_index(&nodes);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let token = nodes[survivors[0]].token();
    let mut sessions: Vec<Ws> = survivors.iter().map(|i| nodes[*i].ws(&token)).collect();
    // Half a second of ticks first, so the failover is not at the cluster's first tick.
    let mut last: Vec<(u64, String)> = sessions
        .iter_mut()
        .map(|ws| {
            loop {
                let tick = read_tick(ws).expect("a tick");
                if tick.0 >= 50 {
                    break tick;
                }
            }
        })
        .collect();
    let killed_at = Instant::now();

    let victim = nodes.remove(leader);
    victim.signal_and_wait(libc::SIGKILL);

    // Each survivor: ticks until the pause (seen in the leaders' own `ts_us`, not in when
    // this test reads), then the next seq is exactly the last + 1, at prices one step
    // from the last ones (not the start prices).
    let ts = |text: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(text).expect("json");
        v["ts_us"].as_u64().expect("ts_us")
    };
    for (ws, last) in sessions.iter_mut().zip(last.iter_mut()) {
        let (seq, text) = loop {
            let tick = read_tick(ws).expect("the session stays open through the failover");
            if ts(&tick.1).saturating_sub(ts(&last.1)) > 500_000 {
                break tick;
            }
            *last = tick;
        };
        assert_eq!(seq, last.0 + 1, "seq continues after the failover");
        let before: serde_json::Value = serde_json::from_str(&last.1).expect("json");
        let after: serde_json::Value = serde_json::from_str(&text).expect("json");
        for i in 0..3 {
            let p0 = before["data"][i]["price"].as_f64().expect("price");
            let p1 = after["data"][i]["price"].as_f64().expect("price");
            assert!((p1 - p0).abs() <= p0 * 0.0011 + 0.011, "price jumped: {p0} -> {p1}");
        }
        let paused = Duration::from_micros(ts(&text) - ts(&last.1));
        eprintln!("failover: seq {} → {seq}, ticks paused for {paused:?}", last.0);
    }
    eprintln!("failover: survivors read past it {:?} after the kill", killed_at.elapsed());
    assert_eq!(nodes.iter().map(|n| n.metric("ticker_cluster_leader")).sum::<f64>(), 1.0);
}

#[test]
fn a_cli_revocation_closes_that_keys_sessions_on_every_node() {
    let Some(redis) = RedisServer::start() else { return };
    let nodes: Vec<TestServer> = (0..3).map(|_| node(&redis)).collect();
    let url = redis.url();
    let out = cli(&["keys", "create", "--user", "bob", "--redis", &url]);
    let bob_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let r = nodes[1].post("/auth/token", &format!(r#"{{"api_key":"{bob_key}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let bob_token = r.json()["token"].as_str().expect("token").to_owned();
    let mut bobs: Vec<Ws> = nodes.iter().map(|n| n.ws(&bob_token)).collect();
    let demo_token = nodes[0].token();
    let mut demo = nodes[2].ws(&demo_token);
    for ws in &mut bobs {
        next_of_type(ws, "ticker");
    }

    let revoked_at = Instant::now();
    cli(&["keys", "revoke", "--user", "bob", "--redis", &url]);
    for ws in &mut bobs {
        assert_eq!(read_until_close(ws), Some(1008), "revoked on every node");
    }
    eprintln!("revocation: all three sessions closed {:?} after the CLI", revoked_at.elapsed());
    // The key and its tokens are refused everywhere; other users are untouched.
    assert_eq!(nodes[0].post("/auth/token", &format!(r#"{{"api_key":"{bob_key}"}}"#)).status, 401);
    let refused = nodes[2].ws_request({
        use tungstenite::client::IntoClientRequest;
        let mut req = nodes[2].ws_url().into_client_request().expect("request");
        req.headers_mut()
            .insert("Authorization", format!("Bearer {bob_token}").parse().expect("header"));
        req
    });
    assert!(refused.is_err(), "a revoked key's token opens nothing");
    next_of_type(&mut demo, "ticker");
}

#[test]
fn post_auth_revoke_on_one_node_closes_that_tokens_sessions_on_the_others() {
    let Some(redis) = RedisServer::start() else { return };
    let nodes: Vec<TestServer> = (0..2).map(|_| node(&redis)).collect();
    let token = nodes[0].token();
    let mut far = nodes[1].ws(&token);
    next_of_type(&mut far, "ticker");
    let r = nodes[0].raw(
        format!(
            "POST /auth/revoke HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(read_until_close(&mut far), Some(1008));
}

#[test]
fn failed_logins_are_limited_across_nodes_and_never_refuse_a_valid_key() {
    let Some(redis) = RedisServer::start() else { return };
    let opts = Opts::default().arg("--redis", &redis.url()).arg("--login-failures", "3");
    let (a, b) = (TestServer::start_with(opts.clone()), TestServer::start_with(opts));
    for _ in 0..3 {
        assert_eq!(a.post("/auth/token", r#"{"api_key":"wrong"}"#).status, 401);
    }
    let r = b.post("/auth/token", r#"{"api_key":"wrong"}"#);
    assert_eq!(r.status, 429, "the other node shares the count: {}", r.text());
    assert!(r.header("Retry-After").is_some());
    // The same address with a valid key gets its token on either node.
    for node in [&a, &b] {
        let r = node.post("/auth/token", &key_body(&node.demo_key));
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

#[test]
fn healthz_and_the_log_never_show_the_redis_password_or_its_error_text() {
    // Nothing listens on this port: the node cannot reach its Redis.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://app:hunter2@127.0.0.1:{port}/0");
    let opts = Opts { no_demo_key: true, ..Opts::default().arg("--redis", &url) };
    let n = TestServer::start_with(opts);
    wait_until("reason: redis unreachable", || {
        n.get("/healthz").json()["reason"] == "redis unreachable"
    });
    let r = n.get("/healthz");
    assert_eq!(r.status, 503);
    assert_eq!(
        r.json(),
        serde_json::json!({"status": "unavailable", "reason": "redis unreachable"})
    );
    n.wait_for_log("cut off");
    assert!(!n.logs().contains("hunter2"), "{}", n.logs());
}

#[test]
fn nodes_ride_out_a_redis_restart_without_restarting() {
    let Some(mut redis) = RedisServer::start() else { return };
    let nodes: Vec<TestServer> = (0..2).map(|_| node(&redis)).collect();
    let token = nodes[0].token();
    let mut sessions: Vec<Ws> = nodes.iter().map(|n| n.ws(&token)).collect();
    let mut last_seq = 0;
    for ws in &mut sessions {
        last_seq = last_seq.max(read_tick(ws).expect("tick").0);
    }

    redis.kill();
    for n in &nodes {
        wait_until("/healthz 503", || n.get("/healthz").status == 503);
        let health = n.get("/healthz").json();
        assert!(health["reason"].as_str().is_some_and(|r| !r.is_empty()), "{health}");
        let r = n.post("/auth/token", &format!(r#"{{"api_key":"{}"}}"#, n.demo_key));
        assert_eq!((r.status, r.error()), (503, "token store unavailable".to_owned()));
    }
    // Sessions stay open while Redis is away: they still answer pings.
    for ws in &mut sessions {
        ws.send(Message::Ping(b"still there".to_vec().into())).expect("ping");
        let pong = loop {
            match ws.read().expect("read") {
                Message::Pong(p) => break p,
                Message::Close(_) => panic!("closed while Redis was down"),
                _ => {}
            }
        };
        assert_eq!(&pong[..], b"still there");
    }

    let back_at = Instant::now();
    redis.restart();
    for n in &nodes {
        wait_until("/healthz 200 again", || n.get("/healthz").status == 200);
    }
    // Ticks resume on the same sessions, seq still going forward.
    for ws in &mut sessions {
        let seq = loop {
            let (seq, _) = read_tick(ws).expect("the session survived");
            if seq > last_seq {
                break seq;
            }
        };
        assert!(seq > last_seq);
    }
    eprintln!("redis restart: ticks back {:?} after Redis", back_at.elapsed());
}

#[test]
fn a_node_started_before_redis_joins_when_it_appears() {
    let Some(mut redis) = RedisServer::start() else { return };
    redis.kill(); // keep the port, lose the server
    let n = TestServer::start_with(Opts {
        no_demo_key: true,
        ..Opts::default().arg("--redis", &redis.url())
    });
    assert_eq!(n.get("/healthz").status, 503);
    let r = n.post("/auth/token", r#"{"api_key":"anything"}"#);
    assert_eq!((r.status, r.error()), (503, "token store unavailable".to_owned()));

    redis.restart();
    let line = n.wait_for_log("demo API key");
    let key = field(&line, "api_key").expect("the demo key, once joined");
    wait_until("/healthz 200", || n.get("/healthz").status == 200);
    let r = n.post("/auth/token", &format!(r#"{{"api_key":"{key}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    let mut ws = n.ws(r.json()["token"].as_str().expect("token"));
    assert!(read_tick(&mut ws).is_some());
}

#[test]
fn keys_import_moves_a_single_node_store_into_the_cluster() {
    let Some(redis) = RedisServer::start() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("auth.db");
    let db = db.to_str().expect("utf-8 path");
    let alice = cli(&["keys", "create", "--user", "alice", "--role", "admin", "--db", db]);
    let alice = String::from_utf8_lossy(&alice.stdout).trim().to_owned();
    let carol = cli(&["keys", "create", "--user", "carol", "--db", db]);
    let carol = String::from_utf8_lossy(&carol.stdout).trim().to_owned();
    cli(&["keys", "revoke", "--user", "carol", "--db", db]);

    let url = redis.url();
    cli(&["keys", "import", "--db", db, "--redis", &url]);
    cli(&["keys", "import", "--db", db, "--redis", &url]); // twice: no duplicates
    let list =
        String::from_utf8_lossy(&cli(&["keys", "list", "--redis", &url]).stdout).into_owned();
    assert_eq!(list.matches("alice").count(), 1, "{list}");
    assert_eq!(list.matches("carol").count(), 1, "{list}");

    let n = node(&redis);
    let r = n.post("/auth/token", &format!(r#"{{"api_key":"{alice}"}}"#));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["user_id"].as_str(), r.json()["role"].as_str()),
        (Some("alice"), Some("admin"))
    );
    assert_eq!(n.post("/auth/token", &format!(r#"{{"api_key":"{carol}"}}"#)).status, 401);
}

#[test]
fn a_slow_redis_never_blocks_the_event_loops() {
    let Some(redis) = RedisServer::start() else { return };
    let n = node(&redis);
    let mut ws = n.ws(&n.token());
    next_of_type(&mut ws, "ticker");
    // Redis stops answering anyone for 2 s; this node's loop must still answer its
    // session's ping and a plain HTTP request while Redis sleeps.
    let mut poker = redis.conn();
    let (tx, rx) = std::sync::mpsc::channel();
    let sleeper = std::thread::spawn(move || {
        let _ = tx.send(());
        let slept: redis::RedisResult<()> =
            redis::cmd("DEBUG").arg("SLEEP").arg(2).query(&mut poker);
        slept.expect("DEBUG SLEEP");
        Instant::now()
    });
    rx.recv().expect("sleeper started");
    std::thread::sleep(Duration::from_millis(200)); // the command is in
    ws.send(Message::Ping(b"awake?".to_vec().into())).expect("ping");
    let pong_at = loop {
        match ws.read().expect("read") {
            Message::Pong(p) if &p[..] == b"awake?" => break Instant::now(),
            Message::Close(_) => panic!("closed while Redis slept"),
            _ => {}
        }
    };
    assert_eq!(n.get("/metrics").status, 200);
    let redis_woke_at = sleeper.join().expect("sleeper");
    assert!(pong_at < redis_woke_at, "the pong came only after Redis woke up");
    // And ticks come back on the same session.
    next_of_type(&mut ws, "ticker");
}

/// The status of a WebSocket upgrade with `token` on node `n` (101, or the refusal's).
fn upgrade_status(n: &TestServer, token: &str) -> u16 {
    let mut c = n.raw_subscriber(token);
    read_response(&mut c).expect("an answer to the upgrade").status
}

#[test]
fn a_key_past_its_token_bound_retires_its_oldest_tokens_on_every_node() {
    let Some(redis) = RedisServer::start() else { return };
    let url = redis.url();
    let opts = Opts::default().arg("--redis", &url).arg("--tokens-per-key", "20");
    let nodes = [TestServer::start_with(opts.clone()), TestServer::start_with(opts)];
    let early = nodes[0].token();
    let mut session = nodes[1].ws(&early);
    next_of_type(&mut session, "ticker");

    // Tokens from both nodes count against the one bound, kept in Redis.
    let flood: Vec<String> = (0..60).map(|i| nodes[i % 2].token()).collect();
    for n in &nodes {
        for (i, token) in std::iter::once(&early).chain(&flood[..40]).enumerate() {
            assert_eq!(upgrade_status(n, token), 401, "token {i} of 61 should be retired");
        }
        for (i, token) in flood[40..].iter().enumerate() {
            assert_eq!(upgrade_status(n, token), 101, "token {} of 61 should work", 41 + i);
        }
    }
    // The session opened with the retired early token is not closed.
    let seq = read_tick(&mut session).expect("still open").0;
    assert!(read_tick(&mut session).expect("still open").0 > seq);

    let out = cli(&["keys", "create", "--user", "bob", "--redis", &url]);
    let bob_key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    for n in &nodes {
        let r = n.post("/auth/token", &format!(r#"{{"api_key":"{bob_key}"}}"#));
        assert_eq!(r.status, 200, "{}", r.text());
    }
}

/// `seq` and `ts_us` of the next `ticker` message.
fn next_tick_time(ws: &mut Ws) -> (u64, u64) {
    let t = next_of_type(ws, "ticker");
    (t["seq"].as_u64().expect("seq"), t["ts_us"].as_u64().expect("ts_us"))
}

#[test]
fn a_node_that_was_idle_gives_a_new_subscriber_the_clusters_current_tick_then_consecutive_seq() {
    let Some(redis) = RedisServer::start() else { return };
    let busy = node(&redis);
    let idle = node(&redis);
    // One node keeps a subscriber, so the cluster keeps ticking; the other has none.
    let mut kept = busy.ws(&busy.token());
    let token = idle.token();
    let mut once = idle.ws(&token);
    next_tick_time(&mut once);
    drop(once);
    wait_until("the idle node's session ends", || idle.metric("ticker_ws_sessions_open") == 0.0);
    std::thread::sleep(Duration::from_millis(1500));
    let (cluster_seq, _) = next_tick_time(&mut kept);

    let asked = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_micros() as u64;
    let mut ws = idle.ws(&token);
    let (first, made) = next_tick_time(&mut ws);
    let (second, _) = next_tick_time(&mut ws);
    // Before: the idle node's last tick from 1.5 s ago, then a jump of ~150 in seq.
    let age_ms = asked.saturating_sub(made) / 1000;
    eprintln!("first tick after idle: seq {first} (busy node at {cluster_seq}), {age_ms} ms old");
    assert!(first >= cluster_seq, "seq {first} is behind the cluster's {cluster_seq}");
    assert!(age_ms < 500, "the first tick was {age_ms} ms older than the upgrade");
    assert_eq!(second, first + 1, "no jump after the first tick");
}
