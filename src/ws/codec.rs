//! Incremental decoding of client frames into messages (RFC 6455 sections 5 and 8).
//!
//! [`Decoder::decode`] takes the connection's buffered bytes and decodes at most one
//! frame. A frame not yet whole is `Partial` and leaves the buffer untouched (it is
//! unmasked in place only once complete). Sizes are checked from the header, so a huge
//! declared length is refused before its payload is buffered.

use crate::error::{CloseCode, ProtocolError};
use crate::parse::Status;
use crate::ws::deflate;
use crate::ws::frame::{OpCode, apply_mask, parse_header};

/// A whole message or control frame from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// Code and reason, if the frame had a payload.
    Close(Option<CloseFrame>),
}

/// The payload of a close frame: a code RFC 6455 allows on the wire, and a UTF-8 reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: CloseCode,
    pub reason: String,
}

/// Server-side decoder state: the fragmented message in progress, if any.
#[derive(Debug)]
pub struct Decoder {
    max_message: usize,
    /// permessage-deflate was negotiated: RSV1 on a message's first frame means its
    /// payload is compressed.
    deflate: bool,
    fragments: Option<Fragments>,
}

/// A fragmented message in progress.
#[derive(Debug)]
struct Fragments {
    opcode: OpCode,
    compressed: bool,
    data: Vec<u8>,
}

