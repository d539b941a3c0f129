//! The TLS record layer of an upgraded WebSocket session, run by the server itself.
//!
//! rustls does the handshake and serves HTTP; when a connection becomes a WebSocket
//! session, its traffic keys are taken out of rustls (the kTLS route rustls offers:
//! `dangerous_extract_secrets`) and the session's records are sealed and opened here,
//! with ring's AEADs (the same code rustls would run). Why: a tick goes to each TLS
//! subscriber as one record, and going through rustls' buffered connection touches
//! several kilobytes of per-connection state and a heap buffer per record; at 1,000 TLS
//! subscribers that state no longer fits the cache between ticks and cost about twice the
//! CPU per frame of plain TCP. Here a session is two AEAD keys, two IVs and two sequence
//! numbers, and a tick is sealed into the loop's one scratch buffer.
//!
//! Pure: bytes in, bytes out, no I/O (the transport does that), so it is unit-tested
//! against rustls' own record layer and fuzzed. TLS 1.3 and 1.2, AES-128/256-GCM and
//! ChaCha20-Poly1305 (every suite the server offers).
//!
//! Before the upgrade, [`feedable`] frames the bytes the transport gives rustls, so that
//! rustls never holds the beginning of a record when the session is handed over: the
//! end of that record, and anything behind it, go to this layer instead of being lost.
//!
//! What the peer may send after the upgrade: application data, `close_notify`, other
//! alerts (an error). A TLS 1.3 KeyUpdate or a TLS 1.2 renegotiation is refused with an
//! error (the session ends; the client reconnects): extracted keys cannot be updated.
//! Sending stops at the suite's confidentiality limit (rustls' 2^24 records for AES-GCM,
//! about 46 hours of ticks at 100/s) with [`RecordError::KeyExhausted`], for the same
//! reason.

use std::fmt;
use std::ops::Range;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use rustls::{ConnectionTrafficSecrets, ExtractedSecrets, ProtocolVersion};

use crate::parse::Status;

/// Largest plaintext of one record (RFC 8446 §5.1, RFC 5246 §6.2.1).
pub const MAX_FRAGMENT: usize = 1 << 14;
const HEADER: usize = 5;
const TAG: usize = 16;
/// TLS 1.2 AES-GCM records carry the nonce's last 8 bytes in clear.
const EXPLICIT_NONCE: usize = 8;
/// Largest record body accepted: TLS 1.3 allows 256 bytes of expansion, TLS 1.2 2,048.
const MAX_BODY_13: usize = MAX_FRAGMENT + 256;
const MAX_BODY_12: usize = MAX_FRAGMENT + 2048;

/// Largest record body rustls reads (its `MAX_PAYLOAD`, exclusive): a header announcing
/// this much or more is refused as soon as it arrives.
const RUSTLS_MAX_BODY: usize = MAX_FRAGMENT + 2048;
/// Largest record rustls reads, header included: rustls' read buffer takes one such
/// record whole once it has processed what it held.
pub const MAX_RECORD: usize = HEADER + RUSTLS_MAX_BODY - 1;

/// TLS content types.
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;
const CHANGE_CIPHER_SPEC: u8 = 20;
/// The highest content type rustls knows (RFC 6520's heartbeat; refused later, not here).
const HEARTBEAT: u8 = 24;
/// The record header's version field, TLS 1.2's and (frozen) TLS 1.3's.
const LEGACY_VERSION: [u8; 2] = [3, 3];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// A version or suite this layer does not run (the connection stays with rustls).
    Unsupported,
    /// A record that fails authentication, or is malformed or oversized.
    Bad,
    /// The peer sent something a session cannot take after the upgrade (key update,
    /// renegotiation, change cipher spec, a record type it may not send).
    Unexpected(u8),
    /// The peer sent a fatal alert (its description code).
    Alert(u8),
    /// The sending key reached its confidentiality limit; the session must end.
    KeyExhausted,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Unsupported => f.write_str("protocol version or cipher suite unsupported"),
            RecordError::Bad => f.write_str("bad record"),
            RecordError::Unexpected(typ) => write!(f, "unexpected record of content type {typ}"),
            RecordError::Alert(code) => write!(f, "peer sent alert {code}"),
            RecordError::KeyExhausted => f.write_str("traffic key at its confidentiality limit"),
        }
    }
}

impl std::error::Error for RecordError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    Tls12,
    Tls13,
}

/// One direction's key, IV and record sequence number.
struct Direction {
    key: LessSafeKey,
    iv: [u8; 12],
    seq: u64,
    /// TLS 1.2 AES-GCM: an explicit nonce in each record.
    explicit_nonce: bool,
}

