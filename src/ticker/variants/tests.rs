use super::*;
use crate::symbols::SymbolTable;
use crate::symbols::sets::{ActiveCache, SetRegistry};
use crate::ticker::prices::simulated as quotes;

const ALL: Wanted = Wanted { plain: true, deflated: true, delta: true, delta_deflated: true };
const DELTA: Encoding = Encoding { delta: true, deflate: None };

fn json(frame: &[u8]) -> serde_json::Value {
    let payload = frame::payload_of(frame);
    let text = if frame[0] & frame::RSV1 != 0 {
        deflate::inflate(payload, 1 << 20).unwrap()
    } else {
        payload.to_vec()
    };
    serde_json::from_slice(&text).unwrap()
}

fn frame_of<'a>(pick: &'a Pick<'a>) -> &'a [u8] {
    match pick {
        Pick::Frame(f) | Pick::Whole(f, _) => f,
        Pick::Built(f, _) => f,
        Pick::Nothing => panic!("nothing picked"),
    }
}

#[test]
fn only_plain_sessions_build_what_ticks_built_before() {
    let mut b = TickBuilder::new(Duration::from_millis(10));
    let built = b.build(1, 0, &quotes(&[1.0, 2.0]), &ActiveSets::default(), Wanted::PLAIN);
    assert!(built.tick.encoded.is_none());
    assert_eq!(
        built.tick.frame,
        Tick::build(1, 0, &quotes(&[1.0, 2.0]), &ActiveSets::default()).frame
    );
}

