//! Property tests: every message round-trips (encode → decode == original) under every session
//! context, and UPDATE packing is lossless, bounded and minimal.

#[path = "wire/common.rs"]
mod common;
#[path = "wire/strategies.rs"]
mod strategies;

use bytes::BytesMut;
use common::*;
use podbgp::wire::*;
use proptest::prelude::*;
use strategies::*;

proptest! {
    #![proptest_config(config(2000))]

    #[test]
    fn message_round_trips((cx, m) in codec_and_message()) {
        let mut out = BytesMut::new();
        encode_message(&m, &cx, &mut out).unwrap();
        prop_assert!(out.len() <= cx.max_message_len());
        prop_assert_eq!(frame_len(&out, cx.max_message_len()), Ok(Some(out.len())));
        prop_assert_eq!(decode_message(&out, &cx), Ok(m.clone()));
        let shared = out.clone().freeze();
        prop_assert_eq!(decode_message_bytes(&shared, &cx), Ok(m));
    }
}

/// Decodes packed messages and returns (announced, withdrawn) prefixes in order.
fn unpack(msgs: &[bytes::Bytes], cx: &SessionCodec) -> (Vec<Nlri>, Vec<Nlri>) {
    let (mut reach, mut unreach) = (Vec::new(), Vec::new());
    for m in msgs {
        let u = decode_update_msg(m, cx).expect("packed message decodes");
        assert_eq!(u.treat_as_withdraw, None);
        assert!(u.discarded.is_empty());
        reach.extend(u.nlri);
        reach.extend(u.mp_reach.into_iter().flat_map(|r| r.nlri));
        unreach.extend(u.withdrawn);
        unreach.extend(u.mp_unreach.into_iter().flat_map(|r| r.withdrawn));
    }
    (reach, unreach)
}

fn pack_case() -> impl Strategy<Value = (SessionCodec, Family, PathAttrs, Vec<Nlri>)> {
    (codec(), family_unicast()).prop_flat_map(|(cx, family)| {
        let ap = cx.add_path_tx.contains(&family);
        (
            Just(cx.clone()),
            Just(family),
            path_attrs(&cx),
            nlri_list(family.afi, ap, 3000),
        )
    })
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn pack_announce_is_lossless_bounded_and_greedy((cx, family, mut attrs, nlri) in pack_case()) {
        attrs.origin.get_or_insert(Origin::Igp);
        attrs.as_path.get_or_insert_with(AsPath::default);
        let next_hop = if family == Family::IPV4_UNICAST {
            attrs.next_hop.get_or_insert(ip4("198.18.0.1"));
            None
        } else {
            Some(MpNextHop::V6 { global: ip6("2001:2::1"), link_local: None })
        };
        let mut enc = BytesMut::new();
        encode_path_attrs(&attrs, &cx, &mut enc);
        let mut msgs = Vec::new();
        pack_announce(&cx, &enc, family, next_hop, &nlri, &mut msgs);
        let max = cx.max_message_len();
        for m in &msgs {
            prop_assert!(m.len() <= max);
        }
        let (reach, unreach) = unpack(&msgs, &cx);
        prop_assert_eq!(&reach, &nlri);
        prop_assert!(unreach.is_empty());
        for m in &msgs {
            let u = decode_update_msg(m, &cx).unwrap();
            prop_assert_eq!(&u.attrs, &attrs);
        }
        // Greedy: no message could have taken the next prefix as well.
        let ap = cx.add_path_tx.contains(&family);
        let mut consumed = 0;
        for m in msgs.iter().take(msgs.len().saturating_sub(1)) {
            let u = decode_update_msg(m, &cx).unwrap();
            consumed += u.nlri.len() + u.mp_reach.map_or(0, |r| r.nlri.len());
            let next = &nlri[consumed];
            let next_len = 1 + usize::from(next.prefix.prefix_len()).div_ceil(8) + if ap { 4 } else { 0 };
            prop_assert!(m.len() + next_len > max);
        }
    }

    #[test]
    fn pack_withdraw_is_lossless_bounded_and_greedy((cx, family, _attrs, nlri) in pack_case()) {
        let mut msgs = Vec::new();
        pack_withdraw(&cx, family, &nlri, &mut msgs);
        let max = cx.max_message_len();
        for m in &msgs {
            prop_assert!(m.len() <= max);
        }
        let (reach, unreach) = unpack(&msgs, &cx);
        prop_assert!(reach.is_empty());
        prop_assert_eq!(&unreach, &nlri);
        let ap = cx.add_path_tx.contains(&family);
        let mut consumed = 0;
        for m in msgs.iter().take(msgs.len().saturating_sub(1)) {
            let u = decode_update_msg(m, &cx).unwrap();
            consumed += u.withdrawn.len() + u.mp_unreach.map_or(0, |r| r.withdrawn.len());
            let next = &nlri[consumed];
            let next_len = 1 + usize::from(next.prefix.prefix_len()).div_ceil(8) + if ap { 4 } else { 0 };
            prop_assert!(m.len() + next_len > max);
        }
    }
}

