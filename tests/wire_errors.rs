//! One test per error case of `shared/reference/bgp-robustness.md` §1.1–§1.6, §1.13, §1.14,
//! §1.17, asserting the exact NOTIFICATION (code/subcode/data) or the exact RFC 7606
//! classification (treat-as-withdraw / attribute discard) — the "Our pin" column where
//! implementations disagree.

#[path = "wire/common.rs"]
mod common;

use bytes::Bytes;
use common::*;
use podbgp::wire::*;

// ---- builders -------------------------------------------------------------------------------

const WK: u8 = 0x40;
const OPT: u8 = 0x80;
const OPT_T: u8 = 0xc0;
const PARTIAL: u8 = 0x20;

fn seg(kind: u8, asns: &[u32], width: usize) -> Vec<u8> {
    let mut v = vec![kind, asns.len() as u8];
    for a in asns {
        v.extend_from_slice(&a.to_be_bytes()[4 - width..]);
    }
    v
}

fn origin() -> Vec<u8> {
    attr(WK, 1, &[0])
}

fn as_path(asns: &[u32], width: usize) -> Vec<u8> {
    attr(WK, 2, &seg(2, asns, width))
}

fn next_hop() -> Vec<u8> {
    attr(WK, 3, &[198, 18, 0, 1])
}

/// ORIGIN, AS_PATH [65001] (4-octet), NEXT_HOP.
fn base4() -> Vec<u8> {
    [origin(), as_path(&[65001], 4), next_hop()].concat()
}

/// ORIGIN, AS_PATH [65001] (2-octet), NEXT_HOP.
fn base2() -> Vec<u8> {
    [origin(), as_path(&[65001], 2), next_hop()].concat()
}

const NLRI: [u8; 4] = [24, 198, 18, 100];

/// An UPDATE announcing 198.18.100.0/24 with `base4()` plus `extra` attributes.
fn upd4(extra: &[u8]) -> Vec<u8> {
    update(&[], &[base4(), extra.to_vec()].concat(), &NLRI)
}

fn upd2(extra: &[u8]) -> Vec<u8> {
    update(&[], &[base2(), extra.to_vec()].concat(), &NLRI)
}

/// Decodes, expecting treat-as-withdraw; returns the reported error.
fn taw(bytes: &[u8], cx: &SessionCodec) -> AttrError {
    let u = decode_update_msg(bytes, cx).expect("no session reset");
    let e = u.treat_as_withdraw.clone().expect("treat-as-withdraw");
    assert_eq!(e.action, AttrAction::TreatAsWithdraw);
    e
}

/// Decodes, expecting no treat-as-withdraw; returns the discard events.
fn discards(bytes: &[u8], cx: &SessionCodec) -> (Update, Vec<AttrError>) {
    let u = decode_update_msg(bytes, cx).expect("no session reset");
    assert_eq!(u.treat_as_withdraw, None, "unexpected treat-as-withdraw");
    let d = u.discarded.clone();
    for e in &d {
        assert_eq!(e.action, AttrAction::AttributeDiscard);
    }
    (u, d)
}

/// Decodes the whole message, expecting a session reset; returns its NOTIFICATION.
fn reset(bytes: &[u8], cx: &SessionCodec) -> Notification {
    decode_message(bytes, cx)
        .expect_err("session reset")
        .notification()
}

fn notif(code: u8, subcode: u8, data: &[u8]) -> Notification {
    Notification {
        code,
        subcode,
        data: Bytes::copy_from_slice(data),
    }
}

fn assert_taw(bytes: &[u8], cx: &SessionCodec, type_code: u8, subcode: u8) {
    let e = taw(bytes, cx);
    assert_eq!((e.type_code, e.subcode), (type_code, subcode), "{e:?}");
}

fn assert_discard(bytes: &[u8], cx: &SessionCodec, type_code: u8, subcode: u8) -> Update {
    let (u, d) = discards(bytes, cx);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].type_code, d[0].subcode),
        (type_code, subcode),
        "{d:?}"
    );
    u
}

// ---- §1.2 header errors ----------------------------------------------------------------------

#[test]
fn header_marker_not_all_ones_is_1_1() {
    let mut m = msg(4, &[]);
    m[3] = 0xfe;
    assert_eq!(
        frame_len(&m, 4096),
        Err(DecodeError::ConnectionNotSynchronized)
    );
    assert_eq!(reset(&m, &cx4()), notif(1, 1, &[]));
    // Detected from the first bytes, before a whole header is in.
    assert_eq!(
        frame_len(&[0xff, 0x00], 4096),
        Err(DecodeError::ConnectionNotSynchronized)
    );
}

#[test]
fn header_length_below_19_is_1_2_with_length() {
    let mut m = msg(4, &[]);
    m[16..18].copy_from_slice(&18u16.to_be_bytes());
    assert_eq!(
        frame_len(&m, 4096),
        Err(DecodeError::BadMessageLength { length: 18 })
    );
    assert_eq!(reset(&m, &cx4()), notif(1, 2, &[0, 18]));
    m[16..18].copy_from_slice(&0u16.to_be_bytes());
    assert_eq!(
        frame_len(&m, 4096).unwrap_err().notification(),
        notif(1, 2, &[0, 0])
    );
}

#[test]
fn header_length_above_4096_is_1_2_unless_extended_message() {
    let big = update(&[], &[], &vec![0u8; 4097 - 23]);
    assert_eq!(big.len(), 4097);
    assert_eq!(
        frame_len(&big, 4096).unwrap_err().notification(),
        notif(1, 2, &[0x10, 0x01])
    );
    // RFC 8654: an UPDATE above 4096 is fine once Extended Message is negotiated...
    let ext = SessionCodec {
        extended_message: true,
        ..cx4()
    };
    assert_eq!(frame_len(&big, ext.max_message_len()), Ok(Some(4097)));
    // ... but OPEN and KEEPALIVE never exceed 4096.
    let mut open = msg(1, &vec![0u8; 4097 - 19]);
    assert_eq!(
        frame_len(&open, 65535).unwrap_err().notification(),
        notif(1, 2, &[0x10, 0x01])
    );
    open.truncate(4096);
    open[16..18].copy_from_slice(&4096u16.to_be_bytes());
    assert_eq!(frame_len(&open, 65535), Ok(Some(4096)));
}

