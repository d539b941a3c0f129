use super::*;

fn agreed(header: &str) -> Option<Agreed> {
    negotiate([header])
}

#[test]
fn a_bare_offer_is_accepted_with_both_no_context_takeovers() {
    let a = agreed("permessage-deflate").unwrap();
    assert_eq!(a.server_window_bits, 15);
    assert_eq!(
        a.response(),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
}

#[test]
fn browser_and_python_offers_are_accepted() {
    // Chromium's and python-websockets' offers.
    assert!(agreed("permessage-deflate; client_max_window_bits").is_some());
    assert!(agreed("permessage-deflate; client_max_window_bits=12").is_some());
    assert!(
        agreed("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
            .is_some()
    );
}

#[test]
fn a_window_limit_is_echoed_and_bounds_which_messages_fit() {
    let a = agreed("permessage-deflate; server_max_window_bits=10").unwrap();
    assert_eq!(a.server_window_bits, 10);
    assert!(a.response().ends_with("; server_max_window_bits=10"));
    assert!(a.fits(1024));
    assert!(!a.fits(1025));
    assert!(agreed("permessage-deflate; server_max_window_bits=\"9\"").is_some());
    assert!(agreed("permessage-deflate").unwrap().fits(1 << 30));
}

#[test]
fn a_bad_offer_is_declined_and_the_next_one_considered() {
    for bad in [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=010",
        "permessage-deflate; client_max_window_bits=x",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; unknown",
        "x-webkit-deflate-frame",
        "",
    ] {
        assert_eq!(agreed(bad), None, "{bad}");
    }
    let a = negotiate([
        "permessage-deflate; server_max_window_bits=99, permessage-deflate; server_max_window_bits=9",
    ])
    .unwrap();
    assert_eq!(a.server_window_bits, 9);
    // The header may repeat.
    let a = negotiate(["foo", "permessage-deflate"]).unwrap();
    assert_eq!(a.server_window_bits, 15);
    assert!(negotiate(["PerMessage-Deflate"]).is_some());
}

fn payload_of(frame: &[u8]) -> &[u8] {
    match frame[1] {
        126 => &frame[4..],
        127 => &frame[10..],
        _ => &frame[2..],
    }
}

#[test]
fn a_compressed_frame_has_rsv1_and_inflates_to_the_message() {
    let msg =
        br#"{"type":"ticker","seq":1,"data":[{"symbol":"BTC-USD","price":42000}]}"#.repeat(20);
    let frame = Deflater::default().frame(OpCode::Text, &msg).unwrap();
    assert_eq!(frame[0], 0xC1, "FIN + RSV1 + text");
    let body = payload_of(&frame);
    assert!(body.len() < msg.len() / 4, "{} of {}", body.len(), msg.len());
    assert!(!body.ends_with(&SYNC_TAIL), "the sync tail is stripped");
    assert_eq!(inflate(body, 1 << 20).unwrap(), msg);
    // The same input gives the same bytes: what lets every node send identical frames.
    assert_eq!(Deflater::default().frame(OpCode::Text, &msg).unwrap(), frame);
    assert_eq!(frame_here(OpCode::Text, &msg).unwrap(), frame);
}

#[test]
fn empty_and_incompressible_messages_round_trip() {
    let mut d = Deflater::default();
    let empty = d.frame(OpCode::Text, b"").unwrap();
    assert_eq!(inflate(payload_of(&empty), 10).unwrap(), b"");
    let noise: Vec<u8> =
        (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let f = d.frame(OpCode::Binary, &noise).unwrap();
    assert_eq!(f[0], 0xC2);
    assert_eq!(inflate(payload_of(&f), 1 << 20).unwrap(), noise);
}

#[test]
fn an_inflate_bomb_stops_at_the_limit() {
    // 16 MiB of zeros compress to about 16 KiB; the limit is 32 KiB.
    let bomb = vec![0u8; 16 << 20];
    let f = Deflater::default().frame(OpCode::Text, &bomb).unwrap();
    let body = payload_of(&f);
    assert!(body.len() < 32 << 10);
    assert_eq!(inflate(body, 32 << 10), Err(ProtocolError::MessageTooBig));
    // Exactly at the limit is fine, one byte over is not.
    let at = vec![b'a'; 1000];
    let f = Deflater::default().frame(OpCode::Text, &at).unwrap();
    assert_eq!(inflate(payload_of(&f), 1000).unwrap().len(), 1000);
    assert_eq!(inflate(payload_of(&f), 999), Err(ProtocolError::MessageTooBig));
}

#[test]
fn garbage_is_refused_and_the_inflater_still_works_after() {
    assert_eq!(inflate(&[0xFF, 0xFF, 0xFF, 0xFF], 1000), Err(ProtocolError::BadCompressedData));
    let f = Deflater::default().frame(OpCode::Text, b"hello").unwrap();
    assert_eq!(inflate(payload_of(&f), 1000).unwrap(), b"hello");
}

#[test]
fn a_final_block_ends_the_message() {
    // Some peers end a message with a BFINAL block instead of a sync flush (RFC 7692
    // section 7.2.3.4): the appended tail is then not part of it.
    let mut c = Compress::new(flate2::Compression::new(6), false);
    let mut out = Vec::with_capacity(256);
    c.compress_vec(b"hello final", &mut out, FlushCompress::Finish).unwrap();
    assert_eq!(inflate(&out, 1000).unwrap(), b"hello final");
}
