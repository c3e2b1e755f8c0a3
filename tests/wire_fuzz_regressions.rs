//! Regression inputs: crashes found by fuzzing (ARCHITECTURE.md §12 rule 12: "fuzz crashes
//! become plain tests") and the input shapes behind the CVEs and crash bugs of other BGP
//! implementations listed in `shared/reference/bgp-robustness.md` §2 and `dependencies.md`
//! §1.2–§1.3. Each test states the input, the historical bug, and the behaviour we pin.
//!
//! Fuzzing `tests/fuzz` (see `tests/fuzz/RESULTS.md`) has found no crash in podbgp so far; add
//! every future finding here as `fuzz_<target>_<short description>` with the artifact bytes.

#[path = "wire/common.rs"]
mod common;

use common::*;
use podbgp::wire::*;

const WK: u8 = 0x40;
const OPT: u8 = 0x80;
const OPT_T: u8 = 0xc0;

fn base() -> Vec<u8> {
    [
        attr(WK, 1, &[0]),
        attr(WK, 2, &[2, 1, 0, 0, 0xfd, 0xe9]),
        attr(WK, 3, &[198, 18, 0, 1]),
    ]
    .concat()
}

/// Everything must come back as a value, never a panic; returns the decode result.
fn run(bytes: &[u8], cx: &SessionCodec) -> Result<Message, DecodeError> {
    let _ = frame_len(bytes, cx.max_message_len());
    let r = decode_message(bytes, cx);
    if let Ok(m) = &r {
        let mut out = bytes::BytesMut::new();
        let _ = encode_message(m, cx, &mut out);
    }
    r
}

#[test]
fn bgp_rs_mp_unreach_afi_25_crash() {
    // dependencies.md §1.2: bgp-rs `unimplemented!()` on L2VPN MP_UNREACH (31 bytes).
    let m = hex("ffffffffffffffffffffffffffffffff001f0200000008900f00040019479d");
    assert!(run(&m, &cx4()).is_ok());
}

#[test]
fn bgp_rs_labelled_unicast_subtract_overflow() {
    // dependencies.md §1.2: bgp-rs subtract overflow in labelled-unicast NLRI (SAFI 4). Ours
    // skips the NLRI of families it does not route.
    for nlri in [&[][..], &[0][..], &[8][..], &[255, 1, 2][..]] {
        let mut v = vec![0, 1, 4, 4, 198, 18, 0, 1, 0];
        v.extend_from_slice(nlri);
        let m = update(&[], &[attr(OPT, 14, &v), base()].concat(), &[]);
        assert!(run(&m, &cx4()).is_ok());
        let m = update(&[], &attr(OPT, 15, &[&[0, 1, 4][..], nlri].concat()), &[]);
        assert!(run(&m, &cx4()).is_ok());
    }
}

#[test]
fn zettabgp_header_length_below_19() {
    // dependencies.md §1.3: zettabgp computed `len - 19` unchecked.
    for len in [0u16, 1, 18] {
        let mut m = msg(4, &[]);
        m[16..18].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            frame_len(&m, 4096),
            Err(DecodeError::BadMessageLength { length: len })
        );
        assert!(run(&m, &cx4()).is_err());
    }
}

#[test]
fn routecore_ipv4_prefix_longer_than_32() {
    // dependencies.md §1.3: routecore indexed past a 4-byte buffer for /33+.
    for len in [33u8, 64, 255] {
        let m = update(&[], &base(), &[len, 1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(run(&m, &cx4()).unwrap_err().notification().subcode, 10);
        let m = update(&[len, 1, 2, 3, 4, 5], &[], &[]);
        assert_eq!(run(&m, &cx4()).unwrap_err().notification().subcode, 10);
    }
}

#[test]
fn cve_2023_4481_corrupted_bgp_ls_attribute_is_not_a_reset() {
    // Junos reset sessions on a corrupted attribute 29 relayed across the Internet. We do not
    // interpret it: an optional attribute is carried (or dropped if non-transitive), no error.
    let m = update(&[], &[base(), attr(OPT, 29, &[0xde, 0xad])].concat(), &NLRI);
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw, None);
}

#[test]
fn cve_2023_38802_corrupted_tunnel_encapsulation_is_not_a_reset() {
    let m = update(
        &[],
        &[base(), attr(OPT_T, 23, &[0, 1, 0, 5])].concat(),
        &NLRI,
    );
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.attrs.unknown.len(), 1);
}

