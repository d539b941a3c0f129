//! What a tick holds for compressed and changes-only sessions (built in `variants.rs`),
//! apart so that `frames.rs`, whose `Tick` carries it, and `variants.rs`, which builds
//! and picks from it, do not import each other.

use std::sync::{Arc, OnceLock};

/// A tick's frames beyond the plain ones.
#[derive(Debug)]
pub struct Encoded {
    pub all: SetFrames,
    /// Indexed by set id, like the tick's plain set frames.
    pub sets: Vec<Option<SetFrames>>,
}

/// One set's (or the all-symbols feed's) frames of a tick beyond the plain one.
#[derive(Debug, Default)]
pub struct SetFrames {
    /// The plain frame, compressed.
    pub deflated: Option<Arc<[u8]>>,
    pub change: Change,
    /// The whole-state message, made on first need.
    pub(super) whole: OnceLock<Whole>,
}

/// A whole-state message, plain and compressed.
#[derive(Debug)]
pub struct Whole {
    /// The `seq` it carries: the last message of its set (see `Changes::state_seq`).
    pub seq: u64,
    pub plain: Arc<[u8]>,
    pub deflated: Option<Arc<[u8]>>,
}

/// A set's changes message of one tick.
#[derive(Debug, Default)]
pub enum Change {
    /// No changes-only session was open when the tick was built.
    #[default]
    NotBuilt,
    /// Nothing changed for the set and the tick is no heartbeat: nothing is sent.
    Quiet,
    /// What changed since `prev_seq`.
    Message { prev_seq: u64, plain: Arc<[u8]>, deflated: Option<Arc<[u8]>> },
}
