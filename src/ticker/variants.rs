//! The frames of sessions that are not plain: compressed (permessage-deflate) and
//! changes only (`?delta=1`), built once per tick per set like the plain ones, so a
//! subscriber still costs one `write` of shared bytes.
//!
//! What a tick builds depends on which kinds of sessions are open anywhere on the node
//! ([`Wanted`], read from the sessions-by-mode gauge): a node of plain sessions builds
//! exactly what it built before. Per set, and for the all-symbols feed:
//! - `deflated`: the plain frame compressed, for deflate sessions;
//! - `change`: the changes message (`"delta":true`), plain and compressed, or `Quiet`
//!   when the tick changed none of the set's symbols and is no heartbeat;
//! - the whole-state message (`"delta":false`), built by the first event loop that needs
//!   it (an upgrade, a resync after a gap) and shared from then on.
//!
//! Messages under `deflate::MIN_PAYLOAD` bytes (one symbol's change, a heartbeat) are
//! not worth a compression and go plain. Compression has a budget: half a tick interval from the start of the tick's build.
//! Frames past it go uncompressed (sessions then get the plain bytes, which RFC 7692
//! allows) and are counted in `ticker_deflate_skipped_total`.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::changes::{ChangeTracker, Changes};
pub use super::encoded::{Change, Encoded, SetFrames, Whole};
use super::frames::{self, Tick};
use super::prices::Quote;
use crate::metrics::Metrics;
use crate::metrics::SessionMode;
use crate::symbols::SymbolIndex;
use crate::symbols::sets::{ActiveSets, SetLease};
use crate::ws::deflate::{self, Agreed, Deflater};
use crate::ws::frame::{self, OpCode};

/// How one session is sent ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encoding {
    /// Changes only (`?delta=1`).
    pub delta: bool,
    /// permessage-deflate, as agreed at the upgrade.
    pub deflate: Option<Agreed>,
}

impl Encoding {
    pub const PLAIN: Encoding = Encoding { delta: false, deflate: None };

    /// Whole uncompressed frames: the fan-out's first and cheapest case.
    #[inline]
    pub fn is_plain(&self) -> bool {
        !self.delta && self.deflate.is_none()
    }

    pub fn mode(&self) -> SessionMode {
        match (self.delta, self.deflate.is_some()) {
            (false, false) => SessionMode::Plain,
            (false, true) => SessionMode::Deflate,
            (true, false) => SessionMode::Delta,
            (true, true) => SessionMode::DeltaDeflate,
        }
    }
}

/// Which kinds of frames a tick builds beyond the plain ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Wanted {
    /// Plain frames per set (plain or deflate sessions are open).
    pub plain: bool,
    pub deflated: bool,
    pub delta: bool,
    pub delta_deflated: bool,
}

impl Wanted {
    /// Every kind some open session is sent.
    pub fn from_sessions(metrics: &Metrics) -> Wanted {
        let open = |mode| metrics.ws_sessions_by_mode.get(mode) > 0;
        let deflated = open(SessionMode::Deflate);
        let delta_deflated = open(SessionMode::DeltaDeflate);
        Wanted {
            plain: open(SessionMode::Plain) || deflated,
            deflated,
            delta: delta_deflated || open(SessionMode::Delta),
            delta_deflated,
        }
    }

    /// Only plain frames (what every tick built before these modes).
    pub const PLAIN: Wanted =
        Wanted { plain: true, deflated: false, delta: false, delta_deflated: false };

    fn encoded(&self) -> bool {
        self.deflated || self.delta
    }
}

/// The ticker's builder: the plain frames, and what the open sessions need beyond them.
#[derive(Debug)]
pub struct TickBuilder {
    changes: ChangeTracker,
    /// Made on the first compression: its state is a few hundred KiB a node of plain
    /// sessions never needs.
    deflater: Option<Deflater>,
    /// Ticks between heartbeats of changes-only sessions (a second's worth).
    every: u64,
    /// Compression stops this long after a tick's build began.
    budget: Duration,
}

/// A built tick, and how many frames its compression budget left uncompressed.
#[derive(Debug)]
pub struct Built {
    pub tick: Tick,
    pub deflate_skipped: u64,
}

impl TickBuilder {
    pub fn new(interval: Duration) -> TickBuilder {
        let per_second = Duration::from_secs(1).as_nanos() / interval.as_nanos().max(1);
        TickBuilder {
            changes: ChangeTracker::default(),
            deflater: None,
            every: (per_second as u64).max(1),
            budget: interval / 2,
        }
    }

