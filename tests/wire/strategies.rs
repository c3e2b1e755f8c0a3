//! proptest strategies for wire messages, shared by the property tests (included with `#[path]`).
//!
//! Generated values are *canonical*: exactly what the decoder produces for what the encoder
//! writes under the same context, so `decode(encode(m)) == m` must hold. That excludes, by
//! construction, inputs the protocol itself cannot carry through a given session (documented
//! next to each strategy).
#![allow(dead_code)]

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use podbgp::wire::*;
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::select;

/// proptest configuration for these tests: `cases` cases, no failure-persistence files.
pub fn config(cases: u32) -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

pub fn family_any() -> impl Strategy<Value = Family> {
    (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family { afi, safi })
}

pub fn family_unicast() -> impl Strategy<Value = Family> {
    prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)]
}

/// A session context. ADD-PATH is symmetric (rx == tx) so what is sent is read back.
pub fn codec() -> impl Strategy<Value = SessionCodec> {
    (any::<bool>(), any::<bool>(), any::<bool>(), 0u8..4).prop_map(|(four, ext, ibgp, ap)| {
        let mut fams = Vec::new();
        if ap & 1 != 0 {
            fams.push(Family::IPV4_UNICAST);
        }
        if ap & 2 != 0 {
            fams.push(Family::IPV6_UNICAST);
        }
        SessionCodec {
            four_octet_as: four,
            extended_message: ext,
            add_path_rx: fams.clone(),
            add_path_tx: fams,
            ibgp,
        }
    })
}

pub fn prefix_v4() -> impl Strategy<Value = IpNet> {
    (any::<u32>(), 0u8..=32)
        .prop_map(|(a, l)| IpNet::V4(Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc()))
}

pub fn prefix_v6() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

/// NLRI of `afi`, with path ids iff `add_path`.
pub fn nlri_list(afi: u16, add_path: bool, max: usize) -> BoxedStrategy<Vec<Nlri>> {
    let prefix = if afi == AFI_IPV4 {
        prefix_v4().boxed()
    } else {
        prefix_v6().boxed()
    };
    let id = if add_path {
        any::<u32>().prop_map(Some).boxed()
    } else {
        Just(None).boxed()
    };
    vec(
        (prefix, id).prop_map(|(prefix, path_id)| Nlri { prefix, path_id }),
        0..max,
    )
    .boxed()
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        family_any().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        Just(Capability::EnhancedRouteRefresh),
        (1u32..).prop_map(Capability::FourOctetAs),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..=4095,
            vec((family_any(), any::<bool>()), 0..5)
        )
            .prop_map(|(r, n, t, f)| Capability::GracefulRestart {
                restart_state: r,
                notification: n,
                restart_time: t,
                families: f
                    .into_iter()
                    .map(|(family, fp)| GrFamily {
                        family,
                        forwarding_preserved: fp
                    })
                    .collect(),
            }),
        vec(
            (
                family_any(),
                select(vec![
                    AddPathMode::Receive,
                    AddPathMode::Send,
                    AddPathMode::Both
                ])
            ),
            0..5
        )
        .prop_map(Capability::AddPath),
        (any::<u8>(), vec(any::<u8>(), 0..20))
            .prop_filter("known code", |(c, _)| !matches!(
                c,
                1 | 2 | 6 | 64 | 65 | 69 | 70
            ))
            .prop_map(|(code, v)| Capability::Unknown {
                code,
                value: Bytes::from(v)
            }),
    ]
}

pub fn open() -> impl Strategy<Value = Open> {
    (
        1u16..,
        prop_oneof![Just(0u16), 3u16..],
        1u32..,
        vec(capability(), 0..12),
    )
        .prop_map(|(my_as, hold_time, id, capabilities)| Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id: Ipv4Addr::from(id),
            capabilities,
        })
}

/// A syntactically valid host address for NEXT_HOP.
fn host_v4() -> impl Strategy<Value = Ipv4Addr> {
    (1u8..224, any::<[u8; 3]>())
        .prop_filter("loopback", |(a, _)| *a != 127)
        .prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d))
}

