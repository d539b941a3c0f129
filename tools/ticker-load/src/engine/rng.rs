//! A per-thread random source for handshake keys and mask seeds.

use crate::conn;

/// They need to be unpredictable to intermediaries only, so xorshift seeded from the
/// OS is enough.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new() -> Rng {
        let seed = getrandom::u64()
            .unwrap_or_else(|_| conn::unix_micros() ^ u64::from(std::process::id()));
        Rng(seed | 1)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(super) fn bytes16(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_ne_bytes());
        out[8..].copy_from_slice(&self.next().to_ne_bytes());
        out
    }
}
