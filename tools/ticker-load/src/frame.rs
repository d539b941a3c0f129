//! RFC 6455 framing as a client sees it: parse the header of a server frame (unmasked)
//! and build the few client frames the tool sends (pong, close, subscribe), masked as the RFC
//! requires. Pure code over byte slices; no I/O, no allocation on the parse path.

use std::fmt;

/// The outcome of a parse step, after httparse: incomplete input is not invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Status<T> {
    /// A whole item was parsed from the first `consumed` bytes of the input.
    Complete { value: T, consumed: usize },
    /// The input is a valid prefix; nothing was consumed.
    Partial,
}

/// Frame opcodes (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Result<OpCode, FrameError> {
        Ok(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            other => return Err(FrameError::UnknownOpCode(other)),
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// One rule of RFC 6455 that a server frame broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FrameError {
    /// RSV1-3 set without a negotiated extension: RSV2 or RSV3 ever, RSV1 without
    /// permessage-deflate or on a control or continuation frame (RFC 7692 section 6.1).
    ReservedBits,
    /// Opcode 3-7 or B-F.
    UnknownOpCode(u8),
    /// A server must not mask its frames (section 5.1).
    MaskedServerFrame,
    /// Control frames must have FIN set (section 5.5).
    FragmentedControlFrame,
    /// Control frame payloads are at most 125 bytes (section 5.5).
    ControlFrameTooBig,
    /// The 64-bit length has its most significant bit set.
    LengthTooLarge,
    /// A continuation frame without a started message, or a new data frame inside one.
    BadContinuation,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ReservedBits => f.write_str("reserved bits set"),
            FrameError::UnknownOpCode(op) => write!(f, "unknown opcode {op:#x}"),
            FrameError::MaskedServerFrame => f.write_str("masked server frame"),
            FrameError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            FrameError::ControlFrameTooBig => f.write_str("control frame over 125 bytes"),
            FrameError::LengthTooLarge => f.write_str("frame length over 2^63"),
            FrameError::BadContinuation => f.write_str("bad continuation frame"),
        }
    }
}

/// A parsed frame header; the payload follows it in the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) fin: bool,
    /// RSV1: with permessage-deflate, the message is compressed. The caller judges it.
    pub(crate) rsv1: bool,
    pub(crate) opcode: OpCode,
    pub(crate) payload_len: u64,
}

/// Parses one server frame header. On `Complete`, `consumed` is the header length and
/// the payload is the next `payload_len` bytes.
pub(crate) fn parse_header(buf: &[u8]) -> Result<Status<FrameHeader>, FrameError> {
    let [b0, b1, rest @ ..] = buf else {
        return Ok(Status::Partial);
    };
    if b0 & 0x30 != 0 {
        return Err(FrameError::ReservedBits);
    }
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    let opcode = OpCode::from_bits(b0 & 0x0F)?;
    if b1 & 0x80 != 0 {
        return Err(FrameError::MaskedServerFrame);
    }
    let (payload_len, header_len) = match b1 & 0x7F {
        126 => match rest {
            [a, b, ..] => (u64::from(u16::from_be_bytes([*a, *b])), 4),
            _ => return Ok(Status::Partial),
        },
        127 => match rest.first_chunk::<8>() {
            Some(bytes) => (u64::from_be_bytes(*bytes), 10),
            None => return Ok(Status::Partial),
        },
        small => (u64::from(small), 2),
    };
    if payload_len > i64::MAX as u64 {
        return Err(FrameError::LengthTooLarge);
    }
    if opcode.is_control() {
        if !fin {
            return Err(FrameError::FragmentedControlFrame);
        }
        if payload_len > 125 {
            return Err(FrameError::ControlFrameTooBig);
        }
    }
    Ok(Status::Complete {
        value: FrameHeader { fin, rsv1, opcode, payload_len },
        consumed: header_len,
    })
}

