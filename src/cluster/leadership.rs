//! [`Leadership`]: the lead thread's decisions, apart from Redis and the clock.
//!
//! The lead thread (in [`super::ticks`]) reads the clock, asks [`Leadership::decide`]
//! what to do at that `now`, does the Redis I/O the answer names, and hands the reply
//! back (`on_lease`, `on_lease_error`, `begin_term`, `on_publish`). Every rule below is
//! therefore tested without Redis and without sleeping. The lease's own guarantees (one
//! holder, fences, the fenced publish) are Redis's, in [`super::lease`].
//!
//! Rules, in the order [`Leadership::decide`] applies them at one `now`:
//! 1. Lease first: a follower contends every [`CONTEND_EVERY`], a leader renews every
//!    [`RENEW_EVERY`], and after a failed request either tries again [`CONTEND_EVERY`]
//!    later. The answer is applied before anything else is decided at that `now`:
//!    - granted with the fence this node leads with: a renewal, only `until` moves;
//!    - granted with any other fence (even while leading with an older one): a new
//!      term, which continues from the newest tick known (`seq` + 1, its prices), or
//!      starts at `seq` 0 with the start prices if the cluster never ticked;
//!    - another holder named while leading: step down.
//! 2. A leader whose `until` has come without a renewal steps down: Redis may have
//!    expired its key (the local clock only ever makes it step down earlier).
//! 3. A leader whose tick is due publishes it, with its fence. Published: `seq` moves
//!    on. Refused (the fence no longer holds the key): step down. Unknown (Redis error):
//!    the same `seq` goes out at the next deadline (followers drop a duplicate). The
//!    deadlines move on either way ([`TickSchedule`], the same as a single node's).
//! 4. Otherwise wait for the nearer of the next lease request and (leading) the next
//!    deadline.

use std::time::{Duration, Instant};

use super::lease::LeaseState;
use super::wire::TickData;
use crate::ticker::schedule::{Next, TickSchedule};

/// How long a leader keeps the lease without renewing: a killed leader is replaced
/// within this plus [`CONTEND_EVERY`].
pub const LEASE_TTL: Duration = Duration::from_millis(2000);
/// Renewals per lease lifetime: four, so three may fail before the lease runs out.
pub const RENEW_EVERY: Duration = Duration::from_millis(500);
/// How often a follower tries to take the lease (and a leader retries a failed renewal).
pub const CONTEND_EVERY: Duration = Duration::from_millis(250);

/// What the lead thread does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderStep {
    /// Take the lease (following) or renew it (leading): run acquire-or-renew and hand
    /// the reply to [`Leadership::on_lease`], or its failure to
    /// [`Leadership::on_lease_error`].
    AcquireOrRenew,
    /// The lease ran out here unrenewed: stop publishing ([`Leadership::step_down`]).
    StepDown,
    /// A tick is due: publish it through the fenced script, then
    /// [`Leadership::on_publish`].
    Publish(DueTick),
    /// Nothing to do before this instant.
    Wait(Instant),
}

/// The tick to publish now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueTick {
    /// The fence this node holds the lease with: the publish script checks it.
    pub fence: u64,
    pub seq: u64,
    /// The first tick of a cluster that never ticked: the start prices, unstepped.
    pub first: bool,
}

/// What a lease reply changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseChange {
    /// Still leading with the same fence; the lease runs on to its new `until`.
    Renewed,
    /// The lease is this node's with a fence it does not lead with: find the newest tick
    /// known, then [`Leadership::begin_term`].
    Acquired { fence: u64, until: Instant },
    /// Another node holds the lease and this one was leading: it follows now.
    Lost { leader: Option<String> },
    /// Another node holds the lease and this one was following already.
    Following,
}

/// How a publish went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Stored and sent: the next tick has the next `seq`.
    Sent,
    /// The script refused it: the lease is no longer ours with this fence.
    Refused,
    /// No reply (a Redis error): it may or may not have gone out.
    Unknown,
}

/// What a publish changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterPublish {
    /// Still leading; `missed` deadlines were skipped (see [`TickSchedule::ticked`]).
    Leading { missed: u32 },
    /// The publish was refused: this node follows now.
    SteppedDown,
}

/// This node's role in the tick plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Follower,
    Leader(Term),
}

/// One stretch of leading with one fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    fence: u64,
    /// Past this without a renewal, stop publishing (Redis may have expired us).
    until: Instant,
    next_seq: u64,
    schedule: TickSchedule,
    /// The first tick of a cluster that never ticked: the start prices, unstepped.
    first: bool,
}