/// An AS_PATH: an optional leading AS_CONFED_SEQUENCE (iBGP only: confederation segments are
/// treat-as-withdraw from eBGP), then AS_SEQUENCEs of non-zero ASNs (AS_SET is treat-as-withdraw
/// under RFC 9774).
fn as_path(ibgp: bool) -> impl Strategy<Value = AsPath> {
    let asns = || vec(1u32.., 1..20);
    let confed = if ibgp {
        proptest::option::weighted(0.3, asns()).boxed()
    } else {
        Just(None).boxed()
    };
    (confed, vec(asns(), 0..4)).prop_map(|(confed, seqs)| AsPath {
        segments: confed
            .map(|asns| AsSegment {
                kind: SegmentType::ConfedSequence,
                asns,
            })
            .into_iter()
            .chain(seqs.into_iter().map(|asns| AsSegment {
                kind: SegmentType::Sequence,
                asns,
            }))
            .collect(),
    })
}

/// Unknown optional transitive attributes, Partial already set (the encoder sets it), unique
/// type codes outside the ones the codec interprets or validates.
fn unknown_attrs() -> impl Strategy<Value = Vec<RawAttr>> {
    btree_set(
        any::<u8>().prop_filter(
            "interpreted",
            |t| !matches!(t, 1..=10 | 14..=18 | 25 | 32 | 35),
        ),
        0..3,
    )
    .prop_flat_map(|types| {
        let n = types.len();
        vec(vec(any::<u8>(), 0..10), n).prop_map(move |values| {
            types
                .iter()
                .zip(values)
                .map(|(&type_code, v)| RawAttr {
                    flags: 0xe0,
                    type_code,
                    value: Bytes::from(v),
                })
                .collect()
        })
    })
}

