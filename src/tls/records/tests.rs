//! The record layer against rustls' own: a rustls client and a rustls server finish a
//! handshake in memory, the server's keys are extracted, and from then on the client
//! (still rustls) must read what [`Records`] seals and [`Records`] must open what the
//! client writes, for every version and suite the server offers.

use std::io::{Read, Write};
use std::sync::Arc;

use rustls::crypto::ring::{cipher_suite, default_provider};
use rustls::pki_types::ServerName;
use rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection, SideData,
    SupportedCipherSuite,
};

use super::*;

struct Pair {
    client: ClientConnection,
    records: Records,
}

/// Moves every TLS byte one side wants to send to the other.
fn pump<A: SideData, B: SideData>(from: &mut ConnectionCommon<A>, to: &mut ConnectionCommon<B>) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).unwrap();
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).unwrap();
        to.process_new_packets().unwrap();
    }
}

fn handshake(suite: SupportedCipherSuite) -> Pair {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut provider = default_provider();
    provider.cipher_suites = vec![suite];
    let provider = Arc::new(provider);
    let version = match suite {
        SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
        SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
    };
    let der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let mut server_config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    server_config.enable_secret_extraction = true;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut client = ClientConnection::new(Arc::new(client_config), name).unwrap();
    let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
    while client.is_handshaking() || server.is_handshaking() || server.wants_write() {
        pump(&mut client, &mut server);
        pump(&mut server, &mut client);
    }
    // Some data through rustls first, so the sequence numbers handed over are not zero.
    client.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    pump(&mut client, &mut server);
    let mut got = [0u8; 64];
    let n = server.reader().read(&mut got).unwrap();
    assert_eq!(&got[..n], b"GET / HTTP/1.1\r\n\r\n");
    server.writer().write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").unwrap();
    pump(&mut server, &mut client);
    let n = client.reader().read(&mut got).unwrap();
    assert_eq!(&got[..n], b"HTTP/1.1 101 Switching Protocols\r\n\r\n");

    let version = server.protocol_version().unwrap();
    let limit = suite_limit(suite);
    #[allow(deprecated)]
    let secrets = server.dangerous_extract_secrets().unwrap();
    Pair { client, records: Records::new(version, limit, secrets).unwrap() }
}

fn suite_limit(suite: SupportedCipherSuite) -> u64 {
    match suite {
        SupportedCipherSuite::Tls13(s) => s.common.confidentiality_limit,
        SupportedCipherSuite::Tls12(s) => s.common.confidentiality_limit,
    }
}

const SUITES: [SupportedCipherSuite; 6] = [
    cipher_suite::TLS13_AES_128_GCM_SHA256,
    cipher_suite::TLS13_AES_256_GCM_SHA384,
    cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
];

