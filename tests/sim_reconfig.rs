//! Live reconfiguration (`Speaker::apply_config`) on the in-memory harness (`tests/sim`): a
//! reload touches exactly the sessions and prefixes it changes. Three iBGP speakers A, B, C
//! (198.18.0.1-3) in a full mesh, each originating one block; D (198.18.0.4) joins later.
//!
//! "Untouched" is checked three ways for every other session: its `since` did not move, its
//! `established_transitions` did not grow, and no NOTIFICATION crossed it.

mod sim;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use podbgp::config::{Apply, PeerField, SpeakerConfig, SpeakerField, parse_yaml};
use podbgp::session::State;
use podbgp::speaker::PeerView;
use sim::{Sim, TapNotification};

const AS: u32 = 64512;
const A: usize = 0;
const B: usize = 1;
const C: usize = 2;

fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
}

fn block(node: u8, k: u8) -> IpNet {
    format!("10.244.{node}.{}/26", 64 * k).parse().unwrap()
}

/// Node `me`'s configuration: AS 64512, one block originated, Calico's passive rule (passive
/// toward lower addresses).
fn config(me: u8, neighbors: &[u8]) -> SpeakerConfig {
    let mut y = String::new();
    let _ = writeln!(y, "local_as: {AS}\nrouter_id: {}", ip(me));
    let _ = writeln!(y, "listen: {{ address: \"{}\", port: 179 }}", ip(me));
    let _ = writeln!(y, "next_hop_ipv4: {}", ip(me));
    let _ = writeln!(y, "originate: [\"{}\"]\nneighbors:", block(me, 0));
    for &n in neighbors {
        let _ = writeln!(
            y,
            "  - {{ address: {}, remote_as: {AS}, passive: {} }}",
            ip(n),
            n < me
        );
    }
    parse_yaml(&y).unwrap_or_else(|e| panic!("bad config for {}: {e}\n{y}", ip(me)))
}

fn mesh() -> Sim {
    let mut sim = Sim::new(vec![
        config(1, &[2, 3]),
        config(2, &[1, 3]),
        config(3, &[1, 2]),
    ]);
    let t = sim.drive_until(Duration::from_secs(60), |s| {
        s.all_established() && (0..3).all(|i| s.best_routes(i).len() == 3)
    });
    assert!(t.is_some(), "mesh did not converge:\n{}", sim.describe());
    sim.drive();
    sim
}

fn peer(sim: &Sim, i: usize, addr: IpAddr) -> PeerView {
    sim.peers(i)
        .into_iter()
        .find(|p| p.address == addr)
        .unwrap_or_else(|| panic!("node {i} has no peer {addr}:\n{}", sim.describe()))
}

/// (since, established transitions) of every session in the sim, for "untouched" checks.
type Snapshot = Vec<(usize, IpAddr, State, std::time::Instant, u64)>;

fn snapshot(sim: &Sim) -> Snapshot {
    let mut v = Vec::new();
    for i in 0..sim.len() {
        for p in sim.peers(i) {
            v.push((i, p.address, p.state, p.since, p.established_transitions));
        }
    }
    v
}

/// Asserts that every session in `before` except those between the listed node pairs is
/// unchanged, and that no NOTIFICATION crossed it after `t0`.
#[track_caller]
fn assert_untouched(sim: &Sim, before: &Snapshot, t0: Duration, except: &[(usize, usize)]) {
    let excepted = |i: usize, addr: IpAddr| {
        let j = sim.index_of(addr);
        except
            .iter()
            .any(|&(x, y)| (Some(x) == j && y == i) || (Some(y) == j && x == i))
    };
    for &(i, addr, state, since, transitions) in before {
        if excepted(i, addr) {
            continue;
        }
        let now = peer(sim, i, addr);
        assert_eq!(
            (now.state, now.since, now.established_transitions),
            (state, since, transitions),
            "node {i}: session with {addr} was disturbed\n{}",
            sim.describe()
        );
    }
    let stray: Vec<&TapNotification> = sim
        .notifications
        .iter()
        .filter(|n| n.at >= t0 && !excepted(n.from, sim.addr(n.to)))
        .collect();
    assert!(
        stray.is_empty(),
        "NOTIFICATIONs on untouched sessions: {stray:?}"
    );
}

fn notifications_between(sim: &Sim, from: usize, to: usize, t0: Duration) -> Vec<(u8, u8)> {
    sim.notifications
        .iter()
        .filter(|n| n.at >= t0 && n.from == from && n.to == to)
        .map(|n| n.effective())
        .collect()
}

