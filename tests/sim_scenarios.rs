//! Whole-protocol scenarios on the in-memory N-speaker harness (`tests/sim`): full mesh, route
//! reflection with distinct and shared cluster ids, withdrawal, a reflector dying, split horizon,
//! and determinism. No sockets, no wall-clock time.

mod sim;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use podbgp::config::parse_yaml;
use podbgp::speaker::{Command, RouteView};
use sim::Sim;

const AS: u32 = 64512;
const SETTLE_QUIET: Duration = Duration::from_secs(10);
const SETTLE_MAX: Duration = Duration::from_secs(600);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, last)
}

/// Block `k` (0..4) of the node whose address ends in `node`: 10.244.<node>.<64k>/26.
fn block(node: u8, k: u8) -> IpNet {
    format!("10.244.{node}.{}/26", 64 * k).parse().unwrap()
}

fn blocks(node: u8) -> Vec<IpNet> {
    (0..4).map(|k| block(node, k)).collect()
}

/// The node (last address octet) that originates a 10.244.<node>.x/26 block.
fn originator_of(p: &IpNet) -> u8 {
    match p.addr() {
        IpAddr::V4(a) => a.octets()[2],
        IpAddr::V6(_) => panic!("unexpected IPv6 prefix {p}"),
    }
}

#[derive(Clone, Copy)]
enum Role {
    Mesh,
    RrClient,
    RrPeer,
}

impl Role {
    fn yaml(self) -> &'static str {
        match self {
            Role::Mesh => "mesh",
            Role::RrClient => "rr-client",
            Role::RrPeer => "rr-peer",
        }
    }
}

/// One node's YAML: AS 64512, listening on its address, next-hop-self = its address, and
/// Calico's active/passive rule (passive toward every neighbour with a lower address).
fn node_config(
    me: u8,
    cluster: Option<Ipv4Addr>,
    originate: &[IpNet],
    neighbors: &[(u8, Role)],
) -> podbgp::config::SpeakerConfig {
    node_config_with(me, cluster, originate, neighbors, true)
}

/// [`node_config`]; with `calico_passive` false every session is active (both ends connect,
/// so every pair goes through RFC 4271 §6.8 collision resolution).
fn node_config_with(
    me: u8,
    cluster: Option<Ipv4Addr>,
    originate: &[IpNet],
    neighbors: &[(u8, Role)],
    calico_passive: bool,
) -> podbgp::config::SpeakerConfig {
    let mut y = String::new();
    let _ = writeln!(y, "local_as: {AS}");
    let _ = writeln!(y, "router_id: {}", ip(me));
    let _ = writeln!(y, "listen: {{ address: \"{}\", port: 179 }}", ip(me));
    let _ = writeln!(y, "next_hop_ipv4: {}", ip(me));
    if let Some(c) = cluster {
        let _ = writeln!(y, "cluster_id: {c}");
    }
    let list: Vec<String> = originate.iter().map(|p| format!("\"{p}\"")).collect();
    let _ = writeln!(y, "originate: [{}]", list.join(", "));
    let _ = writeln!(y, "neighbors:");
    for &(n, role) in neighbors {
        let _ = writeln!(
            y,
            "  - {{ address: {}, remote_as: {AS}, role: {}, passive: {} }}",
            ip(n),
            role.yaml(),
            calico_passive && n < me
        );
    }
    parse_yaml(&y).unwrap_or_else(|e| panic!("bad generated config for {}: {e}\n{y}", ip(me)))
}

fn show(r: &RouteView) -> String {
    format!(
        "{} via {:?} from {:?} originator {:?} cluster {:?} as_path {:?} lp {:?} best {}",
        r.prefix,
        r.next_hops,
        r.peer,
        r.originator_id,
        r.cluster_list,
        r.as_path,
        r.local_pref,
        r.best
    )
}

fn show_all(rs: &[RouteView]) -> String {
    rs.iter().map(|r| format!("\n    {}", show(r))).collect()
}

fn prefixes(rs: &[RouteView]) -> BTreeSet<IpNet> {
    rs.iter().map(|r| r.prefix).collect()
}

// =====================================================================================
// Full mesh
// =====================================================================================

const MESH: [u8; 5] = [1, 2, 3, 4, 5];

fn mesh_sim() -> Sim {
    mesh_sim_with(true)
}

fn mesh_sim_with(calico_passive: bool) -> Sim {
    mesh_sim_gr(calico_passive, true)
}

/// A mesh whose nodes do not advertise graceful restart: a dropped session takes its routes
/// with it at once.
fn mesh_sim_without_gr() -> Sim {
    mesh_sim_gr(true, false)
}

fn mesh_sim_gr(calico_passive: bool, graceful_restart: bool) -> Sim {
    let cfgs = MESH
        .iter()
        .map(|&me| {
            let nbrs: Vec<(u8, Role)> = MESH
                .iter()
                .filter(|&&n| n != me)
                .map(|&n| (n, Role::Mesh))
                .collect();
            let mut c = node_config_with(me, None, &blocks(me), &nbrs, calico_passive);
            if !graceful_restart {
                c.graceful_restart_time = None;
            }
            c
        })
        .collect();
    Sim::new(cfgs)
}