#[test]
fn pack_uses_the_minimum_number_of_messages() {
    // N /24 prefixes (4 octets each) with one attribute set: exactly ceil(N / per_message).
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(seq(&[65001, 65002])),
        next_hop: Some(ip4("198.18.0.1")),
        communities: vec![1, 2, 3],
        ..PathAttrs::default()
    };
    let mut enc = BytesMut::new();
    encode_path_attrs(&attrs, &cx4(), &mut enc);
    let nlri: Vec<Nlri> = (0..5000u32)
        .map(|i| {
            v4(&format!(
                "{}.{}.{}.0/24",
                10 + i / 65536,
                (i / 256) % 256,
                i % 256
            ))
        })
        .collect();
    for (cx, max) in [
        (cx4(), 4096usize),
        (
            SessionCodec {
                extended_message: true,
                ..cx4()
            },
            65535,
        ),
    ] {
        let per = (max - 23 - enc.len()) / 4;
        let mut msgs = Vec::new();
        pack_announce(&cx, &enc, Family::IPV4_UNICAST, None, &nlri, &mut msgs);
        assert_eq!(msgs.len(), nlri.len().div_ceil(per), "max {max}");
        let mut msgs = Vec::new();
        pack_withdraw(&cx, Family::IPV4_UNICAST, &nlri, &mut msgs);
        assert_eq!(msgs.len(), nlri.len().div_ceil((max - 23) / 4), "max {max}");
    }
    // IPv6 /64s (9 octets) in MP_REACH_NLRI with a 32-octet next hop.
    let nlri: Vec<Nlri> = (0..3000u32)
        .map(|i| v6(&format!("2001:2:{:x}:{:x}::/64", i / 65536, i % 65536)))
        .collect();
    let nh = MpNextHop::V6 {
        global: ip6("2001:2::1"),
        link_local: Some(ip6("fe80::1")),
    };
    let v6_attrs = PathAttrs {
        next_hop: None,
        ..attrs
    };
    let mut enc = BytesMut::new();
    encode_path_attrs(&v6_attrs, &cx4(), &mut enc);
    let per = (4096 - 23 - 4 - 3 - 1 - 32 - 1 - enc.len()) / 9;
    let mut msgs = Vec::new();
    pack_announce(
        &cx4(),
        &enc,
        Family::IPV6_UNICAST,
        Some(nh),
        &nlri,
        &mut msgs,
    );
    assert_eq!(msgs.len(), nlri.len().div_ceil(per));
    let mut msgs = Vec::new();
    pack_withdraw(&cx4(), Family::IPV6_UNICAST, &nlri, &mut msgs);
    assert_eq!(msgs.len(), nlri.len().div_ceil((4096 - 23 - 7) / 9));
    assert_eq!(unpack(&msgs, &cx4()).1, nlri);
}

#[test]
fn pack_edge_cases() {
    let mut out = Vec::new();
    // Nothing to send.
    pack_announce(&cx4(), &[], Family::IPV4_UNICAST, None, &[], &mut out);
    pack_withdraw(&cx4(), Family::IPV6_UNICAST, &[], &mut out);
    assert!(out.is_empty());
    // Attributes too large for even one prefix: nothing (see max_attrs_len).
    let limit = max_attrs_len(&cx4(), Family::IPV4_UNICAST, None);
    let big = vec![0u8; limit + 1];
    pack_announce(
        &cx4(),
        &big,
        Family::IPV4_UNICAST,
        None,
        &[v4("198.18.0.0/32")],
        &mut out,
    );
    assert!(out.is_empty());
    // At the limit, a /32 still fits.
    let attrs = attr(0xc0, 99, &vec![0u8; limit - 4]);
    assert_eq!(attrs.len(), limit);
    pack_announce(
        &cx4(),
        &attrs,
        Family::IPV4_UNICAST,
        None,
        &[v4("198.18.0.0/32")],
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].len(), 4096);
    // MP family without a next hop: nothing.
    out.clear();
    pack_announce(
        &cx4(),
        &[],
        Family::IPV6_UNICAST,
        None,
        &[v6("2001:2::/64")],
        &mut out,
    );
    assert!(out.is_empty());
    // Prefixes of the wrong family are skipped.
    pack_withdraw(
        &cx4(),
        Family::IPV4_UNICAST,
        &[v6("2001:2::/64"), v4("198.18.0.0/24")],
        &mut out,
    );
    assert_eq!(unpack(&out, &cx4()).1, vec![v4("198.18.0.0/24")]);
    // IPv4 NLRI with an IPv6 next hop goes into MP_REACH_NLRI (RFC 8950).
    out.clear();
    let nh = MpNextHop::V6 {
        global: ip6("2001:2::1"),
        link_local: None,
    };
    let mut enc = BytesMut::new();
    let attrs = PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath::default()),
        ..PathAttrs::default()
    };
    encode_path_attrs(&attrs, &cx4(), &mut enc);
    pack_announce(
        &cx4(),
        &enc,
        Family::IPV4_UNICAST,
        Some(nh),
        &[v4("198.18.0.0/24")],
        &mut out,
    );
    let u = decode_update_msg(&out[0], &cx4()).unwrap();
    let r = u.mp_reach.unwrap();
    assert_eq!(
        (r.family, r.next_hop, r.nlri),
        (Family::IPV4_UNICAST, nh, vec![v4("198.18.0.0/24")])
    );
}