    pub fn build(
        &mut self,
        seq: u64,
        ts_us: u64,
        quotes: &[Quote],
        active: &ActiveSets,
        wanted: Wanted,
    ) -> Built {
        let started = Instant::now();
        let changes = Arc::new(self.changes.observe(seq, quotes, self.every));
        let mut tick = Tick::build_plain(seq, ts_us, quotes, active, wanted.plain);
        // Kept even with no changes-only session open: the first one's snapshot then
        // carries the seq its chain goes on from.
        tick.changes = Some(changes.clone());
        if !wanted.encoded() {
            return Built { tick, deflate_skipped: 0 };
        }
        let mut job = Job {
            deflater: &mut self.deflater,
            budget: self.budget,
            tick: &tick,
            changes: &changes,
            wanted,
            started,
            skipped: 0,
        };
        let all = job.set_frames(&tick.frame, None);
        let mut sets: Vec<Option<SetFrames>> = (0..active.slots).map(|_| None).collect();
        for (id, members) in &active.sets {
            let plain = match tick.set_frame(*id) {
                Some(plain) => plain.clone(),
                // Only changes-only sessions: no plain frame was built, compression
                // then has no use for one.
                None => Arc::from(&[][..]),
            };
            sets[*id as usize] = Some(job.set_frames(&plain, Some(members)));
        }
        let skipped = job.skipped;
        tick.encoded = Some(Arc::new(Encoded { all, sets }));
        Built { tick, deflate_skipped: skipped }
    }
}

/// One tick's build of the encoded frames.
struct Job<'a> {
    deflater: &'a mut Option<Deflater>,
    budget: Duration,
    tick: &'a Tick,
    changes: &'a Changes,
    wanted: Wanted,
    started: Instant,
    skipped: u64,
}

impl Job<'_> {
    fn set_frames(&mut self, plain: &[u8], members: Option<&[SymbolIndex]>) -> SetFrames {
        let deflated =
            if self.wanted.deflated && !plain.is_empty() { self.compress(plain) } else { None };
        let change = if self.wanted.delta { self.change(members) } else { Change::NotBuilt };
        SetFrames { deflated, change, whole: OnceLock::new() }
    }

    fn change(&mut self, members: Option<&[SymbolIndex]>) -> Change {
        let Some(delta) = self.changes.delta(members) else { return Change::Quiet };
        let (seq, ts_us) = (self.tick.seq, self.tick.ts_us);
        let prefix = frames::delta_prefix(seq, ts_us, Some(delta.prev_seq));
        let plain = frames::assemble(&prefix, &self.tick.entries, Some(&delta.changed));
        let deflated = if self.wanted.delta_deflated { self.compress(&plain) } else { None };
        Change::Message { prev_seq: delta.prev_seq, plain, deflated }
    }

    fn compress(&mut self, plain: &[u8]) -> Option<Arc<[u8]>> {
        let payload = frame::payload_of(plain);
        if !deflate::worth_compressing(payload.len()) {
            return None;
        }
        if self.started.elapsed() >= self.budget {
            self.skipped += 1;
            return None;
        }
        self.deflater.get_or_insert_with(Deflater::default).frame(OpCode::Text, payload)
    }
}

/// What a changes-only or compressed session is sent of a tick, chosen per subscriber
/// in the fan-out: a compare or two, no building in the steady state.
#[derive(Debug)]
pub enum Pick<'a> {
    /// Nothing for this session in this tick.
    Nothing,
    /// Shared bytes of the tick (a changes-only session then has this tick's `seq`).
    Frame(&'a Arc<[u8]>),
    /// A whole-state message (the session's chain starts again from its `seq`).
    Whole(&'a Arc<[u8]>, u64),
    /// A frame built for this session alone (a set the ticker did not know yet).
    Built(Arc<[u8]>, u64),
}

impl Pick<'_> {
    /// A whole-state pick as an owned frame and the `seq` it carries.
    pub fn into_whole(self) -> Option<(Arc<[u8]>, u64)> {
        match self {
            Pick::Whole(frame, seq) => Some((frame.clone(), seq)),
            Pick::Built(frame, seq) => Some((frame, seq)),
            Pick::Nothing | Pick::Frame(_) => None,
        }
    }
}

impl Tick {
    /// The encoded frames of the all-symbols feed (`None`) or of a set.
    fn frames_of(&self, set: Option<&SetLease>) -> Option<&SetFrames> {
        let encoded = self.encoded.as_deref()?;
        match set {
            None => Some(&encoded.all),
            Some(lease) => encoded.sets.get(lease.id() as usize)?.as_ref(),
        }
    }