impl Decoder {
    /// A decoder for client frames (which must be masked), refusing messages over
    /// `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder { max_message, deflate: false, fragments: None }
    }

    /// A decoder for a session that negotiated permessage-deflate. Compressed messages
    /// are bounded twice by `max_message`: as received, and inflated.
    pub fn with_deflate(max_message: usize) -> Decoder {
        Decoder { max_message, deflate: true, fragments: None }
    }

    /// Bytes held by a fragmented message in progress.
    pub fn buffered_len(&self) -> usize {
        self.fragments.as_ref().map_or(0, |f| f.data.len())
    }

    /// Decodes one frame from the start of `buf`. `Complete { value: None }` means a
    /// non-final fragment was absorbed.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Status<Option<Message>>, ProtocolError> {
        let (header, header_len) = match parse_header(buf)? {
            Status::Complete { value, consumed } => (value, consumed),
            Status::Partial => return Ok(Status::Partial),
        };
        let Some(mask) = header.mask else { return Err(ProtocolError::UnmaskedFrameFromClient) };
        if header.rsv1 {
            if !self.deflate {
                return Err(ProtocolError::ReservedBitsSet);
            }
            if !matches!(header.opcode, OpCode::Text | OpCode::Binary) {
                return Err(ProtocolError::CompressedControlOrContinuation);
            }
        }
        match (header.opcode, &self.fragments) {
            (OpCode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (OpCode::Text | OpCode::Binary, Some(_)) => {
                return Err(ProtocolError::ExpectedContinuation);
            }
            _ => {}
        }
        if !header.opcode.is_control() {
            let total = self.buffered_len() as u64 + header.payload_len;
            if total > self.max_message as u64 {
                return Err(ProtocolError::MessageTooBig);
            }
        }
        // Bounded by max_message (data) or 125 (control) above, so it fits in usize.
        let payload_len = header.payload_len as usize;
        let end = header_len + payload_len;
        if buf.len() < end {
            return Ok(Status::Partial);
        }
        let payload = &mut buf[header_len..end];
        apply_mask(payload, mask, 0);
        let message = self.absorb(header.opcode, header.rsv1, header.fin, payload)?;
        Ok(Status::Complete { value: message, consumed: end })
    }

    fn absorb(
        &mut self,
        opcode: OpCode,
        compressed: bool,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<Message>, ProtocolError> {
        match opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.to_vec()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.to_vec()))),
            OpCode::Close => parse_close(payload).map(|c| Some(Message::Close(c))),
            OpCode::Text | OpCode::Binary if fin => {
                self.finish(opcode, compressed, payload.to_vec()).map(Some)
            }
            OpCode::Text | OpCode::Binary => {
                self.fragments = Some(Fragments { opcode, compressed, data: payload.to_vec() });
                Ok(None)
            }
            OpCode::Continuation => {
                let Some(f) = &mut self.fragments else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                f.data.extend_from_slice(payload);
                if !fin {
                    return Ok(None);
                }
                let Some(f) = self.fragments.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                self.finish(f.opcode, f.compressed, f.data).map(Some)
            }
        }
    }

    /// A whole message: inflated if it was compressed, then checked as its type says.
    fn finish(
        &self,
        opcode: OpCode,
        compressed: bool,
        data: Vec<u8>,
    ) -> Result<Message, ProtocolError> {
        let data = if compressed { deflate::inflate(&data, self.max_message)? } else { data };
        if opcode == OpCode::Text {
            String::from_utf8(data).map(Message::Text).map_err(|_| ProtocolError::InvalidUtf8)
        } else {
            Ok(Message::Binary(data))
        }
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::InvalidCloseFrame),
        [hi, lo, reason @ ..] => {
            let code = CloseCode::from_wire(u16::from_be_bytes([*hi, *lo]))
                .ok_or(ProtocolError::InvalidCloseFrame)?;
            let reason = std::str::from_utf8(reason).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(Some(CloseFrame { code, reason: reason.to_owned() }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::encode_client_frame;

    const MASK: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Message>, ProtocolError> {
        let mut buf = bytes.to_vec();
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf)? {
                Status::Complete { value, consumed } => {
                    buf.drain(..consumed);
                    out.extend(value);
                }
                Status::Partial => return Ok(out),
            }
        }
    }

    #[test]
    fn a_masked_text_frame_round_trips() {
        let frame = encode_client_frame(true, OpCode::Text, b"{\"type\":\"ping\"}", MASK);
        let msgs = decode_all(&mut Decoder::new(1024), &frame).unwrap();
        assert_eq!(msgs, [Message::Text("{\"type\":\"ping\"}".into())]);
    }

    #[test]
    fn every_prefix_is_partial_and_leaves_the_buffer_untouched() {
        let frame = encode_client_frame(true, OpCode::Binary, &[5u8; 200], MASK);
        for end in 0..frame.len() {
            let mut buf = frame[..end].to_vec();
            assert_eq!(Decoder::new(1024).decode(&mut buf), Ok(Status::Partial));
            assert_eq!(buf, &frame[..end]);
        }
    }

    #[test]
    fn coalesced_frames_decode_one_by_one() {
        let mut bytes = encode_client_frame(true, OpCode::Text, b"a", MASK);
        bytes.extend(encode_client_frame(true, OpCode::Ping, b"p", MASK));
        bytes.extend(encode_client_frame(true, OpCode::Text, b"b", MASK));
        let msgs = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
        assert_eq!(
            msgs,
            [Message::Text("a".into()), Message::Ping(b"p".to_vec()), Message::Text("b".into())]
        );
    }

    #[test]
    fn fragments_are_reassembled_around_an_interleaved_ping() {
        let mut bytes = encode_client_frame(false, OpCode::Text, b"hel", MASK);
        bytes.extend(encode_client_frame(true, OpCode::Ping, b"x", MASK));
        bytes.extend(encode_client_frame(false, OpCode::Continuation, b"lo ", MASK));
        bytes.extend(encode_client_frame(true, OpCode::Continuation, "wörld".as_bytes(), MASK));
        let msgs = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
        assert_eq!(msgs, [Message::Ping(b"x".to_vec()), Message::Text("hello wörld".into())]);
    }

    /// A client frame with RSV1 set around the raw DEFLATE of `text`.
    fn compressed(fin: bool, opcode: OpCode, body: &[u8]) -> Vec<u8> {
        let mut f = encode_client_frame(fin, opcode, body, MASK);
        f[0] |= crate::ws::frame::RSV1;
        f
    }

    fn deflated(text: &[u8]) -> Vec<u8> {
        let frame = crate::ws::deflate::frame_here(OpCode::Text, text).unwrap();
        frame[2..].to_vec()
    }

    #[test]
    fn compressed_messages_are_inflated_whole_or_fragmented() {
        let body = deflated(br#"{"type":"ping"}"#);
        let mut d = Decoder::with_deflate(1024);
        let one = compressed(true, OpCode::Text, &body);
        assert_eq!(decode_all(&mut d, &one).unwrap(), [Message::Text(r#"{"type":"ping"}"#.into())]);
        // Fragmented: RSV1 on the first frame only, a ping in between.
        let (a, b) = body.split_at(3);
        let mut bytes = compressed(false, OpCode::Text, a);
        bytes.extend(encode_client_frame(true, OpCode::Ping, b"p", MASK));
        bytes.extend(encode_client_frame(true, OpCode::Continuation, b, MASK));
        assert_eq!(
            decode_all(&mut d, &bytes).unwrap(),
            [Message::Ping(b"p".to_vec()), Message::Text(r#"{"type":"ping"}"#.into())]
        );
        // An uncompressed message in a deflate session is taken as it is.
        let plain = encode_client_frame(true, OpCode::Text, b"hi", MASK);
        assert_eq!(decode_all(&mut d, &plain).unwrap(), [Message::Text("hi".into())]);
    }

    #[test]
    fn rsv1_is_refused_without_deflate_and_on_control_or_continuation_frames() {
        let body = deflated(b"x");
        let frame = compressed(true, OpCode::Text, &body);
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &frame),
            Err(ProtocolError::ReservedBitsSet)
        );
        let ping = compressed(true, OpCode::Ping, b"");
        assert_eq!(
            decode_all(&mut Decoder::with_deflate(1024), &ping),
            Err(ProtocolError::CompressedControlOrContinuation)
        );
        let mut bytes = encode_client_frame(false, OpCode::Text, b"a", MASK);
        bytes.extend(compressed(true, OpCode::Continuation, b"b"));
        assert_eq!(
            decode_all(&mut Decoder::with_deflate(1024), &bytes),
            Err(ProtocolError::CompressedControlOrContinuation)
        );
    }

    #[test]
    fn an_inflate_bomb_is_too_big_and_bad_data_is_invalid_payload() {
        let bomb = deflated(&vec![b' '; 100 << 10]);
        assert!(bomb.len() < 126, "{}", bomb.len());
        let frame = compressed(true, OpCode::Text, &bomb);
        let err = decode_all(&mut Decoder::with_deflate(32 << 10), &frame).unwrap_err();
        assert_eq!(err, ProtocolError::MessageTooBig);
        assert_eq!(err.close_code().as_u16(), 1009);
        let garbage = compressed(true, OpCode::Text, &[0xFF; 8]);
        let err = decode_all(&mut Decoder::with_deflate(1024), &garbage).unwrap_err();
        assert_eq!(err.close_code().as_u16(), 1007);
        // Inflated text is still checked as UTF-8.
        let bad = compressed(true, OpCode::Text, &deflated(&[0xC3, 0x28]));
        assert_eq!(
            decode_all(&mut Decoder::with_deflate(1024), &bad),
            Err(ProtocolError::InvalidUtf8)
        );
    }

    #[test]
    fn each_rule_has_its_error() {
        let unmasked = [0x81, 0x01, b'a'];
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &unmasked),
            Err(ProtocolError::UnmaskedFrameFromClient)
        );
        let cont = encode_client_frame(true, OpCode::Continuation, b"x", MASK);
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &cont),
            Err(ProtocolError::UnexpectedContinuation)
        );
        let mut two = encode_client_frame(false, OpCode::Text, b"x", MASK);
        two.extend(encode_client_frame(true, OpCode::Text, b"y", MASK));
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &two),
            Err(ProtocolError::ExpectedContinuation)
        );
        let bad = encode_client_frame(true, OpCode::Text, &[0xff, 0xfe], MASK);
        assert_eq!(decode_all(&mut Decoder::new(1024), &bad), Err(ProtocolError::InvalidUtf8));
        let close1 = encode_client_frame(true, OpCode::Close, &[3], MASK);
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &close1),
            Err(ProtocolError::InvalidCloseFrame)
        );
        let close_bad_code = encode_client_frame(true, OpCode::Close, &1005u16.to_be_bytes(), MASK);
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &close_bad_code),
            Err(ProtocolError::InvalidCloseFrame)
        );
        let mut close_bad_reason = 1000u16.to_be_bytes().to_vec();
        close_bad_reason.push(0xff);
        let f = encode_client_frame(true, OpCode::Close, &close_bad_reason, MASK);
        assert_eq!(decode_all(&mut Decoder::new(1024), &f), Err(ProtocolError::InvalidUtf8));
    }

    #[test]
    fn a_message_too_big_is_refused_from_its_header_alone() {
        let frame = encode_client_frame(true, OpCode::Binary, &[0u8; 2000], MASK);
        // Only the header has arrived: the declared length already exceeds the limit.
        let mut head = frame[..8].to_vec();
        assert_eq!(Decoder::new(1024).decode(&mut head), Err(ProtocolError::MessageTooBig));
        // Fragments add up.
        let mut d = Decoder::new(1024);
        let mut bytes = encode_client_frame(false, OpCode::Text, &[b'a'; 600], MASK);
        bytes.extend(encode_client_frame(true, OpCode::Continuation, &[b'a'; 600], MASK));
        assert_eq!(decode_all(&mut d, &bytes), Err(ProtocolError::MessageTooBig));
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(b"bye");
        let f = encode_client_frame(true, OpCode::Close, &payload, MASK);
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &f).unwrap(),
            [Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() }))]
        );
        // A code the server has no name for is kept as sent.
        let f = encode_client_frame(true, OpCode::Close, &4321u16.to_be_bytes(), MASK);
        assert_eq!(
            decode_all(&mut Decoder::new(1024), &f).unwrap(),
            [Message::Close(Some(CloseFrame { code: CloseCode::Other(4321), reason: "".into() }))]
        );
        let empty = encode_client_frame(true, OpCode::Close, &[], MASK);
        assert_eq!(decode_all(&mut Decoder::new(1024), &empty).unwrap(), [Message::Close(None)]);
    }
}
