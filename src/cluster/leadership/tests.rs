//! The lead thread's decisions, step by step, with a fake clock and made-up lease
//! replies: no Redis, no sleeping.

use super::*;

const TICK: Duration = Duration::from_millis(100);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn granted(fence: u64, at: Instant) -> LeaseState {
    LeaseState::Leader { fence, until: at + LEASE_TTL }
}

fn held_by(node: &str) -> LeaseState {
    LeaseState::Follower { leader: Some(node.into()) }
}

fn due(fence: u64, seq: u64, first: bool) -> LeaderStep {
    LeaderStep::Publish(DueTick { fence, seq, first })
}

/// A node that took the lease with `fence` at `t0`, continuing after `newest_seq`.
fn leader(t0: Instant, fence: u64, newest_seq: Option<u64>) -> Leadership {
    let mut lead = Leadership::new(TICK, t0);
    assert_eq!(lead.decide(t0), LeaderStep::AcquireOrRenew);
    let change = lead.on_lease(t0, granted(fence, t0));
    assert_eq!(change, LeaseChange::Acquired { fence, until: t0 + LEASE_TTL });
    lead.begin_term(t0, fence, t0 + LEASE_TTL, newest_seq);
    lead
}

#[test]
fn a_follower_contends_at_once_then_every_contend_interval() {
    let t0 = Instant::now();
    let mut lead = Leadership::new(TICK, t0);
    assert_eq!(lead.decide(t0), LeaderStep::AcquireOrRenew);
    assert_eq!(lead.on_lease(t0, held_by("b")), LeaseChange::Following);
    assert_eq!(lead.decide(t0), LeaderStep::Wait(t0 + CONTEND_EVERY));
    assert_eq!(lead.decide(t0 + CONTEND_EVERY - ms(1)), LeaderStep::Wait(t0 + CONTEND_EVERY));
    assert_eq!(lead.decide(t0 + CONTEND_EVERY), LeaderStep::AcquireOrRenew);
    assert_eq!(lead.fence(), None);
}

#[test]
fn a_failed_lease_request_is_retried_after_the_contend_interval() {
    let t0 = Instant::now();
    let mut lead = Leadership::new(TICK, t0);
    lead.on_lease_error(t0);
    assert_eq!(lead.role(), &Role::Follower);
    assert_eq!(lead.decide(t0), LeaderStep::Wait(t0 + CONTEND_EVERY));
    assert_eq!(lead.decide(t0 + CONTEND_EVERY), LeaderStep::AcquireOrRenew);
}

#[test]
fn a_cluster_that_never_ticked_starts_at_seq_0_with_the_start_prices_at_once() {
    let t0 = Instant::now();
    let mut lead = Leadership::new(TICK, t0);
    let change = lead.on_lease(t0, granted(7, t0));
    let LeaseChange::Acquired { fence, until } = change else { panic!("{change:?}") };
    assert_eq!(lead.begin_term(t0, fence, until, None), 0);
    assert_eq!(lead.fence(), Some(7));
    assert_eq!(lead.decide(t0), due(7, 0, true));
    assert_eq!(lead.on_publish(Published::Sent, t0), AfterPublish::Leading { missed: 0 });
    // Only the very first tick is unstepped.
    assert_eq!(lead.decide(t0 + TICK), due(7, 1, false));
}

#[test]
fn a_new_term_continues_from_the_newest_tick_known() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(41));
    assert_eq!(lead.decide(t0), due(3, 42, false));
    lead.on_publish(Published::Sent, t0);
    assert_eq!(lead.decide(t0), LeaderStep::Wait(t0 + TICK));
    assert_eq!(lead.decide(t0 + TICK), due(3, 43, false));
}

#[test]
fn the_newest_tick_is_the_higher_seq_of_stored_and_seen_and_the_stored_on_a_tie() {
    let tick = |seq, fence| TickData { seq, ts_us: 0, fence, prices: vec![], sources: vec![] };
    assert_eq!(newest_tick(None, None), None);
    assert_eq!(newest_tick(Some(tick(5, 1)), None), Some(tick(5, 1)));
    assert_eq!(newest_tick(None, Some(tick(5, 1))), Some(tick(5, 1)));
    assert_eq!(newest_tick(Some(tick(5, 1)), Some(tick(9, 2))), Some(tick(9, 2)));
    assert_eq!(newest_tick(Some(tick(9, 2)), Some(tick(5, 1))), Some(tick(9, 2)));
    assert_eq!(newest_tick(Some(tick(9, 2)), Some(tick(9, 3))), Some(tick(9, 2)));
}