/// Converges the mesh and returns the convergence time (virtual).
fn converge_mesh(sim: &mut Sim) -> Duration {
    let t = sim.drive_until(Duration::from_secs(60), |s| {
        s.all_established() && (0..s.len()).all(|i| s.best_routes(i).len() == 20)
    });
    assert!(
        t.is_some(),
        "5-node mesh did not converge to 20 routes per node within 60 virtual seconds:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX)
}

fn assert_mesh_tables(sim: &Sim, missing: &[IpNet]) {
    let expected: BTreeSet<IpNet> = MESH
        .iter()
        .flat_map(|&n| blocks(n))
        .filter(|p| !missing.contains(p))
        .collect();
    for (i, &me) in MESH.iter().enumerate() {
        let all = sim.loc_rib(i);
        let best = sim.best_routes(i);
        assert_eq!(
            best.len(),
            expected.len(),
            "node {}: expected exactly {} best routes, got {}:{}",
            ip(me),
            expected.len(),
            best.len(),
            show_all(&best)
        );
        assert_eq!(
            all.len(),
            expected.len(),
            "node {}: a full mesh gives exactly one candidate path per prefix, got:{}",
            ip(me),
            show_all(&all)
        );
        assert_eq!(prefixes(&best), expected, "node {}: prefix set", ip(me));
        for r in &best {
            let origin = originator_of(&r.prefix);
            assert!(
                r.as_path.is_empty(),
                "node {}: iBGP AS_PATH must stay empty: {}",
                ip(me),
                show(r)
            );
            assert!(
                r.originator_id.is_none() && r.cluster_list.is_empty(),
                "node {}: no reflection in a full mesh, yet {}",
                ip(me),
                show(r)
            );
            if origin == me {
                assert_eq!(
                    r.peer,
                    None,
                    "node {}: own block must be local: {}",
                    ip(me),
                    show(r)
                );
                continue;
            }
            let o = IpAddr::V4(ip(origin));
            assert_eq!(
                r.peer,
                Some(o),
                "node {}: learned from the originator: {}",
                ip(me),
                show(r)
            );
            assert_eq!(
                r.next_hops,
                vec![o],
                "node {}: next hop must be the originator {o}: {}",
                ip(me),
                show(r)
            );
            assert_eq!(
                r.local_pref,
                Some(100),
                "node {}: LOCAL_PREF: {}",
                ip(me),
                show(r)
            );
        }
    }
}

#[test]
fn mesh_of_five_converges_to_twenty_routes_with_originator_next_hops() {
    let mut sim = mesh_sim();
    converge_mesh(&mut sim);
    for i in 0..sim.len() {
        assert_eq!(
            sim.established(i),
            4,
            "node {i}: 4 sessions up\n{}",
            sim.describe()
        );
    }
    assert_mesh_tables(&sim, &[]);
    // Calico's rule: the higher address is passive, so exactly one TCP connection per pair
    // was opened, by the lower address, and no collision had to be resolved.
    let accepted: Vec<u64> = (0..sim.len()).map(|i| sim.accepted(i)).collect();
    assert_eq!(
        accepted,
        vec![0, 1, 2, 3, 4],
        "node .N must have accepted exactly one connection from each lower address"
    );
    for (i, &me) in MESH.iter().enumerate() {
        for p in sim.peers(i) {
            assert_eq!(
                p.established_transitions,
                1,
                "node {}: peer {} flapped",
                ip(me),
                p.address
            );
            assert!(
                p.last_error.is_none(),
                "node {}: peer {} error {:?}",
                ip(me),
                p.address,
                p.last_error
            );
        }
    }
}

#[test]
fn mesh_withdraw_removes_the_block_everywhere() {
    let mut sim = mesh_sim();
    converge_mesh(&mut sim);
    let gone = block(3, 1);
    sim.withdraw(2, gone); // node 198.18.0.3
    let t0 = sim.now();
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    for i in 0..sim.len() {
        let left: Vec<RouteView> = sim
            .loc_rib(i)
            .into_iter()
            .filter(|r| r.prefix == gone)
            .collect();
        assert!(
            left.is_empty(),
            "node {}: withdrawn {gone} still in Loc-RIB:{}",
            sim.addr(i),
            show_all(&left)
        );
    }
    assert_mesh_tables(&sim, &[gone]);
    // And it went out as a withdrawal to each of the 4 peers.
    let withdrawals = sim
        .tap
        .iter()
        .filter(|u| u.at >= t0 && u.from == 2 && u.withdrawn.contains(&gone))
        .count();
    assert_eq!(
        withdrawals, 4,
        "198.18.0.3 must send one withdrawal of {gone} per peer"
    );

    // Originating it again brings it back everywhere.
    sim.originate(2, gone);
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_mesh_tables(&sim, &[]);
}

#[test]
fn mesh_is_deterministic() {
    let run = || {
        let mut sim = mesh_sim();
        let t = converge_mesh(&mut sim);
        sim.withdraw(0, block(1, 0));
        let t2 = sim.settle(SETTLE_QUIET, SETTLE_MAX);
        let ribs: Vec<Vec<RouteView>> = (0..sim.len()).map(|i| sim.loc_rib(i)).collect();
        let events: Vec<_> = sim.nodes.iter().map(|n| n.events.clone()).collect();
        (
            t,
            t2,
            ribs,
            sim.tap.clone(),
            events,
            sim.delivered,
            sim.now(),
        )
    };
    let a = run();
    let b = run();
    assert_eq!(a.0, b.0, "convergence time differs between identical runs");
    assert_eq!(a.1, b.1, "re-convergence time after a withdrawal differs");
    assert_eq!(a.2, b.2, "Loc-RIBs differ between identical runs");
    assert_eq!(
        a.3, b.3,
        "UPDATE sequences on the wire differ between identical runs"
    );
    assert_eq!(a.4, b.4, "event sequences differ between identical runs");
    assert_eq!(a.5, b.5, "number of delivered inputs differs");
    assert_eq!(a.6, b.6, "final virtual time differs");
}

#[test]
fn mesh_without_passive_side_converges_through_collision_resolution() {
    let mut sim = mesh_sim_with(false);
    converge_mesh(&mut sim);
    assert_mesh_tables(&sim, &[]);
    let accepted: u64 = (0..sim.len()).map(|i| sim.accepted(i)).sum();
    assert_eq!(
        accepted, 20,
        "both ends of each of the 10 pairs must have connected (so every pair had a collision)"
    );
    for (i, &me) in MESH.iter().enumerate() {
        for p in sim.peers(i) {
            assert_eq!(
                p.established_transitions,
                1,
                "node {}: session to {} must come up once, the collision loser never reaching Established",
                ip(me),
                p.address
            );
        }
    }
}

#[test]
fn mesh_node_stopped_its_blocks_disappear_and_come_back_on_restart() {
    let mut sim = mesh_sim_without_gr();
    converge_mesh(&mut sim);
    sim.stop(4); // 198.18.0.5
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    for p in blocks(5) {
        assert_gone_everywhere(&sim, p);
    }
    for i in 0..4 {
        assert_eq!(
            sim.best_routes(i).len(),
            16,
            "node {}: 16 blocks left after 198.18.0.5 stopped:{}",
            sim.addr(i),
            show_all(&sim.best_routes(i))
        );
    }
    sim.restart(4);
    let t = sim.drive_until(Duration::from_secs(300), |s| {
        s.all_established() && (0..s.len()).all(|i| s.best_routes(i).len() == 20)
    });
    assert!(
        t.is_some(),
        "mesh did not recover after 198.18.0.5 restarted:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_mesh_tables(&sim, &[]);
}

/// Administrative shutdown (`Input::Shutdown`, what the daemon does on SIGTERM): the peers get
/// Cease/Administrative Shutdown and drop the node's blocks at once.
#[test]
fn mesh_admin_shutdown_withdraws_the_node() {
    let mut sim = mesh_sim();
    converge_mesh(&mut sim);
    let t0 = sim.now();
    sim.input(4, podbgp::speaker::Input::Shutdown);
    let t = sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_eq!(
        t, t0,
        "the shutdown must take effect without waiting for any timer"
    );
    for i in 0..4 {
        let left: Vec<RouteView> = sim
            .loc_rib(i)
            .into_iter()
            .filter(|r| originator_of(&r.prefix) == 5)
            .collect();
        assert!(
            left.is_empty(),
            "node {}: 198.18.0.5's blocks kept:{}",
            sim.addr(i),
            show_all(&left)
        );
        assert_eq!(sim.best_routes(i).len(), 16, "node {}", sim.addr(i));
        let down = sim.nodes[i].events.iter().find_map(|(at, e)| match e {
            podbgp::speaker::SpeakerEvent::PeerState {
                address,
                from: podbgp::session::State::Established,
                cause,
                ..
            } if *at >= t0 && *address == sim.addr(4) => Some(cause.clone()),
            _ => None,
        });
        assert!(
            down.as_deref().is_some_and(|c| c.contains("6/9")),
            "node {}: the session to the shut-down node must leave Established on Cease 6/9 \
             (Hard Reset wrapping Administrative Shutdown, RFC 8538 §5.1), got {down:?}",
            sim.addr(i)
        );
    }
    assert_eq!(
        sim.established(4),
        0,
        "198.18.0.5 must stay down after Shutdown"
    );
}

/// A node that dies silently (no FIN/RST) is detected by the hold timer (90 s, KEEPALIVE every
/// 30 s): its blocks vanish more than 60 s and at most 90 s of virtual time later.
#[test]
fn mesh_silent_crash_detected_by_hold_timer() {
    let mut sim = mesh_sim_without_gr();
    converge_mesh(&mut sim);
    let t_crash = sim.now();
    sim.crash(4); // 198.18.0.5
    let gone = sim.drive_until(Duration::from_secs(200), |s| {
        (0..4).all(|i| s.best_routes(i).len() == 16)
    });
    let gone = gone.unwrap_or_else(|| {
        panic!(
            "peers never dropped silent 198.18.0.5's blocks:\n{}",
            sim.describe()
        )
    });
    let after = gone - t_crash;
    assert!(
        after > Duration::from_secs(60) && after <= Duration::from_secs(90),
        "hold-timer detection took {after:?} of virtual time (expected 60 s < t <= 90 s)"
    );
    for i in 0..4 {
        let p = sim
            .peers(i)
            .into_iter()
            .find(|p| p.address == sim.addr(4))
            .unwrap();
        assert_ne!(
            p.state,
            podbgp::session::State::Established,
            "node {}: {p:?}",
            sim.addr(i)
        );
        assert!(
            p.last_error
                .as_deref()
                .is_some_and(|e| e.contains("4/0") || e.to_lowercase().contains("hold")),
            "node {}: session to the crashed node must end with Hold Timer Expired, got {:?}",
            sim.addr(i),
            p.last_error
        );
    }
    sim.restart(4);
    let t = sim.drive_until(Duration::from_secs(300), |s| {
        s.all_established() && (0..s.len()).all(|i| s.best_routes(i).len() == 20)
    });
    assert!(
        t.is_some(),
        "mesh did not recover after 198.18.0.5 rebooted:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_mesh_tables(&sim, &[]);
}

// =====================================================================================
// Route reflection: 6 clients, 2 reflectors
// =====================================================================================

const CLIENTS: [u8; 6] = [1, 2, 3, 4, 5, 6];
const R1: u8 = 101;
const R2: u8 = 102;
/// Node indexes in the sim.
const R1_IDX: usize = 6;
const R2_IDX: usize = 7;

/// Clients originate their blocks after start (through `Input::Originate`), not from config.
fn rr_sim(c1: Ipv4Addr, c2: Ipv4Addr) -> Sim {
    rr_sim_gr(c1, c2, true)
}

fn rr_sim_gr(c1: Ipv4Addr, c2: Ipv4Addr, graceful_restart: bool) -> Sim {
    let mut cfgs = Vec::new();
    for &c in &CLIENTS {
        cfgs.push(node_config(
            c,
            None,
            &[],
            &[(R1, Role::RrPeer), (R2, Role::RrPeer)],
        ));
    }
    for (me, cluster, other) in [(R1, c1, R2), (R2, c2, R1)] {
        let mut nbrs: Vec<(u8, Role)> = CLIENTS.iter().map(|&c| (c, Role::RrClient)).collect();
        nbrs.push((other, Role::RrPeer));
        cfgs.push(node_config(me, Some(cluster), &[], &nbrs));
    }
    if !graceful_restart {
        for c in &mut cfgs {
            c.graceful_restart_time = None;
        }
    }
    let mut sim = Sim::new(cfgs);
    for (i, &c) in CLIENTS.iter().enumerate() {
        for p in blocks(c) {
            sim.originate(i, p);
        }
    }
    let all = CLIENTS.len() * 4;
    let t = sim.drive_until(Duration::from_secs(60), |s| {
        s.all_established() && (0..CLIENTS.len()).all(|i| s.best_routes(i).len() == all)
    });
    assert!(
        t.is_some(),
        "route-reflection topology did not converge within 60 virtual seconds:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    sim
}

fn all_client_blocks() -> BTreeSet<IpNet> {
    CLIENTS.iter().flat_map(|&c| blocks(c)).collect()
}

/// What client `i` must hold: every block, the remote ones with next hop = originator and
/// ORIGINATOR_ID = originator's router id, reflected by one of `reflectors` (address, cluster
/// id). `best_via` is the reflector the best path must come from.
fn assert_client_holds_every_block(
    sim: &Sim,
    i: usize,
    expected: &BTreeSet<IpNet>,
    reflectors: &[(u8, Ipv4Addr)],
    best_via: u8,
) {
    let me = CLIENTS[i];
    let best = sim.best_routes(i);
    assert_eq!(
        &prefixes(&best),
        expected,
        "client {}: must hold every block exactly once as best:{}",
        ip(me),
        show_all(&best)
    );
    for r in &best {
        let o = originator_of(&r.prefix);
        if o == me {
            assert_eq!(
                r.peer,
                None,
                "client {}: own block must be the local path: {}",
                ip(me),
                show(r)
            );
            continue;
        }
        let cluster = reflectors
            .iter()
            .find(|(a, _)| {
                IpAddr::V4(ip(*a)) == r.peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            })
            .map(|(_, c)| *c)
            .unwrap_or_else(|| {
                panic!(
                    "client {}: best path not from a reflector: {}",
                    ip(me),
                    show(r)
                )
            });
        assert_eq!(
            r.peer,
            Some(IpAddr::V4(ip(best_via))),
            "client {}: best path reflector: {}",
            ip(me),
            show(r)
        );
        assert_eq!(
            r.next_hops,
            vec![IpAddr::V4(ip(o))],
            "client {}: next hop = originator: {}",
            ip(me),
            show(r)
        );
        assert_eq!(
            r.originator_id,
            Some(ip(o)),
            "client {}: ORIGINATOR_ID = originator's router id: {}",
            ip(me),
            show(r)
        );
        assert_eq!(
            r.cluster_list,
            vec![cluster],
            "client {}: CLUSTER_LIST = [reflector's cluster id]: {}",
            ip(me),
            show(r)
        );
        assert!(
            r.as_path.is_empty(),
            "client {}: AS_PATH untouched by reflection: {}",
            ip(me),
            show(r)
        );
        assert_eq!(
            r.local_pref,
            Some(100),
            "client {}: LOCAL_PREF untouched: {}",
            ip(me),
            show(r)
        );
    }
    // Adj-RIB-In from each reflector: every *other* client's block, each with that reflector's
    // single cluster id; never the client's own blocks (RFC 4456 §8 ORIGINATOR_ID check).
    let others: BTreeSet<IpNet> = expected
        .iter()
        .filter(|p| originator_of(p) != me)
        .copied()
        .collect();
    for &(refl, cluster) in reflectors {
        let adj = sim.adj_rib_in(i, IpAddr::V4(ip(refl)));
        assert_eq!(
            prefixes(&adj),
            others,
            "client {}: Adj-RIB-In from reflector {} must hold every other client's block:{}",
            ip(me),
            ip(refl),
            show_all(&adj)
        );
        for r in &adj {
            let o = originator_of(&r.prefix);
            assert_eq!(
                r.cluster_list,
                vec![cluster],
                "client {}: copy from {}: {}",
                ip(me),
                ip(refl),
                show(r)
            );
            assert_eq!(
                r.originator_id,
                Some(ip(o)),
                "client {}: copy from {}: {}",
                ip(me),
                ip(refl),
                show(r)
            );
            assert_eq!(
                r.next_hops,
                vec![IpAddr::V4(ip(o))],
                "client {}: copy from {}: {}",
                ip(me),
                ip(refl),
                show(r)
            );
            assert_ne!(
                r.originator_id,
                Some(ip(me)),
                "client {}: accepted its own route back: {}",
                ip(me),
                show(r)
            );
        }
    }
}

#[test]
fn rr_distinct_clusters_every_client_holds_every_block() {
    let (c1, c2) = (ip(R1), ip(R2));
    let sim = rr_sim(c1, c2);
    let expected = all_client_blocks();
    for (i, &me) in CLIENTS.iter().enumerate() {
        // Both copies tie through the cluster-list length; the lower peer address (R1) wins
        // (RFC 4271 §9.1.2.2 g).
        assert_client_holds_every_block(&sim, i, &expected, &[(R1, c1), (R2, c2)], R1);
        // Two candidate paths per remote block (one per reflector), none for the own blocks.
        let all = sim.loc_rib(i);
        assert_eq!(
            all.len(),
            4 + 2 * 20,
            "client {}: 4 local + 2 reflected copies of each of 20 remote blocks:{}",
            ip(me),
            show_all(&all)
        );
    }
    // Each reflector: the direct path from the client is best; the other reflector's
    // reflection (CLUSTER_LIST [its id]) is accepted as a second candidate.
    for (me, idx, other, other_cluster, own_cluster) in
        [(R1, R1_IDX, R2, c2, c1), (R2, R2_IDX, R1, c1, c2)]
    {
        let from_other = sim.adj_rib_in(idx, IpAddr::V4(ip(other)));
        assert_eq!(
            prefixes(&from_other),
            expected,
            "reflector {}: must accept every client block reflected by {} (different cluster):{}",
            ip(me),
            ip(other),
            show_all(&from_other)
        );
        for r in &from_other {
            let o = originator_of(&r.prefix);
            assert_eq!(
                r.cluster_list,
                vec![other_cluster],
                "reflector {}: {}",
                ip(me),
                show(r)
            );
            assert_eq!(
                r.originator_id,
                Some(ip(o)),
                "reflector {}: {}",
                ip(me),
                show(r)
            );
            assert!(
                !r.cluster_list.contains(&own_cluster),
                "reflector {}: own cluster id accepted: {}",
                ip(me),
                show(r)
            );
        }
        for r in &sim.best_routes(idx) {
            let o = originator_of(&r.prefix);
            assert_eq!(
                r.peer,
                Some(IpAddr::V4(ip(o))),
                "reflector {}: best must be the client itself: {}",
                ip(me),
                show(r)
            );
            assert_eq!(
                r.next_hops,
                vec![IpAddr::V4(ip(o))],
                "reflector {}: {}",
                ip(me),
                show(r)
            );
            assert!(
                r.cluster_list.is_empty() && r.originator_id.is_none(),
                "reflector {}: {}",
                ip(me),
                show(r)
            );
        }
        assert_eq!(
            sim.best_routes(idx).len(),
            24,
            "reflector {}: 24 blocks",
            ip(me)
        );
    }
    // RFC 4456 §6: a route from a non-client (the other reflector) goes to clients only, so
    // nothing that already carries a cluster id is ever sent from one reflector to the other.
    for u in sim
        .tap
        .iter()
        .filter(|u| (u.from == R1_IDX && u.to == R2_IDX) || (u.from == R2_IDX && u.to == R1_IDX))
    {
        for (p, _, a) in &u.announced {
            assert_eq!(
                a.cluster_list.len(),
                1,
                "reflector {} sent {} to reflector {} with CLUSTER_LIST {:?}: a non-client route was re-reflected to a non-client",
                sim.addr(u.from),
                p,
                sim.addr(u.to),
                a.cluster_list
            );
        }
    }
}

/// "A reflected route coming back is rejected": client 198.18.0.1 hard-resets its session to
/// R1. While it is down, R1's best path for 198.18.0.1's blocks is R2's reflection, so when the
/// session comes back R1's initial dump hands 198.18.0.1 its own blocks (ORIGINATOR_ID =
/// 198.18.0.1, CLUSTER_LIST [R1, R2]). The client must drop them (RFC 4456 §8).
#[test]
fn rr_own_route_reflected_back_is_rejected() {
    let (c1, c2) = (ip(R1), ip(R2));
    let mut sim = rr_sim(c1, c2);
    let me = CLIENTS[0];
    let t0 = sim.now();
    sim.command(
        0,
        Command::ResetPeer {
            address: IpAddr::V4(ip(R1)),
            soft: false,
        },
    );
    let back = sim.drive_until(Duration::from_secs(300), |s| {
        s.all_established()
            && s.adj_rib_in(R1_IDX, IpAddr::V4(ip(me))).len() == 4
            && s.adj_rib_in(0, IpAddr::V4(ip(R1))).len() == 20
    });
    assert!(
        back.is_some(),
        "session 198.18.0.1–R1 did not come back:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX);

    // The reflection did go out on the wire...
    let own = block(me, 0);
    let sent: Vec<_> = sim
        .announcements(R1_IDX, 0, own)
        .into_iter()
        .filter(|(at, _, _)| *at >= t0)
        .collect();
    assert!(
        !sent.is_empty(),
        "scenario did not exercise the check: R1 never announced {own} back to its originator \
         after the reset (tap from R1 to 198.18.0.1 since {t0:?}: {:?})",
        sim.tap
            .iter()
            .filter(|u| u.from == R1_IDX && u.to == 0 && u.at >= t0)
            .collect::<Vec<_>>()
    );
    for (at, nh, a) in &sent {
        assert_eq!(
            a.originator_id,
            Some(ip(me)),
            "at {at:?}: R1 reflected {own} with ORIGINATOR_ID {:?}",
            a.originator_id
        );
        assert_eq!(
            a.cluster_list,
            vec![c1, c2],
            "at {at:?}: R1 reflected {own} with CLUSTER_LIST {:?}",
            a.cluster_list
        );
        assert_eq!(
            *nh,
            Some(IpAddr::V4(ip(me))),
            "at {at:?}: next hop of the reflection"
        );
    }
    // ...and was dropped: not in the client's Adj-RIB-In, only the local path in its Loc-RIB.
    for p in blocks(me) {
        let from_r1: Vec<RouteView> = sim
            .adj_rib_in(0, IpAddr::V4(ip(R1)))
            .into_iter()
            .filter(|r| r.prefix == p)
            .collect();
        assert!(
            from_r1.is_empty(),
            "client {}: accepted its own {p} back from R1:{}",
            ip(me),
            show_all(&from_r1)
        );
        let cands = sim.routes(0, podbgp::speaker::TableKind::LocRib, None, Some(p));
        assert_eq!(
            cands.len(),
            1,
            "client {}: {p} must have only the local path:{}",
            ip(me),
            show_all(&cands)
        );
        assert_eq!(
            cands[0].peer,
            None,
            "client {}: {p}: {}",
            ip(me),
            show(&cands[0])
        );
    }
    // Once the client re-advertised, R1 prefers the direct path again and withdraws the
    // reflection from the client (never back to the source).
    assert!(
        sim.adj_rib_out(R1_IDX, IpAddr::V4(ip(me)))
            .iter()
            .all(|r| originator_of(&r.prefix) != me),
        "R1 still advertises 198.18.0.1's own blocks to it"
    );
    // No other session was disturbed.
    for i in 0..sim.len() {
        for p in sim.peers(i) {
            let reset_pair = (i == 0 && p.address == IpAddr::V4(ip(R1)))
                || (i == R1_IDX && p.address == IpAddr::V4(ip(me)));
            assert_eq!(
                p.established_transitions,
                if reset_pair { 2 } else { 1 },
                "node {}: session to {} established {} times",
                sim.addr(i),
                p.address,
                p.established_transitions
            );
        }
    }
    // Everything else is back to the converged state.
    let expected = all_client_blocks();
    for i in 0..CLIENTS.len() {
        assert_client_holds_every_block(&sim, i, &expected, &[(R1, c1), (R2, c2)], R1);
    }
}

#[test]
fn rr_shared_cluster_reflectors_drop_each_others_reflections() {
    let c = Ipv4Addr::new(198, 18, 0, 100);
    let sim = rr_sim(c, c);
    let expected = all_client_blocks();
    for i in 0..CLIENTS.len() {
        // Clients still get every block, twice (from R1 and from R2), each CLUSTER_LIST [c].
        assert_client_holds_every_block(&sim, i, &expected, &[(R1, c), (R2, c)], R1);
    }
    for (me, idx, other, other_idx) in [(R1, R1_IDX, R2, R2_IDX), (R2, R2_IDX, R1, R1_IDX)] {
        // The other reflector did reflect every client block to us with CLUSTER_LIST [c]...
        for p in &expected {
            let sent = sim.announcements(other_idx, idx, *p);
            assert!(
                !sent.is_empty(),
                "reflector {} never reflected {p} to reflector {} (RFC 4456 §6: client routes go to non-clients too)",
                ip(other),
                ip(me)
            );
            for (_, _, a) in &sent {
                assert_eq!(a.cluster_list, vec![c], "{} → {}: {p}", ip(other), ip(me));
            }
        }
        // ...and we dropped all of them: our own cluster id is in the CLUSTER_LIST.
        let from_other = sim.adj_rib_in(idx, IpAddr::V4(ip(other)));
        assert!(
            from_other.is_empty(),
            "reflector {}: accepted reflections carrying its own cluster id {c} from {}:{}",
            ip(me),
            ip(other),
            show_all(&from_other)
        );
        // Only the direct path per block.
        let all = sim.loc_rib(idx);
        assert_eq!(
            all.len(),
            24,
            "reflector {}: one candidate per block:{}",
            ip(me),
            show_all(&all)
        );
        // Not re-reflected: everything a reflector sends carries exactly one cluster id.
        for u in sim.tap.iter().filter(|u| u.from == idx) {
            for (p, _, a) in &u.announced {
                assert_eq!(
                    a.cluster_list,
                    vec![c],
                    "reflector {} sent {p} to {} with CLUSTER_LIST {:?}: re-reflection",
                    ip(me),
                    sim.addr(u.to),
                    a.cluster_list
                );
            }
        }
    }
}

fn assert_gone_everywhere(sim: &Sim, p: IpNet) {
    for i in 0..sim.len() {
        if !sim.nodes[i].alive {
            continue;
        }
        let left: Vec<RouteView> = sim
            .loc_rib(i)
            .into_iter()
            .filter(|r| r.prefix == p)
            .collect();
        assert!(
            left.is_empty(),
            "node {}: withdrawn {p} still in Loc-RIB:{}",
            sim.addr(i),
            show_all(&left)
        );
    }
}

#[test]
fn rr_distinct_withdraw_then_reflector_dies() {
    let (c1, c2) = (ip(R1), ip(R2));
    let mut sim = rr_sim_gr(c1, c2, false);
    let gone = block(4, 2);
    sim.withdraw(3, gone); // client 198.18.0.4
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_gone_everywhere(&sim, gone);
    let mut expected = all_client_blocks();
    expected.remove(&gone);
    for i in 0..CLIENTS.len() {
        assert_client_holds_every_block(&sim, i, &expected, &[(R1, c1), (R2, c2)], R1);
    }

    // R1 dies. Every client keeps every block through R2.
    sim.stop(R1_IDX);
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    for (i, &me) in CLIENTS.iter().enumerate() {
        let best = sim.best_routes(i);
        assert_eq!(
            prefixes(&best),
            expected,
            "client {} after R1 died:{}",
            ip(me),
            show_all(&best)
        );
        for r in &best {
            let o = originator_of(&r.prefix);
            if o == me {
                continue;
            }
            assert_eq!(
                r.peer,
                Some(IpAddr::V4(ip(R2))),
                "client {}: must now use R2: {}",
                ip(me),
                show(r)
            );
            assert_eq!(
                r.next_hops,
                vec![IpAddr::V4(ip(o))],
                "client {}: {}",
                ip(me),
                show(r)
            );
            assert_eq!(
                r.originator_id,
                Some(ip(o)),
                "client {}: {}",
                ip(me),
                show(r)
            );
            assert_eq!(r.cluster_list, vec![c2], "client {}: {}", ip(me), show(r));
        }
        let all = sim.loc_rib(i);
        assert_eq!(
            all.len(),
            expected.len(),
            "client {}: one path per block once R1 is gone:{}",
            ip(me),
            show_all(&all)
        );
        assert!(
            sim.adj_rib_in(i, IpAddr::V4(ip(R1))).is_empty(),
            "client {}: routes from dead R1 kept",
            ip(me)
        );
    }
    let r2 = sim.best_routes(R2_IDX);
    assert_eq!(
        prefixes(&r2),
        expected,
        "R2 after R1 died:{}",
        show_all(&r2)
    );

    // A withdrawal still propagates with one reflector.
    let gone2 = block(1, 0);
    sim.withdraw(0, gone2);
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_gone_everywhere(&sim, gone2);
    expected.remove(&gone2);

    // R1 boots again: the clients reconnect (after their idle-hold backoff) and hold both
    // copies once more.
    sim.restart(R1_IDX);
    let t = sim.drive_until(Duration::from_secs(300), |s| {
        s.all_established()
            && (0..CLIENTS.len()).all(|i| !s.adj_rib_in(i, IpAddr::V4(ip(R1))).is_empty())
    });
    assert!(
        t.is_some(),
        "clients did not come back to R1:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_gone_everywhere(&sim, gone);
    assert_gone_everywhere(&sim, gone2);
    for i in 0..CLIENTS.len() {
        assert_client_holds_every_block(&sim, i, &expected, &[(R1, c1), (R2, c2)], R1);
    }
}

#[test]
fn rr_shared_withdraw_removes_the_block_everywhere() {
    let c = Ipv4Addr::new(198, 18, 0, 100);
    let mut sim = rr_sim(c, c);
    let gone = block(6, 3);
    sim.withdraw(5, gone);
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert_gone_everywhere(&sim, gone);
    let mut expected = all_client_blocks();
    expected.remove(&gone);
    for i in 0..CLIENTS.len() {
        assert_client_holds_every_block(&sim, i, &expected, &[(R1, c), (R2, c)], R1);
    }
}

// =====================================================================================
// Split horizon: the harness can tell a route that must not exist
// =====================================================================================

/// A(.1) – B(.2) – C(.3), no A–C session. `b_to_c` is B's role for C.
fn chain(b_to_c: Role) -> Sim {
    let a = node_config(1, None, &[block(1, 0)], &[(2, Role::Mesh)]);
    let b = node_config(2, None, &[], &[(1, Role::Mesh), (3, b_to_c)]);
    let c = node_config(3, None, &[], &[(2, Role::Mesh)]);
    let mut sim = Sim::new(vec![a, b, c]);
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    assert!(sim.all_established(), "chain sessions:\n{}", sim.describe());
    sim
}

fn expect_route(sim: &Sim, i: usize, p: IpNet) -> RouteView {
    sim.best(i, p).unwrap_or_else(|| {
        panic!(
            "node {} has no route to {p}; its Loc-RIB:{}",
            sim.addr(i),
            show_all(&sim.loc_rib(i))
        )
    })
}

#[test]
fn ibgp_split_horizon_non_client_route_not_passed_on() {
    let sim = chain(Role::Mesh);
    let p = block(1, 0);
    let at_b = expect_route(&sim, 1, p);
    assert_eq!(
        at_b.next_hops,
        vec![IpAddr::V4(ip(1))],
        "B: {}",
        show(&at_b)
    );
    assert!(
        sim.best(2, p).is_none() && sim.loc_rib(2).is_empty(),
        "C learned A's block through B although B has no client: {}",
        show_all(&sim.loc_rib(2))
    );
    assert!(
        sim.adj_rib_out(1, IpAddr::V4(ip(3))).is_empty(),
        "B's Adj-RIB-Out toward C must be empty:{}",
        show_all(&sim.adj_rib_out(1, IpAddr::V4(ip(3))))
    );
    assert!(
        sim.announcements(1, 2, p).is_empty(),
        "B announced {p} to C on the wire"
    );
}

#[test]
#[should_panic(expected = "node 198.18.0.3 has no route to 10.244.1.0/26")]
fn harness_can_fail_when_a_forbidden_route_is_expected() {
    let sim = chain(Role::Mesh);
    expect_route(&sim, 2, block(1, 0));
}

/// Control for the split-horizon test: the same chain with C as B's route-reflector client
/// does carry A's block to C, reflected.
#[test]
fn chain_with_client_reflects_to_the_client() {
    let sim = chain(Role::RrClient);
    let p = block(1, 0);
    let r = expect_route(&sim, 2, p);
    assert_eq!(r.peer, Some(IpAddr::V4(ip(2))), "C: {}", show(&r));
    assert_eq!(
        r.next_hops,
        vec![IpAddr::V4(ip(1))],
        "C: next hop stays A: {}",
        show(&r)
    );
    assert_eq!(
        r.originator_id,
        Some(ip(1)),
        "C: ORIGINATOR_ID = A: {}",
        show(&r)
    );
    assert_eq!(
        r.cluster_list,
        vec![ip(2)],
        "C: CLUSTER_LIST = [B's router id]: {}",
        show(&r)
    );
}

/// Graceful restart (RFC 4724) in the mesh: a node that stops keeps its blocks at every peer,
/// marked stale, and comes back without a single best-path change anywhere; a node that stays
/// away loses them when its restart time (120 s) runs out.
#[test]
fn mesh_graceful_restart_keeps_blocks_through_a_restart_and_flushes_after_restart_time() {
    let mut sim = mesh_sim();
    converge_mesh(&mut sim);
    let fwd = |sim: &Sim, i: usize| {
        let mut v: Vec<String> = sim
            .best_routes(i)
            .iter()
            .map(|r| format!("{} via {:?}", r.prefix, r.next_hops))
            .collect();
        v.sort();
        v
    };
    let before: Vec<_> = (0..4).map(|i| fwd(&sim, i)).collect();
    sim.stop(4); // 198.18.0.5
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    for i in 0..4 {
        assert_eq!(
            fwd(&sim, i),
            before[i],
            "node {}: routes changed while 198.18.0.5 restarts",
            sim.addr(i)
        );
    }
    sim.restart(4);
    let t = sim.drive_until(Duration::from_secs(100), |s| {
        s.all_established() && s.best_routes(4).len() == 20
    });
    assert!(
        t.is_some(),
        "198.18.0.5 did not come back:\n{}",
        sim.describe()
    );
    sim.settle(SETTLE_QUIET, SETTLE_MAX);
    for i in 0..4 {
        assert_eq!(fwd(&sim, i), before[i], "node {}", sim.addr(i));
    }

    // Gone for good: the blocks go 120 s (its restart time) after it stopped.
    let t_stop = sim.now();
    sim.stop(4);
    let gone = sim.drive_until(Duration::from_secs(300), |s| {
        (0..4).all(|i| s.best_routes(i).len() == 16)
    });
    let after = gone.expect("stale blocks never flushed") - t_stop;
    assert!(
        after >= Duration::from_secs(120) && after <= Duration::from_secs(125),
        "stale blocks flushed after {after:?} (restart time 120 s)"
    );
}