#[test]
fn header_length_below_type_minimum_is_1_2() {
    for (ty, min) in [(1u8, 29usize), (2, 23), (3, 21), (5, 23)] {
        let m = msg(ty, &vec![0u8; min - 20]);
        let len = (min - 1) as u16;
        assert_eq!(
            frame_len(&m, 4096),
            Err(DecodeError::BadMessageLength { length: len }),
            "type {ty}"
        );
        assert_eq!(reset(&m, &cx4()), notif(1, 2, &len.to_be_bytes()));
        let ok = msg(ty, &vec![0u8; min - 19]);
        assert_eq!(frame_len(&ok, 4096), Ok(Some(min)), "type {ty}");
    }
}

#[test]
fn keepalive_length_not_19_is_1_2() {
    let m = msg(4, &[0]);
    assert_eq!(reset(&m, &cx4()), notif(1, 2, &[0, 20]));
}

#[test]
fn header_unknown_type_is_1_3_with_type() {
    for ty in [0u8, 6, 255] {
        let m = msg(ty, &[0; 8]);
        assert_eq!(
            frame_len(&m, 4096),
            Err(DecodeError::BadMessageType { msg_type: ty })
        );
        assert_eq!(reset(&m, &cx4()), notif(1, 3, &[ty]));
    }
}

#[test]
fn header_incomplete_needs_more_and_never_desyncs() {
    let m = upd4(&[]);
    for cut in 0..m.len() {
        assert_eq!(frame_len(&m[..cut], 4096), Ok(None), "cut {cut}");
    }
    let mut two = m.clone();
    two.extend_from_slice(&m);
    assert_eq!(frame_len(&two, 4096), Ok(Some(m.len())));
}

#[test]
fn decode_rejects_frame_not_matching_its_length() {
    let mut m = upd4(&[]);
    m.push(0);
    assert!(matches!(
        decode_message(&m, &cx4()),
        Err(DecodeError::BadMessageLength { .. })
    ));
}

// ---- §1.3 OPEN errors -------------------------------------------------------------------------

fn open_body(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    b
}

fn caps_param(caps: &[u8]) -> Vec<u8> {
    [vec![2, caps.len() as u8], caps.to_vec()].concat()
}

fn open_with(params: &[u8]) -> Vec<u8> {
    msg(1, &open_body(4, 65001, 90, [198, 18, 0, 2], params))
}

#[test]
fn open_version_not_4_is_2_1_with_00_04() {
    let m = msg(1, &open_body(3, 65001, 90, [198, 18, 0, 2], &[]));
    assert_eq!(reset(&m, &cx4()), notif(2, 1, &[0, 4]));
}

#[test]
fn open_my_as_zero_is_2_2() {
    let m = msg(1, &open_body(4, 0, 90, [198, 18, 0, 2], &[]));
    assert_eq!(reset(&m, &cx4()), notif(2, 2, &[]));
}

#[test]
fn open_four_octet_as_capability_zero_is_2_2() {
    let m = open_with(&caps_param(&[65, 4, 0, 0, 0, 0]));
    assert_eq!(reset(&m, &cx4()), notif(2, 2, &[]));
}

#[test]
fn open_hold_time_1_or_2_is_2_6_and_0_or_3_is_fine() {
    for h in [1u16, 2] {
        let m = msg(1, &open_body(4, 65001, h, [198, 18, 0, 2], &[]));
        assert_eq!(reset(&m, &cx4()), notif(2, 6, &[]));
    }
    for h in [0u16, 3] {
        let m = msg(1, &open_body(4, 65001, h, [198, 18, 0, 2], &[]));
        assert!(decode_message(&m, &cx4()).is_ok());
    }
}

#[test]
fn open_bgp_identifier_zero_is_2_3_and_broadcast_is_fine() {
    let m = msg(1, &open_body(4, 65001, 90, [0, 0, 0, 0], &[]));
    assert_eq!(reset(&m, &cx4()), notif(2, 3, &[]));
    let m = msg(1, &open_body(4, 65001, 90, [255, 255, 255, 255], &[]));
    assert!(decode_message(&m, &cx4()).is_ok());
}

#[test]
fn open_malformed_optional_parameters_are_2_0() {
    // Opt Parm Len larger than what follows.
    let mut b = open_body(4, 65001, 90, [198, 18, 0, 2], &caps_param(&[2, 0]));
    b[9] += 1;
    assert_eq!(reset(&msg(1, &b), &cx4()), notif(2, 0, &[]));
    // Parameter length overruns the parameters field.
    assert_eq!(reset(&open_with(&[2, 5, 2, 0]), &cx4()), notif(2, 0, &[]));
    // Truncated parameter header.
    assert_eq!(reset(&open_with(&[2]), &cx4()), notif(2, 0, &[]));
    // Capability length overruns its parameter.
    assert_eq!(reset(&open_with(&[2, 2, 65, 4]), &cx4()), notif(2, 0, &[]));
    // Truncated capability header.
    assert_eq!(reset(&open_with(&[2, 1, 65]), &cx4()), notif(2, 0, &[]));
    // A known capability with a length its RFC forbids.
    assert_eq!(
        reset(&open_with(&caps_param(&[1, 3, 0, 1, 0])), &cx4()),
        notif(2, 0, &[])
    );
    assert_eq!(
        reset(&open_with(&caps_param(&[65, 2, 0, 1])), &cx4()),
        notif(2, 0, &[])
    );
    assert_eq!(
        reset(&open_with(&caps_param(&[64, 1, 0])), &cx4()),
        notif(2, 0, &[])
    );
    assert_eq!(
        reset(&open_with(&caps_param(&[64, 3, 0, 120, 0])), &cx4()),
        notif(2, 0, &[])
    );
    assert_eq!(
        reset(&open_with(&caps_param(&[2, 1, 0])), &cx4()),
        notif(2, 0, &[])
    );
}

#[test]
fn open_unknown_optional_parameter_is_2_4() {
    // Type 1 (deprecated authentication) and an unassigned type.
    for ty in [1u8, 3, 254] {
        assert_eq!(reset(&open_with(&[ty, 1, 0]), &cx4()), notif(2, 4, &[]));
    }
}

#[test]
fn open_unknown_capability_is_kept_and_ignored() {
    let m = open_with(&caps_param(&[99, 2, 0xab, 0xcd, 2, 0]));
    let Message::Open(o) = decode_message(&m, &cx4()).unwrap() else {
        unreachable!()
    };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Unknown {
                code: 99,
                value: Bytes::from_static(&[0xab, 0xcd])
            },
            Capability::RouteRefresh
        ]
    );
}

