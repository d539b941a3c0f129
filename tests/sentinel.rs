//! The cluster behind Redis Sentinel, with real processes: a master, its replica
//! (`--replicaof`), three `redis-sentinel`s (quorum 2, down after 1 s), and two nodes
//! started with `--redis-sentinels`. The master is `kill -9`ed; the Sentinels promote the
//! replica; the nodes must find it by themselves.
//!
//! As in the cluster tests, durations are printed (run with `--nocapture`), never
//! asserted: the assertions are on what arrives (seq, status codes), and a generous hang
//! guard bounds each wait. Every process is stopped on drop, a failing test included.
//!
//! Without `redis-sentinel` (Debian package `redis-sentinel`) the test says SKIPPED;
//! with `TICKER_REQUIRE_SENTINEL` set (CI) it fails instead.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tungstenite::Message;

use crate::redis_server::{RedisServer, answers_ping, find_binary, free_port, tail};
use crate::util::*;
use tungstenite::client::IntoClientRequest;

/// Bound on every wait for something that must happen (not a performance target).
const HANG_GUARD: Duration = Duration::from_secs(40);
const MASTER: &str = "mymaster";

/// One `redis-sentinel` on a free port, with its own writable config file (Sentinel
/// rewrites it), killed on drop.
struct Sentinel {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sentinel {
    fn start(binary: &PathBuf, master_port: u16) -> Sentinel {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut errors = Vec::new();
        for _ in 0..5 {
            let port = free_port();
            let conf = dir.path().join("sentinel.conf");
            let log = dir.path().join("sentinel.log");
            let text = format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\ndir {dir}\nlogfile {log}\n\
                 sentinel monitor {MASTER} 127.0.0.1 {master_port} 2\n\
                 sentinel down-after-milliseconds {MASTER} 1000\n\
                 sentinel failover-timeout {MASTER} 5000\n\
                 sentinel parallel-syncs {MASTER} 1\n",
                dir = dir.path().display(),
                log = log.display(),
            );
            std::fs::write(&conf, text).expect("write sentinel.conf");
            let mut child = Command::new(binary)
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-sentinel");
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if answers_ping(port) {
                    return Sentinel { child, port, dir };
                }
                if let Ok(Some(status)) = child.try_wait() {
                    errors.push(format!("exited with {status}: {}", tail(&log)));
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    errors.push(format!("no PONG on port {port}: {}", tail(&log)));
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("redis-sentinel did not start:\n{}", errors.join("\n"));
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn conn(&self) -> Option<redis::Connection> {
        let client = redis::Client::open(format!("redis://{}/", self.addr())).ok()?;
        let conn = client.get_connection_with_timeout(Duration::from_secs(2)).ok()?;
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        Some(conn)
    }

    /// `SENTINEL <sub> mymaster`, as a list of entries (empty when it cannot answer).
    fn list(&self, sub: &str) -> Vec<redis::Value> {
        let Some(mut c) = self.conn() else { return Vec::new() };
        redis::cmd("SENTINEL").arg(sub).arg(MASTER).query(&mut c).unwrap_or_default()
    }

    /// The master's port, as this Sentinel names it now.
    fn master_port(&self) -> Option<u16> {
        let mut c = self.conn()?;
        let addr: Option<(String, u16)> =
            redis::cmd("SENTINEL").arg("get-master-addr-by-name").arg(MASTER).query(&mut c).ok()?;
        addr.map(|(_, port)| port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "sentinel {} log:\n{}",
                self.port,
                tail(&self.dir.path().join("sentinel.log"))
            );
        }
    }
}

/// A login on `node` right after a failover: it may be refused 503 (`token store
/// unavailable`) in the second before the node hears of the new master (a client
/// retries); it must then succeed, and nothing else may come.
fn login_after_failover(node: &TestServer) {
    let mut refused = 0;
    wait_until("a login after the failover", || {
        let r = node.post("/auth/token", &key_body(&node.demo_key));
        match r.status {
            200 => true,
            503 => {
                assert_eq!(r.error(), "token store unavailable");
                refused += 1;
                false
            }
            other => panic!("login after the failover: {other} {}", r.text()),
        }
    });
    eprintln!("sentinel: login after the failover refused {refused} time(s) first");
}

/// An upgrade with a token from before the failover: like a login it may get 503 while
/// the node's connections move; then it must open (a 401 would mean the token was lost).
fn upgrade_after_failover(node: &TestServer, token: &str) -> Ws {
    let mut opened = None;
    wait_until("an upgrade after the failover", || {
        let mut req = node.ws_url().into_client_request().expect("a request");
        req.headers_mut().insert("Authorization", format!("Bearer {token}").parse().unwrap());
        match node.ws_request(req) {
            Ok(ws) => {
                opened = Some(ws);
                true
            }
            Err(tungstenite::Error::Http(r)) if r.status() == 503 => false,
            Err(e) => panic!("upgrade after the failover: {e}"),
        }
    });
    opened.expect("opened")
}

/// Waits until `check` holds, polling; panics after the hang guard.
fn wait_until(what: &str, check: impl FnMut() -> bool) -> Duration {
    wait_for(what, HANG_GUARD, check)
}

/// A tick's seq and `ts_us`; other messages are skipped.
fn read_tick(ws: &mut Ws) -> (u64, u64) {
    loop {
        match ws.read().expect("the session stays open") {
            Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "ticker" {
                    return (v["seq"].as_u64().expect("seq"), v["ts_us"].as_u64().expect("ts"));
                }
            }
            Message::Close(c) => panic!("session closed: {c:?}"),
            _ => {}
        }
    }
}

fn unix_micros() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.expect("a clock after 1970").as_micros() as u64
}