#[test]
fn a_leader_renews_every_renew_interval_and_a_renewal_only_moves_until() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(9));
    lead.on_publish(Published::Sent, t0);
    // Ticks at 100..=400 come before the renewal at 500.
    assert_eq!(lead.decide(t0 + ms(450)), due(3, 11, false));
    assert_eq!(lead.decide(t0 + RENEW_EVERY), LeaderStep::AcquireOrRenew);
    let renewed_at = t0 + RENEW_EVERY;
    assert_eq!(lead.on_lease(renewed_at, granted(3, renewed_at)), LeaseChange::Renewed);
    // Same term: same seq, same deadlines; the next renewal a whole interval on.
    assert_eq!(lead.decide(renewed_at), due(3, 11, false));
    assert_eq!(lead.on_publish(Published::Sent, renewed_at), AfterPublish::Leading { missed: 3 });
    assert_eq!(lead.decide(renewed_at), due(3, 12, false));
    lead.on_publish(Published::Sent, renewed_at);
    assert_eq!(lead.decide(renewed_at), LeaderStep::Wait(t0 + ms(600)));
    assert_eq!(lead.decide(renewed_at + RENEW_EVERY), LeaderStep::AcquireOrRenew);
    // The renewal pushed `until` out by a whole ttl from when it was asked.
    let Role::Leader(term) = lead.role() else { panic!("not leading") };
    assert_eq!(term.until, renewed_at + LEASE_TTL);
}

#[test]
fn the_wait_is_for_the_nearer_of_the_next_tick_and_the_next_lease_request() {
    let t0 = Instant::now();
    let mut lead = Leadership::new(Duration::from_secs(1), t0);
    lead.on_lease(t0, granted(1, t0));
    lead.begin_term(t0, 1, t0 + LEASE_TTL, None);
    lead.on_publish(Published::Sent, t0);
    // Next tick at 1s, next renewal at 500ms.
    assert_eq!(lead.decide(t0), LeaderStep::Wait(t0 + RENEW_EVERY));
    assert_eq!(lead.wake_at(), t0 + RENEW_EVERY);
    let mut fast = leader(t0, 1, None);
    fast.on_publish(Published::Sent, t0);
    assert_eq!(fast.decide(t0), LeaderStep::Wait(t0 + TICK));
}

#[test]
fn a_lease_granted_with_another_fence_starts_a_new_term_even_while_leading() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(9));
    lead.on_publish(Published::Sent, t0);
    // The lease ran out in Redis unnoticed and this node took it again: a new fence.
    let at = t0 + RENEW_EVERY;
    let change = lead.on_lease(at, granted(5, at));
    assert_eq!(change, LeaseChange::Acquired { fence: 5, until: at + LEASE_TTL });
    // Until the new term begins, the old one stands.
    assert_eq!(lead.fence(), Some(3));
    lead.begin_term(at, 5, at + LEASE_TTL, Some(10));
    assert_eq!(lead.decide(at), due(5, 11, false));
}

#[test]
fn a_renewal_that_names_another_holder_steps_down() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, None);
    let at = t0 + RENEW_EVERY;
    let change = lead.on_lease(at, held_by("b"));
    assert_eq!(change, LeaseChange::Lost { leader: Some("b".into()) });
    assert_eq!(lead.role(), &Role::Follower);
    assert_eq!(lead.fence(), None);
    // A follower publishes nothing, even with a deadline long past.
    assert_eq!(lead.decide(at), LeaderStep::Wait(at + CONTEND_EVERY));
    let unknown = LeaseState::Follower { leader: None };
    assert_eq!(lead.on_lease(at + CONTEND_EVERY, unknown), LeaseChange::Following);
}