#[test]
fn open_add_path_tuple_with_bad_mode_is_dropped() {
    let caps = [69, 12, 0, 1, 1, 0, 0, 2, 1, 3, 0, 1, 128, 4];
    let Message::Open(o) = decode_message(&open_with(&caps_param(&caps)), &cx4()).unwrap() else {
        unreachable!()
    };
    assert_eq!(
        o.capabilities,
        vec![Capability::AddPath(vec![(
            Family::IPV6_UNICAST,
            AddPathMode::Both
        )])]
    );
}

#[test]
fn open_add_path_length_not_multiple_of_4_is_2_0() {
    let m = open_with(&caps_param(&[69, 5, 0, 1, 1, 1, 0]));
    assert_eq!(reset(&m, &cx4()), notif(2, 0, &[]));
}

#[test]
fn open_rfc9072_extended_parameters_are_accepted() {
    // Non-Ext OP Len = 255, Non-Ext OP Type = 255, Extended Opt. Parm. Length, 2-octet lengths.
    let caps = [65u8, 4, 0, 0, 0xfd, 0xe9, 2, 0];
    let mut params = vec![255u8, 0, (3 + caps.len()) as u8, 2, 0, caps.len() as u8];
    params.extend_from_slice(&caps);
    let mut b = open_body(4, 65001, 90, [198, 18, 0, 2], &[]);
    b[9] = 255;
    b.extend_from_slice(&params);
    let Message::Open(o) = decode_message(&msg(1, &b), &cx4()).unwrap() else {
        unreachable!()
    };
    assert_eq!(
        o.capabilities,
        vec![Capability::FourOctetAs(65001), Capability::RouteRefresh]
    );

    // Inconsistent extended length → 2/0.
    b[12] += 1;
    assert_eq!(reset(&msg(1, &b), &cx4()), notif(2, 0, &[]));

    // Our encoder switches to this format only above 255 octets, and reads back what it wrote.
    let big = Open {
        version: 4,
        my_as: 65001,
        hold_time: 90,
        bgp_id: ip4("198.18.0.2"),
        capabilities: (0..40)
            .map(|_| Capability::Multiprotocol(Family::IPV4_UNICAST))
            .collect(),
    };
    let bytes = encode(&Message::Open(big.clone()), &cx4());
    assert_eq!((bytes[28], bytes[29]), (255, 255));
    assert_eq!(decode_message(&bytes, &cx4()), Ok(Message::Open(big)));
}

// ---- §1.4 UPDATE: general rules -----------------------------------------------------------------

#[test]
fn update_withdrawn_length_overrun_is_3_1() {
    let mut m = update(&[24, 198, 18, 100], &[], &[]);
    m[20] = 200;
    assert_eq!(reset(&m, &cx4()), notif(3, 1, &[]));
    // Not even room for the attribute length field.
    let m = msg(2, &[0, 2, 24, 198, 18]);
    assert_eq!(reset(&m, &cx4()), notif(3, 1, &[]));
}

#[test]
fn update_total_attribute_length_overrun_is_3_1() {
    let mut m = upd4(&[]);
    let tpal = u16::from_be_bytes([m[21], m[22]]) + 10;
    m[21..23].copy_from_slice(&tpal.to_be_bytes());
    assert_eq!(
        decode_message(&m, &cx4()),
        Err(DecodeError::AttributeLengthOverrun)
    );
    assert_eq!(reset(&m, &cx4()), notif(3, 1, &[]));
}

#[test]
fn update_flag_errors_are_treat_as_withdraw_for_1_to_5() {
    // Optional bit on ORIGIN, Partial on NEXT_HOP, well-known flags on MED...
    let cases: Vec<(Vec<u8>, u8)> = vec![
        (
            [attr(OPT_T, 1, &[0]), as_path(&[65001], 4), next_hop()].concat(),
            1,
        ),
        (
            [
                origin(),
                attr(WK | PARTIAL, 2, &seg(2, &[65001], 4)),
                next_hop(),
            ]
            .concat(),
            2,
        ),
        (
            [
                origin(),
                as_path(&[65001], 4),
                attr(WK | PARTIAL, 3, &[198, 18, 0, 1]),
            ]
            .concat(),
            3,
        ),
        ([base4(), attr(WK, 4, &[0, 0, 0, 1])].concat(), 4),
        ([base4(), attr(OPT, 5, &[0, 0, 0, 1])].concat(), 5),
    ];
    for (attrs, ty) in cases {
        let m = update(&[], &attrs, &NLRI);
        assert_taw(&m, &ibgp4(), ty, 4);
    }
    // ... and for the optional recognised ones with TaW semantics.
    assert_taw(&upd4(&attr(OPT, 8, &[0, 0, 0, 1])), &cx4(), 8, 4);
    assert_taw(&upd4(&attr(WK, 16, &[0; 8])), &cx4(), 16, 4);
    assert_taw(&upd4(&attr(OPT, 32, &[0; 12])), &cx4(), 32, 4);
    assert_taw(&upd4(&attr(OPT_T, 9, &[1, 2, 3, 4])), &ibgp4(), 9, 4);
}

#[test]
fn update_flag_errors_on_atomic_aggregate_and_aggregator_are_discard() {
    assert_discard(&upd4(&attr(OPT_T, 6, &[])), &cx4(), 6, 4);
    // Partial on the well-known ATOMIC_AGGREGATE (robustness pin: DISCARD for 6/7).
    assert_discard(&upd4(&attr(WK | PARTIAL, 6, &[])), &cx4(), 6, 4);
    assert_discard(
        &upd4(&attr(WK, 7, &[0, 0, 0xfd, 0xe9, 198, 18, 0, 1])),
        &cx4(),
        7,
        4,
    );
}

#[test]
fn update_missing_well_known_is_treat_as_withdraw_not_3_3() {
    for (attrs, ty) in [
        ([as_path(&[65001], 4), next_hop()].concat(), 1u8),
        ([origin(), next_hop()].concat(), 2),
        ([origin(), as_path(&[65001], 4)].concat(), 3),
    ] {
        let e = taw(&update(&[], &attrs, &NLRI), &cx4());
        assert_eq!((e.type_code, e.subcode, &e.data[..]), (ty, 3, &[ty][..]));
    }
    // NEXT_HOP is not needed when only MP_REACH_NLRI carries NLRI (RFC 4760 §3).
    let mp = mp_reach_v6(&[64, 0x20, 0x01, 0, 2, 0, 0, 1, 0]);
    let attrs = [mp, origin(), as_path(&[65001], 4)].concat();
    let u = decode_update_msg(&update(&[], &attrs, &[]), &cx4()).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
    // Nor are any attributes needed without reachable NLRI.
    let u = decode_update_msg(&update(&[24, 198, 18, 100], &[], &[]), &cx4()).unwrap();
    assert_eq!(u.treat_as_withdraw, None);
}

