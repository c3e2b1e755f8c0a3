//! Table tests for `calico::derive`: each case is a small Calico cluster in YAML (parsed by the
//! file datastore), a node name and the expected outcome. Cases are named after the section of
//! shared/reference/calico-bgp.md whose rule they pin down (§2.1 local blocks, §3.1 peer set,
//! §3.2 router id and listener, §3.3 active/passive, §3.4 route reflection, §3.5 ToR / eBGP).
//!
//! Then the three real topologies (topologies/{mesh,route-reflectors,tor}.yaml): every node
//! derives, and the sessions pair up across nodes. Then determinism (document order does not
//! matter) and errors (unknown node, node without addresses, invalid resources).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use podbgp::calico::secret::SecretValue;
use podbgp::calico::{
    ClusterView, DeriveError, DeriveOptions, Derived, RouterIdMode, Secret, derive,
    derive_with_secrets,
};
use podbgp::config::{
    KeyProblem, NextHopMode, PeerConfig, PeerOrigin as O, PeerRole as R, TcpAuth, UnavailableKey,
};
use podbgp::datastore::file::parse_str;
use podbgp::wire::Family;

// ---------------------------------------------------------------------------------------------
// YAML builders (flow style keeps a case to a few lines).

fn docs(parts: &[String]) -> String {
    parts.join("\n---\n")
}

/// `Node` with labels (`k: v, ...`, may be empty) and `spec.bgp` (flow mapping body).
fn node(name: &str, labels: &str, bgp: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec: {{bgp: {{{bgp}}}}}"
    )
}

/// A node with an IPv4 address only.
fn n4(name: &str, v4: &str) -> String {
    node(name, "", &format!("ipv4Address: {v4}"))
}

fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata: {{name: {name}}}\nspec: {{{spec}}}"
    )
}

fn bgpconfig(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BGPConfiguration\nmetadata: {{name: {name}}}\nspec: {{{spec}}}"
    )
}

fn mesh_off() -> String {
    bgpconfig("default", "nodeToNodeMeshEnabled: false")
}

fn pool(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {{name: {name}}}\nspec: {{{spec}}}"
    )
}

/// `BlockAffinity` for `node` and `cidr`; `extra` adds spec fields (`state: pending`, ...).
fn aff(node: &str, cidr: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { ", " };
    format!(
        "apiVersion: projectcalico.org/v3\nkind: BlockAffinity\nmetadata: {{name: {node}-{}}}\nspec: {{node: {node}, cidr: \"{cidr}\"{sep}{extra}}}",
        cidr.replace(['.', ':', '/'], "-")
    )
}

// ---------------------------------------------------------------------------------------------
// Cases.

/// `(address, port, remote AS, local AS, role, origin, passive)`.
type P = (&'static str, u16, u32, u32, R, O, bool);

/// An extra assertion on the derived result.
type Check = fn(&Derived) -> Result<(), String>;

#[derive(Default)]

struct Want {
    /// The exact peer set (order-insensitive).
    peers: Option<Vec<P>>,
    originate: Option<Vec<&'static str>>,
    blackholes: Option<Vec<&'static str>>,
    router_id: Option<&'static str>,
    listen: Option<(&'static str, u16)>,
    cluster_id: Option<&'static str>,
    local_as: Option<u32>,
    /// Each must be a substring of some note.
    notes: Vec<&'static str>,
    /// No notes at all.
    no_notes: bool,
    /// Anything else, e.g. per-peer knobs not in the tuple.
    check: Option<Check>,
}

enum Outcome {
    Ok(Want),
    Err(DeriveError),
}

struct Case {
    name: &'static str,
    yaml: String,
    node: &'static str,
    opts: DeriveOptions,
    want: Outcome,
}

fn case(name: &'static str, yaml: String, node: &'static str, want: Want) -> Case {
    Case {
        name,
        yaml,
        node,
        opts: DeriveOptions::default(),
        want: Outcome::Ok(want),
    }
}

fn err_case(name: &'static str, yaml: String, node: &'static str, e: DeriveError) -> Case {
    Case {
        name,
        yaml,
        node,
        opts: DeriveOptions::default(),
        want: Outcome::Err(e),
    }
}

impl Case {
    fn opts(mut self, f: impl FnOnce(&mut DeriveOptions)) -> Case {
        f(&mut self.opts);
        self
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad IP {s}"))
}

fn nets(v: &[&str]) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = v.iter().map(|s| s.parse().unwrap()).collect();
    v.sort();
    v
}

type Tuple = (IpAddr, u16, u32, u32, R, O, bool);

fn tuple(p: &PeerConfig) -> Tuple {
    (
        p.address,
        p.port,
        p.remote_as,
        p.local_as,
        p.role,
        p.origin,
        p.passive,
    )
}

fn sorted_tuples(ps: &[PeerConfig]) -> Vec<Tuple> {
    let mut v: Vec<Tuple> = ps.iter().map(tuple).collect();
    v.sort_by_key(|t| (t.0, t.1));
    v
}

/// Properties every derived configuration has, whatever the case.
fn invariants(d: &Derived, opts: &DeriveOptions) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for p in &d.config.neighbors {
        if !seen.insert((p.address, p.port)) {
            return Err(format!("duplicate neighbour {}:{}", p.address, p.port));
        }
        let fam = if p.address.is_ipv4() {
            Family::IPV4_UNICAST
        } else {
            Family::IPV6_UNICAST
        };
        if p.families != vec![fam] {
            return Err(format!("{}: families {:?}", p.address, p.families));
        }
        if let Some(l) = p.local_address
            && l.is_ipv4() != p.address.is_ipv4()
        {
            return Err(format!(
                "{}: local address {l} of the other family",
                p.address
            ));
        }
        if p.hold_time != opts.hold_time {
            return Err(format!("{}: hold time {}", p.address, p.hold_time));
        }
        if (p.role == R::Ebgp) != (p.remote_as != p.local_as) {
            return Err(format!(
                "{}: role {:?} with AS {} -> {}",
                p.address, p.role, p.local_as, p.remote_as
            ));
        }
    }
    if !d.config.originate.is_sorted() || !d.blackholes.is_sorted() {
        return Err("originate/blackholes not sorted".into());
    }
    Ok(())
}

fn check_want(d: &Derived, w: &Want) -> Vec<String> {
    let mut errs = Vec::new();
    if let Some(peers) = &w.peers {
        let mut want: Vec<Tuple> = peers
            .iter()
            .map(|p| (ip(p.0), p.1, p.2, p.3, p.4, p.5, p.6))
            .collect();
        want.sort_by_key(|t| (t.0, t.1));
        let got = sorted_tuples(&d.config.neighbors);
        if got != want {
            errs.push(format!("peers:\n      want {want:?}\n      got  {got:?}"));
        }
    }
    if let Some(o) = &w.originate
        && d.config.originate != nets(o)
    {
        errs.push(format!(
            "originate: want {:?}, got {:?}",
            nets(o),
            d.config.originate
        ));
    }
    if let Some(b) = &w.blackholes
        && d.blackholes != nets(b)
    {
        errs.push(format!(
            "blackholes: want {:?}, got {:?}",
            nets(b),
            d.blackholes
        ));
    }
    if let Some(r) = w.router_id
        && d.config.router_id != r.parse::<Ipv4Addr>().unwrap()
    {
        errs.push(format!("router id: want {r}, got {}", d.config.router_id));
    }
    if let Some((a, port)) = w.listen
        && d.config.listen != Some((ip(a), port))
    {
        errs.push(format!(
            "listen: want {a}:{port}, got {:?}",
            d.config.listen
        ));
    }
    if let Some(c) = w.cluster_id
        && d.config.cluster_id != c.parse::<Ipv4Addr>().unwrap()
    {
        errs.push(format!("cluster id: want {c}, got {}", d.config.cluster_id));
    }
    if let Some(asn) = w.local_as
        && d.config.local_as != asn
    {
        errs.push(format!("local AS: want {asn}, got {}", d.config.local_as));
    }
    for n in &w.notes {
        if !d.notes.iter().any(|x| x.contains(n)) {
            errs.push(format!("no note containing {n:?} in {:?}", d.notes));
        }
    }
    if w.no_notes && !d.notes.is_empty() {
        errs.push(format!("unexpected notes {:?}", d.notes));
    }
    if let Some(f) = w.check
        && let Err(e) = f(d)
    {
        errs.push(e);
    }
    errs
}

/// Runs a table; reports every failing case by name.
fn run(cases: Vec<Case>) {
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();
    for c in &cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
        let view = match parse_str(&c.yaml) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{}: YAML rejected: {e}\n{}", c.name, c.yaml));
                continue;
            }
        };
        let got = derive(&view, c.node, &c.opts);
        let errs = match (&c.want, &got) {
            (Outcome::Err(want), Err(e)) if want == e => vec![],
            (Outcome::Err(want), _) => vec![format!("want error {want:?}, got {got:?}")],
            (Outcome::Ok(_), Err(e)) => vec![format!("unexpected error {e}")],
            (Outcome::Ok(w), Ok(d)) => {
                let mut errs = check_want(d, w);
                if let Err(e) = invariants(d, &c.opts) {
                    errs.push(format!("invariant: {e}"));
                }
                errs
            }
        };
        if !errs.is_empty() {
            failures.push(format!(
                "{} (node {}):\n    {}",
                c.name,
                c.node,
                errs.join("\n    ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}",
        failures.len(),
        cases.len(),
        failures.join("\n  ")
    );
}

fn neighbor<'a>(d: &'a Derived, addr: &str) -> Result<&'a PeerConfig, String> {
    d.config
        .neighbor(ip(addr))
        .ok_or_else(|| format!("no neighbour {addr}"))
}

const AS: u32 = 64512;

// ---------------------------------------------------------------------------------------------
// §2.1 Local blocks.

fn pools() -> Vec<String> {
    vec![
        pool("v4", "cidr: 198.19.0.0/16"),
        pool("v6", "cidr: \"fd00:244::/48\", blockSize: 122"),
        pool("no-export", "cidr: 10.245.0.0/16, disableBGPExport: true"),
        pool("disabled", "cidr: 10.246.0.0/16, disabled: true"),
    ]
}

fn with_pools(extra: &[String]) -> String {
    let mut v = vec![
        n4("a", "10.0.0.1/24"),
        node("b", "", "ipv4Address: 10.0.0.2/24"),
    ];
    v.extend(pools());
    v.extend_from_slice(extra);
    docs(&v)
}