const NLRI: [u8; 4] = [24, 198, 18, 100];

#[test]
fn cve_2023_38283_bad_attribute_length_is_treat_as_withdraw() {
    // OpenBGPD reset the session; RFC 7606 §4 says TaW using the TPAL.
    let mut attrs = base();
    attrs.extend_from_slice(&[OPT_T, 8, 200, 0, 0, 0, 1]);
    let m = update(&[], &attrs, &NLRI);
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert!(u.treat_as_withdraw.is_some());
    assert_eq!(u.nlri, vec![v4("198.18.100.0/24")]);
}

#[test]
fn cve_2023_46753_only_unknown_transitive_without_nlri() {
    // FRR crashed; for us: no NLRI, no error, not an End-of-RIB.
    let m = update(&[], &attr(OPT_T, 99, &[1, 2, 3]), &[]);
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw, None);
    assert_eq!(u.end_of_rib(), None);
}

#[test]
fn cve_2023_47234_mp_unreach_plus_nlri_without_mandatory_attributes() {
    let unreach = attr(OPT, 15, &[0, 2, 1, 64, 0x20, 0x01, 0, 2, 0, 0, 1, 0]);
    let m = update(&[], &unreach, &NLRI);
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw.map(|e| e.subcode), Some(3));
    assert_eq!(
        u.mp_unreach.unwrap().withdrawn,
        vec![v6("2001:2:0:100::/64")]
    );
}

#[test]
fn cve_2023_47235_malformed_update_that_looks_like_end_of_rib() {
    // An empty MP_UNREACH plus a malformed attribute is not an End-of-RIB; with no reachable
    // NLRI and a treat-as-withdraw error it is a §5.2 session reset.
    let attrs = [attr(OPT, 15, &[0, 2, 1]), attr(WK, 1, &[9])].concat();
    assert!(run(&update(&[], &attrs, &[]), &cx4()).is_err());
    // With only a discard-level error it decodes, but is still not an End-of-RIB.
    let attrs = [attr(OPT, 15, &[0, 2, 1]), attr(WK, 6, &[1])].concat();
    let Ok(Message::Update(u)) = run(&update(&[], &attrs, &[]), &cx4()) else {
        panic!()
    };
    assert_eq!(u.discarded.len(), 1);
    assert_eq!(u.end_of_rib(), None);
}

#[test]
fn cve_2023_41358_nlri_with_zero_attribute_length() {
    let Ok(Message::Update(u)) = run(&update(&[], &[], &NLRI), &cx4()) else {
        panic!()
    };
    assert_eq!(
        u.treat_as_withdraw.map(|e| (e.type_code, e.subcode)),
        Some((1, 3))
    );
}

#[test]
fn cve_2023_41359_short_aigp_is_harmless() {
    let m = update(&[], &[base(), attr(OPT, 26, &[1])].concat(), &NLRI);
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(u.treat_as_withdraw, None);
}

#[test]
fn cve_2022_43681_open_ending_with_the_option_length() {
    // OPEN whose body stops right after Opt Parm Len (non-zero), and the RFC 9072 form cut
    // after its length word.
    let mut body = vec![4, 0xfd, 0xe9, 0, 90, 198, 18, 0, 2, 5];
    assert_eq!(
        run(&msg(1, &body), &cx4()).unwrap_err().notification(),
        notif(2, 0)
    );
    body[9] = 255;
    body.extend_from_slice(&[255, 0, 10]);
    assert_eq!(
        run(&msg(1, &body), &cx4()).unwrap_err().notification(),
        notif(2, 0)
    );
}

fn notif(code: u8, subcode: u8) -> Notification {
    Notification {
        code,
        subcode,
        data: Default::default(),
    }
}

fn open(caps: &[u8]) -> Vec<u8> {
    let mut b = vec![
        4,
        0xfd,
        0xe9,
        0,
        90,
        198,
        18,
        0,
        2,
        (caps.len() + 2) as u8,
        2,
        caps.len() as u8,
    ];
    b.extend_from_slice(caps);
    msg(1, &b)
}