/// The master this node's `/healthz` names.
fn healthz_master(node: &TestServer) -> Option<String> {
    node.get("/healthz").json()["redis_master"]["addr"].as_str().map(str::to_owned)
}

/// A master, its replica, three Sentinels watching them, and two nodes that found the
/// master through the Sentinels. Fields drop in order: the nodes stop first.
/// The Sentinel tests run one at a time: each starts seven processes that find each
/// other through announcements, and two such setups at once on two cores (with the
/// rest of the suite) made discovery slow enough to trip the hang guard once. Taken
/// first in each test, so it is released after every process is stopped.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Setup {
    nodes: Vec<TestServer>,
    master: RedisServer,
    replica: RedisServer,
    sentinels: Vec<Sentinel>,
}

impl Setup {
    /// `None` (after saying SKIPPED) without `redis-server` or `redis-sentinel`.
    fn start() -> Option<Setup> {
        let Some(sentinel_bin) = find_binary("redis-sentinel") else {
            missing_tool(
                "TICKER_REQUIRE_SENTINEL",
                "redis-sentinel is not installed (apt-get install redis-sentinel)",
            );
            return None;
        };
        let master = RedisServer::start()?;
        let replica = RedisServer::start_replica_of(master.port()).expect("redis-server is there");
        let sentinels: Vec<Sentinel> =
            (0..3).map(|_| Sentinel::start(&sentinel_bin, master.port())).collect();
        // A failover needs the Sentinels to know each other and the replica.
        let took = wait_until("the Sentinels know each other and the replica", || {
            sentinels
                .iter()
                .all(|s| s.list("sentinels").len() == 2 && s.list("replicas").len() == 1)
        });
        eprintln!("sentinel: the Sentinels found each other and the replica in {took:?}");

        let list = sentinels.iter().map(Sentinel::addr).collect::<Vec<_>>().join(",");
        let opts = Opts::default().arg("--redis-sentinels", &list);
        let nodes: Vec<TestServer> = (0..2).map(|_| TestServer::start_with(opts.clone())).collect();
        let first = format!("127.0.0.1:{}", master.port());
        for n in &nodes {
            wait_until("/healthz names the master", || healthz_master(n) == Some(first.clone()));
            n.wait_for_log("cluster: Redis master");
        }
        Some(Setup { nodes, master, replica, sentinels })
    }
}

