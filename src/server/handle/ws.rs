//! What an open WebSocket session does with the frames it reads: each is decoded
//! (`ws::codec`), counted against the session's rate, and answered: a pong, a control
//! message's answer, a subscription change, or the close handshake.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use super::{LoopCtx, TurnBudget};
use crate::control::{self, ClientMessage};
use crate::error::CloseCode;
use crate::parse::Status;
use crate::server::conn::{Conn, Input, MAX_QUEUED, State};
use crate::server::transport::Socket;
use crate::symbols::{self, Change, SymbolIndex};
use crate::ws::codec::Message;
use crate::ws::frame::{self, OpCode};

/// Handles the whole frames `inbuf` holds, as many as `budget` allows (setting
/// `conn.input` to [`Input::OverBudget`] if it left some); a frame that breaks a rule
/// of RFC 6455 or of the session's limits closes the session.
pub(super) fn process_frames<S: Socket>(
    conn: &mut Conn<S>,
    ctx: &mut LoopCtx,
    now: Instant,
    budget: &mut TurnBudget,
) {
    let (metrics, linger) = (&ctx.shared.metrics, ctx.shared.config.close_linger);
    loop {
        let State::WebSocket { session, .. } = &mut conn.state else { return };
        if conn.inbuf.is_empty() {
            return;
        }
        if budget.messages == 0 {
            conn.input = Input::OverBudget;
            return;
        }
        let message = match session.decoder.decode(&mut conn.inbuf) {
            Ok(Status::Partial) => return,
            Ok(Status::Complete { value, consumed }) => {
                budget.messages -= 1;
                conn.inbuf.drain(..consumed);
                session.ping_outstanding = false;
                // Every frame counts against the session's rate, control frames and
                // fragments included (a close ends the session anyway).
                let closing = matches!(value, Some(Message::Close(_)));
                if !closing && !session.budget.take(now) {
                    metrics.rate_limit_closes.fetch_add(1, Relaxed);
                    let reason = "rate limit";
                    conn.close_session(CloseCode::PolicyViolation, reason, now, linger, metrics);
                    return;
                }
                value
            }
            Err(e) => {
                crate::debug!("protocol error", peer = conn.peer, error = e);
                metrics.protocol_error_closes.fetch_add(1, Relaxed);
                conn.close_session(e.close_code(), e.reason(), now, linger, metrics);
                return;
            }
        };
        let Some(message) = message else { continue };
        match message {
            Message::Text(text) => match control::parse(text.as_bytes()) {
                Ok(ClientMessage::Ping) => {
                    conn.queue(frame::encode_frame(OpCode::Text, control::PONG), now);
                }
                Ok(ClientMessage::Ignored) => {}
                Ok(ClientMessage::Subscribe(names)) => {
                    change_subscription(conn, ctx, Change::Subscribe(&names), now);
                }
                Ok(ClientMessage::Unsubscribe(names)) => {
                    change_subscription(conn, ctx, Change::Unsubscribe(&names), now);
                }
                Err(e) => {
                    metrics.subscription_errors.fetch_add(1, Relaxed);
                    conn.queue(frame::encode_frame(OpCode::Text, &e.to_json()), now);
                }
            },
            Message::Binary(_) | Message::Pong(_) => {}
            Message::Ping(payload) => conn.queue(frame::encode_frame(OpCode::Pong, &payload), now),
            Message::Close(frame) => {
                conn.echo_close(frame.map(|f| f.code), now, linger, metrics);
                return;
            }
        }
        if conn.out.queued() > MAX_QUEUED {
            let reason = "too many unread replies";
            conn.close_session(CloseCode::PolicyViolation, reason, now, linger, metrics);
            return;
        }
    }
}

/// A `subscribe` or `unsubscribe`: answers `subscriptions` (the whole new set), a
/// snapshot of the added symbols, and from the next tick on sends the new set's frame;
/// or answers an error and keeps the old set.
fn change_subscription<S: Socket>(
    conn: &mut Conn<S>,
    ctx: &LoopCtx,
    change: Change<'_>,
    now: Instant,
) {
    let shared = &ctx.shared;
    let State::WebSocket { session, feed } = &mut conn.state else { return };
    let max = shared.config.max_session_symbols;
    let chosen = session.chosen.as_ref();
    let (table, sets, current) = (&shared.symbols, &shared.symbol_sets, feed.set.as_ref());
    let sub = match symbols::choose(table, sets, max, chosen, current, change) {
        Ok(sub) => sub,
        Err(e) => {
            shared.metrics.subscription_errors.fetch_add(1, Relaxed);
            return conn.queue(frame::encode_frame(OpCode::Text, &e.to_json()), now);
        }
    };
    session.chosen = Some(sub.set.clone());
    let (encoding, last_seq) = (feed.encoding, feed.last_seq);
    let answer = control::subscriptions(shared.symbols.names_of(&sub.set));
    conn.queue(frame::encode_frame(OpCode::Text, &answer), now);
    if encoding.delta {
        // A changes-only session is sent the whole state of its new set, and its chain
        // starts again from it.
        let mut last_seq = last_seq;
        if let Some(tick) = &ctx.snapshot {
            let set = sub.lease.as_ref();
            let (frame, seq) = tick.whole_pick(encoding, set, last_seq).into_whole().unzip();
            conn.out.latest_tick = frame;
            last_seq = seq.or(last_seq);
        }
        if let State::WebSocket { feed, .. } = &mut conn.state {
            feed.set = sub.lease;
            feed.last_seq = last_seq;
        }
        shared.metrics.subscription_changes.fetch_add(1, Relaxed);
        return;
    }
    if let Some(tick) = &ctx.snapshot {
        let added: Vec<SymbolIndex> = sub.added.members().collect();
        if !added.is_empty() {
            conn.queue(tick.build_for(&added).to_vec(), now);
        }
        // A tick still waiting for the socket was made for the old set: the same tick
        // for the new set replaces it (same seq, so no gap and no stale symbol).
        if conn.out.latest_tick.is_some() {
            conn.out.latest_tick = tick.frame_for_feed(sub.lease.as_ref());
        }
    }
    // Releases the old set (its frame stops being built if nobody else holds it).
    if let State::WebSocket { feed, .. } = &mut conn.state {
        feed.set = sub.lease;
    }
    shared.metrics.subscription_changes.fetch_add(1, Relaxed);
}