#[test]
fn adding_a_peer_brings_up_exactly_one_new_session() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    // D peers back with A only (passive toward A, the lower address: A connects).
    let d = sim.add_node(config(4, &[1]));
    sim.run_idle();
    let t0 = sim.now();
    let diff = sim.apply_config(A, config(1, &[2, 3, 4]));
    assert_eq!(diff.peers_added, vec![ip(4)]);
    assert!(
        diff.peers_removed.is_empty() && diff.peers_changed.is_empty() && diff.speaker.is_empty()
    );

    let up = sim.drive_until(Duration::from_secs(30), |s| {
        peer(s, A, ip(4)).state == State::Established && s.best_routes(d).len() == 2
    });
    assert!(up.is_some(), "A-D did not come up:\n{}", sim.describe());
    sim.drive();
    assert_untouched(&sim, &before, t0, &[]);
    assert_eq!(peer(&sim, A, ip(4)).established_transitions, 1);
    assert_eq!(peer(&sim, d, ip(1)).established_transitions, 1);
    assert_eq!(sim.accepted(d), 1, "exactly one connection to D");
    assert_eq!(sim.peers(A).len(), 3);
    // D learns A's block; A learns D's; B and C do not (A does not reflect iBGP routes).
    assert!(sim.best(d, block(1, 0)).is_some());
    assert_eq!(sim.best(A, block(4, 0)).and_then(|r| r.peer), Some(ip(4)));
    assert!(sim.best(B, block(4, 0)).is_none() && sim.best(C, block(4, 0)).is_none());
    // A's event stream after the reload mentions only D.
    let other_events = sim.nodes[A]
        .events
        .iter()
        .filter(|(at, _)| *at >= t0)
        .filter(|(_, e)| {
            matches!(e, podbgp::speaker::SpeakerEvent::PeerState { address, .. } if *address != ip(4))
        })
        .count();
    assert_eq!(other_events, 0);
}

#[test]
fn removing_a_peer_sends_cease_peer_deconfigured_and_withdraws_its_routes() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    let t0 = sim.now();
    let diff = sim.apply_config(A, config(1, &[2]));
    assert_eq!(diff.peers_removed, vec![ip(3)]);
    assert!(diff.peers_added.is_empty() && diff.peers_changed.is_empty());
    sim.drive();

    assert_eq!(
        notifications_between(&sim, A, C, t0),
        vec![(6, 3)],
        "C gets Cease / Peer De-configured (RFC 4486)"
    );
    let at_c = peer(&sim, C, ip(1));
    assert_ne!(at_c.state, State::Established);
    assert!(
        at_c.last_error
            .as_deref()
            .is_some_and(|e| e.contains("6/3") || e.contains("6/9")),
        "C saw {:?}",
        at_c.last_error
    );
    // Gone from A's status; C's block withdrawn at A; B untouched and still has it from C.
    assert_eq!(
        sim.peers(A).iter().map(|p| p.address).collect::<Vec<_>>(),
        vec![ip(2)]
    );
    assert!(
        sim.best(A, block(3, 0)).is_none(),
        "A still routes C's block"
    );
    assert_eq!(sim.best(B, block(3, 0)).and_then(|r| r.peer), Some(ip(3)));
    assert!(
        sim.best(C, block(1, 0)).is_none(),
        "C still routes A's block"
    );
    assert!(
        sim.tap
            .iter()
            .all(|u| u.at < t0 || u.from != A || u.to != B),
        "A sent B an UPDATE"
    );
    assert_untouched(&sim, &before, t0, &[(A, C)]);
    // C keeps trying (it is passive toward A; A refuses anyway): nothing comes back up.
    sim.drive_for(Duration::from_secs(120));
    assert_eq!(sim.peers(A).len(), 1);
    assert_ne!(peer(&sim, C, ip(1)).state, State::Established);
}

#[test]
fn hold_time_change_resets_only_that_session_with_cease_other_configuration_change() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    let t0 = sim.now();
    let mut cfg = config(1, &[2, 3]);
    cfg.neighbors[0].hold_time = 30;
    let diff = sim.apply_config(A, cfg);
    assert_eq!(diff.peers_changed.len(), 1);
    assert_eq!(diff.peers_changed[0].address, ip(2));
    assert_eq!(diff.peers_changed[0].fields, vec![PeerField::HoldTime]);
    assert_eq!(diff.peers_changed[0].apply(), Apply::Reset);

    let up = sim.drive_until(Duration::from_secs(120), |s| {
        let p = peer(s, A, ip(2));
        p.state == State::Established && p.established_transitions == 2
    });
    assert!(up.is_some(), "A-B did not come back:\n{}", sim.describe());
    sim.drive();
    let sent = notifications_between(&sim, A, B, t0);
    assert_eq!(sent.first(), Some(&(6, 6)), "A→B: {sent:?}");
    assert_eq!(
        peer(&sim, A, ip(2)).hold_time,
        30,
        "the new hold time is negotiated"
    );
    assert_eq!(peer(&sim, B, ip(1)).hold_time, 30);
    assert_untouched(&sim, &before, t0, &[(A, B)]);
    assert_eq!(sim.best_routes(A).len(), 3);
    assert_eq!(sim.best_routes(B).len(), 3);
}