#[test]
fn update_duplicate_mp_reach_or_mp_unreach_is_3_1() {
    let r = mp_reach_v6(&[64, 0x20, 0x01, 0, 2, 0, 0, 1, 0]);
    let attrs = [r.clone(), origin(), as_path(&[65001], 4), r].concat();
    assert_eq!(reset(&update(&[], &attrs, &[]), &cx4()), notif(3, 1, &[]));
    let u = attr(OPT, 15, &[0, 2, 1]);
    assert_eq!(
        reset(&update(&[], &[u.clone(), u].concat(), &[]), &cx4()),
        notif(3, 1, &[])
    );
}

#[test]
fn update_other_duplicates_keep_the_first() {
    let m = upd4(&[attr(OPT, 4, &[0, 0, 0, 1]), attr(OPT, 4, &[0, 0, 0, 2])].concat());
    let u = assert_discard(&m, &cx4(), 4, 1);
    assert_eq!(u.attrs.med, Some(1));
    // Also for unknown attributes.
    let m = upd4(&[attr(OPT_T, 99, &[1]), attr(OPT_T, 99, &[2])].concat());
    let u = assert_discard(&m, &cx4(), 99, 1);
    assert_eq!(u.attrs.unknown.len(), 1);
    assert_eq!(&u.attrs.unknown[0].value[..], &[1]);
}

#[test]
fn update_attribute_length_overrun_is_treat_as_withdraw_using_tpal() {
    // The last attribute claims more octets than the attribute field has: TaW, and the NLRI
    // after the field (located with the TPAL) is still decoded so it can be withdrawn.
    let mut attrs = base4();
    attrs.extend_from_slice(&[OPT, 4, 10, 0, 0, 0, 1]);
    let m = update(&[], &attrs, &NLRI);
    let e = taw(&m, &cx4());
    assert_eq!((e.type_code, e.subcode), (4, 5));
    let u = decode_update_msg(&m, &cx4()).unwrap();
    assert_eq!(u.nlri, vec![v4("198.18.100.0/24")]);
    // Fewer than 3 octets left for an attribute header (RFC 7606 §4 b).
    let attrs = [base4(), vec![OPT]].concat();
    let e = taw(&update(&[], &attrs, &NLRI), &cx4());
    assert_eq!(e.subcode, 1);
    // Extended Length with only 3 octets left.
    let attrs = [base4(), vec![OPT | 0x10, 4, 0]].concat();
    assert_taw(&update(&[], &attrs, &NLRI), &cx4(), 4, 5);
}

#[test]
fn update_attribute_overrun_on_mp_reach_is_reset() {
    // The NLRI of a truncated MP_REACH cannot be located: treat-as-withdraw is impossible.
    let attrs = [base4(), vec![OPT | 0x10, 14, 0, 40, 0, 2, 1]].concat();
    let n = reset(&update(&[], &attrs, &NLRI), &cx4());
    assert_eq!((n.code, n.subcode), (3, 9));
}

#[test]
fn update_zero_length_is_an_error_except_as_path_and_atomic_aggregate() {
    assert_taw(&upd4(&attr(OPT, 4, &[])), &cx4(), 4, 5);
    assert_taw(&upd4(&attr(OPT_T, 8, &[])), &cx4(), 8, 5);
    let m = update(
        &[],
        &[origin(), attr(WK, 2, &[]), next_hop()].concat(),
        &NLRI,
    );
    let (u, _) = discards(&m, &cx4());
    assert_eq!(u.attrs.as_path, Some(AsPath::default()));
    let (u, _) = discards(&upd4(&attr(WK, 6, &[])), &cx4());
    assert!(u.attrs.atomic_aggregate);
}

#[test]
fn update_no_reachable_nlri_with_treat_as_withdraw_error_is_reset_3_1() {
    // RFC 7606 §5.2: attributes but no NLRI, and an error worse than discard.
    let attrs = [attr(WK, 1, &[7]), as_path(&[65001], 4)].concat();
    let m = update(&[], &attrs, &[]);
    assert_eq!(
        decode_message(&m, &cx4()),
        Err(DecodeError::MalformedWithoutNlri {
            type_code: 1,
            subcode: 6
        })
    );
    assert_eq!(reset(&m, &cx4()), notif(3, 1, &[]));
    // Withdrawals do not count as reachable NLRI.
    assert_eq!(
        reset(&update(&[24, 198, 18, 100], &attrs, &[]), &cx4()),
        notif(3, 1, &[])
    );
    // A discard-level error without NLRI is fine.
    let m = update(&[], &attr(WK, 6, &[1]), &[]);
    assert_eq!(discards(&m, &cx4()).1.len(), 1);
}

