//! The cluster's tick plane: one leader ticks for every node, every node fans out.
//!
//! Two threads per node, each with its own Redis connection (a third behind Redis
//! Sentinel, **sentinel**, asks the Sentinels every second whether the master moved:
//! [`target::check_master`]); the event loops never touch Redis:
//! - **lead** contends for the [`Lease`] every [`CONTEND_EVERY`], renews it every
//!   [`RENEW_EVERY`] while it holds it, and while it leads advances the prices on
//!   absolute deadlines and publishes each tick as data ([`TickData`]) through the
//!   fenced publish script. A new leader continues from the newest tick it knows (the
//!   one in Redis or the last one this node received, whichever is newer): `seq` + 1
//!   and the same prices, never the start prices again. [`Leadership`] decides what to
//!   do when, without Redis or a clock; the thread reads the clock and does the I/O.
//! - **follow** subscribes to the tick channel, drops anything not newer than what it
//!   has (duplicates after a lost reply, stale ticks), builds the frame with the same
//!   code as a single node ([`crate::ticker::Tick::build`]) once per tick, and hands
//!   it to the event loops like the local ticker does. The leader receives its own
//!   ticks the same way, so every node's frame for one `seq` is the same bytes.
//!
//! Redis down: publishing fails, so ticks pause; the leader steps down when its lease
//! runs out unrenewed; both threads reconnect on a jittered backoff and log once per
//! change of state; `/healthz` reports the follower's connection.
//!
//! [`CONTEND_EVERY`]: super::leadership::CONTEND_EVERY
//! [`RENEW_EVERY`]: super::leadership::RENEW_EVERY

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use super::Keys;
use super::leadership::{
    AfterPublish, DueTick, LEASE_TTL, LeaderStep, Leadership, LeaseChange, Published, newest_tick,
};
use super::lease::{Lease, unique_node_id};
use super::link::{Backoff, BackoffPolicy, LinkConfig, LinkError, RedisLink};
use super::target::{self, RedisTarget};
use super::wire::{self, LastTick, TickData};
use crate::metrics::{Metrics, RedisErrorKind};
use crate::source::{PriceSource, SourceHealth};
use crate::symbols::sets::{ActiveCache, SetRegistry};
use crate::ticker::prices::Quote;
use crate::ticker::variants::{TickBuilder, Wanted};
use crate::ticker::{self, Subscriber};

/// How long a blocked read on the tick channel waits before checking for shutdown.
const READ_POLL: Duration = Duration::from_millis(250);
/// How often a node behind Sentinels asks them whether the master moved.
const CHECK_MASTER_EVERY: Duration = Duration::from_secs(1);
/// Reconnects back off to at most this, so ticks resume within a few seconds of Redis
/// coming back.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// `/healthz` reason before this node's tick subscription first works.
pub const JOINING: &str = "joining the cluster";
/// `/healthz` reason while Redis cannot be reached (or refuses this node).
pub const REDIS_UNREACHABLE: &str = "redis unreachable";
/// `/healthz` reason when the Redis URL cannot be used at all.
pub const REDIS_URL_REFUSED: &str = "redis URL refused";

/// Whether this node's link to the cluster works, for `/healthz`. The reason is one of
/// a few fixed phrases, never an error's text: that goes to the log, and a health check
/// may be public.
#[derive(Debug, Default)]
pub struct Health {
    down: Mutex<Option<&'static str>>,
    /// Stale prices in the newest tick received, and the prices it had (0: simulated or
    /// none yet): the leader's upstream as every node sees it.
    stale: AtomicUsize,
    prices: AtomicUsize,
}

impl Health {
    /// `Some(reason)` while the node is cut off from the cluster.
    pub fn unhealthy_reason(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(PoisonError::into_inner).map(str::to_owned)
    }

    /// The cluster's price source, as the newest tick says.
    pub fn source(&self) -> SourceHealth {
        let (stale, of) = (self.stale.load(Ordering::Relaxed), self.prices.load(Ordering::Relaxed));
        SourceHealth::from_counts(stale, of)
    }

    fn record_source(&self, data: &TickData) {
        let stale = data.sources.iter().filter(|s| s.stale).count();
        self.stale.store(stale, Ordering::Relaxed);
        self.prices.store(data.sources.len(), Ordering::Relaxed);
    }

    /// Records the state; returns whether it changed (for one log line per change).
    fn set(&self, reason: Option<&'static str>) -> bool {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *down, reason) != reason
    }
}

/// What both threads share.
struct Plane {
    target: RedisTarget,
    keys: Keys,
    prefix: String,
    interval: Duration,
    subscribers: Vec<Subscriber>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    /// The symbol sets this node's sessions chose: one frame each per tick.
    sets: Arc<SetRegistry>,
    stop: AtomicBool,
    /// The newest tick this node received: where it continues if it becomes leader.
    last_seen: Mutex<Option<TickData>>,
}