/// Appends one masked client frame with FIN set: a control frame, or a message (a
/// `subscribe`).
pub(crate) fn write_client_frame(out: &mut Vec<u8>, opcode: OpCode, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode.bits());
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// Appends a masked close frame with `code` and no reason.
pub(crate) fn write_close(out: &mut Vec<u8>, code: u16, mask: [u8; 4]) {
    write_client_frame(out, OpCode::Close, &code.to_be_bytes(), mask);
}

/// The status code of a close frame payload, if it has one.
pub(crate) fn close_code(payload: &[u8]) -> Option<u16> {
    payload.first_chunk::<2>().map(|b| u16::from_be_bytes(*b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(buf: &[u8]) -> (FrameHeader, usize) {
        match parse_header(buf).unwrap() {
            Status::Complete { value, consumed } => (value, consumed),
            Status::Partial => panic!("partial"),
        }
    }

    #[test]
    fn a_short_text_frame_header_is_two_bytes() {
        let (h, n) = header(&[0x81, 5, b'h', b'e']);
        assert_eq!(h, FrameHeader { fin: true, rsv1: false, opcode: OpCode::Text, payload_len: 5 });
        assert_eq!(n, 2);
        let (h, _) = header(&[0xC1, 5]);
        assert!(h.rsv1, "RSV1 is reported, for the receiver to judge");
    }

    #[test]
    fn sixteen_and_sixty_four_bit_lengths_are_read_big_endian() {
        let (h, n) = header(&[0x82, 126, 0x01, 0x00]);
        assert_eq!((h.payload_len, n), (256, 4));
        let (h, n) = header(&[0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        assert_eq!((h.payload_len, n, h.fin), (65536, 10, false));
    }

    #[test]
    fn every_truncated_header_is_partial() {
        let full = [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        for end in 0..full.len() {
            assert_eq!(parse_header(&full[..end]), Ok(Status::Partial), "prefix {end}");
        }
        assert_eq!(parse_header(&[0x81, 126, 1]), Ok(Status::Partial));
    }

    #[test]
    fn protocol_violations_are_typed_errors() {
        assert_eq!(parse_header(&[0xA1, 0]), Err(FrameError::ReservedBits));
        assert_eq!(parse_header(&[0x91, 0]), Err(FrameError::ReservedBits));
        assert_eq!(parse_header(&[0x83, 0]), Err(FrameError::UnknownOpCode(3)));
        assert_eq!(parse_header(&[0x81, 0x85]), Err(FrameError::MaskedServerFrame));
        assert_eq!(parse_header(&[0x09, 0]), Err(FrameError::FragmentedControlFrame));
        assert_eq!(parse_header(&[0x89, 126, 0, 126]), Err(FrameError::ControlFrameTooBig));
        assert_eq!(
            parse_header(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::LengthTooLarge)
        );
    }

    #[test]
    fn client_frames_are_masked_and_unmask_to_the_payload() {
        let mut out = Vec::new();
        let mask = [1, 2, 3, 4];
        write_client_frame(&mut out, OpCode::Pong, b"hello", mask);
        assert_eq!(&out[..2], &[0x8A, 0x80 | 5]);
        assert_eq!(&out[2..6], &mask);
        let unmasked: Vec<u8> =
            out[6..].iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m).collect();
        assert_eq!(unmasked, b"hello");
        for (len, header) in [(126usize, 4usize), (65535, 4), (65536, 10)] {
            let mut out = Vec::new();
            write_client_frame(&mut out, OpCode::Text, &vec![b'x'; len], mask);
            assert_eq!(out.len(), header + 4 + len, "{len}");
        }
    }

    #[test]
    fn a_close_frame_carries_its_code() {
        let mut out = Vec::new();
        write_close(&mut out, 1000, [0; 4]);
        assert_eq!(out, [0x88, 0x82, 0, 0, 0, 0, 0x03, 0xE8]);
        assert_eq!(close_code(&out[6..]), Some(1000));
        assert_eq!(close_code(&[]), None);
    }
}