#[test]
fn update_strongest_action_wins() {
    // Discard (ATOMIC_AGGREGATE) + TaW (MED): both reported, TaW applies.
    let m = upd4(&[attr(WK, 6, &[1]), attr(OPT, 4, &[1])].concat());
    let u = decode_update_msg(&m, &cx4()).unwrap();
    assert_eq!(u.treat_as_withdraw.as_ref().map(|e| e.type_code), Some(4));
    assert_eq!(u.discarded.len(), 1);
    // TaW (MED) + reset (MP_REACH flags): reset.
    let bad_mp = attr(
        OPT_T,
        14,
        &[
            0, 2, 1, 16, 0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    let n = reset(&upd4(&[attr(OPT, 4, &[1]), bad_mp].concat()), &cx4());
    assert_eq!((n.code, n.subcode), (3, 9));
}

// ---- §5.3 NLRI syntax ------------------------------------------------------------------------

#[test]
fn nlri_prefix_too_long_is_3_10() {
    let m = update(&[], &base4(), &[33, 198, 18, 100, 0, 0]);
    assert_eq!(
        decode_message(&m, &cx4()),
        Err(DecodeError::InvalidNetworkField {
            field: NlriField::Nlri
        })
    );
    assert_eq!(reset(&m, &cx4()), notif(3, 10, &[]));
}

#[test]
fn nlri_overrun_is_3_10() {
    let m = update(&[], &base4(), &[24, 198, 18]);
    assert_eq!(reset(&m, &cx4()), notif(3, 10, &[]));
}

#[test]
fn withdrawn_field_bad_is_3_10() {
    let m = update(&[40, 1, 2, 3, 4, 5], &[], &[]);
    assert_eq!(
        decode_message(&m, &cx4()),
        Err(DecodeError::InvalidNetworkField {
            field: NlriField::Withdrawn
        })
    );
    assert_eq!(
        reset(&update(&[24, 198], &[], &[]), &cx4()),
        notif(3, 10, &[])
    );
}

#[test]
fn nlri_host_bits_are_cleared() {
    let u = decode_update_msg(&update(&[], &base4(), &[23, 198, 18, 101]), &cx4()).unwrap();
    assert_eq!(u.nlri, vec![v4("198.18.100.0/23")]);
}

// ---- MP_REACH_NLRI / MP_UNREACH_NLRI -----------------------------------------------------------

/// MP_REACH_NLRI for IPv6 unicast, next hop 2001:2::1, then `nlri`.
fn mp_reach_v6(nlri: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 2, 1, 16];
    v.extend_from_slice(&ip6("2001:2::1").octets());
    v.push(0);
    v.extend_from_slice(nlri);
    attr(OPT, 14, &v)
}

fn mp_update(mp: Vec<u8>) -> Vec<u8> {
    update(&[], &[mp, origin(), as_path(&[65001], 4)].concat(), &[])
}

#[test]
fn mp_reach_bad_next_hop_length_is_3_9_with_attribute() {
    // IPv6 with a 4-octet next hop.
    let a = attr(
        OPT,
        14,
        &[
            0, 2, 1, 4, 198, 18, 0, 1, 0, 64, 0x20, 0x01, 0, 2, 0, 0, 1, 0,
        ],
    );
    assert_eq!(reset(&mp_update(a.clone()), &cx4()), notif(3, 9, &a));
    // IPv4 with a 5-octet next hop.
    let a = attr(
        OPT,
        14,
        &[0, 1, 1, 5, 198, 18, 0, 1, 0, 0, 24, 198, 18, 100],
    );
    assert_eq!(reset(&mp_update(a.clone()), &cx4()), notif(3, 9, &a));
    // Next hop overrunning the attribute.
    let a = attr(OPT, 14, &[0, 2, 1, 16, 0x20, 0x01]);
    assert_eq!(reset(&mp_update(a.clone()), &cx4()), notif(3, 9, &a));
}

#[test]
fn mp_reach_shorter_than_5_is_3_9() {
    let a = attr(OPT, 14, &[0, 2, 1, 0]);
    assert_eq!(reset(&mp_update(a.clone()), &cx4()), notif(3, 9, &a));
}

#[test]
fn mp_unreach_shorter_than_3_is_3_9() {
    let a = attr(OPT, 15, &[0, 2]);
    assert_eq!(reset(&update(&[], &a, &[]), &cx4()), notif(3, 9, &a));
}

#[test]
fn mp_attributes_with_wrong_flags_are_3_9() {
    let a = attr(
        OPT_T,
        14,
        &[
            0, 2, 1, 16, 0x20, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0,
        ],
    );
    assert_eq!(reset(&mp_update(a.clone()), &cx4()), notif(3, 9, &a));
    let a = attr(WK, 15, &[0, 2, 1]);
    assert_eq!(reset(&update(&[], &a, &[]), &cx4()), notif(3, 9, &a));
    let a = attr(OPT | PARTIAL, 15, &[0, 2, 1]);
    assert_eq!(reset(&update(&[], &a, &[]), &cx4()), notif(3, 9, &a));
}

#[test]
fn mp_nlri_syntax_errors_are_3_10() {
    let m = mp_update(mp_reach_v6(&[129, 0x20]));
    assert_eq!(
        decode_message(&m, &cx4()),
        Err(DecodeError::InvalidNetworkField {
            field: NlriField::MpReach
        })
    );
    let m = mp_update(mp_reach_v6(&[64, 0x20, 0x01]));
    assert_eq!(reset(&m, &cx4()), notif(3, 10, &[]));
    let m = update(&[], &attr(OPT, 15, &[0, 2, 1, 48, 0x20, 0x01]), &[]);
    assert_eq!(
        decode_message(&m, &cx4()),
        Err(DecodeError::InvalidNetworkField {
            field: NlriField::MpUnreach
        })
    );
}

#[test]
fn mp_reach_ipv4_with_ipv6_next_hop_is_accepted() {
    // RFC 8950 extended next hop.
    let mut v = vec![0, 1, 1, 16];
    v.extend_from_slice(&ip6("2001:2::1").octets());
    v.extend_from_slice(&[0, 24, 198, 18, 100]);
    let u = decode_update_msg(&mp_update(attr(OPT, 14, &v)), &cx4()).unwrap();
    let r = u.mp_reach.unwrap();
    assert_eq!(
        r.next_hop,
        MpNextHop::V6 {
            global: ip6("2001:2::1"),
            link_local: None
        }
    );
    assert_eq!(r.nlri, vec![v4("198.18.100.0/24")]);
}

#[test]
fn mp_attributes_of_unsupported_families_are_skipped() {
    // The 31-byte bgp-rs crash input (dependencies.md §1.2): MP_UNREACH for AFI 25 (L2VPN).
    let crash = hex("ffffffffffffffffffffffffffffffff001f0200000008900f00040019479d");
    let u = decode_update_msg(&crash, &cx4()).unwrap();
    assert_eq!(
        u.mp_unreach.as_ref().map(|m| m.family),
        Some(Family { afi: 25, safi: 71 })
    );
    assert_eq!(u.mp_unreach.unwrap().withdrawn, vec![]);
    // MP_REACH for VPNv4 (SAFI 128) with a 12-octet next hop and labelled NLRI: dropped, but it
    // still counts as reachable NLRI (so missing attributes are TaW, not §5.2 resets).
    let mut v = vec![0, 1, 128, 12];
    v.extend_from_slice(&[0; 12]);
    v.extend_from_slice(&[0, 112, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 198, 18, 100]);
    let u = decode_update_msg(&mp_update(attr(OPT, 14, &v)), &cx4()).unwrap();
    assert_eq!(u.mp_reach, None);
    assert_eq!(u.treat_as_withdraw, None);
    let u = decode_update_msg(&update(&[], &attr(OPT, 14, &v), &[]), &cx4()).unwrap();
    assert_eq!(u.treat_as_withdraw.map(|e| e.type_code), Some(1));
    // An End-of-RIB for an unsupported family is recognisable as such.
    let eor = update(&[], &attr(OPT, 15, &[0, 1, 128]), &[]);
    let u = decode_update_msg(&eor, &cx4()).unwrap();
    assert_eq!(u.end_of_rib(), Some(Family { afi: 1, safi: 128 }));
}

// ---- per-attribute table ------------------------------------------------------------------------

#[test]
fn origin_bad_length_or_value_is_treat_as_withdraw() {
    let m = update(
        &[],
        &[attr(WK, 1, &[0, 0]), as_path(&[1], 4), next_hop()].concat(),
        &NLRI,
    );
    assert_taw(&m, &cx4(), 1, 5);
    let m = update(
        &[],
        &[attr(WK, 1, &[3]), as_path(&[1], 4), next_hop()].concat(),
        &NLRI,
    );
    let e = taw(&m, &cx4());
    assert_eq!(
        (e.type_code, e.subcode, &e.data[..]),
        (1, 6, &[WK, 1, 1, 3][..])
    );
}

fn with_path(path_value: &[u8]) -> Vec<u8> {
    update(
        &[],
        &[origin(), attr(WK, 2, path_value), next_hop()].concat(),
        &NLRI,
    )
}

#[test]
fn as_path_malformations_are_treat_as_withdraw() {
    let cases: Vec<Vec<u8>> = vec![
        [vec![5, 1], 65001u32.to_be_bytes().to_vec()].concat(), // unknown segment type
        vec![2, 0],                                             // zero-length segment
        [vec![2, 2], 65001u32.to_be_bytes().to_vec()].concat(), // overrun
        [seg(2, &[65001], 4), vec![2]].concat(),                // underrun
        seg(2, &[65001, 0], 4),                                 // AS 0 (RFC 7607)
        seg(1, &[65001, 65002], 4),                             // AS_SET (RFC 9774)
        [seg(2, &[65001], 4), seg(4, &[65010], 4)].concat(),    // AS_CONFED_SET
        [seg(3, &[65010], 4), seg(2, &[65001], 4)].concat(),    // confed from eBGP
    ];
    for value in cases {
        assert_taw(&with_path(&value), &cx4(), 2, 11);
    }
}

#[test]
fn as_path_as0_is_treat_as_withdraw_on_ibgp_too_and_confed_sequence_is_fine_there() {
    assert_taw(&with_path(&seg(2, &[0], 4)), &ibgp4(), 2, 11);
    let v = [seg(3, &[65010], 4), seg(2, &[65001], 4)].concat();
    let (u, _) = discards(&with_path(&v), &ibgp4());
    assert_eq!(u.attrs.as_path.unwrap().segments.len(), 2);
}

#[test]
fn as_path_2_octet_width_depends_on_session() {
    // 4 octets of AS_PATH value: one 4-octet AS, or an overrun for a 2-octet session... and
    // vice versa.
    let v = seg(2, &[65001], 4);
    assert!(
        decode_update_msg(&with_path(&v), &cx4())
            .unwrap()
            .treat_as_withdraw
            .is_none()
    );
    assert_taw(&with_path(&v), &cx2(), 2, 11);
}

#[test]
fn next_hop_bad_length_or_address_is_treat_as_withdraw() {
    let m = update(
        &[],
        &[origin(), as_path(&[1], 4), attr(WK, 3, &[198, 18, 0])].concat(),
        &NLRI,
    );
    assert_taw(&m, &cx4(), 3, 5);
    for nh in [
        [0, 1, 2, 3],
        [127, 0, 0, 1],
        [224, 0, 0, 5],
        [255, 255, 255, 255],
    ] {
        let m = update(
            &[],
            &[origin(), as_path(&[1], 4), attr(WK, 3, &nh)].concat(),
            &NLRI,
        );
        assert_taw(&m, &cx4(), 3, 8);
    }
}

#[test]
fn med_bad_length_is_treat_as_withdraw() {
    assert_taw(&upd4(&attr(OPT, 4, &[0, 0, 1])), &cx4(), 4, 5);
}

#[test]
fn local_pref_from_ebgp_is_discarded_and_bad_from_ibgp_is_treat_as_withdraw() {
    let u = assert_discard(&upd4(&attr(WK, 5, &[0, 0, 0, 100])), &cx4(), 5, 0);
    assert_eq!(u.attrs.local_pref, None);
    // Even malformed, from eBGP it is just discarded.
    assert_discard(&upd4(&attr(WK, 5, &[1])), &cx4(), 5, 0);
    assert_taw(&upd4(&attr(WK, 5, &[0, 100])), &ibgp4(), 5, 5);
    let (u, _) = discards(&upd4(&attr(WK, 5, &[0, 0, 0, 100])), &ibgp4());
    assert_eq!(u.attrs.local_pref, Some(100));
}

#[test]
fn atomic_aggregate_bad_length_is_discard() {
    let u = assert_discard(&upd4(&attr(WK, 6, &[0])), &cx4(), 6, 5);
    assert!(!u.attrs.atomic_aggregate);
}

#[test]
fn aggregator_bad_length_or_as0_is_discard() {
    // 4-octet session wants 8 octets, 2-octet session 6.
    assert_discard(
        &upd4(&attr(OPT_T, 7, &[0xfd, 0xe9, 198, 18, 0, 1])),
        &cx4(),
        7,
        5,
    );
    assert_discard(
        &upd2(&attr(OPT_T, 7, &[0, 0, 0xfd, 0xe9, 198, 18, 0, 1])),
        &cx2(),
        7,
        5,
    );
    let u = assert_discard(
        &upd4(&attr(OPT_T, 7, &[0, 0, 0, 0, 198, 18, 0, 1])),
        &cx4(),
        7,
        9,
    );
    assert_eq!(u.attrs.aggregator, None);
}

#[test]
fn partial_malformed_recognised_optional_transitive_is_treat_as_withdraw() {
    assert_taw(
        &upd4(&attr(OPT_T | PARTIAL, 7, &[0xfd, 0xe9, 198, 18, 0, 1])),
        &cx4(),
        7,
        5,
    );
    assert_taw(
        &upd2(&attr(OPT_T | PARTIAL, 18, &[0, 0, 0, 1])),
        &cx2(),
        18,
        9,
    );
    // A well-formed partial attribute is just accepted.
    let (u, _) = discards(&upd4(&attr(OPT_T | PARTIAL, 8, &[0, 0, 0, 1])), &cx4());
    assert_eq!(u.attrs.communities, vec![1]);
}

#[test]
fn communities_bad_length_is_treat_as_withdraw() {
    assert_taw(&upd4(&attr(OPT_T, 8, &[0, 0, 0, 1, 0])), &cx4(), 8, 5);
}

#[test]
fn originator_id_and_cluster_list_from_ebgp_are_discarded_bad_from_ibgp_taw() {
    assert_discard(&upd4(&attr(OPT, 9, &[198, 18, 0, 9])), &cx4(), 9, 0);
    assert_discard(&upd4(&attr(OPT, 10, &[198, 18, 0, 9])), &cx4(), 10, 0);
    assert_discard(&upd4(&attr(OPT, 9, &[1])), &cx4(), 9, 0);
    assert_taw(&upd4(&attr(OPT, 9, &[198, 18, 0])), &ibgp4(), 9, 5);
    assert_taw(&upd4(&attr(OPT, 10, &[198, 18, 0, 9, 1])), &ibgp4(), 10, 5);
    assert_taw(&upd4(&attr(OPT, 10, &[])), &ibgp4(), 10, 5);
    let (u, _) = discards(
        &upd4(&attr(OPT, 10, &[198, 18, 0, 9, 198, 18, 0, 10])),
        &ibgp4(),
    );
    assert_eq!(
        u.attrs.cluster_list,
        vec![ip4("198.18.0.9"), ip4("198.18.0.10")]
    );
}

#[test]
fn extended_communities_bad_length_is_treat_as_withdraw() {
    assert_taw(&upd4(&attr(OPT_T, 16, &[0; 12])), &cx4(), 16, 5);
    // An unknown sub-type is not an error.
    let (u, _) = discards(&upd4(&attr(OPT_T, 16, &[0xff; 8])), &cx4());
    assert_eq!(u.attrs.ext_communities, vec![u64::MAX]);
}

#[test]
fn ipv6_extended_communities_bad_length_is_treat_as_withdraw() {
    assert_taw(&upd4(&attr(OPT_T, 25, &[0; 21])), &cx4(), 25, 5);
    let (u, _) = discards(&upd4(&attr(OPT_T, 25, &[0; 20])), &cx4());
    assert_eq!(u.attrs.unknown.len(), 1);
}

#[test]
fn large_community_bad_length_is_treat_as_withdraw() {
    assert_taw(&upd4(&attr(OPT_T, 32, &[0; 13])), &cx4(), 32, 5);
}

#[test]
fn otc_bad_length_is_treat_as_withdraw() {
    assert_taw(&upd4(&attr(OPT_T, 35, &[0; 3])), &cx4(), 35, 5);
}

#[test]
fn as4_attributes_from_new_speaker_are_discarded() {
    let p4 = attr(OPT_T, 17, &seg(2, &[4_200_000_001], 4));
    let u = assert_discard(&upd4(&p4), &cx4(), 17, 9);
    assert_eq!(u.attrs.as_path, Some(seq(&[65001])));
    assert_discard(&upd4(&attr(OPT_T, 18, &[0; 8])), &cx4(), 18, 9);
}

#[test]
fn malformed_as4_path_from_old_speaker_is_discarded() {
    for value in [
        vec![2, 1, 0, 0],                           // truncated AS
        vec![2, 0],                                 // zero-length segment
        vec![9, 1, 0, 0, 0, 1],                     // unknown segment type
        seg(2, &[0], 4),                            // AS 0
        vec![],                                     // empty
        seg(1, &[4_200_000_001, 4_200_000_002], 4), // AS_SET (RFC 9774)
    ] {
        let m = upd2(&attr(OPT_T, 17, &value));
        let u = assert_discard(&m, &cx2(), 17, 9);
        assert_eq!(u.attrs.as_path, Some(seq(&[65001])));
    }
    // Confederation segments are dropped, the rest kept.
    let p = [seg(3, &[4_200_000_010], 4), seg(2, &[4_200_000_001], 4)].concat();
    let m = update(
        &[],
        &[
            origin(),
            as_path(&[23456], 2),
            next_hop(),
            attr(OPT_T, 17, &p),
        ]
        .concat(),
        &NLRI,
    );
    let (u, _) = discards(&m, &cx2());
    assert_eq!(u.attrs.as_path, Some(seq(&[4_200_000_001])));
}

#[test]
fn as4_aggregator_bad_length_from_old_speaker_is_discarded() {
    assert_discard(&upd2(&attr(OPT_T, 18, &[0; 6])), &cx2(), 18, 9);
}

#[test]
fn unrecognized_well_known_attribute_is_3_2_with_attribute() {
    let a = attr(WK, 99, &[1, 2, 3]);
    assert_eq!(reset(&upd4(&a), &cx4()), notif(3, 2, &a));
    // Also with only a withdrawal in the UPDATE.
    assert_eq!(reset(&update(&NLRI, &a, &[]), &cx4()), notif(3, 2, &a));
}

#[test]
fn unknown_optional_attributes_are_kept_transitive_ones_passed_with_partial() {
    let m = upd4(&[attr(OPT, 100, &[1]), attr(OPT_T, 101, &[2])].concat());
    let (u, d) = discards(&m, &cx4());
    assert!(d.is_empty());
    assert_eq!(
        u.attrs.unknown,
        vec![
            RawAttr {
                flags: OPT,
                type_code: 100,
                value: Bytes::from_static(&[1])
            },
            RawAttr {
                flags: OPT_T,
                type_code: 101,
                value: Bytes::from_static(&[2])
            },
        ]
    );
    let mut out = bytes::BytesMut::new();
    encode_path_attrs(&u.attrs, &cx4(), &mut out);
    let tail = &out[out.len() - 4..];
    assert_eq!(
        tail,
        &[OPT_T | PARTIAL, 101, 1, 2],
        "non-transitive dropped, Partial set"
    );
    assert!(!out.windows(2).any(|w| w == [OPT, 100]));
}

// ---- §1.6 four-octet AS reconstruction ----------------------------------------------------------

fn old_update(
    order_as4_first: bool,
    path2: &[u32],
    path4: &[u32],
    aggr: Option<(u16, u32)>,
) -> Vec<u8> {
    let mut attrs = vec![origin(), next_hop()];
    let p2 = as_path(path2, 2);
    let p4 = attr(OPT_T, 17, &seg(2, path4, 4));
    if order_as4_first {
        attrs.extend([p4, p2]);
    } else {
        attrs.extend([p2, p4]);
    }
    if let Some((a2, a4)) = aggr {
        let mut a = a2.to_be_bytes().to_vec();
        a.extend_from_slice(&[198, 18, 0, 7]);
        attrs.push(attr(OPT_T, 7, &a));
        let mut a = a4.to_be_bytes().to_vec();
        a.extend_from_slice(&[198, 18, 0, 7]);
        attrs.insert(0, attr(OPT_T, 18, &a));
    }
    update(&[], &attrs.concat(), &NLRI)
}

#[test]
fn as4_merge_is_order_independent() {
    for first in [false, true] {
        let m = old_update(
            first,
            &[65001, 23456, 23456],
            &[4_200_000_001, 4_200_000_002],
            None,
        );
        let (u, _) = discards(&m, &cx2());
        assert_eq!(
            u.attrs.as_path,
            Some(seq(&[65001, 4_200_000_001, 4_200_000_002])),
            "{first}"
        );
    }
}

#[test]
fn as4_path_longer_than_as_path_is_ignored() {
    let m = old_update(false, &[23456], &[4_200_000_001, 4_200_000_002], None);
    let (u, _) = discards(&m, &cx2());
    assert_eq!(u.attrs.as_path, Some(seq(&[23456])));
}

#[test]
fn aggregator_not_as_trans_ignores_as4_attributes() {
    let m = old_update(
        false,
        &[65001, 23456],
        &[4_200_000_001],
        Some((65001, 4_200_000_009)),
    );
    let (u, _) = discards(&m, &cx2());
    assert_eq!(u.attrs.as_path, Some(seq(&[65001, 23456])));
    assert_eq!(u.attrs.aggregator.map(|a| a.asn), Some(65001));
}

#[test]
fn aggregator_as_trans_takes_as4_aggregator() {
    let m = old_update(
        true,
        &[65001, 23456],
        &[4_200_000_001],
        Some((23456, 4_200_000_009)),
    );
    let (u, _) = discards(&m, &cx2());
    assert_eq!(u.attrs.as_path, Some(seq(&[65001, 4_200_000_001])));
    assert_eq!(
        u.attrs.aggregator,
        Some(Aggregator {
            asn: 4_200_000_009,
            address: ip4("198.18.0.7")
        })
    );
}

#[test]
fn as4_aggregator_without_aggregator_is_ignored() {
    let m = upd2(&attr(OPT_T, 18, &[0xfa, 0x56, 0xea, 0x09, 198, 18, 0, 7]));
    let (u, _) = discards(&m, &cx2());
    assert_eq!(u.attrs.aggregator, None);
}

// ---- §1.14 ADD-PATH --------------------------------------------------------------------------

#[test]
fn path_ids_without_negotiation_misparse_to_3_10() {
    // Path id 100 then 198.18.100.0/24, read without ADD-PATH: "length" 100 > 32.
    let m = update(&[], &base4(), &[0, 0, 0, 100, 24, 198, 18, 100]);
    assert_eq!(reset(&m, &cx4()), notif(3, 10, &[]));
    let with = SessionCodec {
        add_path_rx: vec![Family::IPV4_UNICAST],
        ..cx4()
    };
    let u = decode_update_msg(&m, &with).unwrap();
    assert_eq!(u.nlri, vec![v4id("198.18.100.0/24", 100)]);
    // Negotiated, but the peer sends none: the field cannot hold whole path ids.
    let m = update(&[], &base4(), &[24, 198, 18, 100]);
    assert_eq!(reset(&m, &with), notif(3, 10, &[]));
}

#[test]
fn path_ids_are_per_family() {
    // ADD-PATH for IPv6 only: the IPv4 field has none, MP_REACH IPv6 has them.
    let cx = SessionCodec {
        add_path_rx: vec![Family::IPV6_UNICAST],
        ..cx4()
    };
    let mp = mp_reach_v6(&[0, 0, 0, 7, 64, 0x20, 0x01, 0, 2, 0, 0, 1, 0]);
    let m = update(&[], &[mp, base4()].concat(), &NLRI);
    let u = decode_update_msg(&m, &cx).unwrap();
    assert_eq!(u.nlri, vec![v4("198.18.100.0/24")]);
    assert_eq!(
        u.mp_reach.unwrap().nlri,
        vec![Nlri {
            path_id: Some(7),
            ..v6("2001:2:0:100::/64")
        }]
    );
}

// ---- §1.5 other messages ----------------------------------------------------------------------

#[test]
fn notification_shorter_than_21_is_1_2() {
    let m = msg(3, &[6]);
    assert_eq!(reset(&m, &cx4()), notif(1, 2, &[0, 20]));
}

#[test]
fn notification_with_any_code_decodes() {
    let m = msg(3, &[99, 99, 1, 2]);
    assert_eq!(
        decode_message(&m, &cx4()),
        Ok(Message::Notification(notif(99, 99, &[1, 2])))
    );
}

#[test]
fn route_refresh_length_errors() {
    // Shorter than 23 → header error 1/2.
    assert_eq!(reset(&msg(5, &[0, 1, 0]), &cx4()), notif(1, 2, &[0, 22]));
    // Longer than 23 → 7/1 with the whole message (RFC 7313 §5).
    let m = msg(5, &[0, 1, 1, 1, 0]);
    assert_eq!(reset(&m, &cx4()), notif(7, 1, &m));
}

#[test]
fn route_refresh_unknown_subtype_decodes() {
    let m = msg(5, &[0, 1, 9, 1]);
    assert_eq!(
        decode_message(&m, &cx4()),
        Ok(Message::RouteRefresh(RouteRefresh {
            family: Family::IPV4_UNICAST,
            subtype: 9
        }))
    );
}

// ---- encode errors -------------------------------------------------------------------------------

#[test]
fn encode_refuses_oversized_messages_and_leaves_buffer_untouched() {
    let u = Update {
        nlri: (0..2000u32)
            .map(|i| v4(&format!("198.{}.{}.0/24", 18 + i / 256, i % 256)))
            .collect(),
        attrs: PathAttrs {
            origin: Some(Origin::Igp),
            ..PathAttrs::default()
        },
        ..Update::default()
    };
    let mut out = bytes::BytesMut::from(&b"xy"[..]);
    let r = encode_message(&Message::Update(u.clone()), &cx4(), &mut out);
    assert!(matches!(
        r,
        Err(EncodeError::MessageTooLong { max: 4096, .. })
    ));
    assert_eq!(&out[..], b"xy");
    let ext = SessionCodec {
        extended_message: true,
        ..cx4()
    };
    assert!(encode_message(&Message::Update(u), &ext, &mut out).is_ok());

    let bad = Capability::GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 4096,
        families: vec![],
    };
    let open = Open {
        version: 4,
        my_as: 1,
        hold_time: 90,
        bgp_id: ip4("198.18.0.1"),
        capabilities: vec![bad],
    };
    assert_eq!(
        encode_message(&Message::Open(open), &cx4(), &mut out),
        Err(EncodeError::RestartTimeTooLarge(4096))
    );
}