#[test]
fn s2_1_local_blocks() {
    run(vec![
        case(
            "s2_1_confirmed_block_advertised_and_blackholed",
            with_pools(&[
                aff("a", "198.19.1.0/26", "state: confirmed"),
                aff("a", "fd00:244:0:1::/122", "state: confirmed"),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.1.0/26", "fd00:244:0:1::/122"]),
                blackholes: Some(vec!["198.19.1.0/26", "fd00:244:0:1::/122"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_affinity_without_state_is_confirmed",
            with_pools(&[aff("a", "198.19.1.0/26", "")]),
            "a",
            Want {
                originate: Some(vec!["198.19.1.0/26"]),
                blackholes: Some(vec!["198.19.1.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_pending_affinity_gives_nothing",
            with_pools(&[
                aff("a", "198.19.1.0/26", "state: pending"),
                aff("a", "198.19.2.0/26", "state: confirmed"),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.2.0/26"]),
                blackholes: Some(vec!["198.19.2.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_pending_deletion_blackholed_and_exported_through_its_pool",
            with_pools(&[aff("a", "198.19.1.0/26", "state: pendingDeletion")]),
            "a",
            Want {
                originate: Some(vec!["198.19.1.0/26"]),
                blackholes: Some(vec!["198.19.1.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_pending_deletion_outside_every_pool_only_blackholed",
            with_pools(&[aff("a", "10.250.0.0/26", "state: pendingDeletion")]),
            "a",
            Want {
                originate: Some(vec![]),
                blackholes: Some(vec!["10.250.0.0/26"]),
                ..Default::default()
            },
        ),
        case(
            // calico_aggr() accepts the exact confirmed block whatever the pools say.
            "s2_1_confirmed_block_outside_every_pool_still_advertised",
            with_pools(&[aff("a", "10.250.0.0/26", "state: confirmed")]),
            "a",
            Want {
                originate: Some(vec!["10.250.0.0/26"]),
                blackholes: Some(vec!["10.250.0.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_disable_bgp_export_pool_blackholed_not_advertised",
            with_pools(&[
                aff("a", "10.245.1.0/26", "state: confirmed"),
                aff("a", "10.245.2.0/26", "state: pendingDeletion"),
                aff("a", "198.19.1.0/26", "state: confirmed"),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.1.0/26"]),
                blackholes: Some(vec!["198.19.1.0/26", "10.245.1.0/26", "10.245.2.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_disabled_pool_still_advertised",
            with_pools(&[
                aff("a", "10.246.1.0/26", "state: confirmed"),
                aff("a", "10.246.2.0/26", "state: pendingDeletion"),
            ]),
            "a",
            Want {
                originate: Some(vec!["10.246.1.0/26", "10.246.2.0/26"]),
                blackholes: Some(vec!["10.246.1.0/26", "10.246.2.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_no_blackhole_for_slash32_and_slash128_blocks",
            with_pools(&[
                aff("a", "198.19.9.7/32", "state: confirmed"),
                aff("a", "fd00:244::7/128", "state: confirmed"),
                aff("a", "198.19.9.8/32", "state: pendingDeletion"),
                aff("a", "198.19.9.0/31", "state: confirmed"),
            ]),
            "a",
            Want {
                originate: Some(vec![
                    "198.19.9.0/31",
                    "198.19.9.7/32",
                    "198.19.9.8/32",
                    "fd00:244::7/128",
                ]),
                blackholes: Some(vec!["198.19.9.0/31"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_deleted_affinities_are_absent",
            with_pools(&[
                aff("a", "198.19.1.0/26", "state: confirmed, deleted: true"),
                // v1 CRDs carry `deleted` as a string.
                aff("a", "198.19.2.0/26", "state: confirmed, deleted: \"true\""),
                aff("a", "198.19.3.0/26", "state: pendingDeletion, deleted: true"),
                aff("a", "198.19.4.0/26", "state: confirmed, deleted: \"false\""),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.4.0/26"]),
                blackholes: Some(vec!["198.19.4.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_virtual_affinities_are_not_the_nodes",
            with_pools(&[
                aff("a", "198.19.1.0/26", "state: confirmed, type: virtual"),
                aff("a", "198.19.2.0/26", "state: confirmed, type: host"),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.2.0/26"]),
                blackholes: Some(vec!["198.19.2.0/26"]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_other_nodes_blocks_are_not_ours",
            with_pools(&[aff("b", "198.19.1.0/26", "state: confirmed")]),
            "a",
            Want {
                originate: Some(vec![]),
                blackholes: Some(vec![]),
                ..Default::default()
            },
        ),
        case(
            "s2_1_affinity_contradicted_by_ipam_block_is_noted",
            with_pools(&[
                aff("a", "198.19.1.0/26", "state: confirmed"),
                "kind: IPAMBlock\nmetadata: {name: 198-19-1-0-26}\nspec: {cidr: 198.19.1.0/26, affinity: \"host:b\"}".into(),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.1.0/26"]),
                notes: vec!["198.19.1.0/26", "host:b"],
                ..Default::default()
            },
        ),
        case(
            "s2_1_affinity_matching_ipam_block_gives_no_note",
            with_pools(&[
                aff("a", "198.19.1.0/26", "state: confirmed"),
                "kind: IPAMBlock\nmetadata: {name: 198-19-1-0-26}\nspec: {cidr: 198.19.1.0/26, affinity: \"host:a\"}".into(),
            ]),
            "a",
            Want {
                originate: Some(vec!["198.19.1.0/26"]),
                no_notes: true,
                ..Default::default()
            },
        ),
        case(
            "s2_1_pools_are_reported",
            with_pools(&[]),
            "a",
            Want {
                check: Some(|d| {
                    let got: Vec<(&str, String, bool)> = d
                        .pools
                        .iter()
                        .map(|p| (p.name.as_str(), p.cidr.to_string(), p.disable_bgp_export))
                        .collect();
                    let want = vec![
                        ("disabled", "10.246.0.0/16".to_string(), false),
                        ("no-export", "10.245.0.0/16".to_string(), true),
                        ("v4", "198.19.0.0/16".to_string(), false),
                        ("v6", "fd00:244::/48".to_string(), false),
                    ];
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("pools {got:?}"))
                    }
                }),
                ..Default::default()
            },
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// §3.1 Peer set.

#[test]
fn s3_1_peer_set() {
    let abc = || {
        vec![
            n4("a", "10.0.0.1/24"),
            n4("b", "10.0.0.2/24"),
            n4("c", "10.0.0.3/24"),
        ]
    };
    let with = |extra: &[String]| {
        let mut v = abc();
        v.extend_from_slice(extra);
        docs(&v)
    };
    // Mesh off; nodes carry their hostname label.
    let labeled = |extra: &[String]| {
        let mut v = vec![
            mesh_off(),
            node("a", "kubernetes.io/hostname: a", "ipv4Address: 10.0.0.1/24"),
            node("b", "kubernetes.io/hostname: b", "ipv4Address: 10.0.0.2/24"),
            node("c", "kubernetes.io/hostname: c", "ipv4Address: 10.0.0.3/24"),
        ];
        v.extend_from_slice(extra);
        docs(&v)
    };
    run(vec![
        case(
            "s3_1_mesh_is_the_default",
            with(&[]),
            "b",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::Mesh, O::Mesh, false),
                    ("10.0.0.3", 179, AS, AS, R::Mesh, O::Mesh, true),
                ]),
                local_as: Some(AS),
                no_notes: true,
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.3")?;
                    if p.local_address != Some(ip("10.0.0.2")) {
                        return Err(format!("mesh source address {:?}", p.local_address));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_1_mesh_skips_self_and_reflectors",
            docs(&[
                n4("a", "10.0.0.1/24"),
                n4("b", "10.0.0.2/24"),
                node(
                    "r",
                    "",
                    "ipv4Address: 10.0.0.3/24, routeReflectorClusterID: 1.1.1.1",
                ),
                // Same address as a under another name: skipped like a itself.
                n4("a-twin", "10.0.0.1/24"),
            ]),
            "a",
            Want {
                peers: Some(vec![("10.0.0.2", 179, AS, AS, R::Mesh, O::Mesh, true)]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reflector_has_no_mesh",
            docs(&[
                n4("a", "10.0.0.1/24"),
                n4("b", "10.0.0.2/24"),
                node(
                    "r",
                    "",
                    "ipv4Address: 10.0.0.3/24, routeReflectorClusterID: 1.1.1.1",
                ),
            ]),
            "r",
            Want {
                peers: Some(vec![]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_mesh_disabled",
            with(&[mesh_off()]),
            "a",
            Want {
                peers: Some(vec![]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_mesh_per_family_where_both_ends_have_an_address",
            docs(&[
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
                n4("b", "10.0.0.2/24"),
                node("c", "", "ipv6Address: \"fd00::3/64\""),
                node(
                    "d",
                    "",
                    "ipv4Address: 10.0.0.4/24, ipv6Address: \"fd00::4/64\"",
                ),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("fd00::3", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("10.0.0.4", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("fd00::4", 179, AS, AS, R::Mesh, O::Mesh, true),
                ]),
                check: Some(|d| {
                    let p = neighbor(d, "fd00::3")?;
                    if p.local_address != Some(ip("fd00::1")) {
                        return Err(format!("v6 source address {:?}", p.local_address));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_1_mesh_ipv4_only_node_skips_ipv6_only_node",
            docs(&[
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
                n4("b", "10.0.0.2/24"),
                node("c", "", "ipv6Address: \"fd00::3/64\""),
                node(
                    "d",
                    "",
                    "ipv4Address: 10.0.0.4/24, ipv6Address: \"fd00::4/64\"",
                ),
            ]),
            "b",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::Mesh, O::Mesh, false),
                    ("10.0.0.4", 179, AS, AS, R::Mesh, O::Mesh, true),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_mesh_remote_as_and_port_from_node_or_global",
            docs(&[
                bgpconfig("default", "asNumber: 65000, listenPort: 1790"),
                bgpconfig("node.c", "listenPort: 1791"),
                n4("a", "10.0.0.1/24"),
                node("b", "", "ipv4Address: 10.0.0.2/24, asNumber: 65002"),
                n4("c", "10.0.0.3/24"),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 1790, 65002, 65000, R::Ebgp, O::Mesh, true),
                    ("10.0.0.3", 1791, 65000, 65000, R::Mesh, O::Mesh, true),
                ]),
                local_as: Some(65000),
                listen: Some(("0.0.0.0", 1790)),
                ..Default::default()
            },
        ),
        case(
            "s3_1_node_listen_port_from_its_bgpconfiguration",
            docs(&[
                bgpconfig("default", "listenPort: 1790"),
                bgpconfig("node.c", "listenPort: 1791"),
                n4("a", "10.0.0.1/24"),
                n4("c", "10.0.0.3/24"),
            ]),
            "c",
            Want {
                peers: Some(vec![("10.0.0.1", 1790, AS, AS, R::Mesh, O::Mesh, false)]),
                listen: Some(("0.0.0.0", 1791)),
                ..Default::default()
            },
        ),
        case(
            "s3_1_global_peer_applies_to_every_node",
            with(&[
                mesh_off(),
                peer("tor", "peerIP: 10.0.0.254, asNumber: 65001"),
            ]),
            "c",
            Want {
                peers: Some(vec![(
                    "10.0.0.254",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::Global,
                    false,
                )]),
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.254")?;
                    if p.local_address != Some(ip("10.0.0.3"))
                        || p.description.as_deref() != Some("BGPPeer tor")
                    {
                        return Err(format!("{p:?}"));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_1_global_peer_alongside_the_mesh",
            with(&[peer("tor", "peerIP: 10.0.0.254, asNumber: 65001")]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("10.0.0.3", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("10.0.0.254", 179, 65001, AS, R::Ebgp, O::Global, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_node_specific_peer_by_name",
            with(&[
                mesh_off(),
                peer("x", "node: a, peerIP: 10.0.0.254, asNumber: 65001"),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.254",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_node_specific_peer_by_name_not_on_other_nodes",
            with(&[
                mesh_off(),
                peer("x", "node: a, peerIP: 10.0.0.254, asNumber: 65001"),
            ]),
            "b",
            Want {
                peers: Some(vec![]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_node_specific_peer_by_selector",
            docs(&[
                mesh_off(),
                node("a", "rack: r1", "ipv4Address: 10.0.0.1/24"),
                node("b", "rack: r2", "ipv4Address: 10.0.0.2/24"),
                peer(
                    "r1-tor",
                    "nodeSelector: \"rack == 'r1'\", peerIP: 10.0.0.254, asNumber: 65001",
                ),
                peer(
                    "r2-tor",
                    "nodeSelector: \"rack == 'r2'\", peerIP: 10.0.0.253, asNumber: 65002",
                ),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.253",
                    179,
                    65002,
                    AS,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            // "z-global" sorts after "a-node", but globals are computed first.
            "s3_1_global_wins_over_node_specific_to_same_ip_and_port",
            with(&[
                mesh_off(),
                peer("a-node", "node: a, peerIP: 10.0.0.254, asNumber: 65009"),
                peer("z-global", "peerIP: 10.0.0.254, asNumber: 65001"),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.254",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::Global,
                    false,
                )]),
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.254")?;
                    match p.description.as_deref() {
                        Some("BGPPeer z-global") => Ok(()),
                        other => Err(format!("description {other:?}")),
                    }
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_1_first_writer_of_ip_and_port_wins_other_port_is_another_peer",
            with(&[
                mesh_off(),
                peer("p1", "node: a, peerIP: 10.0.0.254, asNumber: 65001"),
                peer("p2", "node: a, peerIP: 10.0.0.254, asNumber: 65002"),
                peer(
                    "p3",
                    "node: a, peerIP: \"10.0.0.254:1179\", asNumber: 65003",
                ),
                // An explicit :179 is the same key as no port.
                peer("p4", "node: a, peerIP: \"10.0.0.254:179\", asNumber: 65004"),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    (
                        "10.0.0.254",
                        179,
                        65001,
                        AS,
                        R::Ebgp,
                        O::NodeSpecific,
                        false,
                    ),
                    (
                        "10.0.0.254",
                        1179,
                        65003,
                        AS,
                        R::Ebgp,
                        O::NodeSpecific,
                        false,
                    ),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_ip_of_a_calico_node_uses_its_listen_port",
            with(&[
                mesh_off(),
                bgpconfig("node.c", "listenPort: 1790"),
                peer("to-c", "node: a, peerIP: 10.0.0.3, asNumber: 64512"),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.3",
                    1790,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_ip_of_a_calico_node_in_another_as_keeps_port_179",
            with(&[
                mesh_off(),
                bgpconfig("node.c", "listenPort: 1790"),
                peer("to-c", "node: a, peerIP: 10.0.0.3, asNumber: 65001"),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.3",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_ip_explicit_port_wins_over_node_listen_port",
            with(&[
                mesh_off(),
                bgpconfig("node.c", "listenPort: 1790"),
                peer(
                    "to-c",
                    "node: a, peerIP: \"10.0.0.3:1800\", asNumber: 64512",
                ),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.3",
                    1800,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_selector_takes_remote_as_and_port_from_the_node",
            docs(&[
                bgpconfig("default", "nodeToNodeMeshEnabled: false, listenPort: 1790"),
                n4("a", "10.0.0.1/24"),
                node(
                    "b",
                    "peer: \"yes\"",
                    "ipv4Address: 10.0.0.2/24, asNumber: 65002",
                ),
                node("c", "peer: \"yes\"", "ipv4Address: 10.0.0.3/24"),
                peer(
                    "sel",
                    "node: a, peerSelector: \"peer == 'yes'\", reversePeering: Manual",
                ),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 1790, 65002, AS, R::Ebgp, O::NodeSpecific, false),
                    ("10.0.0.3", 1790, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_selector_sessions_per_family_where_both_have_an_address",
            docs(&[
                mesh_off(),
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
                node("b", "peer: \"yes\"", "ipv4Address: 10.0.0.2/24"),
                node(
                    "c",
                    "peer: \"yes\"",
                    "ipv4Address: 10.0.0.3/24, ipv6Address: \"fd00::3/64\"",
                ),
                node("d", "peer: \"yes\"", "ipv6Address: \"fd00::4/64\""),
                peer("sel", "node: a, peerSelector: \"peer == 'yes'\""),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.3", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("fd00::3", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("fd00::4", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reverse_peering_auto_for_peer_selector",
            labeled(&[peer(
                "a-to-b",
                "node: a, peerSelector: \"kubernetes.io/hostname == 'b'\"",
            )]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.1",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.1")?;
                    match p.description.as_deref() {
                        Some("BGPPeer a-to-b (reverse)") => Ok(()),
                        other => Err(format!("description {other:?}")),
                    }
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reverse_peering_forward_side",
            labeled(&[peer(
                "a-to-b",
                "node: a, peerSelector: \"kubernetes.io/hostname == 'b'\"",
            )]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.2",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reverse_peering_manual_gives_nothing",
            labeled(&[peer(
                "a-to-b",
                "node: a, peerSelector: \"kubernetes.io/hostname == 'b'\", reversePeering: Manual",
            )]),
            "b",
            Want {
                peers: Some(vec![]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reverse_peering_of_global_peer_covers_every_node",
            with(&[
                mesh_off(),
                peer("to-c", "peerIP: 10.0.0.3, asNumber: 64512"),
            ]),
            "c",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.2", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_no_reverse_peering_when_peer_ip_as_differs_from_the_node",
            with(&[
                mesh_off(),
                peer("to-c", "peerIP: 10.0.0.3, asNumber: 65001"),
            ]),
            "c",
            Want {
                peers: Some(vec![]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reverse_of_a_peer_ip_peering_only_in_its_family",
            docs(&[
                mesh_off(),
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
                node(
                    "b",
                    "",
                    "ipv4Address: 10.0.0.2/24, ipv6Address: \"fd00::2/64\"",
                ),
                peer("a-to-b", "node: a, peerIP: 10.0.0.2, asNumber: 64512"),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.1",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_reverse_of_a_peer_selector_peering_in_both_families",
            docs(&[
                mesh_off(),
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
                node(
                    "b",
                    "peer: \"yes\"",
                    "ipv4Address: 10.0.0.2/24, ipv6Address: \"fd00::2/64\"",
                ),
                peer("a-to-b", "node: a, peerSelector: \"peer == 'yes'\""),
            ]),
            "b",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("fd00::1", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_explicit_peering_wins_over_implicit_reverse",
            with(&[
                mesh_off(),
                // "a-to-b" sorts first, but reverse peerings come after all explicit ones.
                peer("a-to-b", "node: a, peerIP: 10.0.0.2, asNumber: 64512"),
                peer(
                    "b-to-a",
                    "node: b, peerIP: 10.0.0.1, asNumber: 64512, numAllowedLocalASNumbers: 2",
                ),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.1",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.1")?;
                    if p.description.as_deref() != Some("BGPPeer b-to-a") || p.allowed_local_as != 2
                    {
                        return Err(format!("{p:?}"));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            // The global peering toward a's own address is skipped on a; a instead gets the
            // reverse peering toward every other node.
            "s3_1_peer_equal_to_own_ip_skipped",
            with(&[
                mesh_off(),
                peer("to-a", "peerIP: 10.0.0.1, asNumber: 64512"),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.3", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_selector_matching_self_skips_self",
            with(&[
                mesh_off(),
                peer("all", "nodeSelector: all(), peerSelector: all()"),
            ]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.2", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.3", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_1_peer_ip_of_a_family_the_node_lacks_is_skipped_with_a_note",
            with(&[
                mesh_off(),
                peer("v6-tor", "peerIP: \"fd00::fe\", asNumber: 65001"),
            ]),
            "a",
            Want {
                peers: Some(vec![]),
                notes: vec!["v6-tor", "IPv6"],
                ..Default::default()
            },
        ),
        case(
            "s3_1_local_workload_selector_is_noted",
            with(&[
                mesh_off(),
                peer(
                    "lw",
                    "localWorkloadSelector: \"app == 'x'\", asNumber: 65001",
                ),
            ]),
            "a",
            Want {
                peers: Some(vec![]),
                notes: vec!["lw", "localWorkloadSelector"],
                ..Default::default()
            },
        ),
        case(
            "s3_1_unsupported_peer_knobs_are_noted",
            with(&[
                mesh_off(),
                peer(
                    "tor",
                    "peerIP: 10.0.0.254, asNumber: 65001, keepaliveTime: 10s, \
                     maxRestartTime: 60s, filters: [f1]",
                ),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.254",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::Global,
                    false,
                )]),
                notes: vec!["keepaliveTime", "filters"],
                ..Default::default()
            },
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// §3.2 Router id and listener.

#[test]
fn s3_2_router_id_and_listen() {
    let two = || docs(&[n4("node-1", "10.0.0.1/24"), n4("node-18", "10.0.0.18/24")]);
    run(vec![
        case(
            "s3_2_router_id_is_the_node_ipv4_address",
            two(),
            "node-1",
            Want {
                router_id: Some("10.0.0.1"),
                cluster_id: Some("10.0.0.1"),
                listen: Some(("0.0.0.0", 179)),
                ..Default::default()
            },
        ),
        case(
            "s3_2_router_id_fixed",
            two(),
            "node-1",
            Want {
                router_id: Some("192.0.2.9"),
                ..Default::default()
            },
        )
        .opts(|o| o.router_id = RouterIdMode::Fixed("192.0.2.9".parse().unwrap())),
        // SHA-256("node-1") = 35 97 1b e6 ...
        case(
            "s3_2_router_id_hash",
            two(),
            "node-1",
            Want {
                router_id: Some("53.151.27.230"),
                ..Default::default()
            },
        )
        .opts(|o| o.router_id = RouterIdMode::Hash),
        // SHA-256("node-18") = f5 c2 8b e3 ...: 245 > 223, so 245 - 32.
        case(
            "s3_2_router_id_hash_lowers_a_first_octet_above_223",
            two(),
            "node-18",
            Want {
                router_id: Some("213.194.139.227"),
                ..Default::default()
            },
        )
        .opts(|o| o.router_id = RouterIdMode::Hash),
        case(
            "s3_2_ipv6_only_node_gets_the_hashed_router_id",
            docs(&[node("v6-only", "", "ipv6Address: \"fd00::1/64\"")]),
            "v6-only",
            Want {
                router_id: Some("41.216.183.206"),
                listen: Some(("::", 179)),
                ..Default::default()
            },
        ),
        case(
            "s3_2_reflector_cluster_id",
            docs(&[node(
                "r",
                "",
                "ipv4Address: 10.0.0.1/24, routeReflectorClusterID: 244.0.0.1",
            )]),
            "r",
            Want {
                router_id: Some("10.0.0.1"),
                cluster_id: Some("244.0.0.1"),
                ..Default::default()
            },
        ),
        case(
            "s3_2_dual_stack_listens_on_any_ipv6",
            docs(&[
                bgpconfig("default", "listenPort: 1790"),
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
            ]),
            "a",
            Want {
                listen: Some(("::", 1790)),
                ..Default::default()
            },
        ),
        case(
            "s3_2_bind_mode_node_ip",
            docs(&[
                bgpconfig("default", "bindMode: NodeIP"),
                bgpconfig("node.a", "listenPort: 1791"),
                n4("a", "10.0.0.1/24"),
            ]),
            "a",
            Want {
                listen: Some(("10.0.0.1", 1791)),
                no_notes: true,
                ..Default::default()
            },
        ),
        case(
            "s3_2_bind_mode_node_ip_dual_stack_binds_ipv4_with_a_note",
            docs(&[
                bgpconfig("default", "bindMode: NodeIP"),
                node(
                    "a",
                    "",
                    "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
                ),
            ]),
            "a",
            Want {
                listen: Some(("10.0.0.1", 179)),
                notes: vec!["bindMode NodeIP"],
                ..Default::default()
            },
        ),
        case(
            "s3_2_listen_port_option_overrides_only_the_listener",
            docs(&[
                bgpconfig("default", "listenPort: 1790"),
                n4("a", "10.0.0.1/24"),
                n4("b", "10.0.0.2/24"),
            ]),
            "a",
            Want {
                listen: Some(("0.0.0.0", 17900)),
                peers: Some(vec![("10.0.0.2", 1790, AS, AS, R::Mesh, O::Mesh, true)]),
                ..Default::default()
            },
        )
        .opts(|o| o.listen_port = Some(17900)),
        case(
            "s3_2_addresses_and_next_hops_reported",
            docs(&[node(
                "a",
                "",
                "ipv4Address: 10.0.0.1/24, ipv6Address: \"fd00::1/64\"",
            )]),
            "a",
            Want {
                check: Some(|d| {
                    let v4 = d.ipv4.map(|a| a.network().to_string());
                    let v6 = d.ipv6.map(|a| a.network().to_string());
                    if v4.as_deref() != Some("10.0.0.0/24")
                        || v6.as_deref() != Some("fd00::/64")
                        || d.config.next_hop_ipv4 != Some("10.0.0.1".parse().unwrap())
                        || d.config.next_hop_ipv6 != Some("fd00::1".parse().unwrap())
                    {
                        return Err(format!(
                            "addresses {:?} {:?} next hops {:?} {:?}",
                            d.ipv4, d.ipv6, d.config.next_hop_ipv4, d.config.next_hop_ipv6
                        ));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// §3.3 Active/passive.

#[test]
fn s3_3_active_passive() {
    let nine_ten_twenty = |extra: &[String]| {
        let mut v = vec![
            n4("a", "10.0.0.9/24"),
            n4("b", "10.0.0.10/24"),
            n4("c", "10.0.0.20/24"),
        ];
        v.extend_from_slice(extra);
        docs(&v)
    };
    run(vec![
        // "10.0.0.10" < "10.0.0.20" < "10.0.0.9" as strings.
        case(
            "s3_3_passive_is_lexicographic",
            nine_ten_twenty(&[]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.10", 179, AS, AS, R::Mesh, O::Mesh, false),
                    ("10.0.0.20", 179, AS, AS, R::Mesh, O::Mesh, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_passive_is_lexicographic_other_end",
            nine_ten_twenty(&[]),
            "b",
            Want {
                peers: Some(vec![
                    ("10.0.0.9", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("10.0.0.20", 179, AS, AS, R::Mesh, O::Mesh, true),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_passive_is_lexicographic_middle",
            nine_ten_twenty(&[]),
            "c",
            Want {
                peers: Some(vec![
                    ("10.0.0.9", 179, AS, AS, R::Mesh, O::Mesh, true),
                    ("10.0.0.10", 179, AS, AS, R::Mesh, O::Mesh, false),
                ]),
                ..Default::default()
            },
        ),
        // "fd00::10" < "fd00::a" as strings although 0x10 > 0xa.
        case(
            "s3_3_passive_is_lexicographic_ipv6",
            docs(&[
                node("a", "", "ipv6Address: \"fd00::a/64\""),
                node("b", "", "ipv6Address: \"fd00::10/64\""),
            ]),
            "a",
            Want {
                peers: Some(vec![("fd00::10", 179, AS, AS, R::Mesh, O::Mesh, false)]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_passive_is_lexicographic_ipv6_other_end",
            docs(&[
                node("a", "", "ipv6Address: \"fd00::a/64\""),
                node("b", "", "ipv6Address: \"fd00::10/64\""),
            ]),
            "b",
            Want {
                peers: Some(vec![("fd00::a", 179, AS, AS, R::Mesh, O::Mesh, true)]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_passive_applies_to_ebgp_mesh_sessions",
            docs(&[
                node("a", "", "ipv4Address: 10.0.0.1/24, asNumber: 65001"),
                node("b", "", "ipv4Address: 10.0.0.2/24, asNumber: 65002"),
            ]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.0.2",
                    179,
                    65002,
                    65001,
                    R::Ebgp,
                    O::Mesh,
                    true,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_global_peer_ip_that_is_a_calico_node_is_passive",
            nine_ten_twenty(&[
                mesh_off(),
                peer("to-a", "peerIP: 10.0.0.9, asNumber: 64512"),
            ]),
            "b",
            Want {
                peers: Some(vec![("10.0.0.9", 179, AS, AS, R::RrPeer, O::Global, true)]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_global_peer_ip_that_is_a_calico_node_lower_string_is_active",
            nine_ten_twenty(&[
                mesh_off(),
                peer("to-b", "peerIP: 10.0.0.10, asNumber: 64512"),
            ]),
            "c",
            Want {
                peers: Some(vec![(
                    "10.0.0.10",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::Global,
                    false,
                )]),
                ..Default::default()
            },
        ),
        // calico_node is "the peer IP is some node's IP", whatever the AS (confd client.go
        // `c.nodeIPs[host]`); the AS only matters for the listen port and reverse peerings.
        case(
            "s3_3_global_peer_ip_of_a_calico_node_in_another_as_is_passive_too",
            nine_ten_twenty(&[
                mesh_off(),
                peer("to-a", "peerIP: 10.0.0.9, asNumber: 65001"),
            ]),
            "b",
            Want {
                peers: Some(vec![("10.0.0.9", 179, 65001, AS, R::Ebgp, O::Global, true)]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_node_specific_peer_ip_of_a_calico_node_not_passive",
            nine_ten_twenty(&[
                mesh_off(),
                peer("b-to-a", "node: b, peerIP: 10.0.0.9, asNumber: 64512"),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.9",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_selector_peers_not_passive",
            nine_ten_twenty(&[
                mesh_off(),
                peer("all", "nodeSelector: all(), peerSelector: all()"),
            ]),
            "b",
            Want {
                peers: Some(vec![
                    ("10.0.0.9", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.20", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_3_global_peer_that_is_not_a_node_not_passive",
            nine_ten_twenty(&[
                mesh_off(),
                peer("far", "peerIP: 10.0.0.99, asNumber: 65001"),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.99",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::Global,
                    false,
                )]),
                ..Default::default()
            },
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// §3.4 Route reflection.

#[test]
fn s3_4_route_reflection() {
    let rr_cluster = |rr2_cluster: &str, extra: &[String]| {
        let mut v = vec![
            mesh_off(),
            node(
                "rr1",
                "rr: \"true\"",
                "ipv4Address: 10.0.0.101/24, routeReflectorClusterID: 1.1.1.1",
            ),
            node(
                "rr2",
                "rr: \"true\"",
                &format!("ipv4Address: 10.0.0.102/24, routeReflectorClusterID: {rr2_cluster}"),
            ),
            n4("a", "10.0.0.1/24"),
            n4("b", "10.0.0.2/24"),
            peer(
                "to-rr",
                "nodeSelector: all(), peerSelector: \"rr == 'true'\"",
            ),
        ];
        v.extend_from_slice(extra);
        docs(&v)
    };
    run(vec![
        case(
            "s3_4_reflector_marks_non_reflector_nodes_clients",
            rr_cluster("2.2.2.2", &[]),
            "rr1",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::RrClient, O::NodeSpecific, false),
                    ("10.0.0.2", 179, AS, AS, R::RrClient, O::NodeSpecific, false),
                    (
                        "10.0.0.102",
                        179,
                        AS,
                        AS,
                        R::RrClient,
                        O::NodeSpecific,
                        false,
                    ),
                ]),
                cluster_id: Some("1.1.1.1"),
                ..Default::default()
            },
        ),
        case(
            "s3_4_clients_see_reflectors_as_non_client_ibgp",
            rr_cluster("2.2.2.2", &[]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.101", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.102", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                cluster_id: Some("10.0.0.1"),
                ..Default::default()
            },
        ),
        case(
            "s3_4_same_cluster_reflectors_are_non_clients",
            rr_cluster("1.1.1.1", &[]),
            "rr2",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::RrClient, O::NodeSpecific, false),
                    ("10.0.0.2", 179, AS, AS, R::RrClient, O::NodeSpecific, false),
                    ("10.0.0.101", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                cluster_id: Some("1.1.1.1"),
                ..Default::default()
            },
        ),
        case(
            "s3_4_peer_ip_peers_are_clients_on_a_reflector",
            rr_cluster(
                "2.2.2.2",
                &[
                    peer(
                        "ext-client",
                        "nodeSelector: \"rr == 'true'\", peerIP: 10.0.0.200, asNumber: 64512",
                    ),
                    peer(
                        "ext-ebgp",
                        "nodeSelector: \"rr == 'true'\", peerIP: 10.0.0.201, asNumber: 65001",
                    ),
                ],
            ),
            "rr1",
            Want {
                peers: Some(vec![
                    ("10.0.0.1", 179, AS, AS, R::RrClient, O::NodeSpecific, false),
                    ("10.0.0.2", 179, AS, AS, R::RrClient, O::NodeSpecific, false),
                    (
                        "10.0.0.102",
                        179,
                        AS,
                        AS,
                        R::RrClient,
                        O::NodeSpecific,
                        false,
                    ),
                    (
                        "10.0.0.200",
                        179,
                        AS,
                        AS,
                        R::RrClient,
                        O::NodeSpecific,
                        false,
                    ),
                    (
                        "10.0.0.201",
                        179,
                        65001,
                        AS,
                        R::Ebgp,
                        O::NodeSpecific,
                        false,
                    ),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_4_peer_ip_peers_are_not_clients_on_a_non_reflector",
            rr_cluster(
                "2.2.2.2",
                &[peer("ext", "node: a, peerIP: 10.0.0.200, asNumber: 64512")],
            ),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.0.101", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.102", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                    ("10.0.0.200", 179, AS, AS, R::RrPeer, O::NodeSpecific, false),
                ]),
                ..Default::default()
            },
        ),
        case(
            // iBGP is decided against the session's local AS (localASNumber when set).
            "s3_4_local_as_number_decides_client_marking",
            rr_cluster(
                "2.2.2.2",
                &[peer(
                    "ext",
                    "nodeSelector: \"rr == 'true'\", peerIP: 10.0.0.200, asNumber: 65005, localASNumber: 65005",
                )],
            ),
            "rr1",
            Want {
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.200")?;
                    if (p.remote_as, p.local_as, p.role) != (65005, 65005, R::RrClient) {
                        return Err(format!("{p:?}"));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_4_reflectors_in_another_as_are_ebgp",
            docs(&[
                mesh_off(),
                node(
                    "rr1",
                    "kubernetes.io/hostname: rr1",
                    "ipv4Address: 10.0.0.101/24, routeReflectorClusterID: 1.1.1.1",
                ),
                node("a", "", "ipv4Address: 10.0.0.1/24, asNumber: 65001"),
                peer(
                    "to-rr",
                    "node: a, peerSelector: \"kubernetes.io/hostname == 'rr1'\"",
                ),
            ]),
            "rr1",
            Want {
                peers: Some(vec![(
                    "10.0.0.1",
                    179,
                    65001,
                    AS,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                ..Default::default()
            },
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// §3.5 ToR / eBGP designs.

#[test]
fn s3_5_tor_and_ebgp() {
    let rack_mesh = |mesh: bool, extra: &[String]| {
        let mut v = vec![
            bgpconfig("default", &format!("nodeToNodeMeshEnabled: {mesh}")),
            node(
                "a",
                "rack: r1",
                "ipv4Address: 10.0.1.11/24, asNumber: 65101",
            ),
            node(
                "b",
                "rack: r1",
                "ipv4Address: 10.0.1.12/24, asNumber: \"65101\"",
            ),
            node(
                "c",
                "rack: r2",
                "ipv4Address: 10.0.2.11/24, asNumber: 65102",
            ),
        ];
        v.extend_from_slice(extra);
        docs(&v)
    };
    let rack = |extra: &[String]| rack_mesh(false, extra);
    let tors = || {
        vec![
            peer(
                "r1-tor",
                "nodeSelector: \"rack == 'r1'\", peerIP: 10.0.1.1, asNumber: 65201",
            ),
            peer(
                "r2-tor",
                "nodeSelector: \"rack == 'r2'\", peerIP: 10.0.2.1, asNumber: 65202",
            ),
        ]
    };
    run(vec![
        case(
            "s3_5_per_node_as_ebgp_to_the_rack_tor",
            rack(&tors()),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.1.1",
                    179,
                    65201,
                    65101,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                local_as: Some(65101),
                check: Some(|d| {
                    let p = neighbor(d, "10.0.1.1")?;
                    if p.next_hop != NextHopMode::Self_ || p.local_address != Some(ip("10.0.1.12"))
                    {
                        return Err(format!("{p:?}"));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_5_other_rack_other_tor",
            rack(&tors()),
            "c",
            Want {
                peers: Some(vec![(
                    "10.0.2.1",
                    179,
                    65202,
                    65102,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                local_as: Some(65102),
                ..Default::default()
            },
        ),
        case(
            "s3_5_dotted_as_number",
            docs(&[node(
                "a",
                "",
                "ipv4Address: 10.0.0.1/24, asNumber: \"1.10\"",
            )]),
            "a",
            Want {
                local_as: Some(65546),
                ..Default::default()
            },
        ),
        case(
            "s3_5_global_as_number_default_64512",
            docs(&[n4("a", "10.0.0.1/24")]),
            "a",
            Want {
                local_as: Some(64512),
                ..Default::default()
            },
        ),
        case(
            "s3_5_global_as_number_from_bgpconfiguration",
            docs(&[
                bgpconfig("default", "asNumber: 65000"),
                n4("a", "10.0.0.1/24"),
            ]),
            "a",
            Want {
                local_as: Some(65000),
                ..Default::default()
            },
        ),
        case(
            "s3_5_as_per_rack_mesh_across_racks_is_ebgp",
            rack_mesh(true, &[]),
            "a",
            Want {
                peers: Some(vec![
                    ("10.0.1.12", 179, 65101, 65101, R::Mesh, O::Mesh, true),
                    ("10.0.2.11", 179, 65102, 65101, R::Ebgp, O::Mesh, true),
                ]),
                ..Default::default()
            },
        ),
        case(
            "s3_5_next_hop_mode_keep",
            rack(&[peer(
                "tor",
                "nodeSelector: all(), peerIP: 10.0.9.1, asNumber: 65209, nextHopMode: Keep",
            )]),
            "a",
            Want {
                check: Some(|d| match neighbor(d, "10.0.9.1")?.next_hop {
                    NextHopMode::Keep => Ok(()),
                    o => Err(format!("next hop {o:?}")),
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_5_keep_original_next_hop_is_keep",
            rack(&[peer(
                "tor",
                "nodeSelector: all(), peerIP: 10.0.9.1, asNumber: 65209, keepOriginalNextHop: true",
            )]),
            "a",
            Want {
                check: Some(|d| match neighbor(d, "10.0.9.1")?.next_hop {
                    NextHopMode::Keep => Ok(()),
                    o => Err(format!("next hop {o:?}")),
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_5_next_hop_mode_auto_is_self_on_ebgp",
            rack(&[peer(
                "tor",
                "nodeSelector: all(), peerIP: 10.0.9.1, asNumber: 65209, nextHopMode: Auto",
            )]),
            "a",
            Want {
                check: Some(|d| match neighbor(d, "10.0.9.1")?.next_hop {
                    NextHopMode::Self_ => Ok(()),
                    o => Err(format!("next hop {o:?}")),
                }),
                no_notes: true,
                ..Default::default()
            },
        ),
        case(
            "s3_5_num_allowed_local_as_numbers",
            rack(&[peer(
                "tor",
                "nodeSelector: all(), peerIP: 10.0.9.1, asNumber: 65209, numAllowedLocalASNumbers: 1",
            )]),
            "a",
            Want {
                check: Some(|d| match neighbor(d, "10.0.9.1")?.allowed_local_as {
                    1 => Ok(()),
                    n => Err(format!("allowed local AS {n}")),
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_5_local_as_number_per_session",
            rack(&[peer(
                "tor",
                "nodeSelector: all(), peerIP: 10.0.9.1, asNumber: 65209, localASNumber: 65333",
            )]),
            "a",
            Want {
                peers: Some(vec![(
                    "10.0.9.1",
                    179,
                    65209,
                    65333,
                    R::Ebgp,
                    O::NodeSpecific,
                    false,
                )]),
                local_as: Some(65101),
                ..Default::default()
            },
        ),
        case(
            "s3_5_source_address_none",
            rack(&[peer(
                "tor",
                "nodeSelector: all(), peerIP: 10.0.9.1, asNumber: 65209, sourceAddress: None",
            )]),
            "a",
            Want {
                check: Some(|d| match neighbor(d, "10.0.9.1")?.local_address {
                    None => Ok(()),
                    a => Err(format!("local address {a:?}")),
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_5_downward_default_every_node_one_as_tor_another",
            docs(&[
                bgpconfig("default", "nodeToNodeMeshEnabled: false, asNumber: 65100"),
                n4("a", "10.0.1.11/24"),
                n4("b", "10.0.2.11/24"),
                peer(
                    "tor",
                    "peerIP: 10.0.0.1, asNumber: 65200, numAllowedLocalASNumbers: 1",
                ),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.1",
                    179,
                    65200,
                    65100,
                    R::Ebgp,
                    O::Global,
                    false,
                )]),
                check: Some(|d| match neighbor(d, "10.0.0.1")?.allowed_local_as {
                    1 => Ok(()),
                    n => Err(format!("allowed local AS {n}")),
                }),
                ..Default::default()
            },
        ),
    ]);
}

// ---------------------------------------------------------------------------------------------
// §3.6 Transport: password (TCP MD5), ttlSecurity (GTSM), sourceAddress.

/// `kind: Secret` with `data` (base64) and `stringData` entries.
fn secret(name: &str, data: &str, string_data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: calico-system}}\ntype: Opaque\ndata: {{{data}}}\nstringData: {{{string_data}}}"
    )
}

/// The MD5 key of `addr` as text, `Err` unless it has one.
fn md5_of(d: &Derived, addr: &str) -> Result<String, String> {
    match &neighbor(d, addr)?.auth {
        TcpAuth::Md5(k) => Ok(String::from_utf8_lossy(k.as_bytes()).into_owned()),
        other => Err(format!("{addr}: auth {other:?}")),
    }
}

/// The problem that keeps `addr` down, `Err` unless its key is unavailable.
fn unavailable_of(d: &Derived, addr: &str) -> Result<UnavailableKey, String> {
    match &neighbor(d, addr)?.auth {
        TcpAuth::Unavailable(u) => Ok(u.clone()),
        other => Err(format!("{addr}: auth {other:?}")),
    }
}

fn hops_of(d: &Derived, addr: &str) -> Result<Option<u8>, String> {
    Ok(neighbor(d, addr)?.ttl_security.map(|h| h.get()))
}

#[test]
fn s3_6_password_ttl_security_source_address() {
    let two = |extra: &[String]| {
        let mut v = vec![mesh_off(), n4("a", "10.0.0.1/24"), n4("b", "10.0.0.2/24")];
        v.extend_from_slice(extra);
        docs(&v)
    };
    let bgp = || secret("bgp", "tor: czNjcmV0", "rr: rr-pass");
    let pw = |key: &str| format!("password: {{secretKeyRef: {{name: bgp, key: {key}}}}}");
    run(vec![
        case(
            "s3_6_password_from_secret_data_and_ttl_security",
            two(&[
                bgp(),
                peer(
                    "tor",
                    &format!(
                        "peerIP: 10.0.9.1, asNumber: 65001, ttlSecurity: 2, {}",
                        pw("tor")
                    ),
                ),
                peer("plain", "peerIP: 10.0.9.2, asNumber: 65002"),
            ]),
            "a",
            Want {
                no_notes: true,
                check: Some(|d| {
                    if md5_of(d, "10.0.9.1")? != "s3cret" || hops_of(d, "10.0.9.1")? != Some(2) {
                        return Err("tor".into());
                    }
                    let p = neighbor(d, "10.0.9.2")?;
                    if p.auth != TcpAuth::None || p.ttl_security.is_some() {
                        return Err(format!("plain: {p:?}"));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_6_string_data_and_ttl_security_zero_is_off",
            two(&[
                bgp(),
                peer(
                    "rr",
                    &format!(
                        "peerIP: 10.0.9.1, asNumber: 65001, ttlSecurity: 0, {}",
                        pw("rr")
                    ),
                ),
            ]),
            "a",
            Want {
                check: Some(|d| {
                    if md5_of(d, "10.0.9.1")? != "rr-pass" || hops_of(d, "10.0.9.1")?.is_some() {
                        return Err("rr".into());
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            // The peer is kept (it shows in status) but marked down; others are unaffected.
            "s3_6_missing_secret_keeps_only_that_peer_down",
            two(&[
                peer(
                    "tor",
                    &format!("peerIP: 10.0.9.1, asNumber: 65001, {}", pw("tor")),
                ),
                peer("plain", "peerIP: 10.0.9.2, asNumber: 65002"),
            ]),
            "a",
            Want {
                notes: vec![
                    "BGPPeer tor: password from Secret \"bgp\" key \"tor\": the Secret does not exist; its sessions stay down",
                ],
                check: Some(|d| {
                    let u = unavailable_of(d, "10.0.9.1")?;
                    if u.problem != KeyProblem::NoSecret {
                        return Err(format!("{u:?}"));
                    }
                    if neighbor(d, "10.0.9.2")?.auth != TcpAuth::None {
                        return Err("plain has auth".into());
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_6_missing_key_is_named",
            two(&[
                bgp(),
                peer(
                    "tor",
                    &format!("peerIP: 10.0.9.1, asNumber: 65001, {}", pw("nope")),
                ),
            ]),
            "a",
            Want {
                notes: vec![
                    "BGPPeer tor: password from Secret \"bgp\" key \"nope\": the Secret has no such key",
                ],
                check: Some(|d| match unavailable_of(d, "10.0.9.1")?.problem {
                    KeyProblem::NoKey => Ok(()),
                    p => Err(format!("{p:?}")),
                }),
                ..Default::default()
            },
        ),
        case(
            // Reverse peerings carry the BGPPeer's password, ttlSecurity and sourceAddress
            // (confd's setPeerConfigFieldsFromV3Resource); b is selected by a's peering.
            "s3_6_reverse_peering_carries_the_transport_settings",
            two(&[
                bgp(),
                peer(
                    "a-to-b",
                    &format!(
                        "node: a, peerIP: 10.0.0.2, asNumber: 64512, ttlSecurity: 1, \
                         sourceAddress: None, {}",
                        pw("tor")
                    ),
                ),
            ]),
            "b",
            Want {
                peers: Some(vec![(
                    "10.0.0.1",
                    179,
                    AS,
                    AS,
                    R::RrPeer,
                    O::NodeSpecific,
                    false,
                )]),
                check: Some(|d| {
                    let p = neighbor(d, "10.0.0.1")?;
                    if md5_of(d, "10.0.0.1")? != "s3cret"
                        || hops_of(d, "10.0.0.1")? != Some(1)
                        || p.local_address.is_some()
                    {
                        return Err(format!("{p:?}"));
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_6_node_mesh_password",
            docs(&[
                bgpconfig(
                    "default",
                    "nodeMeshPassword: {secretKeyRef: {name: bgp, key: tor}}",
                ),
                n4("a", "10.0.0.1/24"),
                n4("b", "10.0.0.2/24"),
                n4("c", "10.0.0.3/24"),
                bgp(),
                // GTSM of a BGPPeer never leaks into the mesh.
                peer("tor", "peerIP: 10.0.9.1, asNumber: 65001, ttlSecurity: 1"),
            ]),
            "a",
            Want {
                check: Some(|d| {
                    for m in ["10.0.0.2", "10.0.0.3"] {
                        if md5_of(d, m)? != "s3cret" || hops_of(d, m)?.is_some() {
                            return Err(m.into());
                        }
                    }
                    if neighbor(d, "10.0.9.1")?.auth != TcpAuth::None
                        || hops_of(d, "10.0.9.1")? != Some(1)
                    {
                        return Err("tor".into());
                    }
                    Ok(())
                }),
                ..Default::default()
            },
        ),
        case(
            "s3_6_node_mesh_password_missing_keeps_the_mesh_down",
            docs(&[
                bgpconfig(
                    "default",
                    "nodeMeshPassword: {secretKeyRef: {name: mesh, key: pw}}",
                ),
                n4("a", "10.0.0.1/24"),
                n4("b", "10.0.0.2/24"),
            ]),
            "a",
            Want {
                notes: vec!["nodeMeshPassword: password from Secret \"mesh\" key \"pw\""],
                check: Some(|d| unavailable_of(d, "10.0.0.2").map(|_| ())),
                ..Default::default()
            },
        ),
    ]);
}

/// Mounted Secrets (`--secrets-dir`) are looked at before the datastore's, and the values never
/// show in the rendered configuration.
#[test]
fn s3_6_mounted_secrets_win_and_are_never_rendered() {
    let yaml = docs(&[
        mesh_off(),
        n4("a", "10.0.0.1/24"),
        secret("bgp", "", "tor: from-file"),
        peer(
            "tor",
            "peerIP: 10.0.9.1, asNumber: 65001, password: {secretKeyRef: {name: bgp, key: tor}}",
        ),
        peer(
            "other",
            "peerIP: 10.0.9.2, asNumber: 65001, password: {secretKeyRef: {name: other, key: k}}",
        ),
    ]);
    let view = parse_str(&yaml).unwrap();
    let opts = DeriveOptions::default();
    let d = derive(&view, "a", &opts).unwrap();
    assert_eq!(md5_of(&d, "10.0.9.1").unwrap(), "from-file");
    assert!(unavailable_of(&d, "10.0.9.2").is_ok());
    let mounted: BTreeMap<String, Secret> = [
        secret_value("bgp", "tor", "from-dir"),
        secret_value("other", "k", "other-pw"),
    ]
    .into_iter()
    .collect();
    let d = derive_with_secrets(&view, "a", &opts, &mounted).unwrap();
    assert_eq!(md5_of(&d, "10.0.9.1").unwrap(), "from-dir");
    assert_eq!(md5_of(&d, "10.0.9.2").unwrap(), "other-pw");
    assert!(d.notes.is_empty(), "{:?}", d.notes);
    let shown = format!("{} {:?}", podbgp::config::render_yaml(&d.config), d);
    for pw in ["from-file", "from-dir", "other-pw"] {
        assert!(!shown.contains(pw), "{pw} shown:\n{shown}");
    }
}

fn secret_value(name: &str, key: &str, value: &str) -> (String, Secret) {
    let s = Secret {
        name: name.into(),
        data: [(key.to_string(), SecretValue::new(value.as_bytes().to_vec()))]
            .into_iter()
            .collect(),
    };
    (name.to_string(), s)
}

// ---------------------------------------------------------------------------------------------
// Errors.

#[test]
fn derive_errors() {
    run(vec![
        err_case(
            "err_unknown_node",
            docs(&[n4("a", "10.0.0.1/24")]),
            "zz",
            DeriveError::NoSuchNode("zz".into()),
        ),
        err_case(
            "err_node_without_bgp_spec",
            docs(&["kind: Node\nmetadata: {name: a}\nspec: {}".to_string()]),
            "a",
            DeriveError::NoAddress("a".into()),
        ),
        err_case(
            "err_node_with_empty_bgp_spec",
            docs(&[node("a", "", "asNumber: 65001")]),
            "a",
            DeriveError::NoAddress("a".into()),
        ),
        err_case(
            "err_node_with_empty_address_strings",
            docs(&[node("a", "", "ipv4Address: \"\", ipv6Address: \"\"")]),
            "a",
            DeriveError::NoAddress("a".into()),
        ),
        // Other nodes without addresses are simply not peers.
        case(
            "ok_other_node_without_addresses_ignored",
            docs(&[n4("a", "10.0.0.1/24"), node("b", "", "")]),
            "a",
            Want {
                peers: Some(vec![]),
                ..Default::default()
            },
        ),
    ]);
}

/// parse_str rejects invalid resources with the line, resource, field and value.
#[test]
fn model_errors_name_resource_field_and_value() {
    let good = n4("a", "10.0.0.1/24");
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "bad AS number",
            peer("tor", "peerIP: 10.0.0.254, asNumber: 65x"),
            vec!["BGPPeer \"tor\"", "spec.asNumber", "65x"],
        ),
        (
            "bad peer IP",
            peer("tor", "peerIP: 10.0.0.256, asNumber: 65001"),
            vec!["BGPPeer \"tor\"", "spec.peerIP", "10.0.0.256"],
        ),
        (
            "bad next hop mode",
            peer(
                "tor",
                "peerIP: 10.0.0.254, asNumber: 65001, nextHopMode: Sideways",
            ),
            vec!["BGPPeer \"tor\"", "spec.nextHopMode", "Sideways"],
        ),
        (
            "misspelt field",
            peer("tor", "peerIp: 10.0.0.254, asNumber: 65001"),
            vec!["BGPPeer \"tor\"", "peerIp"],
        ),
        (
            "bad node address",
            node("b", "", "ipv4Address: 10.0.0.300/24"),
            vec!["Node \"b\"", "spec.bgp.ipv4Address", "10.0.0.300/24"],
        ),
        (
            "bad cluster id",
            node(
                "b",
                "",
                "ipv4Address: 10.0.0.2/24, routeReflectorClusterID: rr-1",
            ),
            vec!["Node \"b\"", "spec.bgp.routeReflectorClusterID", "rr-1"],
        ),
        (
            "bad encapsulation",
            pool("p", "cidr: 198.19.0.0/16, ipipMode: Sometimes"),
            vec!["IPPool \"p\"", "spec.ipipMode", "Sometimes"],
        ),
        (
            "bad block size",
            pool("p", "cidr: 198.19.0.0/16, blockSize: 33"),
            vec!["IPPool \"p\"", "spec.blockSize", "33"],
        ),
        (
            "bad pool CIDR",
            pool("p", "cidr: 198.19.0.0/33"),
            vec!["IPPool \"p\"", "spec.cidr", "198.19.0.0/33"],
        ),
        (
            "bad affinity state",
            aff("a", "198.19.1.0/26", "state: confirmd"),
            vec!["BlockAffinity", "spec.state", "confirmd"],
        ),
        (
            "bad bind mode",
            bgpconfig("default", "bindMode: Everywhere"),
            vec![
                "BGPConfiguration \"default\"",
                "spec.bindMode",
                "Everywhere",
            ],
        ),
        (
            "bad listen port",
            bgpconfig("default", "listenPort: 70000"),
            vec!["BGPConfiguration \"default\"", "spec.listenPort", "70000"],
        ),
        (
            "bad configuration name",
            bgpconfig("global", "asNumber: 65000"),
            vec!["BGPConfiguration \"global\"", "metadata.name"],
        ),
    ];
    let mut failures = Vec::new();
    for (what, bad, want) in &cases {
        let text = docs(&[good.clone(), bad.clone()]);
        match parse_str(&text) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let msg = e.to_string();
                // The bad document starts at its `---` line, line 5 (after the 4-line node).
                let mut missing: Vec<&str> =
                    want.iter().copied().filter(|w| !msg.contains(w)).collect();
                if !msg.starts_with("line 5:") {
                    missing.push("line 5:");
                }
                if !missing.is_empty() {
                    failures.push(format!("{what}: {msg:?} lacks {missing:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The real topologies.

fn topology_text(name: &str) -> String {
    let path = format!("{}/topologies/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn derive_all(view: &ClusterView) -> BTreeMap<String, Derived> {
    view.nodes
        .keys()
        .map(|n| {
            let d =
                derive(view, n, &DeriveOptions::default()).unwrap_or_else(|e| panic!("{n}: {e}"));
            invariants(&d, &DeriveOptions::default()).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n.clone(), d)
        })
        .collect()
}

/// Sessions between Calico nodes must be configured on both ends, consistently.
fn check_pairs(view: &ClusterView, all: &BTreeMap<String, Derived>) -> usize {
    let mut owner: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (name, d) in all {
        for a in [d.ipv4, d.ipv6].into_iter().flatten() {
            owner.insert(a.addr, name);
        }
    }
    let mut pairs = 0;
    for (a_name, da) in all {
        for p in &da.config.neighbors {
            let Some(b_name) = owner.get(&p.address) else {
                continue;
            };
            pairs += 1;
            let db = &all[*b_name];
            let a_addr = if p.address.is_ipv4() {
                da.ipv4.map(|a| a.addr)
            } else {
                da.ipv6.map(|a| a.addr)
            }
            .unwrap();
            let q = db
                .config
                .neighbor(a_addr)
                .unwrap_or_else(|| panic!("{a_name} peers {b_name} but {b_name} lacks {a_addr}"));
            let ctx = format!("{a_name}->{b_name}: {:?} / {:?}", tuple(p), tuple(q));
            assert_eq!(p.remote_as, q.local_as, "{ctx}");
            assert_eq!(q.remote_as, p.local_as, "{ctx}");
            assert_eq!(p.remote_as, db.config.local_as, "{ctx}");
            assert_eq!(Some(p.port), db.config.listen.map(|l| l.1), "{ctx}");
            assert_eq!(Some(q.port), da.config.listen.map(|l| l.1), "{ctx}");
            assert_eq!(p.role == R::Ebgp, q.role == R::Ebgp, "{ctx}");
            assert_eq!(p.role == R::Mesh, q.role == R::Mesh, "{ctx}");
            if p.origin == O::Mesh && q.origin == O::Mesh {
                assert!(p.passive != q.passive, "exactly one side passive: {ctx}");
            } else {
                assert!(!p.passive && !q.passive, "both active: {ctx}");
            }
            // §3.4: on a reflector, same-AS peers are clients unless reflectors of its cluster.
            let a_cluster = view.nodes[a_name]
                .bgp
                .as_ref()
                .and_then(|b| b.route_reflector_cluster_id);
            let b_cluster = view.nodes[*b_name]
                .bgp
                .as_ref()
                .and_then(|b| b.route_reflector_cluster_id);
            if let Some(c) = a_cluster
                && p.role != R::Ebgp
            {
                let want = if b_cluster == Some(c) {
                    R::RrPeer
                } else {
                    R::RrClient
                };
                assert_eq!(p.role, want, "{ctx}");
            }
            if a_cluster.is_none() && b_cluster.is_some() {
                assert_eq!(p.role, R::RrPeer, "{ctx}");
            }
        }
    }
    pairs
}

fn summary(d: &Derived) -> Vec<Tuple> {
    sorted_tuples(&d.config.neighbors)
}

fn t(a: &str, port: u16, remote: u32, local: u32, role: R, origin: O, passive: bool) -> Tuple {
    (ip(a), port, remote, local, role, origin, passive)
}

#[test]
fn topology_mesh() {
    let view = parse_str(&topology_text("mesh.yaml")).unwrap();
    let all = derive_all(&view);
    assert_eq!(all.len(), 3);
    // 3 nodes, 2 families, both directions.
    assert_eq!(check_pairs(&view, &all), 3 * 2 * 2);
    let mut want = vec![
        t("198.18.0.12", 179, AS, AS, R::Mesh, O::Mesh, true),
        t("198.18.0.13", 179, AS, AS, R::Mesh, O::Mesh, true),
        t("2001:db8:18::12", 179, AS, AS, R::Mesh, O::Mesh, true),
        t("2001:db8:18::13", 179, AS, AS, R::Mesh, O::Mesh, true),
        t("198.18.0.1", 179, 65001, AS, R::Ebgp, O::Global, false),
    ];
    want.sort_by_key(|t| (t.0, t.1));
    let d1 = &all["node-1"];
    assert_eq!(summary(d1), want);
    assert_eq!(
        d1.config.originate,
        nets(&["198.19.1.0/26", "2001:db8:244:0:1::/122"])
    );
    assert_eq!(d1.blackholes, d1.config.originate);
    assert_eq!(
        d1.config.router_id,
        "198.18.0.11".parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(d1.config.listen, Some((ip("::"), 179)));
    assert!(d1.notes.is_empty(), "{:?}", d1.notes);
    // node-3 has the greatest address: it connects to everyone.
    assert!(all["node-3"].config.neighbors.iter().all(|p| !p.passive));
    for d in all.values() {
        assert_eq!(d.config.neighbors.len(), 5);
        assert_eq!(d.config.originate.len(), 2);
    }
}

#[test]
fn topology_route_reflectors() {
    let view = parse_str(&topology_text("route-reflectors.yaml")).unwrap();
    let all = derive_all(&view);
    assert_eq!(all.len(), 6);
    // rr-1 <-> rr-2, and each of 4 nodes <-> each of 2 reflectors; both directions.
    assert_eq!(check_pairs(&view, &all), 2 * (1 + 4 * 2));
    let mut want = vec![
        t(
            "198.18.0.11",
            179,
            AS,
            AS,
            R::RrClient,
            O::NodeSpecific,
            false,
        ),
        t(
            "198.18.0.12",
            179,
            AS,
            AS,
            R::RrClient,
            O::NodeSpecific,
            false,
        ),
        t(
            "198.18.0.13",
            179,
            AS,
            AS,
            R::RrClient,
            O::NodeSpecific,
            false,
        ),
        t(
            "198.18.0.14",
            179,
            AS,
            AS,
            R::RrClient,
            O::NodeSpecific,
            false,
        ),
        t(
            "198.18.0.22",
            179,
            AS,
            AS,
            R::RrClient,
            O::NodeSpecific,
            false,
        ),
        t(
            "198.18.0.31",
            179,
            AS,
            AS,
            R::RrClient,
            O::NodeSpecific,
            false,
        ),
    ];
    want.sort_by_key(|t| (t.0, t.1));
    assert_eq!(summary(&all["rr-1"]), want);
    assert_eq!(
        all["rr-1"].config.cluster_id,
        "244.0.0.1".parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(
        all["rr-2"].config.cluster_id,
        "244.0.0.2".parse::<Ipv4Addr>().unwrap()
    );
    assert_eq!(
        summary(&all["node-2"]),
        vec![
            t(
                "198.18.0.21",
                179,
                AS,
                AS,
                R::RrPeer,
                O::NodeSpecific,
                false
            ),
            t(
                "198.18.0.22",
                179,
                AS,
                AS,
                R::RrPeer,
                O::NodeSpecific,
                false
            ),
        ]
    );
    for (name, d) in &all {
        if name.starts_with("rr-") {
            assert!(d.config.originate.is_empty(), "{name}");
            assert!(
                d.config.neighbors.iter().all(|p| p.role == R::RrClient),
                "{name}"
            );
        } else {
            assert_eq!(d.config.originate.len(), 1, "{name}");
            assert_eq!(d.config.neighbors.len(), 2, "{name}");
        }
        assert!(d.notes.is_empty(), "{name}: {:?}", d.notes);
    }
}

#[test]
fn topology_tor() {
    let view = parse_str(&topology_text("tor.yaml")).unwrap();
    let all = derive_all(&view);
    assert_eq!(all.len(), 4);
    // No node-to-node sessions at all: every node talks only to its two ToRs.
    assert_eq!(check_pairs(&view, &all), 0);
    let racks = [
        (
            "r1-node-1",
            65101,
            ["198.18.1.1", "198.18.1.2"],
            65201,
            "198.19.11.0/26",
        ),
        (
            "r1-node-2",
            65101,
            ["198.18.1.1", "198.18.1.2"],
            65201,
            "198.19.12.0/26",
        ),
        (
            "r2-node-1",
            65102,
            ["198.18.2.1", "198.18.2.2"],
            65202,
            "198.19.21.0/26",
        ),
        (
            "r2-node-2",
            65102,
            ["198.18.2.1", "198.18.2.2"],
            65202,
            "198.19.22.0/26",
        ),
    ];
    for (name, local, tors, tor_as, block) in racks {
        let d = &all[name];
        assert_eq!(d.config.local_as, local, "{name}");
        assert_eq!(
            summary(d),
            vec![
                t(tors[0], 179, tor_as, local, R::Ebgp, O::NodeSpecific, false),
                t(tors[1], 179, tor_as, local, R::Ebgp, O::NodeSpecific, false),
            ],
            "{name}"
        );
        assert_eq!(d.config.originate, nets(&[block]), "{name}");
        let own = d.ipv4.unwrap().addr;
        for p in &d.config.neighbors {
            assert_eq!(p.local_address, Some(own), "{name}");
            assert_eq!(p.next_hop, NextHopMode::Self_, "{name}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Determinism.

/// Splits a YAML stream on `---` lines.
fn split_docs(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let cur = docs.last_mut().unwrap();
            cur.push_str(line);
            cur.push('\n');
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !l.trim().is_empty() && !l.starts_with('#'))
    });
    docs
}

/// xorshift64*: a fixed, dependency-free shuffle.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        let r = seed.wrapping_mul(0x2545_f491_4f6c_dd1d);
        v.swap(i, (r % (i as u64 + 1)) as usize);
    }
}

/// A cluster where several producers compete for the same `(address, port)`.
fn contested() -> String {
    docs(&[
        bgpconfig("default", "asNumber: 64512, listenPort: 1790"),
        bgpconfig("node.b", "listenPort: 1791"),
        node("a", "rack: r1, rr: \"true\"", "ipv4Address: 10.0.0.9/24, ipv6Address: \"fd00::9/64\", routeReflectorClusterID: 1.1.1.1"),
        node("b", "rack: r1", "ipv4Address: 10.0.0.10/24, ipv6Address: \"fd00::a/64\""),
        node("c", "rack: r2", "ipv4Address: 10.0.0.20/24, asNumber: 65002"),
        node("d", "rack: r2, rr: \"true\"", "ipv4Address: 10.0.0.30/24, routeReflectorClusterID: 1.1.1.1"),
        peer("g1", "peerIP: 10.0.0.254, asNumber: 65001"),
        peer("g2", "peerIP: 10.0.0.254, asNumber: 65009"),
        peer("n1", "nodeSelector: \"rack == 'r1'\", peerIP: 10.0.0.254, asNumber: 65003"),
        peer("n2", "node: b, peerIP: 10.0.0.253, asNumber: 65004"),
        peer("n3", "nodeSelector: all(), peerIP: 10.0.0.253, asNumber: 65005"),
        peer("to-rr", "nodeSelector: all(), peerSelector: \"rr == 'true'\""),
        peer("to-c", "node: a, peerIP: 10.0.0.20, asNumber: 65002"),
        peer("c-to-a", "node: c, peerIP: 10.0.0.9, asNumber: 64512, numAllowedLocalASNumbers: 3"),
        pool("v4", "cidr: 198.19.0.0/16"),
        pool("no-export", "cidr: 10.245.0.0/16, disableBGPExport: true"),
        aff("a", "198.19.1.0/26", "state: confirmed"),
        aff("a", "198.19.2.0/26", "state: pendingDeletion"),
        aff("a", "10.245.1.0/26", "state: confirmed"),
        aff("a", "198.19.3.0/26", "state: pending"),
        aff("b", "198.19.4.0/26", ""),
        aff("b", "198.19.5.5/32", ""),
        "kind: IPAMBlock\nmetadata: {name: 198-19-4-0-26}\nspec: {cidr: 198.19.4.0/26, affinity: \"host:c\"}".into(),
    ])
}

#[test]
fn determinism_document_order_does_not_matter() {
    let inputs = [
        ("mesh.yaml", topology_text("mesh.yaml")),
        (
            "route-reflectors.yaml",
            topology_text("route-reflectors.yaml"),
        ),
        ("tor.yaml", topology_text("tor.yaml")),
        ("contested", contested()),
    ];
    for (name, text) in inputs {
        let view = parse_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let base = derive_all(&view);
        let docs = split_docs(&text);
        assert!(docs.len() > 5, "{name}: {} documents", docs.len());
        for seed in 1..=8u64 {
            let mut d = docs.clone();
            if seed == 8 {
                d.reverse();
            } else {
                shuffle(&mut d, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            }
            let shuffled =
                parse_str(&d.join("---\n")).unwrap_or_else(|e| panic!("{name} seed {seed}: {e}"));
            assert_eq!(shuffled, view, "{name} seed {seed}: view");
            assert_eq!(derive_all(&shuffled), base, "{name} seed {seed}: derived");
        }
    }
}

/// The contested cluster's answers, so the determinism test compares something meaningful.
#[test]
fn determinism_contested_cluster_first_writers() {
    let view = parse_str(&contested()).unwrap();
    let all = derive_all(&view);
    // b: globals first (g1 before g2 by name), then node-specific n2 before n3.
    let b = &all["b"];
    let p = b.config.neighbor(ip("10.0.0.254")).unwrap();
    assert_eq!((p.remote_as, p.origin), (65001, O::Global));
    let p = b.config.neighbor(ip("10.0.0.253")).unwrap();
    assert_eq!((p.remote_as, p.origin), (65004, O::NodeSpecific));
    // c: its explicit peering to a (first by name) wins over to-rr's and the reverse of to-c.
    let p = all["c"].config.neighbor(ip("10.0.0.9")).unwrap();
    assert_eq!(p.allowed_local_as, 3);
    // a: reflector; b is a client, d (same cluster) is not, c is eBGP.
    let a = &all["a"];
    assert_eq!(
        a.config.neighbor(ip("10.0.0.10")).unwrap().role,
        R::RrClient
    );
    assert_eq!(a.config.neighbor(ip("fd00::a")).unwrap().role, R::RrClient);
    assert_eq!(a.config.neighbor(ip("10.0.0.30")).unwrap().role, R::RrPeer);
    assert_eq!(a.config.neighbor(ip("10.0.0.20")).unwrap().role, R::Ebgp);
    assert_eq!(
        a.config.originate,
        nets(&["198.19.1.0/26", "198.19.2.0/26"])
    );
    assert_eq!(
        a.blackholes,
        nets(&["198.19.1.0/26", "198.19.2.0/26", "10.245.1.0/26"])
    );
    assert_eq!(all["b"].blackholes, nets(&["198.19.4.0/26"]));
    assert!(all["b"].notes.iter().any(|n| n.contains("host:c")));
}

fn restart(d: &Derived, addr: &str) -> Result<Option<u16>, String> {
    Ok(neighbor(d, addr)?.restart_time)
}

#[test]
fn s3_2_restart_times_per_peer_and_for_the_mesh() {
    run(vec![case(
        "s3_2_max_restart_time_and_node_mesh_max_restart_time",
        docs(&[
            bgpconfig("default", "nodeMeshMaxRestartTime: 300s"),
            n4("a", "10.0.0.1/24"),
            n4("b", "10.0.0.2/24"),
            peer(
                "tor",
                "peerIP: 10.0.9.1, asNumber: 65001, maxRestartTime: 90s",
            ),
            peer("plain", "peerIP: 10.0.9.2, asNumber: 65002"),
        ]),
        "a",
        Want {
            no_notes: true,
            check: Some(|d| {
                let got = (
                    restart(d, "10.0.0.2")?,
                    restart(d, "10.0.9.1")?,
                    restart(d, "10.0.9.2")?,
                );
                if got != (Some(300), Some(90), None) {
                    return Err(format!("restart times (mesh, tor, plain) = {got:?}"));
                }
                // The OPEN carries the per-peer time; the speaker default (120 s) elsewhere.
                let s = neighbor(d, "10.0.9.1")?.session(&d.config);
                let p = neighbor(d, "10.0.9.2")?.session(&d.config);
                match (s.graceful_restart_time, p.graceful_restart_time) {
                    (Some(90), Some(120)) => Ok(()),
                    other => Err(format!("session restart times {other:?}")),
                }
            }),
            ..Default::default()
        },
    )]);
}
