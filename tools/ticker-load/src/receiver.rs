//! The receive side of one client connection, without sockets: turns the server's byte
//! stream into events (messages, pings, closes) and tracks `seq` gaps.
//!
//! Frames whose whole length fits in the caller's buffer are handled in place; a data
//! frame larger than `max_frame` is counted from its first bytes and the rest of it is
//! skipped as it arrives, so per-connection buffering stays bounded by `max_frame`.

use crate::frame::{self, FrameError, FrameHeader, OpCode, Status};
use crate::scan::{self, Fields};

/// What one step of the receiver found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event<'a> {
    /// A data message: the fields scanned from its start, and its payload when it came
    /// whole in one frame (`None` for a fragmented or oversized one).
    Message(Fields, Option<&'a [u8]>),
    /// A piece of a compressed message's payload (permessage-deflate, RSV1 on its first
    /// frame), in order; `end` on the last. Every byte of it comes through, whatever the
    /// frame sizes: the inflater needs them all.
    Compressed { piece: &'a [u8], end: bool },
    /// A ping; the pong must carry the same payload.
    Ping(&'a [u8]),
    /// A pong (the tool sends no pings; unsolicited pongs are allowed and ignored).
    Pong,
    /// The server closes, with its status code if it gave one.
    Close(Option<u16>),
    /// Bytes were consumed with nothing to report (a fragment, a skipped payload).
    Progress,
}

/// The data message in progress across frames.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Open {
    #[default]
    None,
    /// Uncompressed, with the fields of its first fragment.
    Plain(Fields),
    /// Compressed: its pieces go out as they come.
    Compressed,
}

/// Per-connection decoder state between reads.
#[derive(Debug, Default)]
pub(crate) struct Receiver {
    /// Payload bytes of an oversized frame still to discard (or, compressed, to pass on).
    skip: u64,
    open: Open,
    /// The oversized compressed frame being passed on has FIN: its last piece ends the
    /// message.
    skip_ends: bool,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
}

impl Receiver {
    /// A receiver for a connection whose upgrade answer accepted permessage-deflate.
    pub(crate) fn deflating() -> Receiver {
        Receiver { deflate: true, ..Receiver::default() }
    }

    /// Decodes the next event from the start of `buf`. `Partial` means the next frame is
    /// incomplete and at most `max_frame` long: keep the bytes and call again with more.
    pub(crate) fn next<'a>(
        &mut self,
        buf: &'a [u8],
        max_frame: usize,
    ) -> Result<Status<Event<'a>>, FrameError> {
        if self.skip > 0 {
            let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(buf.len());
            if n == 0 {
                return Ok(Status::Partial);
            }
            self.skip -= n as u64;
            let event = if self.open == Open::Compressed {
                let end = self.skip == 0 && self.skip_ends;
                if end {
                    self.open = Open::None;
                }
                Event::Compressed { piece: &buf[..n], end }
            } else {
                Event::Progress
            };
            return Ok(Status::Complete { value: event, consumed: n });
        }
        let Status::Complete { value: head, consumed: head_len } = frame::parse_header(buf)? else {
            return Ok(Status::Partial);
        };
        let total = head_len as u64 + head.payload_len;
        if total <= buf.len() as u64 {
            // The whole frame is here. Casts are safe: total <= buf.len().
            let payload = &buf[head_len..total as usize];
            let event = self.frame(head, payload, true)?;
            return Ok(Status::Complete { value: event, consumed: total as usize });
        }
        if total <= max_frame as u64 {
            return Ok(Status::Partial);
        }
        // Too big to buffer: only data frames get here (control frames are <= 127 bytes).
        let payload = &buf[head_len..];
        let event = self.frame(head, payload, false)?;
        self.skip = head.payload_len - payload.len() as u64;
        Ok(Status::Complete { value: event, consumed: buf.len() })
    }

    /// Handles one frame; `payload` is all of it when `whole`, else its start.
    fn frame<'a>(
        &mut self,
        head: FrameHeader,
        payload: &'a [u8],
        whole: bool,
    ) -> Result<Event<'a>, FrameError> {
        let fin = head.fin;
        if head.rsv1 && !(self.deflate && matches!(head.opcode, OpCode::Text | OpCode::Binary)) {
            return Err(FrameError::ReservedBits);
        }
        Ok(match head.opcode {
            OpCode::Text | OpCode::Binary => {
                if self.open != Open::None {
                    return Err(FrameError::BadContinuation);
                }
                if head.rsv1 {
                    return Ok(self.compressed(payload, fin, whole));
                }
                let fields = scan::scan(payload, whole && fin);
                if fin {
                    Event::Message(fields, whole.then_some(payload))
                } else {
                    self.open = Open::Plain(fields);
                    Event::Progress
                }
            }
            OpCode::Continuation => match self.open {
                Open::None => return Err(FrameError::BadContinuation),
                Open::Compressed => self.compressed(payload, fin, whole),
                Open::Plain(fields) if fin => {
                    self.open = Open::None;
                    Event::Message(fields, None)
                }
                Open::Plain(_) => Event::Progress,
            },
            OpCode::Ping => Event::Ping(payload),
            OpCode::Pong => Event::Pong,
            OpCode::Close => Event::Close(frame::close_code(payload)),
        })
    }

    /// A frame of a compressed message: its payload (or its start, when not `whole`).
    fn compressed<'a>(&mut self, piece: &'a [u8], fin: bool, whole: bool) -> Event<'a> {
        let end = fin && whole;
        self.open = if end { Open::None } else { Open::Compressed };
        self.skip_ends = fin;
        Event::Compressed { piece, end }
    }
}