#[test]
fn ghsa_gjrg_four_octet_as_capability_with_length_0() {
    // GoBGP read the next capability's bytes as the AS. Each capability is parsed within its
    // own length: 2/0.
    let m = open(&[65, 0, 65, 4, 0, 0, 0xfd, 0xe9]);
    assert_eq!(run(&m, &cx4()).unwrap_err().notification(), notif(2, 0));
}

#[test]
fn cve_2018_5381_mp_capability_with_unknown_afi_safi() {
    let m = open(&[1, 4, 0x12, 0x34, 0, 0x99, 2, 0]);
    let Ok(Message::Open(o)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![
            Capability::Multiprotocol(Family {
                afi: 0x1234,
                safi: 0x99
            }),
            Capability::RouteRefresh
        ]
    );
}

#[test]
fn cve_2026_41642_unrecognised_well_known_attribute() {
    let a = attr(WK, 222, &[]);
    let n = run(&update(&[], &[base(), a.clone()].concat(), &NLRI), &cx4()).unwrap_err();
    assert_eq!(
        n.notification(),
        Notification {
            code: 3,
            subcode: 2,
            data: a.into()
        }
    );
}

#[test]
fn cve_2026_41643_as4_path_before_as_path_and_inconsistent_lengths() {
    // GoBGP panicked when AS4_PATH came first / had more ASNs than AS_PATH.
    let as4 = attr(OPT_T, 17, &[2, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
    let as2 = attr(WK, 2, &[2, 1, 0x5b, 0xa0]);
    let attrs = [as4, attr(WK, 1, &[0]), as2, attr(WK, 3, &[198, 18, 0, 1])].concat();
    let Ok(Message::Update(u)) = run(&update(&[], &attrs, &NLRI), &cx2()) else {
        panic!()
    };
    assert_eq!(
        u.attrs.as_path,
        Some(seq(&[23456])),
        "AS4_PATH longer than AS_PATH: ignored"
    );
}

#[test]
fn openbgpd_2012_aggregator_flags_with_low_nibble_set() {
    // Flags 0xc8: the low four bits must be ignored (RFC 4271 §4.3).
    let m = update(
        &[],
        &[base(), attr(0xc8, 7, &[0, 0, 0xfd, 0xe9, 198, 18, 0, 9])].concat(),
        &NLRI,
    );
    let Ok(Message::Update(u)) = run(&m, &cx4()) else {
        panic!()
    };
    assert!(u.discarded.is_empty());
    assert_eq!(u.attrs.aggregator.map(|a| a.asn), Some(65001));
}

#[test]
fn supertall_as_path_round_trips_within_limits() {
    // 2009 OpenBGPD crash on > 255 ASNs; CVE-2017-16227 (Quagga) sent an invalid UPDATE for a
    // long path; CVE-2026-49943 (BIRD) overflowed on > 2048 ASNs with extended messages.
    for (n, cx) in [
        (300usize, cx4()),
        (1000, cx4()),
        (
            5000,
            SessionCodec {
                extended_message: true,
                ..cx4()
            },
        ),
        (300, cx2()),
    ] {
        let asns: Vec<u32> = (0..n as u32).map(|i| 65536 + i).collect();
        let u = Update {
            attrs: PathAttrs {
                origin: Some(Origin::Igp),
                as_path: Some(seq(&asns)),
                next_hop: Some(ip4("198.18.0.1")),
                ..PathAttrs::default()
            },
            nlri: vec![v4("198.18.100.0/24")],
            ..Update::default()
        };
        let bytes = encode(&Message::Update(u), &cx);
        assert!(bytes.len() <= cx.max_message_len());
        let Ok(Message::Update(d)) = run(&bytes, &cx) else {
            panic!("n={n}")
        };
        assert_eq!(d.treat_as_withdraw, None);
        let p = d.attrs.as_path.unwrap();
        let flat: Vec<u32> = p
            .segments
            .iter()
            .flat_map(|s| s.asns.iter().copied())
            .collect();
        assert_eq!(flat, asns, "n={n}");
        assert!(p.segments.iter().all(|s| s.asns.len() <= 255));
    }
}

#[test]
fn cve_2019_16159_shutdown_communication_with_lying_length() {
    // BIRD overflowed a stack buffer; we never interpret the data field.
    let m = msg(3, &[6, 2, 255, b'h', b'i']);
    let Ok(Message::Notification(n)) = run(&m, &cx4()) else {
        panic!()
    };
    assert_eq!(&n.data[..], &[255, b'h', b'i']);
}