impl Direction {
    fn new(
        seq: u64,
        secrets: ConnectionTrafficSecrets,
        version: Version,
    ) -> Result<Self, RecordError> {
        let (algorithm, key, iv, gcm) = match &secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv, true),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv, true),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv, false)
            }
            _ => return Err(RecordError::Unsupported),
        };
        let key = UnboundKey::new(algorithm, key.as_ref()).map_err(|_| RecordError::Unsupported)?;
        let iv: [u8; 12] = iv.as_ref().try_into().map_err(|_| RecordError::Unsupported)?;
        Ok(Direction {
            key: LessSafeKey::new(key),
            iv,
            seq,
            explicit_nonce: gcm && version == Version::Tls12,
        })
    }

    /// The IV with the sequence number XORed into its last 8 bytes (both versions; for
    /// TLS 1.2 AES-GCM this is how rustls, and so this server, picks the explicit part).
    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }
}

/// Where an opened record's content lies in the buffer given to [`Records::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub content_type: u8,
    pub plain: Range<usize>,
    /// Bytes the record took in the buffer (header included).
    pub consumed: usize,
}

/// A session's two directions.
pub struct Records {
    version: Version,
    tx: Direction,
    rx: Direction,
    /// Records that may be sealed with one key (the suite's confidentiality limit).
    tx_limit: u64,
}

impl Records {
    /// Takes over from rustls: `secrets` as extracted, `version` and `limit` (the
    /// suite's confidentiality limit) as negotiated.
    pub fn new(
        version: ProtocolVersion,
        limit: u64,
        secrets: ExtractedSecrets,
    ) -> Result<Records, RecordError> {
        let version = match version {
            ProtocolVersion::TLSv1_3 => Version::Tls13,
            ProtocolVersion::TLSv1_2 => Version::Tls12,
            _ => return Err(RecordError::Unsupported),
        };
        let (tx_seq, tx) = secrets.tx;
        let (rx_seq, rx) = secrets.rx;
        Ok(Records {
            version,
            tx: Direction::new(tx_seq, tx, version)?,
            rx: Direction::new(rx_seq, rx, version)?,
            tx_limit: limit,
        })
    }

    /// Records the sending key may still seal before its confidentiality limit.
    pub fn records_left(&self) -> u64 {
        self.tx_limit.saturating_sub(self.tx.seq)
    }

    /// The ciphertext length of a record carrying `len` bytes.
    pub fn sealed_len(&self, len: usize) -> usize {
        HEADER
            + len
            + TAG
            + match (self.version, self.tx.explicit_nonce) {
                (Version::Tls13, _) => 1,
                (Version::Tls12, true) => EXPLICIT_NONCE,
                (Version::Tls12, false) => 0,
            }
    }

    /// Appends one record of `content_type` carrying `plain` (at most [`MAX_FRAGMENT`]
    /// bytes; the caller splits longer writes) to `out`.
    pub fn seal(
        &mut self,
        content_type: u8,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), RecordError> {
        debug_assert!(plain.len() <= MAX_FRAGMENT);
        if self.tx.seq >= self.tx_limit {
            return Err(RecordError::KeyExhausted);
        }
        let seq = self.tx.seq;
        let nonce = self.tx.nonce(seq);
        let start = out.len();
        let body_len = self.sealed_len(plain.len()) - HEADER;
        let outer_type = match self.version {
            Version::Tls13 => APPLICATION_DATA,
            Version::Tls12 => content_type,
        };
        let len = u16::try_from(body_len).map_err(|_| RecordError::Bad)?.to_be_bytes();
        out.extend_from_slice(&[outer_type, LEGACY_VERSION[0], LEGACY_VERSION[1], len[0], len[1]]);
        let (aad12, sealed_from) = match self.version {
            Version::Tls13 => (None, start + HEADER),
            Version::Tls12 => {
                if self.tx.explicit_nonce {
                    out.extend_from_slice(&nonce[4..]);
                }
                (Some(aad_tls12(seq, content_type, LEGACY_VERSION, plain.len())), out.len())
            }
        };
        out.extend_from_slice(plain);
        if self.version == Version::Tls13 {
            out.push(content_type);
        }
        let header: [u8; HEADER] =
            out[start..start + HEADER].try_into().map_err(|_| RecordError::Bad)?;
        let aad: &[u8] = match &aad12 {
            Some(aad) => aad,
            None => &header,
        };
        let tag = self
            .tx
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[sealed_from..],
            )
            .map_err(|_| RecordError::Bad)?;
        out.extend_from_slice(tag.as_ref());
        self.tx.seq += 1;
        Ok(())
    }

    /// Opens the first record in `buf` in place, if it is complete (`Ok(None)` if more
    /// bytes are needed). Empty application-data records are opened like any other.
    pub fn open(&mut self, buf: &mut [u8]) -> Result<Option<Opened>, RecordError> {
        let Some(header) = buf.get(..HEADER) else { return Ok(None) };
        let header: [u8; HEADER] = header.try_into().map_err(|_| RecordError::Bad)?;
        let body_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        let max = match self.version {
            Version::Tls13 => MAX_BODY_13,
            Version::Tls12 => MAX_BODY_12,
        };
        if body_len > max || body_len < TAG {
            return Err(RecordError::Bad);
        }
        let outer_type = header[0];
        // TLS 1.3 hides the real type inside; anything else outside is refused at once.
        if self.version == Version::Tls13 && outer_type != APPLICATION_DATA {
            return Err(RecordError::Unexpected(outer_type));
        }
        let consumed = HEADER + body_len;
        let Some(body) = buf.get_mut(HEADER..consumed) else { return Ok(None) };
        let seq = self.rx.seq;
        let (content_type, plain) = match self.version {
            Version::Tls13 => {
                let nonce = Nonce::assume_unique_for_key(self.rx.nonce(seq));
                let inner = self
                    .rx
                    .key
                    .open_in_place(nonce, Aad::from(header), body)
                    .map_err(|_| RecordError::Bad)?;
                // The content type is the last non-zero byte; zeros after it are padding.
                let Some(end) = inner.iter().rposition(|&b| b != 0) else {
                    return Err(RecordError::Bad);
                };
                if end > MAX_FRAGMENT {
                    return Err(RecordError::Bad);
                }
                (inner[end], HEADER..HEADER + end)
            }
            Version::Tls12 => {
                let explicit = if self.rx.explicit_nonce { EXPLICIT_NONCE } else { 0 };
                if body_len < explicit + TAG {
                    return Err(RecordError::Bad);
                }
                let nonce = if self.rx.explicit_nonce {
                    let mut nonce = [0u8; 12];
                    nonce[..4].copy_from_slice(&self.rx.iv[..4]);
                    nonce[4..].copy_from_slice(&body[..EXPLICIT_NONCE]);
                    nonce
                } else {
                    self.rx.nonce(seq)
                };
                let plain_len = body_len - explicit - TAG;
                let aad = aad_tls12(seq, outer_type, [header[1], header[2]], plain_len);
                let plain = self
                    .rx
                    .key
                    .open_within(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(aad),
                        body,
                        explicit..,
                    )
                    .map_err(|_| RecordError::Bad)?;
                if plain.len() > MAX_FRAGMENT {
                    return Err(RecordError::Bad);
                }
                (outer_type, HEADER..HEADER + plain_len)
            }
        };
        self.rx.seq += 1;
        match content_type {
            APPLICATION_DATA | ALERT => Ok(Some(Opened { content_type, plain, consumed })),
            CHANGE_CIPHER_SPEC | HANDSHAKE => Err(RecordError::Unexpected(content_type)),
            other => Err(RecordError::Unexpected(other)),
        }
    }
}

