//! The cluster's building blocks against a real Redis: the lease with its fence, the
//! stored last tick, and the link's reconnects and timeouts.

use crate::redis_server::RedisServer;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crypto_ticker::cluster::Keys;
use crypto_ticker::cluster::lease::{Lease, LeaseState};
use crypto_ticker::cluster::link::{LinkConfig, LinkError, RedisLink};
use crypto_ticker::cluster::wire::{LastTick, TickData, last_tick};

const PREFIX: &str = "ticker:";
/// Short, so a failover happens within the test; polled for, never slept on.
const TTL: Duration = Duration::from_millis(300);
/// Hang guard for polls that should succeed promptly.
const PATIENCE: Duration = Duration::from_secs(10);

/// Calls `f` through the link until it succeeds, waiting out backoffs (the caller's
/// rhythm, as the ticker would), and failing on anything else or after `PATIENCE`.
fn eventually<T>(
    link: &mut RedisLink,
    mut f: impl FnMut(&mut redis::Connection) -> redis::RedisResult<T>,
) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        match link.with_conn(&mut f) {
            Ok(v) => return v,
            Err(LinkError::Backoff { retry_in }) => std::thread::sleep(retry_in),
            Err(e @ LinkError::Unreachable(_)) if Instant::now() < deadline => {
                eprintln!("retrying: {e}");
            }
            Err(e) => panic!("{e}"),
        }
        assert!(Instant::now() < deadline, "no success within {PATIENCE:?}");
    }
}

fn acquire(link: &mut RedisLink, lease: &Lease) -> LeaseState {
    eventually(link, |c| lease.try_acquire_or_renew(c, Instant::now()))
}

fn tick(seq: u64, fence: u64, btc: f64) -> TickData {
    TickData {
        seq,
        ts_us: 1_732_400_000_000_000 + seq * 10_000,
        fence,
        prices: vec![("BTC-USD".into(), btc), ("ETH-USD".into(), 2500.01)],
        sources: Vec::new(),
    }
}