/// Path attributes valid under `cx`. LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST only on iBGP
/// (from eBGP they are discarded by rule). On a 2-octet session an AGGREGATOR with a 2-octet AS
/// other than AS_TRANS means "aggregated by an OLD speaker", which makes the receiver ignore
/// AS4_PATH (RFC 6793 §4.2.3); such combinations are not representable and are normalised.
pub fn path_attrs(cx: &SessionCodec) -> BoxedStrategy<PathAttrs> {
    let ibgp = cx.ibgp;
    let four = cx.four_octet_as;
    (
        (
            proptest::option::of(select(vec![Origin::Igp, Origin::Egp, Origin::Incomplete])),
            proptest::option::of(as_path(ibgp)),
            proptest::option::of(host_v4()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(any::<u32>()),
            any::<bool>(),
            proptest::option::of((1u32.., any::<u32>())),
        ),
        (
            vec(any::<u32>(), 0..5),
            proptest::option::of(any::<u32>()),
            vec(any::<u32>(), 0..4),
            vec(any::<u64>(), 0..4),
            vec(any::<(u32, u32, u32)>(), 0..4),
            unknown_attrs(),
        ),
    )
        .prop_map(
            move |(
                (origin, as_path, next_hop, med, lp, atomic, aggr),
                (communities, orig, clusters, ext, large, unknown),
            )| {
                let mut aggregator = aggr.map(|(asn, a)| Aggregator {
                    asn,
                    address: Ipv4Addr::from(a),
                });
                let mut as_path = as_path;
                if !four {
                    // AS4_PATH carries no confederation segments, so on a 2-octet session
                    // their members must fit 2 octets.
                    for s in as_path.iter_mut().flat_map(|p| p.segments.iter_mut()) {
                        if s.kind == SegmentType::ConfedSequence {
                            s.asns.iter_mut().for_each(|a| *a = *a % 0xfffe + 1);
                        }
                    }
                    let wide = as_path.as_ref().is_some_and(|p| {
                        p.segments
                            .iter()
                            .any(|s| s.asns.iter().any(|&a| a > 0xffff))
                    });
                    if let Some(a) = &mut aggregator
                        && wide
                        && a.asn <= 0xffff
                    {
                        a.asn = u32::from(AS_TRANS);
                    }
                }
                PathAttrs {
                    origin,
                    as_path,
                    next_hop,
                    med,
                    local_pref: lp.filter(|_| ibgp),
                    atomic_aggregate: atomic,
                    aggregator,
                    communities,
                    originator_id: orig.filter(|_| ibgp).map(Ipv4Addr::from),
                    cluster_list: if ibgp {
                        clusters.into_iter().map(Ipv4Addr::from).collect()
                    } else {
                        vec![]
                    },
                    ext_communities: ext,
                    large_communities: large
                        .into_iter()
                        .map(|(g, l1, l2)| LargeCommunity {
                            global_admin: g,
                            local1: l1,
                            local2: l2,
                        })
                        .collect(),
                    unknown,
                }
            },
        )
        .boxed()
}

fn mp_next_hop(family: Family) -> BoxedStrategy<MpNextHop> {
    let v6 =
        (any::<u128>(), proptest::option::of(any::<u128>())).prop_map(|(g, l)| MpNextHop::V6 {
            global: Ipv6Addr::from(g),
            link_local: l.map(Ipv6Addr::from),
        });
    if family == Family::IPV4_UNICAST {
        prop_oneof![
            any::<u32>().prop_map(|a| MpNextHop::V4(Ipv4Addr::from(a))),
            v6
        ]
        .boxed()
    } else {
        v6.boxed()
    }
}

/// An UPDATE valid under `cx` (no RFC 7606 error), so it decodes back to itself. Mandatory
/// attributes are present whenever there is reachable NLRI.
pub fn update(cx: &SessionCodec) -> BoxedStrategy<Update> {
    let ap = |f: Family| cx.add_path_tx.contains(&f);
    let v4ap = ap(Family::IPV4_UNICAST);
    let mp_reach = family_unicast().prop_flat_map({
        let cx = cx.clone();
        move |family| {
            let add_path = cx.add_path_tx.contains(&family);
            (mp_next_hop(family), nlri_list(family.afi, add_path, 10)).prop_map(
                move |(next_hop, nlri)| MpReach {
                    family,
                    next_hop,
                    nlri,
                },
            )
        }
    });
    let mp_unreach = family_unicast().prop_flat_map({
        let cx = cx.clone();
        move |family| {
            let add_path = cx.add_path_tx.contains(&family);
            nlri_list(family.afi, add_path, 10)
                .prop_map(move |withdrawn| MpUnreach { family, withdrawn })
        }
    });
    (
        nlri_list(AFI_IPV4, v4ap, 20),
        path_attrs(cx),
        nlri_list(AFI_IPV4, v4ap, 20),
        proptest::option::of(mp_reach),
        proptest::option::of(mp_unreach),
        any::<u8>(),
        any::<[u8; 4]>(),
    )
        .prop_map(
            |(withdrawn, mut attrs, nlri, mp_reach, mp_unreach, o, nh)| {
                let reach_mp = mp_reach.as_ref().is_some_and(|r| !r.nlri.is_empty());
                if !nlri.is_empty() || reach_mp {
                    attrs.origin.get_or_insert(match o % 3 {
                        0 => Origin::Igp,
                        1 => Origin::Egp,
                        _ => Origin::Incomplete,
                    });
                    attrs.as_path.get_or_insert_with(AsPath::default);
                }
                if !nlri.is_empty() {
                    attrs.next_hop.get_or_insert(Ipv4Addr::new(
                        1 + nh[0] % 100,
                        nh[1],
                        nh[2],
                        nh[3],
                    ));
                }
                Update {
                    withdrawn,
                    attrs,
                    nlri,
                    mp_reach,
                    mp_unreach,
                    treat_as_withdraw: None,
                    discarded: vec![],
                }
            },
        )
        .boxed()
}

pub fn message(cx: &SessionCodec) -> BoxedStrategy<Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(cx).prop_map(Message::Update),
        (any::<u8>(), any::<u8>(), vec(any::<u8>(), 0..50)).prop_map(|(code, subcode, d)| {
            Message::Notification(Notification {
                code,
                subcode,
                data: Bytes::from(d),
            })
        }),
        Just(Message::Keepalive),
        (family_any(), any::<u8>())
            .prop_map(|(family, subtype)| Message::RouteRefresh(RouteRefresh { family, subtype })),
    ]
    .boxed()
}

/// A context together with a message valid under it.
pub fn codec_and_message() -> impl Strategy<Value = (SessionCodec, Message)> {
    codec().prop_flat_map(|cx| {
        let m = message(&cx);
        (Just(cx), m)
    })
}