/// The running tick plane of one node.
pub struct ClusterTicker {
    plane: Arc<Plane>,
    threads: Vec<JoinHandle<()>>,
}

impl ClusterTicker {
    /// Starts both threads. `source` holds the configured symbols and start prices (used
    /// only if no tick was ever published); an exchange feed is consumed only while this
    /// node leads. `health` is kept up to date for `/healthz`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        target: RedisTarget,
        prefix: &str,
        source: PriceSource,
        interval: Duration,
        subscribers: Vec<Subscriber>,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        sets: Arc<SetRegistry>,
    ) -> std::io::Result<ClusterTicker> {
        let plane = Arc::new(Plane {
            target,
            keys: Keys::new(prefix),
            prefix: prefix.to_owned(),
            interval,
            subscribers,
            metrics,
            health,
            sets,
            stop: AtomicBool::new(false),
            last_seen: Mutex::new(None),
        });
        plane.metrics.redis_failovers.read_from(|| target::MASTER.failovers());
        // Unhealthy until the channel is subscribed: ticks cannot arrive before.
        plane.health.set(Some(JOINING));
        let node_id = unique_node_id(&hostname());
        crate::info!("cluster node", node_id = node_id);
        let mut threads = Vec::new();
        if matches!(plane.target, RedisTarget::Sentinels { .. }) {
            let plane = plane.clone();
            threads.push(
                thread::Builder::new()
                    .name("cluster-sentinel".into())
                    .spawn(move || watch_master(&plane))?,
            );
        }
        let follow = {
            let plane = plane.clone();
            thread::Builder::new().name("cluster-follow".into()).spawn(move || follow(&plane))?
        };
        let lead = {
            let plane = plane.clone();
            thread::Builder::new()
                .name("cluster-lead".into())
                .spawn(move || lead(&plane, node_id, source))?
        };
        threads.extend([follow, lead]);
        Ok(ClusterTicker { plane, threads })
    }

    /// Stops both threads (a leader gives its lease up so another node need not wait
    /// out the ttl) and waits for them.
    pub fn stop(self) {
        self.plane.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn link_config() -> LinkConfig {
    LinkConfig {
        backoff: BackoffPolicy { max: MAX_BACKOFF, ..BackoffPolicy::default() },
        ..LinkConfig::default()
    }
}

/// The lead thread: contend, renew, and tick while leading. [`Leadership`] decides;
/// this loop only reads the clock and does the I/O.
fn lead(plane: &Plane, node_id: String, source: PriceSource) {
    let link = match RedisLink::to_target(plane.target.clone(), link_config()) {
        Ok(link) => link,
        Err(e) => {
            crate::error!("cluster: bad Redis URL; this node will never tick", error = e);
            return;
        }
    };
    let mut lead_thread = LeadThread {
        plane,
        link,
        lease: Lease::new(&plane.prefix, node_id, LEASE_TTL),
        source,
        leadership: Leadership::new(plane.interval, Instant::now()),
        payload: Vec::with_capacity(512),
        failing: false,
    };
    while !plane.stop.load(Ordering::Relaxed) {
        if let Some(wake) = lead_thread.act(Instant::now()) {
            thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }
    lead_thread.shut_down();
}

/// The lead thread's state: the decisions' ([`Leadership`]) and the I/O's.
struct LeadThread<'a> {
    plane: &'a Plane,
    link: RedisLink,
    lease: Lease,
    /// The prices; an exchange's stream is consumed only while this node leads.
    source: PriceSource,
    leadership: Leadership,
    /// The encoded tick, reused.
    payload: Vec<u8>,
    /// Whether Redis is failing (one log line per run of errors).
    failing: bool,
}

impl LeadThread<'_> {
    /// Does what is due at `now`; returns when to look again, or `None` to look again at
    /// once (after stepping down).
    fn act(&mut self, now: Instant) -> Option<Instant> {
        loop {
            match self.leadership.decide(now) {
                LeaderStep::AcquireOrRenew => self.acquire_or_renew(now),
                LeaderStep::StepDown => {
                    crate::warn!("cluster: lease not renewed in time; stepping down");
                    self.step_down();
                    return None;
                }
                LeaderStep::Publish(due) => {
                    return match self.publish(due) {
                        AfterPublish::Leading { .. } => Some(self.leadership.wake_at()),
                        AfterPublish::SteppedDown => None,
                    };
                }
                LeaderStep::Wait(wake) => return Some(wake),
            }
        }
    }

    fn acquire_or_renew(&mut self, now: Instant) {
        let reply = match self.link.with_conn(|c| self.lease.try_acquire_or_renew(c, now)) {
            Ok(reply) => reply,
            Err(e) => {
                self.leadership.on_lease_error(now);
                note_redis_error(&self.plane.metrics, &e, &mut self.failing, "cluster: lease");
                return;
            }
        };
        self.failing = false;
        match self.leadership.on_lease(now, reply) {
            LeaseChange::Renewed | LeaseChange::Following => {}
            LeaseChange::Acquired { fence, until } => self.take_lead(now, fence, until),
            LeaseChange::Lost { leader } => {
                crate::warn!("cluster: lease lost; following", leader = format!("{leader:?}"));
                self.step_down();
            }
        }
    }

    /// Becoming leader: continue from the newest tick known, in Redis or seen here.
    fn take_lead(&mut self, now: Instant, fence: u64, until: Instant) {
        let plane = self.plane;
        let stored = match self.link.with_conn(|c| wire::last_tick(c, &plane.prefix)) {
            Ok(LastTick::Found(t)) => Some(t),
            Ok(LastTick::Missing) => None,
            Ok(LastTick::Corrupt(e)) => {
                crate::warn!("cluster: stored last tick unreadable; ignoring it", error = e);
                None
            }
            Err(_) => None,
        };
        let seen = plane.last_seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let newest = newest_tick(stored, seen);
        if let Some(t) = &newest {
            self.source.restore(&t.prices);
        }
        // Only the leader consumes an exchange's stream.
        if let Err(e) = self.source.activate() {
            crate::error!("cluster: cannot start the upstream price thread", error = e);
        }
        plane.metrics.lease_acquisitions.fetch_add(1, Ordering::Relaxed);
        plane.metrics.cluster_leader.store(1, Ordering::Relaxed);
        let next_seq = self.leadership.begin_term(now, fence, until, newest.map(|t| t.seq));
        crate::info!("cluster: leading the ticker", fence = fence, next_seq = next_seq);
    }

    /// Publishes the due tick through the fenced script and applies the outcome.
    fn publish(&mut self, due: DueTick) -> AfterPublish {
        let metrics = &self.plane.metrics;
        let quotes = self.source.next_quotes(due.first);
        let data = TickData {
            seq: due.seq,
            ts_us: ticker::unix_micros(SystemTime::now()),
            fence: due.fence,
            prices: quotes.iter().map(|q| (q.symbol.clone(), q.price)).collect(),
            sources: quotes.iter().filter_map(|q| q.source).collect(),
        };
        self.payload.clear();
        data.encode(&mut self.payload);
        let channel = &self.plane.keys.ticks;
        let outcome = match self
            .link
            .with_conn(|c| self.lease.publish_tick(c, due.fence, channel, &self.payload))
        {
            Ok(true) => {
                metrics.ticks.fetch_add(1, Ordering::Relaxed);
                Published::Sent
            }
            Ok(false) => Published::Refused,
            // The outcome is unknown: the same seq goes out again next time and followers
            // drop it if it did arrive.
            Err(e) => {
                note_redis_error(metrics, &e, &mut self.failing, "cluster: publish");
                Published::Unknown
            }
        };
        let after = self.leadership.on_publish(outcome, Instant::now());
        match after {
            AfterPublish::Leading { missed } if missed > 0 => {
                metrics.tick_overruns.fetch_add(u64::from(missed), Ordering::Relaxed);
            }
            AfterPublish::Leading { .. } => {}
            AfterPublish::SteppedDown => {
                crate::warn!("cluster: publish refused (lease gone); following");
                self.step_down();
            }
        }
        after
    }

    fn step_down(&mut self) {
        self.leadership.step_down();
        self.source.deactivate();
        self.plane.metrics.cluster_leader.store(0, Ordering::Relaxed);
    }

    /// On shutdown a leader gives its lease up, so another node need not wait out the ttl.
    fn shut_down(mut self) {
        if let Some(fence) = self.leadership.fence() {
            let _ = self.link.with_conn(|c| self.lease.release(c, fence));
            self.plane.metrics.cluster_leader.store(0, Ordering::Relaxed);
        }
        self.source.deactivate();
    }
}

