//! RFC 6455 frame headers (section 5.2), opcodes, masking, and server-side encoding.
//!
//! ```text
//!  0               1               2               3
//!  |F|R|R|R| opcode|M| len (7)    | extended len (16 or 64) | masking key (32) |
//! ```

use crate::error::{CloseCode, ProtocolError};
use crate::parse::Status;

/// Frame opcodes (section 5.2); the reserved ones are refused when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    pub fn from_u8(b: u8) -> Result<OpCode, ProtocolError> {
        match b {
            0x0 => Ok(OpCode::Continuation),
            0x1 => Ok(OpCode::Text),
            0x2 => Ok(OpCode::Binary),
            0x8 => Ok(OpCode::Close),
            0x9 => Ok(OpCode::Ping),
            0xA => Ok(OpCode::Pong),
            other => Err(ProtocolError::UnknownOpcode(other)),
        }
    }

    pub fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: the message is compressed (only with permessage-deflate negotiated, and
    /// only on a message's first frame; the decoder checks both).
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

/// The first header byte's RSV1 bit: a compressed message (permessage-deflate).
pub const RSV1: u8 = 0x40;

/// Longest server header: 2 bytes + 64-bit length (servers never mask).
pub const MAX_HEADER_LEN: usize = 10;

/// Largest control-frame payload (section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Parses a frame header from the start of `buf`; `consumed` is the header length,
/// masking key included.
pub fn parse_header(buf: &[u8]) -> Result<Status<FrameHeader>, ProtocolError> {
    let [b0, b1, ..] = *buf else { return Ok(Status::Partial) };
    // RSV2 and RSV3 belong to no extension this server negotiates.
    if b0 & 0x30 != 0 {
        return Err(ProtocolError::ReservedBitsSet);
    }
    let rsv1 = b0 & RSV1 != 0;
    let fin = b0 & 0x80 != 0;
    let opcode = OpCode::from_u8(b0 & 0x0F)?;
    let masked = b1 & 0x80 != 0;
    let (payload_len, mut pos) = match b1 & 0x7F {
        126 => {
            let Some(b) = buf.get(2..4) else { return Ok(Status::Partial) };
            (u64::from(u16::from_be_bytes([b[0], b[1]])), 4)
        }
        127 => {
            let Some(b) = buf.get(2..10) else { return Ok(Status::Partial) };
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(b);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(ProtocolError::InvalidLength);
            }
            (len, 10)
        }
        n => (u64::from(n), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame);
        }
        if payload_len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlFrameTooBig);
        }
    }
    let mask = if masked {
        let Some(b) = buf.get(pos..pos + 4) else { return Ok(Status::Partial) };
        pos += 4;
        Some([b[0], b[1], b[2], b[3]])
    } else {
        None
    };
    Ok(Status::Complete {
        value: FrameHeader { fin, rsv1, opcode, mask, payload_len },
        consumed: pos,
    })
}

