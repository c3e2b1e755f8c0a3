//! Calico's export policy (`calico::CalicoPolicy`, calico-bgp.md §2.3) on the in-memory
//! harness (`tests/sim`).
//!
//! Topology: N (198.18.0.1, AS 64512) has an eBGP session with a "ToR" T (198.18.0.254,
//! AS 65000) and mesh sessions with M2 and M3 (198.18.0.2-3), which also peer with each other.
//! Each Calico node originates one block 10.244.<node>.0/26. T announces a default route, a
//! route inside the pool, one outside every pool, and one inside a `disableBGPExport` pool.
//! Only N runs the Calico policy (M2/M3 learn nothing they could pass on: iBGP split horizon).

mod sim;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use podbgp::calico::CalicoPolicy;
use podbgp::config::{SpeakerConfig, parse_yaml};
use podbgp::rib::Policy;
use sim::Sim;

const AS: u32 = 64512;
const TOR_AS: u32 = 65000;
const N: usize = 0;
const M2: usize = 1;
const M3: usize = 2;
const T: usize = 3;
const TOR_IP: u8 = 254;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn block(node: u8) -> IpNet {
    net(&format!("10.244.{node}.0/26"))
}

const DEFAULT: &str = "0.0.0.0/0";
const IN_POOL: &str = "10.244.5.0/26";
const OUTSIDE: &str = "192.0.2.0/24";
const NO_EXPORT: &str = "10.245.1.0/24";

const POOL: &str = "10.244.0.0/16";
const NO_EXPORT_POOL: &str = "10.245.0.0/16";

fn config(me: u8, asn: u32, originate: &[IpNet], neighbors: &[(u8, u32)]) -> SpeakerConfig {
    let mut y = String::new();
    let _ = writeln!(y, "local_as: {asn}\nrouter_id: {}", ip(me));
    let _ = writeln!(y, "listen: {{ address: \"{}\", port: 179 }}", ip(me));
    let _ = writeln!(y, "next_hop_ipv4: {}", ip(me));
    let list: Vec<String> = originate.iter().map(|p| format!("\"{p}\"")).collect();
    let _ = writeln!(y, "originate: [{}]\nneighbors:", list.join(", "));
    for &(n, remote_as) in neighbors {
        let _ = writeln!(
            y,
            "  - {{ address: {}, remote_as: {remote_as}, passive: {} }}",
            ip(n),
            n < me
        );
    }
    parse_yaml(&y).unwrap_or_else(|e| panic!("bad config for {}: {e}\n{y}", ip(me)))
}

fn policy(pools: &[(&str, bool)]) -> Arc<dyn Policy> {
    Arc::new(CalicoPolicy::new(pools.iter().map(|&(c, e)| (net(c), e))))
}

/// The four speakers, N's policy installed before anything is delivered (as
/// `Driver::with_policy` does), converged.
fn topology(n_policy: Option<Arc<dyn Policy>>) -> Sim {
    let tor_routes: Vec<IpNet> = [DEFAULT, IN_POOL, OUTSIDE, NO_EXPORT]
        .iter()
        .map(|s| net(s))
        .collect();
    let mut sim = Sim::new(vec![
        config(1, AS, &[block(1)], &[(2, AS), (3, AS), (TOR_IP, TOR_AS)]),
        config(2, AS, &[block(2)], &[(1, AS), (3, AS)]),
        config(3, AS, &[block(3)], &[(1, AS), (2, AS)]),
        config(TOR_IP, TOR_AS, &tor_routes, &[(1, AS)]),
    ]);
    if let Some(p) = n_policy {
        sim.nodes[N].speaker.set_policy(p);
    }
    let t = sim.drive_until(Duration::from_secs(60), |s| {
        s.all_established() && s.best_routes(N).len() == 7
    });
    assert!(t.is_some(), "did not converge:\n{}", sim.describe());
    sim.drive();
    sim
}

fn best_prefixes(sim: &Sim, i: usize) -> BTreeSet<IpNet> {
    sim.best_routes(i).iter().map(|r| r.prefix).collect()
}

fn out_prefixes(sim: &Sim, i: usize, to: usize) -> BTreeSet<IpNet> {
    sim.adj_rib_out(i, sim.addr(to))
        .iter()
        .map(|r| r.prefix)
        .collect()
}

fn set(ps: &[IpNet]) -> BTreeSet<IpNet> {
    ps.iter().copied().collect()
}

/// Every prefix N ever announced on the wire to node `to`.
fn ever_announced(sim: &Sim, to: usize) -> BTreeSet<IpNet> {
    sim.tap
        .iter()
        .filter(|u| u.from == N && u.to == to)
        .flat_map(|u| u.announced.iter().map(|(p, _, _)| *p))
        .collect()
}

/// (state, since, established transitions) of every session, for "no reset" checks.
type Snapshot = Vec<(usize, IpAddr, String, std::time::Instant, u64)>;

fn snapshot(sim: &Sim) -> Snapshot {
    let mut v = Vec::new();
    for i in 0..sim.len() {
        for p in sim.peers(i) {
            let state = p.state.to_string();
            v.push((i, p.address, state, p.since, p.established_transitions));
        }
    }
    v
}