#[test]
fn a_failover_hands_seq_and_prices_to_a_new_leader_with_a_larger_fence() {
    let Some(server) = RedisServer::start() else { return };
    let keys = Keys::new(PREFIX);
    let mut sub = server.conn();
    sub.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut sub = sub.as_pubsub();
    sub.subscribe(&keys.ticks).unwrap();
    let mut next_tick = || TickData::decode(sub.get_message().unwrap().get_payload_bytes());

    let (mut link_a, mut link_b) =
        (RedisLink::new(&server.url()).unwrap(), RedisLink::new(&server.url()).unwrap());
    let a = Lease::new(PREFIX, "node-a".into(), TTL);
    let b = Lease::new(PREFIX, "node-b".into(), TTL);

    let LeaseState::Leader { fence: fence_a, .. } = acquire(&mut link_a, &a) else {
        panic!("the first node to ask must lead")
    };
    assert_eq!(acquire(&mut link_b, &b), LeaseState::Follower { leader: Some("node-a".into()) });
    for seq in 1..=3 {
        let payload = tick(seq, fence_a, 42000.0 + seq as f64 / 100.0).to_vec();
        assert!(eventually(&mut link_a, |c| a.publish_tick(c, fence_a, &keys.ticks, &payload)));
        assert_eq!(next_tick().unwrap().seq, seq);
    }

    // `a` stops renewing (a long pause); `b` keeps asking until Redis expires a's lease.
    let deadline = Instant::now() + PATIENCE;
    let fence_b = loop {
        match acquire(&mut link_b, &b) {
            LeaseState::Leader { fence, .. } => break fence,
            LeaseState::Follower { leader } => assert_eq!(leader.as_deref(), Some("node-a")),
        }
        assert!(Instant::now() < deadline, "node-b never took the lease");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(fence_b > fence_a, "{fence_b} > {fence_a}");

    // The new leader continues from the last published tick.
    let last = match eventually(&mut link_b, |c| last_tick(c, PREFIX)) {
        LastTick::Found(t) => t,
        other => panic!("{other:?}"),
    };
    assert_eq!((last.seq, last.fence), (3, fence_a));
    assert_eq!(last.prices[0].1.to_bits(), 42000.03f64.to_bits());

    // `a` wakes up and publishes seq 4 with its old fence: refused, nothing written.
    let stale = tick(4, fence_a, 1.0).to_vec();
    assert!(!eventually(&mut link_a, |c| a.publish_tick(c, fence_a, &keys.ticks, &stale)));
    let LastTick::Found(still) = eventually(&mut link_b, |c| last_tick(c, PREFIX)) else {
        panic!("last tick vanished")
    };
    assert_eq!(still, last);

    let fresh = tick(last.seq + 1, fence_b, last.prices[0].1).to_vec();
    assert!(eventually(&mut link_b, |c| b.publish_tick(c, fence_b, &keys.ticks, &fresh)));
    // Pub/sub keeps order: had a's seq 4 gone out, it would be the next message.
    let got = next_tick().unwrap();
    assert_eq!((got.seq, got.fence), (4, fence_b));
    assert_eq!(acquire(&mut link_a, &a), LeaseState::Follower { leader: Some("node-b".into()) });

    // A clean shutdown hands over at once, without waiting out the ttl.
    assert!(eventually(&mut link_b, |c| b.release(c, fence_b)));
    let LeaseState::Leader { fence, .. } = acquire(&mut link_a, &a) else {
        panic!("node-a should lead after node-b released")
    };
    assert!(fence > fence_b);
}

#[test]
fn a_link_survives_redis_being_killed_and_restarted_on_the_same_port() {
    let Some(mut server) = RedisServer::start() else { return };
    let port = server.port();
    let mut link = RedisLink::new(&server.url()).unwrap();
    let lease = Lease::new(PREFIX, "node-a".into(), Duration::from_secs(5));
    assert!(matches!(acquire(&mut link, &lease), LeaseState::Leader { fence: 1, .. }));
    assert!(matches!(acquire(&mut link, &lease), LeaseState::Leader { fence: 1, .. }));

    server.kill();
    let ping = |c: &mut redis::Connection| redis::cmd("PING").query::<String>(c);
    let err = link.with_conn(ping).unwrap_err();
    assert_eq!(err.kind_label(), "unreachable", "{err}");
    assert!(!link.is_connected());
    // Calls during the backoff fail at once, without touching the network.
    let started = Instant::now();
    let err = link.with_conn(ping).unwrap_err();
    assert!(matches!(err, LinkError::Backoff { .. } | LinkError::Unreachable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_millis(500));

    server.restart();
    assert_eq!(server.port(), port);
    assert_eq!(eventually(&mut link, ping), "PONG");
    // The restarted Redis is empty: its script cache too (the link reloads on NOSCRIPT),
    // and its fence counter, which starts again at 1 (see the key layout in cluster/).
    assert!(matches!(acquire(&mut link, &lease), LeaseState::Leader { fence: 1, .. }));
    let mut conn = server.conn();
    assert_eq!(last_tick(&mut conn, PREFIX).unwrap(), LastTick::Missing);
}

#[test]
fn a_redis_that_accepts_but_never_answers_is_a_timeout_not_a_hang() {
    // Not Redis at all: a socket that accepts connections and never replies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("redis://{}/", silent.local_addr().unwrap());
    let config = LinkConfig {
        connect_timeout: Duration::from_millis(200),
        io_timeout: Duration::from_millis(200),
        ..LinkConfig::default()
    };
    let mut link = RedisLink::with_config(&url, config).unwrap();
    let started = Instant::now();
    let err = link.with_conn(|c| redis::cmd("PING").query::<String>(c)).unwrap_err();
    assert_eq!(err.kind_label(), "timeout", "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(matches!(
        link.with_conn(|c| redis::cmd("PING").query::<String>(c)),
        Err(LinkError::Backoff { .. })
    ));
}
