//! Robustness properties: random and mutated bytes never panic `frame_len` or
//! `decode_message`, framing never claims more than it has, and whatever decodes can be
//! re-encoded without panicking (bgp-robustness.md §0 rule 1; the cargo-fuzz targets in
//! `tests/fuzz` run the same entry points for much longer).

#[path = "wire/strategies.rs"]
mod strategies;

use bytes::BytesMut;
use podbgp::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::*;

fn contexts() -> [SessionCodec; 3] {
    let all = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    [
        SessionCodec::default(),
        SessionCodec {
            four_octet_as: true,
            extended_message: true,
            add_path_rx: all.clone(),
            add_path_tx: all,
            ibgp: false,
        },
        SessionCodec {
            four_octet_as: true,
            ibgp: true,
            ..SessionCodec::default()
        },
    ]
}

/// Runs every entry point on `buf`; panics only through the assertions here.
fn exercise(buf: &[u8]) {
    for cx in contexts() {
        match frame_len(buf, cx.max_message_len()) {
            Ok(Some(n)) => {
                assert!((19..=buf.len()).contains(&n));
                assert!(n <= cx.max_message_len());
                if let Ok(m) = decode_message(&buf[..n], &cx) {
                    let mut out = BytesMut::new();
                    let _ = encode_message(&m, &cx, &mut out);
                    if let Message::Update(u) = &m {
                        encode_path_attrs(&u.attrs, &cx, &mut out);
                    }
                }
                let shared = bytes::Bytes::copy_from_slice(&buf[..n]);
                let _ = decode_message_bytes(&shared, &cx);
            }
            Ok(None) => assert!(
                buf.len() < 19 || usize::from(u16::from_be_bytes([buf[16], buf[17]])) > buf.len()
            ),
            Err(e) => {
                let _ = e.notification();
            }
        }
        // The body decoders directly, with no header check in front.
        let body = buf.get(19..).unwrap_or(buf);
        let _ = decode_update(body, &cx);
        let _ = decode_update(buf, &cx);
        let _ = decode_open(body);
        let _ = decode_open(buf);
        // And decode_message on unframed input.
        let _ = decode_message(buf, &cx);
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip(usize, u8),
    Set(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![Just(0u8), Just(0xff), Just(0x10), Just(0x80), any::<u8>()]
        )
            .prop_map(|(i, b)| Mutation::Set(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(buf: &mut Vec<u8>, muts: &[Mutation], fix_length: bool) {
    for m in muts {
        if buf.is_empty() {
            break;
        }
        let n = buf.len();
        match *m {
            Mutation::Flip(i, b) => buf[i % n] ^= b,
            Mutation::Set(i, b) => buf[i % n] = b,
            Mutation::Truncate(i) => buf.truncate(i % n),
            Mutation::Insert(i, b) => buf.insert(i % (n + 1), b),
            Mutation::Remove(i) => {
                buf.remove(i % n);
            }
        }
    }
    // Keep the header consistent so the body decoders are reached.
    if fix_length && buf.len() >= 19 && buf.len() <= 65535 {
        let len = (buf.len() as u16).to_be_bytes();
        buf[16..18].copy_from_slice(&len);
        buf[..16].fill(0xff);
    }
}

proptest! {
    #![proptest_config(config(5000))]

    #[test]
    fn random_bytes_never_panic(marker in any::<bool>(), ty in 0u8..7, body in vec(any::<u8>(), 0..300)) {
        let mut buf = Vec::new();
        if marker {
            buf.extend_from_slice(&[0xff; 16]);
            buf.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
            buf.push(ty);
        }
        buf.extend_from_slice(&body);
        exercise(&buf);
    }

    #[test]
    fn mutated_messages_never_panic(
        (cx, m) in codec_and_message(),
        muts in vec(mutation(), 1..6),
        fix in any::<bool>(),
    ) {
        let mut out = BytesMut::new();
        encode_message(&m, &cx, &mut out).unwrap();
        let mut buf = out.to_vec();
        apply(&mut buf, &muts, fix);
        exercise(&buf);
    }
}