/// What the lead thread knows: its role and when to ask Redis about the lease next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    interval: Duration,
    next_lease_at: Instant,
    role: Role,
}

impl Leadership {
    /// A follower that contends at `now`; it will tick every `interval` while leading.
    pub fn new(interval: Duration, now: Instant) -> Leadership {
        Leadership { interval, next_lease_at: now, role: Role::Follower }
    }

    pub fn role(&self) -> &Role {
        &self.role
    }

    /// The fence this node leads with, if it leads.
    pub fn fence(&self) -> Option<u64> {
        match &self.role {
            Role::Leader(term) => Some(term.fence),
            Role::Follower => None,
        }
    }

    /// What to do at `now` (the rules in the module doc, in order). Call again with the
    /// same `now` after carrying out [`LeaderStep::AcquireOrRenew`].
    pub fn decide(&self, now: Instant) -> LeaderStep {
        if now >= self.next_lease_at {
            return LeaderStep::AcquireOrRenew;
        }
        let Role::Leader(term) = &self.role else { return LeaderStep::Wait(self.wake_at()) };
        if now >= term.until {
            return LeaderStep::StepDown;
        }
        match term.schedule.next(now) {
            Next::Due => LeaderStep::Publish(DueTick {
                fence: term.fence,
                seq: term.next_seq,
                first: term.first,
            }),
            Next::Wait(_) => LeaderStep::Wait(self.wake_at()),
        }
    }

    /// When something is next due: the next lease request or (leading) the next tick.
    pub fn wake_at(&self) -> Instant {
        match &self.role {
            Role::Leader(term) => term.schedule.deadline().min(self.next_lease_at),
            Role::Follower => self.next_lease_at,
        }
    }

    /// Applies an acquire-or-renew reply to a request made at `now`.
    pub fn on_lease(&mut self, now: Instant, reply: LeaseState) -> LeaseChange {
        match reply {
            LeaseState::Leader { fence, until } => {
                self.next_lease_at = now + RENEW_EVERY;
                match &mut self.role {
                    Role::Leader(term) if term.fence == fence => {
                        term.until = until;
                        LeaseChange::Renewed
                    }
                    _ => LeaseChange::Acquired { fence, until },
                }
            }
            LeaseState::Follower { leader } => {
                self.next_lease_at = now + CONTEND_EVERY;
                match std::mem::replace(&mut self.role, Role::Follower) {
                    Role::Leader(_) => LeaseChange::Lost { leader },
                    Role::Follower => LeaseChange::Following,
                }
            }
        }
    }

    /// An acquire-or-renew request made at `now` failed: try again soon. A leader keeps
    /// leading until its `until` (rule 2).
    pub fn on_lease_error(&mut self, now: Instant) {
        self.next_lease_at = now + CONTEND_EVERY;
    }

    /// Starts leading with `fence` until `until` (from [`LeaseChange::Acquired`]), the
    /// first tick due at `now`, continuing from `newest_seq` (the newest tick known, if
    /// any). Returns the first `seq` it will publish.
    pub fn begin_term(
        &mut self,
        now: Instant,
        fence: u64,
        until: Instant,
        newest_seq: Option<u64>,
    ) -> u64 {
        let next_seq = newest_seq.map_or(0, |seq| seq + 1);
        let schedule = TickSchedule::new(self.interval, now);
        let first = newest_seq.is_none();
        self.role = Role::Leader(Term { fence, until, next_seq, schedule, first });
        next_seq
    }

    /// Stops leading (after [`LeaderStep::StepDown`]).
    pub fn step_down(&mut self) {
        self.role = Role::Follower;
    }

    /// Applies how the publish of the due tick went; `now` is read after it.
    pub fn on_publish(&mut self, outcome: Published, now: Instant) -> AfterPublish {
        // Only a leader is told to publish; a follower has nothing to apply.
        let Role::Leader(term) = &mut self.role else { return AfterPublish::SteppedDown };
        match outcome {
            Published::Refused => {
                self.role = Role::Follower;
                return AfterPublish::SteppedDown;
            }
            Published::Sent => term.next_seq += 1,
            Published::Unknown => {}
        }
        // The prices stepped for this tick whether or not it went out.
        term.first = false;
        AfterPublish::Leading { missed: term.schedule.ticked(now) }
    }
}

/// The newest of the tick stored in Redis and the last one this node received: where a
/// new leader continues (the stored one if both have the same `seq`).
pub fn newest_tick(stored: Option<TickData>, seen: Option<TickData>) -> Option<TickData> {
    match (stored, seen) {
        (Some(a), Some(b)) => Some(if a.seq >= b.seq { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