/// Waits until the replica has every write the master took so far: a write of our own
/// after them, then `WAIT` (the replication stream is in order). The replica's first
/// sync may still be under way (diskless, 5 s delay).
fn wait_replicated(master: &RedisServer) {
    let mut probe = master.conn();
    let _: () = redis::cmd("SET").arg("sentinel-test:probe").arg(1).query(&mut probe).unwrap();
    wait_until("the replica acknowledges the writes", || {
        redis::cmd("WAIT").arg(1).arg(1000).query::<i64>(&mut probe).unwrap() == 1
    });
}

/// Reads ticks until one with seq at least `seq`; returns its (seq, ts_us).
fn tick_from(ws: &mut Ws, seq: u64) -> (u64, u64) {
    loop {
        let tick = read_tick(ws);
        if tick.0 >= seq {
            return tick;
        }
    }
}

#[test]
fn nodes_follow_a_sentinel_failover_and_keep_seq_tokens_and_logins() {
    let _one_at_a_time = one_at_a_time();
    let Some(setup) = Setup::start() else { return };
    let Setup { nodes, mut master, replica, sentinels } = setup;

    // A token from before, replicated before the master dies: a write after it on our
    // own connection, and WAIT until the replica acknowledged that (the stream is in
    // order). The replica's first sync may still be under way (diskless, 5 s delay).
    let token = nodes[0].token();
    wait_replicated(&master);
    let mut sessions: Vec<Ws> = nodes.iter().map(|n| n.ws(&token)).collect();
    let mut last: Vec<(u64, u64)> = sessions.iter_mut().map(|ws| tick_from(ws, 20)).collect();
    let seq_before = last.iter().map(|t| t.0).max().unwrap_or_default();

    let killed_at = Instant::now();
    master.kill();
    let promoted = wait_until("a Sentinel names the replica", || {
        sentinels.iter().any(|s| s.master_port() == Some(replica.port()))
    });
    eprintln!("sentinel: kill -9 of the master; a Sentinel named the replica after {promoted:?}");

    // Each node: ticks resume after the pause (seen in the leader's ts_us), at a seq
    // strictly greater than any before the kill.
    for (i, (ws, last)) in sessions.iter_mut().zip(last.iter_mut()).enumerate() {
        let tick = loop {
            let tick = read_tick(ws);
            assert!(tick.0 > last.0, "node {i}: seq {} after {}", tick.0, last.0);
            if tick.1.saturating_sub(last.1) > 500_000 {
                break tick;
            }
            *last = tick;
        };
        assert!(tick.0 > seq_before, "node {i}: seq {} not after {seq_before}", tick.0);
        let paused = Duration::from_micros(tick.1 - last.1);
        eprintln!(
            "sentinel: node {i} ticks resumed {:?} after the kill: seq {} → {} (paused {paused:?} in ts_us)",
            killed_at.elapsed(),
            last.0,
            tick.0
        );
    }
    let second = format!("127.0.0.1:{}", replica.port());
    for n in &nodes {
        wait_until("/healthz names the new master", || healthz_master(n) == Some(second.clone()));
        assert!(n.metric("ticker_redis_failovers_total") >= 1.0);
        n.wait_for_log("cluster: Redis master changed");
    }

    // The token from before opens a session on either node; a new login works.
    for n in &nodes {
        let mut ws = upgrade_after_failover(n, &token);
        assert_eq!(next_of_type(&mut ws, "welcome")["user_id"], "user:demo");
    }
    login_after_failover(&nodes[1]);

    // The old master comes back as a replica of the new one. Every node's connections
    // are cut once more (as a network blip would): each reconnect must land on the new
    // master, never on the old one.
    master.restart_as_replica_of(replica.port());
    let mut new_master = replica.conn();
    for kind in ["normal", "pubsub"] {
        let _: redis::Value =
            redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg(kind).query(&mut new_master).unwrap();
    }
    let failovers: Vec<f64> =
        nodes.iter().map(|n| n.metric("ticker_redis_failovers_total")).collect();
    for (ws, last) in sessions.iter_mut().zip(last.iter_mut()) {
        let target = last.0 + 100;
        while last.0 < target {
            let tick = read_tick(ws);
            assert!(tick.0 > last.0, "seq {} after {}", tick.0, last.0);
            *last = tick;
        }
    }
    login_after_failover(&nodes[0]);
    // `keys` finds the new master through the Sentinels too; the nodes see its key.
    let list = sentinels.iter().map(Sentinel::addr).collect::<Vec<_>>().join(",");
    let out = Command::new(env!("CARGO_BIN_EXE_crypto-ticker"))
        .args(["keys", "create", "--user", "bob", "--redis-sentinels", &list])
        .env_remove("TICKER_REDIS")
        .env_remove("TICKER_DB")
        .output()
        .expect("run the CLI");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bob = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(nodes[1].post("/auth/token", &key_body(&bob)).status, 200);
    for (n, before) in nodes.iter().zip(failovers) {
        assert_eq!(healthz_master(n), Some(second.clone()), "the old master did not capture it");
        assert_eq!(n.metric("ticker_redis_failovers_total"), before);
        assert_eq!(n.get("/healthz").status, 200);
    }
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut master.conn()).unwrap();
    assert_eq!(role.first(), Some(&redis::Value::BulkString(b"slave".to_vec())));
}