/// The first record's framing in a peer's byte stream, checked as rustls checks a record
/// header: `Complete` with its length, `Partial` while its header or body is still
/// arriving, [`RecordError::Bad`] for a header rustls refuses (a content type it does not
/// know, a version other than 3.x, an empty record that may not be empty, a body of
/// 18,432 bytes or more). No key is involved: this only says where records end.
pub fn frame(buf: &[u8]) -> Result<Status<()>, RecordError> {
    if let Some(&content_type) = buf.first()
        && !(CHANGE_CIPHER_SPEC..=HEARTBEAT).contains(&content_type)
    {
        return Err(RecordError::Bad);
    }
    if buf.get(1).is_some_and(|&major| major != LEGACY_VERSION[0]) {
        return Err(RecordError::Bad);
    }
    let Some(header) = buf.get(..HEADER) else { return Ok(Status::Partial) };
    let body_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
    if body_len >= RUSTLS_MAX_BODY || (body_len == 0 && header[0] != APPLICATION_DATA) {
        return Err(RecordError::Bad);
    }
    let consumed = HEADER + body_len;
    Ok(if buf.len() >= consumed {
        Status::Complete { value: (), consumed }
    } else {
        Status::Partial
    })
}

/// How many bytes at the front of `buf` may go to rustls: whole records only, no more
/// than `max` bytes of them unless the first alone is longer, and never the beginning
/// of a record, whose end would then be in rustls when the session is handed over. From
/// a header rustls refuses on, everything up to `max` goes: rustls reports the error
/// (and queues its alert) as it always did.
pub fn feedable(buf: &[u8], max: usize) -> usize {
    let mut end = 0;
    loop {
        match frame(&buf[end..]) {
            Ok(Status::Complete { consumed, .. }) if end == 0 || end + consumed <= max => {
                end += consumed
            }
            Ok(_) => return end,
            Err(_) => return buf.len().min(max).max(end),
        }
    }
}

/// What an alert's two bytes mean for the session: `Ok(())` for `close_notify` (an
/// orderly end), the error to close with otherwise.
pub fn alert(plain: &[u8]) -> Result<(), RecordError> {
    match plain {
        [_, 0] => Ok(()),
        [_, code] => Err(RecordError::Alert(*code)),
        _ => Err(RecordError::Bad),
    }
}

/// The `close_notify` alert's content (warning, close_notify).
pub const CLOSE_NOTIFY: [u8; 2] = [1, 0];

fn aad_tls12(seq: u64, content_type: u8, version: [u8; 2], len: usize) -> [u8; 13] {
    let mut aad = [0u8; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = content_type;
    aad[9..11].copy_from_slice(&version);
    // `len` is at most MAX_FRAGMENT + 2048 here: it fits.
    aad[11..].copy_from_slice(&(len as u16).to_be_bytes());
    aad
}

#[cfg(test)]
mod tests;