#[test]
fn tor_routes_outside_pools_are_never_passed_to_the_mesh() {
    let pools = [(POOL, true), (NO_EXPORT_POOL, false)];
    let sim = topology(Some(policy(&pools)));
    let tor = [DEFAULT, IN_POOL, OUTSIDE, NO_EXPORT].map(net);

    // Import is accept-all: N holds everything the ToR sent.
    let at_n = best_prefixes(&sim, N);
    for p in &tor {
        assert!(at_n.contains(p), "N lacks {p}: {at_n:?}");
    }

    // The mesh gets the pool route only, and never saw the others on the wire, not even
    // before the first decision run.
    let mesh_want = set(&[block(1), block(2), block(3), net(IN_POOL)]);
    for m in [M2, M3] {
        assert_eq!(
            best_prefixes(&sim, m),
            mesh_want,
            "node {m}:\n{}",
            sim.describe()
        );
        assert_eq!(
            out_prefixes(&sim, N, m),
            set(&[block(1), net(IN_POOL)]),
            "N's Adj-RIB-Out toward node {m}"
        );
        assert_eq!(
            ever_announced(&sim, m),
            set(&[block(1), net(IN_POOL)]),
            "what N ever announced to node {m}"
        );
        let r = sim.best(m, net(IN_POOL)).unwrap();
        assert_eq!(r.peer, Some(ip(1)), "learned from N");
    }

    // Toward the ToR: every pool route N knows (its own block and the mesh's, next hop self),
    // nothing back that came from the ToR.
    assert_eq!(
        out_prefixes(&sim, N, T),
        set(&[block(1), block(2), block(3)]),
        "N's Adj-RIB-Out toward the ToR"
    );
    assert_eq!(
        best_prefixes(&sim, T),
        set(&[block(1), block(2), block(3)])
            .union(&set(&tor))
            .copied()
            .collect(),
    );
}

/// Control: with the default accept-all policy the same topology does leak the ToR's routes
/// into the mesh, so the test above shows the policy at work.
#[test]
fn without_the_policy_the_tor_routes_leak() {
    let sim = topology(None);
    let at_m2 = best_prefixes(&sim, M2);
    for p in [DEFAULT, OUTSIDE, NO_EXPORT] {
        assert!(at_m2.contains(&net(p)), "M2 lacks {p}: {at_m2:?}");
    }
}

#[test]
fn policy_change_applies_live_without_session_reset() {
    let sim_pools = [(POOL, true), (NO_EXPORT_POOL, false)];
    let mut sim = topology(Some(policy(&sim_pools)));
    let before = snapshot(&sim);
    let t0 = sim.now();
    let updates_before = sim.tap.len();

    // A pool covering 192.0.2.0/24 appears: the ToR's route there is exported, nothing else.
    let added = [
        (POOL, true),
        (NO_EXPORT_POOL, false),
        ("192.0.2.0/24", true),
    ];
    sim.nodes[N].speaker.set_policy(policy(&added));
    sim.run_idle();
    for m in [M2, M3] {
        assert_eq!(
            best_prefixes(&sim, m),
            set(&[block(1), block(2), block(3), net(IN_POOL), net(OUTSIDE)]),
            "node {m} after the pool was added:\n{}",
            sim.describe()
        );
    }
    let sent: Vec<_> = sim.tap[updates_before..].iter().collect();
    assert!(
        sent.iter().all(|u| u.from == N
            && u.withdrawn.is_empty()
            && u.announced.iter().all(|(p, _, _)| *p == net(OUTSIDE))),
        "only the newly covered prefix is announced, only by N: {sent:?}"
    );
    assert_eq!(sent.len(), 2, "one UPDATE to each mesh peer: {sent:?}");

    // A disableBGPExport pool nested in the exportable one (longest match): the ToR's
    // 10.244.5.0/26 is withdrawn from the mesh; N's own block (10.244.1.0/26, outside it) and
    // the other pool routes stay.
    let updates_before = sim.tap.len();
    let nested = [
        (POOL, true),
        (NO_EXPORT_POOL, false),
        ("192.0.2.0/24", true),
        ("10.244.4.0/22", false),
    ];
    sim.nodes[N].speaker.set_policy(policy(&nested));
    sim.run_idle();
    for m in [M2, M3] {
        assert_eq!(
            best_prefixes(&sim, m),
            set(&[block(1), block(2), block(3), net(OUTSIDE)]),
            "node {m} after the nested disableBGPExport pool:\n{}",
            sim.describe()
        );
    }
    let sent: Vec<_> = sim.tap[updates_before..].iter().collect();
    assert!(
        sent.iter()
            .all(|u| u.from == N && u.announced.is_empty() && u.withdrawn == [net(IN_POOL)]),
        "only 10.244.5.0/26 is withdrawn: {sent:?}"
    );
    assert_eq!(sent.len(), 2, "one withdrawal to each mesh peer: {sent:?}");
    assert_eq!(
        out_prefixes(&sim, N, T),
        set(&[block(1), block(2), block(3)]),
        "the ToR session is unaffected"
    );

    // Nothing was reset: same sessions, no NOTIFICATION, and time went on normally.
    sim.drive_for(Duration::from_secs(300));
    assert_eq!(snapshot(&sim), before, "a session was disturbed");
    assert!(
        sim.notifications.iter().all(|n| n.at < t0),
        "NOTIFICATIONs after the policy change: {:?}",
        sim.notifications
    );
    assert_eq!(
        best_prefixes(&sim, M2),
        set(&[block(1), block(2), block(3), net(OUTSIDE)])
    );
}
