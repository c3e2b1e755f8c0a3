//! Decision process (RFC 4271 §9.1.2, RFC 4456 §9): every tie-breaker with its reason, and the
//! same candidates in every order give the same best path (MED is not transitive).

use std::net::{IpAddr, Ipv4Addr};

use podbgp::rib::{Candidate, Reason, SelectionCfg, Winner, compare, select};
use podbgp::wire::{AsPath, AsSegment, Origin, PathAttrs, SegmentType};

fn path(asns: &[u32]) -> AsPath {
    AsPath {
        segments: if asns.is_empty() {
            vec![]
        } else {
            vec![AsSegment {
                kind: SegmentType::Sequence,
                asns: asns.to_vec(),
            }]
        },
    }
}

fn attrs(asns: &[u32]) -> PathAttrs {
    PathAttrs {
        origin: Some(Origin::Igp),
        as_path: Some(path(asns)),
        ..PathAttrs::default()
    }
}

fn peer(last: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(198, 18, 0, last)))
}

fn cand(a: &PathAttrs, last: u8, ebgp: bool) -> Candidate<'_> {
    Candidate {
        attrs: a,
        peer_address: peer(last),
        peer_router_id: Ipv4Addr::new(198, 18, 1, last),
        ebgp,
    }
}

/// `a` must beat `b` for `reason`, in both argument orders.
fn beats(a: &Candidate, b: &Candidate, reason: Reason) {
    let cfg = SelectionCfg::default();
    let d = compare(a, b, &cfg);
    assert_eq!((d.winner, d.reason), (Winner::A, reason), "a vs b");
    let d = compare(b, a, &cfg);
    assert_eq!((d.winner, d.reason), (Winner::B, reason), "b vs a");
}

#[test]
fn locally_originated_wins_first() {
    let l = attrs(&[]);
    let r = PathAttrs {
        local_pref: Some(500),
        ..attrs(&[])
    };
    let local = Candidate {
        attrs: &l,
        peer_address: None,
        peer_router_id: Ipv4Addr::new(198, 18, 0, 9),
        ebgp: false,
    };
    beats(&local, &cand(&r, 1, false), Reason::LocallyOriginated);
}

#[test]
fn higher_local_pref_wins_absent_is_100() {
    let hi = PathAttrs {
        local_pref: Some(200),
        ..attrs(&[1, 2, 3])
    };
    let lo = attrs(&[1]);
    beats(
        &cand(&hi, 2, false),
        &cand(&lo, 1, false),
        Reason::LocalPref,
    );
    let explicit_100 = PathAttrs {
        local_pref: Some(100),
        ..attrs(&[1])
    };
    let d = compare(
        &cand(&explicit_100, 1, false),
        &cand(&lo, 2, false),
        &SelectionCfg::default(),
    );
    assert_ne!(
        d.reason,
        Reason::LocalPref,
        "absent LOCAL_PREF counts as 100"
    );
}

#[test]
fn shorter_as_path_wins_and_set_counts_one() {
    let short = attrs(&[1]);
    let long = attrs(&[1, 2]);
    beats(
        &cand(&short, 2, false),
        &cand(&long, 1, false),
        Reason::AsPathLength,
    );
    // An AS_SET of any size counts as one (RFC 4271 §9.1.2.2 a).
    let with_set = PathAttrs {
        as_path: Some(AsPath {
            segments: vec![
                AsSegment {
                    kind: SegmentType::Sequence,
                    asns: vec![1],
                },
                AsSegment {
                    kind: SegmentType::Set,
                    asns: vec![7, 8, 9],
                },
            ],
        }),
        ..attrs(&[])
    };
    let three = attrs(&[1, 2, 3]);
    beats(
        &cand(&with_set, 2, false),
        &cand(&three, 1, false),
        Reason::AsPathLength,
    );
}

#[test]
fn lower_origin_wins() {
    let igp = attrs(&[1]);
    let incomplete = PathAttrs {
        origin: Some(Origin::Incomplete),
        ..attrs(&[1])
    };
    let egp = PathAttrs {
        origin: Some(Origin::Egp),
        ..attrs(&[1])
    };
    beats(&cand(&igp, 2, false), &cand(&egp, 1, false), Reason::Origin);
    beats(
        &cand(&egp, 2, false),
        &cand(&incomplete, 1, false),
        Reason::Origin,
    );
}

#[test]
fn lower_med_wins_only_between_the_same_neighbor_as() {
    let low = PathAttrs {
        med: Some(10),
        ..attrs(&[65001, 9])
    };
    let high = PathAttrs {
        med: Some(20),
        ..attrs(&[65001, 8])
    };
    beats(&cand(&low, 2, true), &cand(&high, 1, true), Reason::Med);
    // Different neighbour AS: MED is skipped, the next step decides.
    let other_as = PathAttrs {
        med: Some(20),
        ..attrs(&[65002, 8])
    };
    let d = compare(
        &cand(&low, 2, true),
        &cand(&other_as, 1, true),
        &SelectionCfg::default(),
    );
    assert_ne!(d.reason, Reason::Med);
    // ... unless always-compare-med.
    let cfg = SelectionCfg {
        always_compare_med: true,
        ..SelectionCfg::default()
    };
    let d = compare(&cand(&low, 2, true), &cand(&other_as, 1, true), &cfg);
    assert_eq!((d.winner, d.reason), (Winner::A, Reason::Med));
    // Absent MED counts as 0 (lowest).
    let none = attrs(&[65001, 7]);
    beats(&cand(&none, 2, true), &cand(&low, 1, true), Reason::Med);
}

