//! Differential tests against an independent codec, `netgauze-bgp-pkt` 0.13 (dev-dependency
//! only, used as an oracle):
//!
//! * ours → netgauze: generated UPDATEs encoded by podbgp are parsed by netgauze (strict mode,
//!   no ignored errors), and the prefixes and every attribute netgauze sees are compared with
//!   what we meant to send (as it appears on the wire: AS_TRANS, AS4_PATH, AS4_AGGREGATOR on
//!   2-octet sessions).
//! * netgauze → ours: the same UPDATEs are built as netgauze values, with the attribute order
//!   shuffled and the Extended Length / Partial bits chosen at random, encoded by netgauze and
//!   decoded by podbgp, which must give back the original.
//!
//! Inputs are normalised to what netgauze can represent: no confederation segments, no
//! multicast/broadcast prefixes (netgauze rejects them as unicast NLRI), extended communities
//! are 2-octet-AS route targets, unknown attributes use unassigned type codes 200–250.

#[path = "wire/strategies.rs"]
mod strategies;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::community::{
    Community, ExtendedCommunity, LargeCommunity as NgLarge, TransitiveTwoOctetExtendedCommunity,
};
use netgauze_bgp_pkt::nlri::{Ipv4Unicast, Ipv4UnicastAddress, Ipv6Unicast, Ipv6UnicastAddress};
use netgauze_bgp_pkt::path_attribute::{
    Aggregator as NgAggregator, As2Aggregator, As2PathSegment, As4Aggregator, As4Path,
    As4PathSegment, AsPath as NgAsPath, AsPathSegmentType, AtomicAggregate, ClusterId, ClusterList,
    Communities, ExtendedCommunities, LargeCommunities, LocalPreference, MpReach as NgMpReach,
    MpUnreach as NgMpUnreach, MultiExitDiscriminator, NextHop, Origin as NgOrigin, Originator,
    PathAttribute, PathAttributeValue as V, UnknownAttribute,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_bgp_pkt::wire::deserializer::{BgpParsingContext, BgpParsingIgnoredErrors};
use netgauze_iana::address_family::AddressType;
use netgauze_parse_utils::WritablePdu;
use netgauze_parse_utils::reader::SliceReader;
use netgauze_parse_utils::traits::ParseFromWithOneInput;
use podbgp::wire::*;
use proptest::prelude::*;
use strategies::*;

// ---- normalisation --------------------------------------------------------------------------

fn ng_unicast(n: &Nlri) -> bool {
    match n.prefix {
        IpNet::V4(p) => Ipv4Unicast::from_net(p).is_ok(),
        IpNet::V6(p) => Ipv6Unicast::from_net(p).is_ok(),
    }
}

fn normalise(mut u: Update) -> Update {
    u.withdrawn.retain(ng_unicast);
    u.nlri.retain(ng_unicast);
    if let Some(r) = &mut u.mp_reach {
        r.nlri.retain(ng_unicast);
    }
    if let Some(r) = &mut u.mp_unreach {
        r.withdrawn.retain(ng_unicast);
    }
    if let Some(p) = &mut u.attrs.as_path {
        p.segments.retain(|s| s.kind == SegmentType::Sequence);
    }
    for c in &mut u.attrs.ext_communities {
        *c = 0x0002_0000_0000_0000 | (*c & 0x0000_ffff_ffff_ffff);
    }
    for (i, a) in u.attrs.unknown.iter_mut().enumerate() {
        a.type_code = 200 + i as u8;
    }
    u
}

fn diff_case() -> impl Strategy<Value = (SessionCodec, Update, u64)> {
    codec().prop_flat_map(|mut cx| {
        cx.extended_message = false;
        (
            Just(cx.clone()),
            update(&cx).prop_map(normalise),
            any::<u64>(),
        )
    })
}

// ---- a wire-level view both sides can be reduced to -------------------------------------------

type Prefixes = Vec<(IpNet, Option<u32>)>;
type Segments = Vec<(u8, Vec<u32>)>;

#[derive(Debug, PartialEq, Default)]
struct View {
    withdrawn: Prefixes,
    nlri: Prefixes,
    mp_reach: Option<(u16, IpAddr, Option<Ipv6Addr>, Prefixes)>,
    mp_unreach: Option<(u16, Prefixes)>,
    origin: Option<u8>,
    as_path: Option<Segments>,
    as4_path: Option<Segments>,
    next_hop: Option<Ipv4Addr>,
    med: Option<u32>,
    local_pref: Option<u32>,
    atomic: bool,
    aggregator: Option<(u32, Ipv4Addr)>,
    communities: Vec<u32>,
    large: Vec<(u32, u32, u32)>,
    ext: Vec<u64>,
    originator: Option<Ipv4Addr>,
    cluster: Vec<Ipv4Addr>,
    /// (type, partial, value) of attributes the oracle does not interpret.
    unknown: Vec<(u8, bool, Vec<u8>)>,
}

fn prefixes(l: &[Nlri]) -> Prefixes {
    l.iter().map(|n| (n.prefix, n.path_id)).collect()
}

/// What podbgp should put on the wire for `u` under `cx`.
fn our_view(u: &Update, cx: &SessionCodec) -> View {
    let a = &u.attrs;
    let four = cx.four_octet_as;
    let narrow = |x: u32| {
        if four || x <= 0xffff {
            x
        } else {
            u32::from(AS_TRANS)
        }
    };
    let segs = |p: &AsPath, f: &dyn Fn(u32) -> u32| -> Segments {
        p.segments
            .iter()
            .map(|s| (s.kind as u8, s.asns.iter().map(|&x| f(x)).collect()))
            .collect()
    };
    let wide_path = a.as_path.as_ref().is_some_and(|p| {
        p.segments
            .iter()
            .any(|s| s.asns.iter().any(|&x| x > 0xffff))
    });
    let mut unknown = Vec::new();
    if !four && let Some(g) = a.aggregator.filter(|g| g.asn > 0xffff) {
        let mut v = g.asn.to_be_bytes().to_vec();
        v.extend_from_slice(&g.address.octets());
        unknown.push((18, false, v));
    }
    unknown.extend(
        a.unknown
            .iter()
            .map(|r| (r.type_code, true, r.value.to_vec())),
    );
    View {
        withdrawn: prefixes(&u.withdrawn),
        nlri: prefixes(&u.nlri),
        mp_reach: u.mp_reach.as_ref().map(|r| {
            let (nh, ll) = match r.next_hop {
                MpNextHop::V4(a) => (IpAddr::V4(a), None),
                MpNextHop::V6 { global, link_local } => (IpAddr::V6(global), link_local),
            };
            (r.family.afi, nh, ll, prefixes(&r.nlri))
        }),
        mp_unreach: u
            .mp_unreach
            .as_ref()
            .map(|r| (r.family.afi, prefixes(&r.withdrawn))),
        origin: a.origin.map(|o| o as u8),
        as_path: a.as_path.as_ref().map(|p| segs(p, &narrow)),
        as4_path: a
            .as_path
            .as_ref()
            .filter(|_| !four && wide_path)
            .map(|p| segs(p, &|x| x)),
        next_hop: a.next_hop,
        med: a.med,
        local_pref: a.local_pref,
        atomic: a.atomic_aggregate,
        aggregator: a.aggregator.map(|g| (narrow(g.asn), g.address)),
        communities: a.communities.clone(),
        large: a
            .large_communities
            .iter()
            .map(|c| (c.global_admin, c.local1, c.local2))
            .collect(),
        ext: a.ext_communities.clone(),
        originator: a.originator_id,
        cluster: a.cluster_list.clone(),
        unknown,
    }
}

fn ng_v4(l: &[Ipv4UnicastAddress]) -> Prefixes {
    l.iter()
        .map(|n| (IpNet::V4(n.network().address()), n.path_id()))
        .collect()
}

fn ng_v6(l: &[Ipv6UnicastAddress]) -> Prefixes {
    l.iter()
        .map(|n| (IpNet::V6(n.network().address()), n.path_id()))
        .collect()
}

fn ng_segments4(s: &[As4PathSegment]) -> Segments {
    s.iter()
        .map(|s| (s.segment_type() as u8, s.as_numbers().to_vec()))
        .collect()
}

/// What netgauze parsed.
fn ng_view(m: &BgpUpdateMessage) -> View {
    let mut v = View {
        withdrawn: ng_v4(m.withdraw_routes()),
        nlri: ng_v4(m.nlri()),
        ..View::default()
    };
    for pa in m.path_attributes() {
        match pa.value() {
            V::Origin(o) => v.origin = Some(*o as u8),
            V::AsPath(NgAsPath::As4PathSegments(s)) => v.as_path = Some(ng_segments4(s)),
            V::AsPath(NgAsPath::As2PathSegments(s)) => {
                v.as_path = Some(
                    s.iter()
                        .map(|s| {
                            let asns = s.as_numbers().iter().map(|&x| u32::from(x)).collect();
                            (s.segment_type() as u8, asns)
                        })
                        .collect(),
                )
            }
            V::As4Path(p) => v.as4_path = Some(ng_segments4(p.segments())),
            V::NextHop(n) => v.next_hop = Some(n.next_hop()),
            V::MultiExitDiscriminator(m) => v.med = Some(m.metric()),
            V::LocalPreference(l) => v.local_pref = Some(l.metric()),
            V::AtomicAggregate(_) => v.atomic = true,
            V::Aggregator(NgAggregator::As4Aggregator(g)) => {
                v.aggregator = Some((*g.asn(), g.origin()))
            }
            V::Aggregator(NgAggregator::As2Aggregator(g)) => {
                v.aggregator = Some((u32::from(*g.asn()), g.origin()))
            }
            V::Communities(c) => {
                v.communities = c.communities().iter().map(|c| c.value()).collect()
            }
            V::LargeCommunities(c) => {
                v.large = c
                    .communities()
                    .iter()
                    .map(|c| (c.global_admin(), c.local_data1(), c.local_data2()))
                    .collect()
            }
            V::ExtendedCommunities(c) => {
                v.ext = c
                    .communities()
                    .iter()
                    .map(|c| match c {
                        ExtendedCommunity::TransitiveTwoOctet(
                            TransitiveTwoOctetExtendedCommunity::RouteTarget {
                                global_admin,
                                local_admin,
                            },
                        ) => {
                            0x0002_0000_0000_0000
                                | u64::from(*global_admin) << 32
                                | u64::from(*local_admin)
                        }
                        other => panic!("unexpected extended community {other:?}"),
                    })
                    .collect()
            }
            V::Originator(o) => v.originator = Some(o.id()),
            V::ClusterList(c) => v.cluster = c.cluster_list().iter().map(|c| c.id()).collect(),
            V::MpReach(NgMpReach::Ipv4Unicast {
                next_hop,
                next_hop_local,
                nlri,
            }) => v.mp_reach = Some((AFI_IPV4, *next_hop, *next_hop_local, ng_v4(nlri))),
            V::MpReach(NgMpReach::Ipv6Unicast {
                next_hop_global,
                next_hop_local,
                nlri,
            }) => {
                v.mp_reach = Some((
                    AFI_IPV6,
                    IpAddr::V6(*next_hop_global),
                    *next_hop_local,
                    ng_v6(nlri),
                ))
            }
            V::MpUnreach(NgMpUnreach::Ipv4Unicast { nlri }) => {
                v.mp_unreach = Some((AFI_IPV4, ng_v4(nlri)))
            }
            V::MpUnreach(NgMpUnreach::Ipv6Unicast { nlri }) => {
                v.mp_unreach = Some((AFI_IPV6, ng_v6(nlri)))
            }
            V::UnknownAttribute(x) => v.unknown.push((x.code(), pa.partial(), x.value().to_vec())),
            other => panic!("unexpected attribute {other:?}"),
        }
    }
    v
}

fn ng_context(cx: &SessionCodec) -> BgpParsingContext {
    let mut add_path = HashMap::new();
    for f in &cx.add_path_rx {
        let t = if *f == Family::IPV4_UNICAST {
            AddressType::Ipv4Unicast
        } else {
            AddressType::Ipv6Unicast
        };
        add_path.insert(t, true);
    }
    BgpParsingContext::new(
        cx.four_octet_as,
        HashMap::new(),
        add_path,
        true,
        true,
        true,
        true,
    )
}

// ---- our values as netgauze values ----------------------------------------------------------

fn to_ng_v4(l: &[Nlri]) -> Vec<Ipv4UnicastAddress> {
    l.iter()
        .filter_map(|n| match n.prefix {
            IpNet::V4(p) => Some(Ipv4UnicastAddress::new(
                n.path_id,
                Ipv4Unicast::from_net(p).unwrap(),
            )),
            IpNet::V6(_) => None,
        })
        .collect()
}

fn to_ng_v6(l: &[Nlri]) -> Vec<Ipv6UnicastAddress> {
    l.iter()
        .filter_map(|n| match n.prefix {
            IpNet::V6(p) => Some(Ipv6UnicastAddress::new(
                n.path_id,
                Ipv6Unicast::from_net(p).unwrap(),
            )),
            IpNet::V4(_) => None,
        })
        .collect()
}

/// Builds `u` as a netgauze UPDATE: attribute order and Extended Length / Partial bits drawn
/// from `seed`.
fn to_ng(u: &Update, cx: &SessionCodec, seed: u64) -> BgpUpdateMessage {
    let four = cx.four_octet_as;
    let a = &u.attrs;
    let mut bits = seed;
    let mut bit = || {
        bits = bits.rotate_left(1) ^ 0x9e37_79b9_7f4a_7c15;
        bits & 1 == 1
    };
    // (optional, transitive, may the Partial bit be set, value)
    let mut attrs: Vec<(bool, bool, bool, V)> = Vec::new();
    if let Some(r) = &u.mp_reach {
        let (g, ll) = match r.next_hop {
            MpNextHop::V4(x) => (IpAddr::V4(x), None),
            MpNextHop::V6 { global, link_local } => (IpAddr::V6(global), link_local),
        };
        let value = match (r.family.afi, g) {
            (AFI_IPV4, _) => NgMpReach::Ipv4Unicast {
                next_hop: g,
                next_hop_local: ll,
                nlri: to_ng_v4(&r.nlri).into(),
            },
            (_, IpAddr::V6(g)) => NgMpReach::Ipv6Unicast {
                next_hop_global: g,
                next_hop_local: ll,
                nlri: to_ng_v6(&r.nlri).into(),
            },
            _ => unreachable!(),
        };
        attrs.push((true, false, false, V::MpReach(value)));
    }
    if let Some(r) = &u.mp_unreach {
        let value = if r.family.afi == AFI_IPV4 {
            NgMpUnreach::Ipv4Unicast {
                nlri: to_ng_v4(&r.withdrawn).into(),
            }
        } else {
            NgMpUnreach::Ipv6Unicast {
                nlri: to_ng_v6(&r.withdrawn).into(),
            }
        };
        attrs.push((true, false, false, V::MpUnreach(value)));
    }
    if let Some(o) = a.origin {
        let o = match o {
            Origin::Igp => NgOrigin::IGP,
            Origin::Egp => NgOrigin::EGP,
            Origin::Incomplete => NgOrigin::Incomplete,
        };
        attrs.push((false, true, false, V::Origin(o)));
    }
    if let Some(p) = &a.as_path {
        let kind = |k: SegmentType| {
            if k == SegmentType::Set {
                AsPathSegmentType::AsSet
            } else {
                AsPathSegmentType::AsSequence
            }
        };
        let value = if four {
            NgAsPath::As4PathSegments(
                p.segments
                    .iter()
                    .map(|s| As4PathSegment::new(kind(s.kind), s.asns.clone()))
                    .collect(),
            )
        } else {
            NgAsPath::As2PathSegments(
                p.segments
                    .iter()
                    .map(|s| {
                        let asns: Vec<u16> = s
                            .asns
                            .iter()
                            .map(|&x| u16::try_from(x).unwrap_or(AS_TRANS))
                            .collect();
                        As2PathSegment::new(kind(s.kind), asns)
                    })
                    .collect(),
            )
        };
        attrs.push((false, true, false, V::AsPath(value)));
        if !four
            && p.segments
                .iter()
                .any(|s| s.asns.iter().any(|&x| x > 0xffff))
        {
            let segs: Vec<As4PathSegment> = p
                .segments
                .iter()
                .map(|s| As4PathSegment::new(kind(s.kind), s.asns.clone()))
                .collect();
            attrs.push((true, true, true, V::As4Path(As4Path::new(segs))));
        }
    }
    if let Some(n) = a.next_hop {
        attrs.push((false, true, false, V::NextHop(NextHop::new(n))));
    }
    if let Some(m) = a.med {
        attrs.push((
            true,
            false,
            false,
            V::MultiExitDiscriminator(MultiExitDiscriminator::new(m)),
        ));
    }
    if let Some(l) = a.local_pref {
        attrs.push((
            false,
            true,
            false,
            V::LocalPreference(LocalPreference::new(l)),
        ));
    }
    if a.atomic_aggregate {
        attrs.push((false, true, false, V::AtomicAggregate(AtomicAggregate)));
    }
    if let Some(g) = a.aggregator {
        let value = if four {
            NgAggregator::As4Aggregator(As4Aggregator::new(g.asn, g.address))
        } else {
            let narrow = u16::try_from(g.asn).unwrap_or(AS_TRANS);
            if g.asn > 0xffff {
                let mut v = g.asn.to_be_bytes().to_vec();
                v.extend_from_slice(&g.address.octets());
                attrs.push((
                    true,
                    true,
                    true,
                    V::UnknownAttribute(UnknownAttribute::new(18, v)),
                ));
            }
            NgAggregator::As2Aggregator(As2Aggregator::new(narrow, g.address))
        };
        attrs.push((true, true, true, V::Aggregator(value)));
    }
    if !a.communities.is_empty() {
        let c: Vec<Community> = a.communities.iter().map(|&c| Community::new(c)).collect();
        attrs.push((true, true, true, V::Communities(Communities::new(c))));
    }
    if !a.large_communities.is_empty() {
        let c: Vec<NgLarge> = a
            .large_communities
            .iter()
            .map(|c| NgLarge::new(c.global_admin, c.local1, c.local2))
            .collect();
        attrs.push((
            true,
            true,
            true,
            V::LargeCommunities(LargeCommunities::new(c)),
        ));
    }
    if !a.ext_communities.is_empty() {
        let c: Vec<ExtendedCommunity> = a
            .ext_communities
            .iter()
            .map(|&c| {
                ExtendedCommunity::TransitiveTwoOctet(
                    TransitiveTwoOctetExtendedCommunity::RouteTarget {
                        global_admin: (c >> 32) as u16,
                        local_admin: c as u32,
                    },
                )
            })
            .collect();
        attrs.push((
            true,
            true,
            true,
            V::ExtendedCommunities(ExtendedCommunities::new(c)),
        ));
    }
    if let Some(o) = a.originator_id {
        attrs.push((true, false, false, V::Originator(Originator::new(o))));
    }
    if !a.cluster_list.is_empty() {
        let c: Vec<ClusterId> = a.cluster_list.iter().map(|&c| ClusterId::new(c)).collect();
        attrs.push((true, false, false, V::ClusterList(ClusterList::new(c))));
    }
    // Unknown attributes: the Partial bit is kept by our decoder, and the strategy's values
    // already carry it (the encoder always sets it), so it is not randomised here.
    let unknown_from = attrs.len();
    for r in &a.unknown {
        let v = V::UnknownAttribute(UnknownAttribute::new(r.type_code, r.value.to_vec()));
        attrs.push((true, true, false, v));
    }
    let mut attrs: Vec<(bool, bool, Option<bool>, V)> = attrs
        .into_iter()
        .enumerate()
        .map(|(i, (o, t, p, v))| {
            (
                o,
                t,
                if i >= unknown_from {
                    Some(true)
                } else if p {
                    None
                } else {
                    Some(false)
                },
                v,
            )
        })
        .collect();

    // Shuffle (Fisher–Yates driven by the seed) and pick flag bits.
    let mut state = seed | 1;
    for i in (1..attrs.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        attrs.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let path_attributes: Vec<PathAttribute> = attrs
        .into_iter()
        .map(|(o, t, partial, value)| {
            let partial = partial.unwrap_or_else(&mut bit);
            PathAttribute::from(o, t, partial, bit(), value).expect("valid netgauze attribute")
        })
        .collect();
    BgpUpdateMessage::new(to_ng_v4(&u.withdrawn), path_attributes, to_ng_v4(&u.nlri))
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn netgauze_parses_what_we_encode((cx, u, _seed) in diff_case()) {
        let mut out = bytes::BytesMut::new();
        encode_message(&Message::Update(u.clone()), &cx, &mut out).unwrap();
        let mut ctx = ng_context(&cx);
        let parsed = BgpMessage::parse(&mut SliceReader::new(&out), &mut ctx);
        let BgpMessage::Update(m) = parsed.expect("netgauze parses our UPDATE") else {
            panic!("not an UPDATE");
        };
        prop_assert_eq!(ctx.parsing_errors(), &BgpParsingIgnoredErrors::default());
        prop_assert_eq!(ng_view(&m), our_view(&u, &cx));
    }

    #[test]
    fn we_decode_what_netgauze_encodes((cx, u, seed) in diff_case()) {
        let ng = BgpMessage::Update(to_ng(&u, &cx, seed));
        let mut bytes = Vec::new();
        ng.write(&mut bytes).expect("netgauze encodes");
        prop_assert!(bytes.len() <= 4096);
        let got = decode_message(&bytes, &cx);
        let mut want = u.clone();
        // The unknown attributes come back in netgauze's (shuffled) order.
        if let Ok(Message::Update(g)) = &got {
            want.attrs.unknown.sort_by_key(|a| {
                g.attrs.unknown.iter().position(|b| b.type_code == a.type_code)
            });
        }
        prop_assert_eq!(got, Ok(Message::Update(want)));
    }
}

#[test]
fn netgauze_and_we_agree_on_the_frr_vectors() {
    // A smoke check outside proptest: FRR's IPv4 UPDATE (tests/wire_vectors.rs) parsed by both.
    let frr = "ffffffffffffffffffffffffffffffff0060020000004140010100500200060201fa56ea01400304c612000180040400000032c00808fde90064fde900c8c0200cfa56ea010000000100000002c010080002fde90000012c18c6126418c61265";
    let bytes: Vec<u8> = (0..frr.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&frr[i..i + 2], 16).unwrap())
        .collect();
    let cx = SessionCodec {
        four_octet_as: true,
        ..SessionCodec::default()
    };
    let Ok(Message::Update(ours)) = decode_message(&bytes, &cx) else {
        panic!()
    };
    let mut ctx = ng_context(&cx);
    let Ok(BgpMessage::Update(theirs)) = BgpMessage::parse(&mut SliceReader::new(&bytes), &mut ctx)
    else {
        panic!()
    };
    assert_eq!(ng_view(&theirs), our_view(&ours, &cx));
}