#[test]
fn a_delta_session_follows_the_chain_skips_quiet_ticks_and_resyncs_after_a_gap() {
    let mut b = TickBuilder::new(Duration::from_millis(10));
    let none = ActiveSets::default();
    let t1 = b.build(1, 1_000_000, &quotes(&[1.0, 2.0]), &none, ALL).tick;
    // A new session: the whole state, carrying the seq its chain goes on from.
    let (snapshot, last) = t1.snapshot_for(DELTA, None);
    let v = json(&snapshot.unwrap());
    assert_eq!((v["delta"].as_bool(), v["seq"].as_u64(), last), (Some(false), Some(1), Some(1)));
    // S1 moves: a changes message naming 1, with S1 only.
    let t2 = b.build(2, 1_010_000, &quotes(&[1.0, 2.5]), &none, ALL).tick;
    let pick = t2.pick_delta(DELTA, None, Some(1), false);
    let v = json(frame_of(&pick));
    assert_eq!(v["prev_seq"], 1);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["symbol"], "S1");
    // Nothing moves: nothing sent.
    let t3 = b.build(3, 1_020_000, &quotes(&[1.0, 2.5]), &none, ALL).tick;
    assert!(matches!(t3.pick_delta(DELTA, None, Some(2), false), Pick::Nothing));
    let t4 = b.build(4, 1_030_000, &quotes(&[1.5, 2.5]), &none, ALL).tick;
    let v = json(frame_of(&t4.pick_delta(DELTA, None, Some(2), false)));
    assert_eq!((v["seq"].as_u64(), v["prev_seq"].as_u64()), (Some(4), Some(2)));
    // A session that missed 2, or whose pending frame would be dropped: the whole state.
    for (last, replacing) in [(Some(1), false), (Some(2), true)] {
        let pick = t4.pick_delta(DELTA, None, last, replacing);
        let Pick::Whole(frame, 4) = pick else { panic!("{pick:?}") };
        let v = json(frame);
        assert_eq!(v["delta"], false);
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn a_whole_state_never_takes_a_sessions_seq_back() {
    let t = SymbolTable::new(["S0", "S1"].map(String::from));
    let registry = SetRegistry::new(8);
    let only_s0 = registry.acquire(t.resolve(["S0"]).unwrap(), None).unwrap();
    let mut cache = ActiveCache::default();
    let mut b = TickBuilder::new(Duration::from_millis(10));
    for seq in 101..=105 {
        let s1 = 2.0 + seq as f64;
        b.build(seq, 0, &quotes(&[1.0, s1]), registry.active(&mut cache), ALL);
    }
    let tick = b.build(106, 0, &quotes(&[1.0, 200.0]), registry.active(&mut cache), ALL).tick;
    // S0 last moved in the first tick this builder saw (101).
    let Pick::Whole(_, 101) = tick.whole_pick(DELTA, Some(&only_s0), None) else { panic!() };
    // A session that had 105 of another set switches to S0: it gets 106, not 101.
    let Pick::Built(frame, 106) = tick.whole_pick(DELTA, Some(&only_s0), Some(105)) else {
        panic!()
    };
    assert_eq!(json(&frame)["seq"], 106);
}

#[test]
fn deflate_sessions_get_the_compressed_frame_when_it_fits_their_window() {
    let mut b = TickBuilder::new(Duration::from_millis(10));
    let prices: Vec<f64> = (0..40).map(|i| 100.0 + f64::from(i)).collect();
    let tick = b.build(1, 0, &quotes(&prices), &ActiveSets::default(), ALL).tick;
    let full = Encoding { delta: false, deflate: deflate::negotiate(["permessage-deflate"]) };
    let z = tick.pick_deflated(full.deflate, None, &tick.frame);
    assert_eq!(z[0], 0xC1);
    assert!(z.len() * 3 < tick.frame.len());
    assert_eq!(json(z), json(&tick.frame));
    let small = deflate::negotiate(["permessage-deflate; server_max_window_bits=8"]);
    let limited = Encoding { delta: false, deflate: small };
    let f = tick.pick_deflated(limited.deflate, None, &tick.frame);
    assert!(Arc::ptr_eq(f, &tick.frame), "over 256 bytes: the plain frame");
}

#[test]
fn two_builders_fed_the_same_ticks_build_the_same_bytes() {
    let (mut a, mut b) =
        (TickBuilder::new(Duration::from_millis(10)), TickBuilder::new(Duration::from_millis(10)));
    let none = ActiveSets::default();
    for seq in 1..50u64 {
        let q = quotes(&[1.0 + (seq / 3) as f64, 2.0 + (seq / 7) as f64]);
        let (ta, tb) =
            (a.build(seq, seq, &q, &none, ALL).tick, b.build(seq, seq, &q, &none, ALL).tick);
        let (ea, eb) = (ta.encoded.unwrap(), tb.encoded.unwrap());
        assert_eq!(ea.all.deflated, eb.all.deflated);
        match (&ea.all.change, &eb.all.change) {
            (Change::Quiet, Change::Quiet) => {}
            (
                Change::Message { prev_seq: pa, plain: fa, deflated: za },
                Change::Message { prev_seq: pb, plain: fb, deflated: zb },
            ) => assert_eq!((pa, fa, za), (pb, fb, zb)),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn messages_too_short_to_gain_go_plain_uncounted() {
    let mut b = TickBuilder::new(Duration::from_millis(10));
    let none = ActiveSets::default();
    b.build(1, 0, &quotes(&[1.0, 2.0, 3.0]), &none, ALL);
    // One symbol moves: a changes message of about 110 bytes.
    let built = b.build(2, 0, &quotes(&[1.5, 2.0, 3.0]), &none, ALL);
    assert_eq!(built.deflate_skipped, 0);
    let encoded = built.tick.encoded.unwrap();
    let Change::Message { plain, deflated: None, .. } = &encoded.all.change else { panic!() };
    assert!(frame::payload_of(plain).len() < deflate::MIN_PAYLOAD);
}

#[test]
fn the_compression_budget_leaves_frames_plain_and_counts_them() {
    let mut b = TickBuilder::new(Duration::from_millis(10));
    b.budget = Duration::ZERO;
    let prices: Vec<f64> = (0..10).map(f64::from).collect();
    let built = b.build(1, 0, &quotes(&prices), &ActiveSets::default(), ALL);
    assert_eq!(built.deflate_skipped, 2, "the full frame and the changes message");
    let encoded = built.tick.encoded.unwrap();
    assert!(encoded.all.deflated.is_none());
    let Change::Message { deflated: None, .. } = encoded.all.change else { panic!() };
}

#[test]
fn a_tick_built_before_the_ticker_knew_of_delta_sessions_repeats_nothing() {
    let mut b = TickBuilder::new(Duration::from_millis(10));
    let none = ActiveSets::default();
    let t1 = b.build(1, 0, &quotes(&[1.0, 2.0]), &none, Wanted::PLAIN).tick;
    let (_, last) = t1.snapshot_for(DELTA, None);
    assert_eq!(last, Some(1));
    // The next tick, still built for plain sessions only, changed nothing: no message
    // (not the same whole state again with the same seq).
    let t2 = b.build(2, 0, &quotes(&[1.0, 2.0]), &none, Wanted::PLAIN).tick;
    assert!(matches!(t2.pick_delta(DELTA, None, last, false), Pick::Nothing));
    // A change it could not describe: the whole state, at the new seq.
    let t3 = b.build(3, 0, &quotes(&[1.0, 2.5]), &none, Wanted::PLAIN).tick;
    let Pick::Built(_, 3) = t3.pick_delta(DELTA, None, last, false) else { panic!() };
}