#[test]
fn ebgp_beats_ibgp() {
    let a = attrs(&[65001]);
    let b = attrs(&[65001]);
    beats(
        &cand(&a, 2, true),
        &cand(&b, 1, false),
        Reason::EbgpOverIbgp,
    );
}

#[test]
fn lower_router_id_wins_and_originator_id_stands_in() {
    let a = attrs(&[]);
    let b = attrs(&[]);
    // Peer router ids 198.18.1.1 < 198.18.1.2.
    beats(&cand(&a, 1, false), &cand(&b, 2, false), Reason::RouterId);
    // ORIGINATOR_ID replaces the peer's router id (RFC 4456 §9).
    let reflected = PathAttrs {
        originator_id: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..attrs(&[])
    };
    beats(
        &cand(&reflected, 2, false),
        &cand(&b, 1, false),
        Reason::RouterId,
    );
}

#[test]
fn shorter_cluster_list_wins() {
    let o = Some(Ipv4Addr::new(10, 0, 0, 1));
    let short = PathAttrs {
        originator_id: o,
        cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1)],
        ..attrs(&[])
    };
    let long = PathAttrs {
        originator_id: o,
        cluster_list: vec![Ipv4Addr::new(1, 1, 1, 1), Ipv4Addr::new(2, 2, 2, 2)],
        ..attrs(&[])
    };
    beats(
        &cand(&short, 2, false),
        &cand(&long, 1, false),
        Reason::ClusterListLength,
    );
}

#[test]
fn lower_peer_address_is_the_last_resort() {
    let a = attrs(&[]);
    let b = attrs(&[]);
    let ca = Candidate {
        attrs: &a,
        peer_address: peer(1),
        peer_router_id: Ipv4Addr::new(9, 9, 9, 9),
        ebgp: false,
    };
    let cb = Candidate {
        attrs: &b,
        peer_address: peer(2),
        peer_router_id: Ipv4Addr::new(9, 9, 9, 9),
        ebgp: false,
    };
    beats(&ca, &cb, Reason::PeerAddress);
}

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let x = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, x.clone());
            out.push(p);
        }
    }
    out
}

/// The classic MED intransitivity: A beats B on MED (same AS 1), B beats C on router id (MED not
/// comparable across AS 1 / AS 2), C beats A on router id... A pairwise-sequential selection would
/// depend on arrival order; deterministic MED must not.
#[test]
fn best_path_is_independent_of_arrival_order() {
    let a = PathAttrs {
        med: Some(10),
        ..attrs(&[1, 100])
    };
    let b = PathAttrs {
        med: Some(20),
        ..attrs(&[1, 100])
    };
    let c = PathAttrs {
        med: Some(5),
        ..attrs(&[2, 100])
    };
    let d = PathAttrs {
        med: Some(0),
        local_pref: Some(90),
        ..attrs(&[3])
    };
    let e = PathAttrs {
        med: Some(30),
        ..attrs(&[2, 200])
    };
    // Router ids: b (.1) < c (.2) < a (.3) < e (.4) < d (.5).
    let set = vec![
        (a, 3u8, "a"),
        (b, 1, "b"),
        (c, 2, "c"),
        (d, 5, "d"),
        (e, 4, "e"),
    ];
    let mut winners = std::collections::BTreeSet::new();
    let mut naive_winners = std::collections::BTreeSet::new();
    let orders = permutations(&set);
    assert_eq!(orders.len(), 120);
    for order in &orders {
        let cands: Vec<Candidate> = order.iter().map(|(p, id, _)| cand(p, *id, true)).collect();
        let sel = select(&cands, &SelectionCfg::default()).unwrap();
        winners.insert(order[sel.best].2);
        // Sequential pairwise comparison (what `impl Ord` + max would do).
        let mut best = 0;
        for i in 1..cands.len() {
            if compare(&cands[i], &cands[best], &SelectionCfg::default()).winner == Winner::A {
                best = i;
            }
        }
        naive_winners.insert(order[best].2);
    }
    assert!(
        naive_winners.len() > 1,
        "the fixture must be order-sensitive for a naive selection: {naive_winners:?}"
    );
    // AS 1 group: a beats b on MED. AS 2 group: c beats e on MED. Across groups (no MED): c's
    // router id .2 beats a's .3. d loses on LOCAL_PREF.
    assert_eq!(winners.into_iter().collect::<Vec<_>>(), vec!["c"]);
}

#[test]
fn ecmp_set_holds_equal_paths_from_the_same_neighbor_as_and_reasons() {
    let a = attrs(&[65000]);
    let b = attrs(&[65000]);
    let c = attrs(&[65000, 1]);
    let d = attrs(&[65009]);
    let cands = vec![
        cand(&a, 2, true),
        cand(&b, 1, true),
        cand(&c, 3, true),
        cand(&d, 4, true),
    ];
    let sel = select(&cands, &SelectionCfg::default()).unwrap();
    assert_eq!(sel.best, 1, "router id .1 wins the tie");
    assert_eq!(
        sel.multipath,
        vec![1, 0],
        "a and b tie through eBGP/iBGP with the same neighbour AS"
    );
    assert_eq!(sel.reasons[2], Reason::AsPathLength);
    assert_eq!(sel.reasons[0], Reason::RouterId);
    let one = select(
        &cands,
        &SelectionCfg {
            max_ecmp: 1,
            ..SelectionCfg::default()
        },
    )
    .unwrap();
    assert_eq!(one.multipath, vec![1]);
}
