//! Checks shared by the fuzz targets. Every function panics only on a real invariant
//! violation; any panic inside podbgp's codec is a bug (bgp-robustness.md §0 rule 1).

use bytes::{Bytes, BytesMut};
use podbgp::wire::*;

/// Before capabilities are known: 2-octet AS, 4096-octet messages, no ADD-PATH, eBGP.
pub fn ctx_2octet() -> SessionCodec {
    SessionCodec::default()
}

/// Everything negotiated: 4-octet AS, RFC 8654 extended messages, ADD-PATH both ways for IPv4
/// and IPv6 unicast.
pub fn ctx_4octet_ext_addpath(ibgp: bool) -> SessionCodec {
    let fams = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
    SessionCodec {
        four_octet_as: true,
        extended_message: true,
        add_path_rx: fams.clone(),
        add_path_tx: fams,
        ibgp,
    }
}

/// A context chosen by the low bits of `sel`.
pub fn ctx_from(sel: u8) -> SessionCodec {
    let mut rx = Vec::new();
    if sel & 4 != 0 {
        rx.push(Family::IPV4_UNICAST);
    }
    if sel & 8 != 0 {
        rx.push(Family::IPV6_UNICAST);
    }
    SessionCodec {
        four_octet_as: sel & 1 != 0,
        ibgp: sel & 2 != 0,
        add_path_tx: rx.clone(),
        add_path_rx: rx,
        extended_message: sel & 16 != 0,
    }
}

/// Feeds `data` through `frame_len` / `decode_message` the way a session reader does.
pub fn stream(data: &[u8], cx: &SessionCodec) {
    let max = cx.max_message_len();
    let mut buf = data;
    loop {
        match frame_len(buf, max) {
            Ok(Some(n)) => {
                assert!(
                    n >= HEADER_LEN && n <= buf.len() && n <= max,
                    "frame_len {n}"
                );
                message(&buf[..n], cx);
                buf = &buf[n..];
            }
            Ok(None) => break,
            Err(e) => {
                let _ = notification_message(&e.notification());
                break;
            }
        }
    }
    // Unframed input straight into the decoder must be rejected cleanly too.
    let _ = decode_message(data, cx);
}

/// Decodes one frame; whatever decodes is re-encoded and checked.
pub fn message(frame: &[u8], cx: &SessionCodec) {
    let decoded = decode_message(frame, cx);
    let shared = Bytes::copy_from_slice(frame);
    assert_eq!(
        decode_message_bytes(&shared, cx),
        decoded,
        "zero-copy decode differs"
    );
    match decoded {
        Ok(m) => reencode(&m, cx),
        Err(e) => {
            let _ = notification_message(&e.notification());
        }
    }
}

/// Re-encodes a decoded message; if that succeeds, it must decode again, to the same value
/// where the protocol allows (see the comments for the exceptions).
pub fn reencode(m: &Message, cx: &SessionCodec) {
    let mut out = BytesMut::new();
    if encode_message(m, cx, &mut out).is_err() {
        // Only size limits can fail (e.g. a compact 65535-octet input re-encoded with the
        // Extended Length bit on AS_PATH); nothing to check.
        return;
    }
    let again = decode_message(&out, cx).expect("a re-encoded message decodes");
    match (m, &again) {
        (Message::Update(a), Message::Update(b)) => {
            let mut attrs = BytesMut::new();
            encode_path_attrs(&a.attrs, cx, &mut attrs);
            assert_eq!(a.withdrawn, b.withdrawn);
            assert_eq!(a.nlri, b.nlri);
            assert_eq!(a.mp_reach, b.mp_reach);
            assert_eq!(a.mp_unreach, b.mp_unreach);
            if a.treat_as_withdraw.is_some() {
                return;
            }
            assert_eq!(
                b.treat_as_withdraw, None,
                "clean UPDATE re-decodes with TaW"
            );
            let (mut x, mut y) = (a.attrs.clone(), b.attrs.clone());
            // Unknown transitive attributes gain the Partial bit, non-transitive ones are not
            // re-sent (RFC 4271 §5).
            x.unknown.retain(|r| r.flags & flags::TRANSITIVE != 0);
            x.unknown.iter_mut().for_each(|r| r.flags |= flags::PARTIAL);
            y.unknown.iter_mut().for_each(|r| r.flags |= flags::PARTIAL);
            // RFC 6793 §4.2.3: on a 2-octet session, an AGGREGATOR with a 2-octet AS other than
            // AS_TRANS makes the receiver ignore AS4_PATH; a decoded path that needed AS4_PATH
            // cannot then be re-sent unchanged.
            let old_aggr = !cx.four_octet_as
                && x.aggregator
                    .is_some_and(|g| g.asn <= 0xffff && g.asn != u32::from(AS_TRANS));
            if old_aggr {
                x.as_path = None;
                y.as_path = None;
            }
            assert_eq!(x, y);
        }
        (a, b) => assert_eq!(a, b),
    }
}

/// `decode_open` on a body; what decodes must round-trip exactly.
pub fn open(body: &[u8]) {
    if let Ok(o) = decode_open(body) {
        let m = Message::Open(o);
        let mut out = BytesMut::new();
        if encode_message(&m, &SessionCodec::default(), &mut out).is_ok() {
            assert_eq!(decode_message(&out, &SessionCodec::default()), Ok(m));
        }
    }
}

/// `decode_update` on a body under the context selected by `sel`.
pub fn update(sel: u8, body: &[u8]) {
    let cx = ctx_from(sel);
    match decode_update(body, &cx) {
        Ok(u) => reencode(&Message::Update(u), &cx),
        Err(e) => {
            let _ = e.notification();
        }
    }
}