/// How one `seq` relates to the previous one on the same connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqStep {
    /// The first seq seen: the baseline.
    First,
    /// Previous + 1.
    Next,
    /// Previous + 1 + n: n ticks were missed (conflated or lost).
    Gap(u64),
    /// Same as the previous (the snapshot repeats the current tick): not a gap.
    Repeat,
    /// Same as the previous, after a subscription change: the snapshot of the symbols
    /// just added, which repeats the latest seq. Neutral: not a tick, a gap, a repeat
    /// or a reorder.
    Snapshot,
    /// Lower than the previous: counted apart, never as a negative gap.
    Backwards,
}

/// The last `seq` seen on one connection.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SeqTracker {
    last: Option<u64>,
    resubscribed: Resubscribed,
}

/// Where a connection is after a subscription change (the `subscriptions` answer).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Resubscribed {
    /// No change pending: a repeat is a repeat.
    #[default]
    No,
    /// The answer came; the snapshot (the latest seq again) comes next.
    Answered,
    /// A seq came since the answer. The snapshot carries the latest seq, which may be
    /// new to the connection (a tick still queued for it); that queued tick then follows
    /// with the same seq, for the new set. Repeats stay neutral until a newer seq.
    Seen,
}

impl SeqTracker {
    pub(crate) fn observe(&mut self, seq: u64) -> SeqStep {
        let Some(last) = self.last else {
            self.last = Some(seq);
            self.after_change();
            return SeqStep::First;
        };
        if seq <= last {
            return match (seq == last, self.resubscribed) {
                (true, Resubscribed::No) => SeqStep::Repeat,
                (true, _) => {
                    self.resubscribed = Resubscribed::Seen;
                    SeqStep::Snapshot
                }
                (false, _) => SeqStep::Backwards,
            };
        }
        self.last = Some(seq);
        self.after_change();
        match seq - last - 1 {
            0 => SeqStep::Next,
            missed => SeqStep::Gap(missed),
        }
    }

    /// The server answered a subscription change (`subscriptions`): the next message that
    /// repeats the latest seq is its snapshot, neutral.
    pub(crate) fn resubscribed(&mut self) {
        self.resubscribed = Resubscribed::Answered;
    }