/// The header of an unmasked, final server frame, without allocating.
pub fn server_header(opcode: OpCode, payload_len: usize) -> ([u8; MAX_HEADER_LEN], usize) {
    let mut h = [0u8; MAX_HEADER_LEN];
    h[0] = 0x80 | opcode.as_u8();
    let len = match payload_len {
        0..=125 => {
            h[1] = payload_len as u8;
            2
        }
        126..=0xFFFF => {
            h[1] = 126;
            h[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            4
        }
        _ => {
            h[1] = 127;
            h[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            10
        }
    };
    (h, len)
}

/// The payload of a whole server frame (unmasked, as [`server_header`] makes them).
pub fn payload_of(frame: &[u8]) -> &[u8] {
    let start = match frame.get(1).map(|b| b & 0x7F) {
        None => return &[],
        Some(126) => 4,
        Some(127) => 10,
        Some(_) => 2,
    };
    frame.get(start..).unwrap_or(&[])
}

/// A whole unmasked, final server frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let (header, n) = server_header(opcode, payload.len());
    let mut out = Vec::with_capacity(n + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` and `reason`, the reason cut at a character boundary so
/// the payload fits a control frame.
pub fn encode_close(code: CloseCode, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.as_u16().to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    encode_frame(OpCode::Close, &payload)
}

/// A masked client frame (for tests, fuzz round trips and benches).
pub fn encode_client_frame(fin: bool, opcode: OpCode, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let (mut header, n) = server_header(opcode, payload.len());
    if !fin {
        header[0] &= 0x7F;
    }
    header[1] |= 0x80;
    let mut out = Vec::with_capacity(n + 4 + payload.len());
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], mask, 0);
    out
}

/// XORs `buf` with the mask; `offset` is the position of `buf[0]` within the payload,
/// so masking can resume mid-payload. Eight bytes at a time once aligned.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
    // The mask rotated so that rotated[0] applies to buf[0].
    let rotated: [u8; 4] = std::array::from_fn(|i| mask[(offset + i) % 4]);
    let (head, words, tail) = {
        // SAFETY: u64 has no invalid bit patterns and align_to_mut only reinterprets the
        // aligned middle of the slice; head and tail keep the unaligned ends as bytes.
        unsafe { buf.align_to_mut::<u64>() }
    };
    for (i, b) in head.iter_mut().enumerate() {
        *b ^= rotated[i % 4];
    }
    let shift = head.len() % 4;
    let m: [u8; 4] = std::array::from_fn(|i| rotated[(shift + i) % 4]);
    let word = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    for w in words.iter_mut() {
        *w ^= word;
    }
    for (i, b) in tail.iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive_mask(buf: &mut [u8], mask: [u8; 4], offset: usize) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b ^= mask[(offset + i) % 4];
        }
    }

    #[test]
    fn the_fast_mask_equals_the_plain_one_at_every_alignment_and_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..120u8).collect();
        for align in 0..8 {
            for offset in 0..8 {
                for len in 0..100 {
                    let mut fast = data.clone();
                    let mut plain = data.clone();
                    apply_mask(&mut fast[align..align + len], mask, offset);
                    naive_mask(&mut plain[align..align + len], mask, offset);
                    assert_eq!(fast, plain, "align {align} offset {offset} len {len}");
                }
            }
        }
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        for (len, expect) in [(0usize, 2usize), (125, 2), (126, 4), (65535, 4), (65536, 10)] {
            let (h, n) = server_header(OpCode::Text, len);
            assert_eq!(n, expect, "{len}");
            assert_eq!(h[0], 0x81);
            let Ok(Status::Complete { value, consumed }) = parse_header(&h[..n]) else { panic!() };
            assert_eq!((value.payload_len, consumed, value.mask), (len as u64, n, None));
        }
    }

    #[test]
    fn every_prefix_of_a_header_is_partial() {
        let frame = encode_client_frame(true, OpCode::Binary, &[7u8; 300], [1, 2, 3, 4]);
        for end in 0..8 {
            assert_eq!(parse_header(&frame[..end]), Ok(Status::Partial), "{end}");
        }
        let Ok(Status::Complete { value, consumed }) = parse_header(&frame) else { panic!() };
        assert_eq!((value.payload_len, consumed, value.mask), (300, 8, Some([1, 2, 3, 4])));
    }

    #[test]
    fn header_rules_map_to_their_errors() {
        assert_eq!(parse_header(&[0xA1, 0x80]), Err(ProtocolError::ReservedBitsSet));
        assert_eq!(parse_header(&[0x91, 0x80]), Err(ProtocolError::ReservedBitsSet));
        assert_eq!(parse_header(&[0x83, 0x80]), Err(ProtocolError::UnknownOpcode(3)));
        assert_eq!(parse_header(&[0x09, 0x80]), Err(ProtocolError::FragmentedControlFrame));
        assert_eq!(parse_header(&[0x89, 0xFE, 0, 126]), Err(ProtocolError::ControlFrameTooBig));
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse_header(&huge), Err(ProtocolError::InvalidLength));
    }

    #[test]
    fn close_reasons_are_cut_to_fit_a_control_frame() {
        let long = "é".repeat(100);
        let frame = encode_close(CloseCode::PolicyViolation, &long);
        assert!(frame.len() - 2 <= MAX_CONTROL_PAYLOAD);
        assert_eq!(&frame[2..4], &1008u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
    }
}