#[test]
fn renewals_failing_until_the_lease_runs_out_step_down_exactly_at_until() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(0));
    let until = t0 + LEASE_TTL;
    let mut now = t0;
    // Every request fails; the leader keeps ticking while its lease may still hold.
    while now < until {
        match lead.decide(now) {
            LeaderStep::AcquireOrRenew => lead.on_lease_error(now),
            LeaderStep::Publish(tick) => {
                assert_eq!(tick.fence, 3);
                assert_eq!(
                    lead.on_publish(Published::Sent, now),
                    AfterPublish::Leading { missed: 0 }
                );
            }
            LeaderStep::Wait(at) => now = at,
            LeaderStep::StepDown => panic!("stepped down before until"),
        }
    }
    // The clock exactly on `until`: a last request first (rule 1), then step down.
    assert_eq!(now, until);
    assert_eq!(lead.decide(until), LeaderStep::AcquireOrRenew);
    lead.on_lease_error(until);
    assert_eq!(lead.decide(until), LeaderStep::StepDown);
    lead.step_down();
    assert_eq!(lead.decide(until), LeaderStep::Wait(until + CONTEND_EVERY));
    assert_eq!(lead.fence(), None);
}

#[test]
fn a_renewal_at_the_last_moment_saves_the_lease() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, None);
    let until = t0 + LEASE_TTL;
    lead.on_publish(Published::Sent, t0);
    lead.on_lease_error(until - CONTEND_EVERY);
    // The request due at `until` comes before the expiry check, and succeeds.
    assert_eq!(lead.decide(until), LeaderStep::AcquireOrRenew);
    assert_eq!(lead.on_lease(until, granted(3, until)), LeaseChange::Renewed);
    assert!(matches!(lead.decide(until), LeaderStep::Publish(DueTick { fence: 3, .. })));
}

#[test]
fn a_refused_publish_steps_down_at_once() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(4));
    assert_eq!(lead.decide(t0), due(3, 5, false));
    assert_eq!(lead.on_publish(Published::Refused, t0), AfterPublish::SteppedDown);
    assert_eq!(lead.role(), &Role::Follower);
    assert_eq!(lead.decide(t0), LeaderStep::Wait(t0 + RENEW_EVERY));
}

#[test]
fn an_unknown_publish_outcome_sends_the_same_seq_at_the_next_deadline() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, None);
    assert_eq!(lead.decide(t0), due(3, 0, true));
    assert_eq!(lead.on_publish(Published::Unknown, t0), AfterPublish::Leading { missed: 0 });
    // Not again before the next deadline; then the same seq, with stepped prices.
    assert_eq!(lead.decide(t0 + ms(50)), LeaderStep::Wait(t0 + TICK));
    assert_eq!(lead.decide(t0 + TICK), due(3, 0, false));
    lead.on_publish(Published::Sent, t0 + TICK);
    assert_eq!(lead.decide(t0 + TICK * 2), due(3, 1, false));
}

#[test]
fn a_leader_that_overslept_skips_deadlines_but_not_seqs() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(19));
    assert_eq!(lead.decide(t0), due(3, 20, false));
    // The publish returned 450ms late: deadlines 100..=300 skipped, 400 due now.
    assert_eq!(lead.on_publish(Published::Sent, t0 + ms(450)), AfterPublish::Leading { missed: 3 });
    assert_eq!(lead.decide(t0 + ms(450)), due(3, 21, false));
    lead.on_publish(Published::Sent, t0 + ms(451));
    assert_eq!(lead.decide(t0 + ms(451)), LeaderStep::Wait(t0 + RENEW_EVERY));
}

#[test]
fn a_node_that_stepped_down_takes_the_lease_again_with_a_new_fence_and_goes_on() {
    let t0 = Instant::now();
    let mut lead = leader(t0, 3, Some(0));
    lead.on_publish(Published::Sent, t0);
    let at = t0 + RENEW_EVERY;
    assert_eq!(lead.on_lease(at, held_by("b")), LeaseChange::Lost { leader: Some("b".into()) });
    // Later the other node goes away; this one contends and wins with a newer fence,
    // continuing after the newest tick it knows (b's seq 30, say).
    let later = at + CONTEND_EVERY;
    assert_eq!(lead.decide(later), LeaderStep::AcquireOrRenew);
    let change = lead.on_lease(later, granted(4, later));
    assert_eq!(change, LeaseChange::Acquired { fence: 4, until: later + LEASE_TTL });
    assert_eq!(lead.begin_term(later, 4, later + LEASE_TTL, Some(30)), 31);
    assert_eq!(lead.decide(later), due(4, 31, false));
    assert_eq!(lead.wake_at(), later);
}