    /// A newer seq: the first after the answer may be the snapshot; the next ends the
    /// change.
    fn after_change(&mut self) {
        self.resubscribed = match self.resubscribed {
            Resubscribed::Answered => Resubscribed::Seen,
            Resubscribed::No | Resubscribed::Seen => Resubscribed::No,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::write_client_frame;

    /// An unmasked server frame.
    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => out.push(n as u8),
            n @ 126..=65535 => {
                out.push(126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn tick(seq: u64) -> Vec<u8> {
        server_frame(
            0x1,
            true,
            format!(r#"{{"type":"ticker","seq":{seq},"ts_us":{}}}"#, 1000 + seq).as_bytes(),
        )
    }

    /// Feeds `chunks` one read at a time, keeping the unconsumed tail as the engine does.
    fn feed(chunks: &[&[u8]], max_frame: usize) -> Vec<String> {
        feed_to(Receiver::default(), chunks, max_frame)
    }

    /// As [`feed`], into `rx`; a compressed message shows as `z` and its pieces joined.
    fn feed_to(mut rx: Receiver, chunks: &[&[u8]], max_frame: usize) -> Vec<String> {
        let mut compressed = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut seen = Vec::new();
        for chunk in chunks {
            pending.extend_from_slice(chunk);
            let mut at = 0;
            while let Status::Complete { value, consumed } =
                rx.next(&pending[at..], max_frame).unwrap()
            {
                at += consumed;
                match value {
                    Event::Message(f, _) => seen.push(format!("msg {:?} {:?}", f.seq, f.ts_us)),
                    Event::Ping(p) => seen.push(format!("ping {}", String::from_utf8_lossy(p))),
                    Event::Pong => seen.push("pong".into()),
                    Event::Close(code) => seen.push(format!("close {code:?}")),
                    Event::Compressed { piece, end } => {
                        compressed.extend_from_slice(piece);
                        if end {
                            seen.push(format!("z {}", String::from_utf8_lossy(&compressed)));
                            compressed.clear();
                        }
                    }
                    Event::Progress => {}
                }
            }
            pending.drain(..at);
            assert!(pending.len() <= max_frame, "buffered more than max_frame");
        }
        seen
    }

    #[test]
    fn many_frames_coalesced_in_one_read_are_all_decoded() {
        let mut all = Vec::new();
        for seq in 1..=50 {
            all.extend(tick(seq));
        }
        let seen = feed(&[&all], 65536);
        assert_eq!(seen.len(), 50);
        assert_eq!(seen[49], "msg Some(50) Some(1050)");
    }

    #[test]
    fn a_frame_split_at_every_byte_is_decoded_once() {
        let mut all = tick(1);
        all.extend(server_frame(0x9, true, b"hi"));
        all.extend(tick(2));
        for cut in 0..all.len() {
            let seen = feed(&[&all[..cut], &all[cut..]], 65536);
            assert_eq!(
                seen,
                ["msg Some(1) Some(1001)", "ping hi", "msg Some(2) Some(1002)"],
                "cut {cut}"
            );
        }
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(feed(&bytes, 65536).len(), 3);
    }

    #[test]
    fn a_fragmented_message_counts_once_with_its_first_fragment_fields() {
        let mut all = server_frame(0x1, false, br#"{"seq":5,"ts_us":6,"#);
        all.extend(server_frame(0x9, true, b"")); // control frames may interleave
        all.extend(server_frame(0x0, false, b"\"a\":1"));
        all.extend(server_frame(0x0, true, b"}"));
        assert_eq!(feed(&[&all], 65536), ["ping ", "msg Some(5) Some(6)"]);
    }

    #[test]
    fn a_frame_larger_than_max_frame_is_counted_and_skipped_without_buffering_it() {
        let mut big = br#"{"seq":9,"ts_us":10,"data":""#.to_vec();
        big.resize(200_000, b'x');
        let mut all = server_frame(0x1, true, &big);
        all.extend(tick(10));
        let chunks: Vec<&[u8]> = all.chunks(4096).collect();
        assert_eq!(feed(&chunks, 8192), ["msg Some(9) Some(10)", "msg Some(10) Some(1010)"]);
    }

    #[test]
    fn close_pong_and_bad_continuations_are_reported() {
        let mut all = server_frame(0xA, true, b"");
        all.extend(server_frame(0x8, true, &1001u16.to_be_bytes()));
        assert_eq!(feed(&[&all], 1024), ["pong", "close Some(1001)"]);
        let mut rx = Receiver::default();
        assert_eq!(rx.next(&server_frame(0x0, true, b"x"), 1024), Err(FrameError::BadContinuation));
        let mut out = Vec::new();
        write_client_frame(&mut out, OpCode::Text, b"x", [1, 2, 3, 4]);
        assert_eq!(Receiver::default().next(&out, 1024), Err(FrameError::MaskedServerFrame));
    }

    /// A server frame with RSV1 set.
    fn rsv1(mut frame: Vec<u8>) -> Vec<u8> {
        frame[0] |= 0x40;
        frame
    }

    #[test]
    fn rsv1_marks_a_compressed_message_only_when_deflate_was_negotiated() {
        let z = rsv1(server_frame(0x1, true, b"abc"));
        let mut rx = Receiver::default();
        assert_eq!(rx.next(&z, 1024), Err(FrameError::ReservedBits));
        let mut all = z.clone();
        all.extend(tick(1)); // a message may also come uncompressed
        assert_eq!(
            feed_to(Receiver::deflating(), &[&all], 1024),
            ["z abc", "msg Some(1) Some(1001)"]
        );
        // Never on a control frame or a continuation.
        let ping = rsv1(server_frame(0x9, true, b""));
        assert_eq!(Receiver::deflating().next(&ping, 1024), Err(FrameError::ReservedBits));
        let mut rx = Receiver::deflating();
        let first = rsv1(server_frame(0x1, false, b"a"));
        assert!(matches!(rx.next(&first, 1024), Ok(Status::Complete { .. })));
        let cont = rsv1(server_frame(0x0, true, b"b"));
        assert_eq!(rx.next(&cont, 1024), Err(FrameError::ReservedBits));
    }

    #[test]
    fn every_byte_of_a_fragmented_or_oversized_compressed_message_comes_through() {
        let mut all = rsv1(server_frame(0x1, false, b"ab"));
        all.extend(server_frame(0x9, true, b"p"));
        all.extend(server_frame(0x0, false, b"cd"));
        all.extend(server_frame(0x0, true, b"e"));
        let bytes: Vec<&[u8]> = all.chunks(1).collect();
        assert_eq!(feed_to(Receiver::deflating(), &bytes, 1024), ["ping p", "z abcde"]);

        let big: Vec<u8> = (0..50_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut all = rsv1(server_frame(0x1, true, &big));
        all.extend(tick(2));
        let chunks: Vec<&[u8]> = all.chunks(1000).collect();
        let seen = feed_to(Receiver::deflating(), &chunks, 4096);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].as_bytes()[2..], big[..]);
        assert_eq!(seen[1], "msg Some(2) Some(1002)");
    }

    #[test]
    fn seq_gaps_count_missed_ticks_and_repeats_are_not_gaps() {
        let mut t = SeqTracker::default();
        let steps: Vec<SeqStep> =
            [100, 100, 101, 104, 104, 102, 105].iter().map(|&s| t.observe(s)).collect();
        assert_eq!(
            steps,
            [
                SeqStep::First,
                SeqStep::Repeat,
                SeqStep::Next,
                SeqStep::Gap(2),
                SeqStep::Repeat,
                SeqStep::Backwards,
                SeqStep::Next,
            ]
        );
    }

    #[test]
    fn the_snapshot_after_a_subscription_change_is_neutral() {
        // The connection had seen 100; the snapshot repeats it.
        let mut t = SeqTracker::default();
        t.observe(100);
        t.resubscribed();
        let steps: Vec<SeqStep> = [100, 101, 101, 102].iter().map(|&s| t.observe(s)).collect();
        assert_eq!(steps, [SeqStep::Snapshot, SeqStep::Next, SeqStep::Repeat, SeqStep::Next]);

        // Tick 101 was still queued for the connection when it subscribed: the snapshot
        // carries 101 (new to it), then the queued tick follows for the new set, 101 again.
        let mut t = SeqTracker::default();
        t.observe(100);
        t.resubscribed();
        let steps: Vec<SeqStep> = [101, 101, 102, 102].iter().map(|&s| t.observe(s)).collect();
        assert_eq!(steps, [SeqStep::Next, SeqStep::Snapshot, SeqStep::Next, SeqStep::Repeat]);

        // Conflated ticks before the snapshot are still missed, and a seq going back is
        // still out of order.
        let mut t = SeqTracker::default();
        t.observe(100);
        t.resubscribed();
        assert_eq!(t.observe(104), SeqStep::Gap(3));
        assert_eq!(t.observe(103), SeqStep::Backwards);
        assert_eq!(t.observe(104), SeqStep::Snapshot);

        // A subscription answered before any seq: the first seq is the baseline.
        let mut t = SeqTracker::default();
        t.resubscribed();
        assert_eq!(t.observe(7), SeqStep::First);
        assert_eq!(t.observe(7), SeqStep::Snapshot);
        assert_eq!(t.observe(8), SeqStep::Next);
        assert_eq!(t.observe(8), SeqStep::Repeat);
    }
}