#[test]
fn description_change_is_applied_in_place() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    let t0 = sim.now();
    let mut cfg = config(1, &[2, 3]);
    cfg.neighbors[1].description = Some("rack 7".into());
    let diff = sim.apply_config(A, cfg);
    assert_eq!(diff.peers_changed[0].fields, vec![PeerField::Description]);
    sim.drive();
    assert_untouched(&sim, &before, t0, &[]);
    assert_eq!(peer(&sim, A, ip(3)).description.as_deref(), Some("rack 7"));
    assert!(sim.tap.iter().all(|u| u.at < t0), "no UPDATE was sent");
}

#[test]
fn passive_change_on_an_established_session_is_not_a_reset() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    let t0 = sim.now();
    let mut cfg = config(1, &[2, 3]);
    cfg.neighbors[0].passive = true;
    let diff = sim.apply_config(A, cfg);
    assert_eq!(diff.peers_changed[0].apply(), Apply::NextConnection);
    sim.drive();
    assert_untouched(&sim, &before, t0, &[]);
    assert!(peer(&sim, A, ip(2)).passive);
}

#[test]
fn originate_change_announces_and_withdraws_only_the_difference() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    let t0 = sim.now();
    let mut cfg = config(1, &[2, 3]);
    cfg.originate = vec![block(1, 1)];
    let diff = sim.apply_config(A, cfg);
    assert_eq!(diff.originate_added, vec![block(1, 1)]);
    assert_eq!(diff.originate_removed, vec![block(1, 0)]);
    sim.drive();
    assert_untouched(&sim, &before, t0, &[]);
    for to in [B, C] {
        let updates: Vec<_> = sim
            .tap
            .iter()
            .filter(|u| u.at >= t0 && u.from == A && u.to == to)
            .collect();
        let announced: Vec<IpNet> = updates
            .iter()
            .flat_map(|u| u.announced.iter().map(|a| a.0))
            .collect();
        let withdrawn: Vec<IpNet> = updates.iter().flat_map(|u| u.withdrawn.clone()).collect();
        assert_eq!(announced, vec![block(1, 1)], "A→{to}");
        assert_eq!(withdrawn, vec![block(1, 0)], "A→{to}");
        assert!(sim.best(to, block(1, 0)).is_none());
        assert_eq!(sim.best(to, block(1, 1)).and_then(|r| r.peer), Some(ip(1)));
    }
    assert!(
        sim.tap.iter().all(|u| u.at < t0 || u.from == A),
        "only A sent UPDATEs"
    );
}

#[test]
fn router_id_change_resets_every_session() {
    let mut sim = mesh();
    let before = snapshot(&sim);
    let t0 = sim.now();
    let mut cfg = config(1, &[2, 3]);
    let new_id = Ipv4Addr::new(198, 18, 0, 101);
    cfg.router_id = new_id;
    cfg.cluster_id = new_id;
    let diff = sim.apply_config(A, cfg);
    assert_eq!(
        diff.speaker,
        vec![SpeakerField::RouterId, SpeakerField::ClusterId]
    );
    assert!(diff.resets_all());
    let up = sim.drive_until(Duration::from_secs(120), |s| {
        s.peers(A)
            .iter()
            .all(|p| p.state == State::Established && p.established_transitions == 2)
            && (0..3).all(|i| s.best_routes(i).len() == 3)
    });
    assert!(
        up.is_some(),
        "A's sessions did not come back:\n{}",
        sim.describe()
    );
    sim.drive();
    for to in [B, C] {
        let sent = notifications_between(&sim, A, to, t0);
        assert_eq!(sent.first(), Some(&(6, 6)), "A→{to}: {sent:?}");
        assert_eq!(peer(&sim, to, ip(1)).remote_id, Some(new_id));
    }
    assert_untouched(&sim, &before, t0, &[(A, B), (A, C)]);
}

#[test]
fn remove_then_re_add_reuses_the_slot_and_comes_back() {
    let mut sim = mesh();
    let t0 = sim.now();
    sim.apply_config(A, config(1, &[2]));
    sim.drive();
    let before = snapshot(&sim);
    let t1 = sim.now();
    let diff = sim.apply_config(A, config(1, &[2, 3]));
    assert_eq!(diff.peers_added, vec![ip(3)]);
    let up = sim.drive_until(Duration::from_secs(120), |s| {
        s.all_established() && (0..3).all(|i| s.best_routes(i).len() == 3)
    });
    assert!(up.is_some(), "C did not come back:\n{}", sim.describe());
    sim.drive();
    assert_eq!(
        peer(&sim, A, ip(3)).established_transitions,
        1,
        "a new session"
    );
    assert_untouched(&sim, &before, t1, &[(A, C)]);
    assert_eq!(notifications_between(&sim, A, C, t0).first(), Some(&(6, 3)));
}