/// Counts a Redis error; logs only the first of a run (one line per change of state).
fn note_redis_error(metrics: &Metrics, e: &LinkError, failing: &mut bool, what: &str) {
    metrics.redis_error(e.kind());
    if !*failing && !matches!(e, LinkError::Backoff { .. }) {
        crate::warn!(what, error = e);
        *failing = true;
    }
}

/// The Sentinel thread (`--redis-sentinels` only): asks the Sentinels every
/// [`CHECK_MASTER_EVERY`] whether the master moved, so a switchover is followed within
/// about that, not when Sentinel gets round to demoting the old master.
fn watch_master(plane: &Plane) {
    let timeout = link_config().connect_timeout;
    let mut next = Instant::now() + CHECK_MASTER_EVERY;
    while !plane.stop.load(Ordering::Relaxed) {
        thread::sleep(next.saturating_duration_since(Instant::now()).min(READ_POLL));
        if Instant::now() >= next {
            target::check_master(&plane.target, timeout);
            next = Instant::now() + CHECK_MASTER_EVERY;
        }
    }
}

/// The follow thread: subscribe, receive, build once, hand to the event loops.
fn follow(plane: &Plane) {
    if let RedisTarget::Url(url) = &plane.target
        && let Err(e) = redis::Client::open(url.as_str())
    {
        plane.health.set(Some(REDIS_URL_REFUSED));
        crate::error!("cluster: bad Redis URL; this node gets no ticks", error = e);
        return;
    }
    let config = link_config();
    let mut backoff = Backoff::new(config.backoff, u64::from(std::process::id()));
    let mut last_seq: Option<u64> = None;
    let mut active = ActiveCache::default();
    let mut builder = TickBuilder::new(plane.interval);
    let mut quotes: Vec<Quote> = Vec::new();
    while !plane.stop.load(Ordering::Relaxed) {
        if let Err(wait) = backoff.check(Instant::now()) {
            // Short naps so shutdown is not held up by a long backoff.
            thread::sleep(wait.min(READ_POLL));
            continue;
        }
        // With Sentinels, every (re)connect asks them for the current master.
        let generation = target::MASTER.generation();
        let mut conn =
            match target::connect(&plane.target, config.connect_timeout, config.connect_timeout) {
                Ok(conn) => conn,
                Err(e) => {
                    cut_off(plane, &mut backoff, &e);
                    continue;
                }
            };
        // The subscription lives as long as `pubsub` (dropping it unsubscribes).
        let mut pubsub = conn.as_pubsub();
        let subscribed = pubsub
            .subscribe(&plane.keys.ticks)
            .and_then(|()| pubsub.set_read_timeout(Some(READ_POLL)));
        if let Err(e) = subscribed {
            cut_off(plane, &mut backoff, &e);
            continue;
        }
        backoff.on_success();
        if plane.health.set(None) {
            crate::info!("cluster: receiving ticks");
        }
        // Leaves the subscription to resubscribe on the master the Sentinels name now.
        while !plane.stop.load(Ordering::Relaxed) && generation == target::MASTER.generation() {
            let msg = match pubsub.get_message() {
                Ok(msg) => msg,
                Err(e) if e.is_timeout() => continue,
                Err(e) => {
                    cut_off(plane, &mut backoff, &e);
                    break;
                }
            };
            let data = match TickData::decode(msg.get_payload_bytes()) {
                Ok(data) => data,
                Err(e) => {
                    plane.metrics.redis_error(RedisErrorKind::Protocol);
                    crate::debug!("cluster: unreadable tick skipped", error = e);
                    continue;
                }
            };
            // Duplicates (a publish retried after a lost reply) and stale ticks.
            if last_seq.is_some_and(|last| data.seq <= last) {
                continue;
            }
            last_seq = Some(data.seq);
            plane.metrics.cluster_ticks_received.fetch_add(1, Ordering::Relaxed);
            plane.health.record_source(&data);
            if plane.metrics.ws_sessions_open.load(Ordering::Relaxed) <= 0 {
                // Nobody listens here: remember the tick (for leadership), build nothing.
                *plane.last_seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(data);
                continue;
            }
            quotes.clear();
            quotes.extend(data.prices.iter().enumerate().map(|(i, (s, p))| Quote {
                symbol: s.clone(),
                price: *p,
                source: data.sources.get(i).copied(),
            }));
            let sets = plane.sets.active(&mut active);
            let wanted = Wanted::from_sessions(&plane.metrics);
            let built = builder.build(data.seq, data.ts_us, &quotes, sets, wanted);
            plane.metrics.deflate_skipped.fetch_add(built.deflate_skipped, Ordering::Relaxed);
            let tick = built.tick;
            let pushed_out = ticker::publish(&tick, &plane.subscribers);
            plane.metrics.superseded_ticks.fetch_add(pushed_out, Ordering::Relaxed);
            *plane.last_seen.lock().unwrap_or_else(PoisonError::into_inner) = Some(data);
        }
    }
}

/// The tick subscription failed (to connect, to subscribe, or while receiving): counts
/// the error, backs off, and reports the node cut off. `/healthz` says only
/// [`REDIS_UNREACHABLE`] (Redis's own words can name hosts and users, and a health check
/// is often public); the log line, one per outage, has the detail.
fn cut_off(plane: &Plane, backoff: &mut Backoff, detail: &redis::RedisError) {
    backoff.on_failure(Instant::now());
    plane.metrics.redis_error(LinkError::kind_of(detail));
    if plane.health.set(Some(REDIS_UNREACHABLE)) {
        crate::warn!("cluster: cut off; ticks paused", reason = REDIS_UNREACHABLE, error = detail);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into())
}