#[test]
fn a_switchover_demotes_a_live_master_and_no_node_stays_on_it() {
    let _one_at_a_time = one_at_a_time();
    let Some(setup) = Setup::start() else { return };
    let Setup { nodes, master, replica, sentinels } = setup;
    let token = nodes[0].token();
    let mut sessions: Vec<Ws> = nodes.iter().map(|n| n.ws(&token)).collect();
    let mut last: Vec<(u64, u64)> = sessions.iter_mut().map(|ws| tick_from(ws, 20)).collect();
    wait_replicated(&master);

    // The old master keeps running and becomes a replica: a node still writing to it
    // gets READONLY and must look for the new one.
    let asked_at = Instant::now();
    let mut sentinel = sentinels[0].conn().expect("a Sentinel answers");
    let _: () = redis::cmd("SENTINEL").arg("FAILOVER").arg(MASTER).query(&mut sentinel).unwrap();
    let second = format!("127.0.0.1:{}", replica.port());
    for (i, n) in nodes.iter().enumerate() {
        let took = wait_until("/healthz names the new master", || {
            healthz_master(n) == Some(second.clone())
        });
        eprintln!("sentinel: switchover: node {i} on the new master {:?} after asking", took);
        n.wait_for_log("cluster: Redis master changed");
    }
    // Issued while the old master still runs as a master: it must go to the new one, or
    // it would be lost when Sentinel turns the old one into a replica.
    let token_between = nodes[0].token();
    let role = |server: &RedisServer| -> Vec<u8> {
        let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut server.conn()).unwrap();
        match role.first() {
            Some(redis::Value::BulkString(r)) => r.clone(),
            other => panic!("{other:?}"),
        }
    };
    wait_until("the old master is a replica", || role(&master) == b"slave");
    // Ticks go on on both nodes, seq always growing: made after the old master became a
    // replica, they were published on the new one (a replica refuses the publish script).
    let demoted_us = unix_micros();
    for (i, (ws, last)) in sessions.iter_mut().zip(last.iter_mut()).enumerate() {
        while last.1 <= demoted_us {
            let tick = read_tick(ws);
            assert!(tick.0 > last.0, "node {i}: seq {} after {}", tick.0, last.0);
            *last = tick;
        }
        let target = last.0 + 50;
        while last.0 < target {
            let tick = read_tick(ws);
            assert!(tick.0 > last.0, "node {i}: seq {} after {}", tick.0, last.0);
            *last = tick;
        }
        eprintln!(
            "sentinel: switchover: node {i} at seq {} {:?} after asking",
            last.0,
            asked_at.elapsed()
        );
    }
    for n in &nodes {
        let r = n.post("/auth/token", &key_body(&n.demo_key));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(n.metric("ticker_redis_failovers_total"), 1.0);
        assert_eq!(n.get("/healthz").status, 200);
    }
    for t in [&token, &token_between] {
        let mut ws = nodes[1].ws(t);
        assert_eq!(next_of_type(&mut ws, "welcome")["user_id"], "user:demo");
    }
}