    /// What a compressed session of whole frames on `set` is sent of this tick, given
    /// the set's plain frame (`plain`, found by the fan-out).
    #[inline]
    pub fn pick_deflated<'a>(
        &'a self,
        deflate: Option<Agreed>,
        set: Option<&SetLease>,
        plain: &'a Arc<[u8]>,
    ) -> &'a Arc<[u8]> {
        let deflated = self.frames_of(set).and_then(|f| f.deflated.as_ref());
        compressed_or_plain(plain, deflated, deflate)
    }

    /// What a changes-only session on `set`, whose last message had `last_seq`, is sent
    /// of this tick. `replacing` says the frame would replace an undelivered one (the
    /// socket is full): that one is lost, so the session resyncs.
    pub fn pick_delta(
        &self,
        encoding: Encoding,
        set: Option<&SetLease>,
        last_seq: Option<u64>,
        replacing: bool,
    ) -> Pick<'_> {
        match self.frames_of(set).map(|f| &f.change) {
            Some(Change::Quiet) => Pick::Nothing,
            Some(Change::Message { prev_seq, plain, deflated })
                if !replacing && last_seq == Some(*prev_seq) =>
            {
                Pick::Frame(compressed_or_plain(plain, deflated.as_ref(), encoding.deflate))
            }
            // Not built (the tick was made before the ticker knew of the session's mode
            // or set): a session that has the state as of the set's last message has
            // nothing new, whatever waits in its outbox.
            Some(Change::NotBuilt) | None if last_seq == Some(self.state_seq(set)) => Pick::Nothing,
            _ => self.whole_pick(encoding, set, last_seq),
        }
    }

    /// A new session's snapshot of this tick and, for a changes-only session, the `seq`
    /// its chain starts from. `None` for the empty set.
    pub fn snapshot_for(
        &self,
        encoding: Encoding,
        set: Option<&SetLease>,
    ) -> (Option<Arc<[u8]>>, Option<u64>) {
        if encoding.delta {
            return self.whole_pick(encoding, set, None).into_whole().unzip();
        }
        let Some(plain) = self.frame_for_feed(set) else { return (None, None) };
        // The compressed frame if the ticker made one (it does once a deflate session is
        // open), else the plain one, which a deflate session may always be sent.
        (Some(self.pick_deflated(encoding.deflate, set, &plain).clone()), None)
    }

    /// The `seq` of `set`'s last message up to this tick (this tick's without changes).
    fn state_seq(&self, set: Option<&SetLease>) -> u64 {
        let members = set.map(|l| &l.members()[..]);
        self.changes.as_deref().map_or(self.seq, |c| c.state_seq(members))
    }

    /// The whole-state message of `set` for a session whose last message had `last_seq`
    /// (`None`: a new session). Off the steady path: an upgrade, or a resync.
    #[cold]
    pub fn whole_pick(
        &self,
        encoding: Encoding,
        set: Option<&SetLease>,
        last_seq: Option<u64>,
    ) -> Pick<'_> {
        let members = set.map(|l| &l.members()[..]);
        if members.is_some_and(<[SymbolIndex]>::is_empty) {
            return Pick::Nothing;
        }
        // The state as of the set's last message, or, for a session that already had a
        // later message (its set just changed) or a tick without changes, as of now:
        // `seq` never goes back for a session.
        let state_seq = self.state_seq(set);
        if last_seq.is_some_and(|last| last > state_seq) {
            return Pick::Built(whole_frame(self, self.seq, members, encoding.deflate), self.seq);
        }
        let Some(frames) = self.frames_of(set) else {
            // A tick built before the set (or the first such session) was known.
            let frame = whole_frame(self, state_seq, members, encoding.deflate);
            return Pick::Built(frame, state_seq);
        };
        let whole = frames.whole.get_or_init(|| {
            let plain = whole_frame(self, state_seq, members, None);
            let payload = frame::payload_of(&plain);
            let deflated = deflate::worth_compressing(payload.len())
                .then(|| deflate::frame_here(OpCode::Text, payload))
                .flatten();
            Whole { seq: state_seq, plain, deflated }
        });
        let frame = compressed_or_plain(&whole.plain, whole.deflated.as_ref(), encoding.deflate);
        Pick::Whole(frame, whole.seq)
    }
}

/// What a session that agreed `deflate` (or not) is sent of one message: the compressed
/// frame if there is one and it fits the session's window, else the plain one.
#[inline]
fn compressed_or_plain<'a>(
    plain: &'a Arc<[u8]>,
    deflated: Option<&'a Arc<[u8]>>,
    deflate: Option<Agreed>,
) -> &'a Arc<[u8]> {
    match (deflated, deflate) {
        (Some(z), Some(agreed)) if agreed.fits(plain.len()) => z,
        _ => plain,
    }
}

/// A whole-state message of `members` carrying `seq`, compressed if `deflate` allows.
fn whole_frame(
    tick: &Tick,
    seq: u64,
    members: Option<&[SymbolIndex]>,
    deflate: Option<Agreed>,
) -> Arc<[u8]> {
    let prefix = frames::delta_prefix(seq, tick.ts_us, None);
    let plain = frames::assemble(&prefix, &tick.entries, members);
    let payload = frame::payload_of(&plain);
    match deflate {
        Some(agreed) if agreed.fits(plain.len()) && deflate::worth_compressing(payload.len()) => {
            deflate::frame_here(OpCode::Text, payload).unwrap_or(plain)
        }
        _ => plain,
    }
}

#[cfg(test)]
mod tests;
