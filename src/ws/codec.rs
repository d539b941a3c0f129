//! Incremental decoding of client frames into messages (RFC 6455 sections 5 and 8).
//!
//! [`Decoder::decode`] takes the connection's buffered bytes and decodes at most one
//! frame. A frame not yet whole is `Partial` and leaves the buffer untouched (it is
//! unmasked in place only once complete). Sizes are checked from the header, so a huge
//! declared length is refused before its payload is buffered.

use crate::error::{CloseCode, ProtocolError};
use crate::parse::Status;
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
    fragments: Option<(OpCode, Vec<u8>)>,
}

impl Decoder {
    /// A decoder for client frames (which must be masked), refusing messages over
    /// `max_message` bytes.
    pub fn new(max_message: usize) -> Decoder {
        Decoder { max_message, fragments: None }
    }

    /// Bytes held by a fragmented message in progress.
    pub fn buffered_len(&self) -> usize {
        self.fragments.as_ref().map_or(0, |(_, b)| b.len())
    }

    /// Decodes one frame from the start of `buf`. `Complete { value: None }` means a
    /// non-final fragment was absorbed.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Status<Option<Message>>, ProtocolError> {
        let (header, header_len) = match parse_header(buf)? {
            Status::Complete { value, consumed } => (value, consumed),
            Status::Partial => return Ok(Status::Partial),
        };
        let Some(mask) = header.mask else { return Err(ProtocolError::UnmaskedFrameFromClient) };
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
        let message = self.absorb(header.opcode, header.fin, payload)?;
        Ok(Status::Complete { value: message, consumed: end })
    }

    fn absorb(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<Message>, ProtocolError> {
        match opcode {
            OpCode::Ping => Ok(Some(Message::Ping(payload.to_vec()))),
            OpCode::Pong => Ok(Some(Message::Pong(payload.to_vec()))),
            OpCode::Close => parse_close(payload).map(|c| Some(Message::Close(c))),
            OpCode::Text | OpCode::Binary if fin => finish(opcode, payload.to_vec()).map(Some),
            OpCode::Text | OpCode::Binary => {
                self.fragments = Some((opcode, payload.to_vec()));
                Ok(None)
            }
            OpCode::Continuation => {
                let Some((_, data)) = &mut self.fragments else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                data.extend_from_slice(payload);
                if !fin {
                    return Ok(None);
                }
                let Some((first, data)) = self.fragments.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                finish(first, data).map(Some)
            }
        }
    }
}

fn finish(opcode: OpCode, data: Vec<u8>) -> Result<Message, ProtocolError> {
    if opcode == OpCode::Text {
        String::from_utf8(data).map(Message::Text).map_err(|_| ProtocolError::InvalidUtf8)
    } else {
        Ok(Message::Binary(data))
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