/// Everything the client sent, opened record by record.
fn open_all(records: &mut Records, wire: &mut [u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < wire.len() {
        let opened = records.open(&mut wire[at..]).unwrap().expect("a whole record");
        let plain = &wire[at..][opened.plain.clone()];
        out.push((opened.content_type, plain.to_vec()));
        at += opened.consumed;
    }
    out
}

#[test]
fn sealed_records_are_read_by_rustls_and_rustls_records_are_opened_for_every_suite() {
    for suite in SUITES {
        let Pair { mut client, mut records } = handshake(suite);
        let name = format!("{:?}", suite.suite());
        // Server → client: several records, including an empty and a full-size one.
        let frames: Vec<Vec<u8>> =
            vec![b"tick 1".to_vec(), Vec::new(), vec![7u8; MAX_FRAGMENT], b"tick 2".to_vec()];
        let mut wire = Vec::new();
        for frame in &frames {
            let before = wire.len();
            records.seal(APPLICATION_DATA, frame, &mut wire).unwrap();
            assert_eq!(wire.len() - before, records.sealed_len(frame.len()), "{name}");
        }
        let mut rd = &wire[..];
        while !rd.is_empty() {
            client.read_tls(&mut rd).unwrap();
            client.process_new_packets().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let mut got = Vec::new();
        let _ = client.reader().read_to_end(&mut got);
        assert_eq!(got, frames.concat(), "{name}");

        // Client → server: application data, then close_notify.
        client.writer().write_all(b"{\"type\":\"ping\"}").unwrap();
        client.send_close_notify();
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        let opened = open_all(&mut records, &mut wire);
        assert_eq!(opened[0], (APPLICATION_DATA, b"{\"type\":\"ping\"}".to_vec()), "{name}");
        assert_eq!(opened.last(), Some(&(ALERT, CLOSE_NOTIFY.to_vec())), "{name}");
        assert_eq!(alert(&CLOSE_NOTIFY), Ok(()));
    }
}

#[test]
fn a_partial_record_waits_for_more_bytes_and_a_tampered_one_is_refused() {
    for suite in SUITES {
        let Pair { mut client, mut records } = handshake(suite);
        client.writer().write_all(b"hello").unwrap();
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        for cut in [0, 3, 5, wire.len() - 1] {
            assert_eq!(records.open(&mut wire.clone()[..cut]), Ok(None));
        }
        let mut tampered = wire.clone();
        let last = tampered.len() - 1;
        tampered[last] ^= 1;
        assert_eq!(records.open(&mut tampered), Err(RecordError::Bad));
    }
}

#[test]
fn a_record_replayed_or_out_of_order_fails_authentication() {
    let Pair { mut client, mut records } = handshake(SUITES[0]);
    let mut wire = Vec::new();
    for msg in [&b"one"[..], b"two"] {
        client.writer().write_all(msg).unwrap();
        client.write_tls(&mut wire).unwrap();
    }
    let first_len = records.open(&mut wire.clone()).unwrap().unwrap().consumed;
    // The first again (a replay): the sequence number moved on.
    assert_eq!(records.open(&mut wire.clone()[..first_len]), Err(RecordError::Bad));
}

#[test]
fn a_tls13_key_update_from_the_peer_is_refused() {
    let Pair { mut client, mut records } = handshake(SUITES[0]);
    client.refresh_traffic_keys().unwrap();
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    assert_eq!(records.open(&mut wire), Err(RecordError::Unexpected(HANDSHAKE)));
}

#[test]
fn sealing_stops_at_the_confidentiality_limit() {
    let Pair { mut records, .. } = handshake(SUITES[0]);
    records.tx_limit = records.tx.seq + 2;
    assert_eq!(records.records_left(), 2);
    let mut out = Vec::new();
    records.seal(APPLICATION_DATA, b"a", &mut out).unwrap();
    records.seal(APPLICATION_DATA, b"b", &mut out).unwrap();
    assert_eq!(records.seal(APPLICATION_DATA, b"c", &mut out), Err(RecordError::KeyExhausted));
    assert_eq!(records.records_left(), 0);
}

#[test]
fn oversized_and_undersized_lengths_are_refused_before_decryption() {
    let Pair { mut records, .. } = handshake(SUITES[0]);
    let mut huge = [APPLICATION_DATA, 3, 3, 0xff, 0xff];
    assert_eq!(records.open(&mut huge), Err(RecordError::Bad));
    let mut tiny = [APPLICATION_DATA, 3, 3, 0, 3, 1, 2, 3];
    assert_eq!(records.open(&mut tiny), Err(RecordError::Bad));
    let mut wrong_type = [HANDSHAKE, 3, 3, 0, 20];
    assert_eq!(records.open(&mut wrong_type), Err(RecordError::Unexpected(HANDSHAKE)));
}

#[test]
fn alerts_other_than_close_notify_are_errors() {
    assert_eq!(alert(&[2, 40]), Err(RecordError::Alert(40)));
    assert_eq!(alert(&[1]), Err(RecordError::Bad));
}

#[test]
fn records_are_framed_as_rustls_frames_them() {
    let whole = [APPLICATION_DATA, 3, 3, 0, 2, 9, 9];
    assert_eq!(frame(&whole), Ok(Status::Complete { value: (), consumed: 7 }));
    for cut in 0..whole.len() {
        assert_eq!(frame(&whole[..cut]), Ok(Status::Partial), "cut at {cut}");
    }
    // An empty application-data record is allowed; other empty records are not.
    assert_eq!(frame(&[APPLICATION_DATA, 3, 3, 0, 0]).map(|s| s.is_partial()), Ok(false));
    assert_eq!(frame(&[HANDSHAKE, 3, 1, 0, 0]), Err(RecordError::Bad));
    // Refused from the first byte that shows it: plain HTTP, an SSL 2 or 4.x version.
    assert_eq!(frame(b"G"), Err(RecordError::Bad));
    assert_eq!(frame(&[HANDSHAKE, 2]), Err(RecordError::Bad));
    assert_eq!(frame(&[HANDSHAKE, 4, 0]), Err(RecordError::Bad));
    // rustls reads bodies below 18,432 bytes.
    assert_eq!(frame(&[APPLICATION_DATA, 3, 3, 0x47, 0xff]), Ok(Status::Partial));
    assert_eq!(frame(&[APPLICATION_DATA, 3, 3, 0x48, 0x00]), Err(RecordError::Bad));
    assert_eq!(MAX_RECORD, 5 + 0x47ff);
}

#[test]
fn only_whole_records_are_fed_and_a_records_beginning_never_is() {
    let Pair { mut client, .. } = handshake(SUITES[0]);
    // Three records of the client's, and where each ends in the byte stream.
    let mut wire = Vec::new();
    let mut ends = vec![0];
    for message in [&b"GET /ws/ticker HTTP/1.1\r\n\r\n"[..], &[0x81, 0x80, 1, 2, 3, 4], &[7; 900]] {
        client.writer().write_all(message).unwrap();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        ends.push(wire.len());
    }
    for cut in 0..=wire.len() {
        let whole = ends.iter().copied().filter(|&end| end <= cut).max().unwrap();
        assert_eq!(feedable(&wire[..cut], MAX_RECORD), whole, "cut at {cut}");
    }
    // At most `max` bytes, but always the first record.
    assert_eq!(feedable(&wire, ends[2]), ends[2]);
    assert_eq!(feedable(&wire, ends[2] + 1), ends[2]);
    assert_eq!(feedable(&wire, 1), ends[1]);
    let big = [&[APPLICATION_DATA, 3, 3, 0x47, 0xff][..], &[0; 0x47ff]].concat();
    let two_big = [&big[..], &big[..]].concat();
    assert_eq!(feedable(&two_big, MAX_RECORD), MAX_RECORD);
    // From a header rustls refuses on, everything goes (rustls answers with its alert).
    assert_eq!(feedable(b"GET / HTTP/1.1\r\n\r\n", MAX_RECORD), 18);
    let then_garbage = [&wire[..ends[1]], &[0xff; 10][..], &wire[ends[1]..]].concat();
    assert_eq!(feedable(&then_garbage, MAX_RECORD), then_garbage.len());
}
