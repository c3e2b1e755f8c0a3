//! The metrics podbgp exports, built at scrape time from the views the speaker answers for the
//! API (pull: no second set of counters is kept anywhere). The names are documented in the
//! README ("Metrics and HTTP probes"); every family is prefixed `podbgp_`.

use crate::datastore::FollowerStats;
use crate::session::State;
use crate::speaker::{PeerView, SpeakerView};

use super::text::{Exposition, Kind};

/// What one scrape reads.
#[derive(Clone, Debug)]
pub struct Snapshot<'a> {
    pub speaker: &'a SpeakerView,
    pub peers: &'a [PeerView],
    /// `None` when the daemon runs from a configuration file (no datastore).
    pub datastore: Option<&'a FollowerStats>,
    /// When the speaker started, Unix seconds.
    pub started_unix: i64,
}

const STATES: [State; 6] = [
    State::Idle,
    State::Connect,
    State::Active,
    State::OpenSent,
    State::OpenConfirm,
    State::Established,
];

/// The `state` label value: snake_case like the CLI's JSON.
fn state_label(s: State) -> &'static str {
    match s {
        State::Idle => "idle",
        State::Connect => "connect",
        State::Active => "active",
        State::OpenSent => "open_sent",
        State::OpenConfirm => "open_confirm",
        State::Established => "established",
    }
}

/// The exposition text of one scrape.
pub fn render(s: &Snapshot<'_>) -> String {
    let mut e = Exposition::new();
    let v = s.speaker;
    let version = env!("CARGO_PKG_VERSION");
    let router_id = v.router_id.to_string();
    let local_as = v.local_as.to_string();
    e.family(
        "podbgp_info",
        Kind::Gauge,
        "Constant 1, labelled with the daemon's version, router id and local AS.",
    )
    .sample(
        &[
            ("version", version),
            ("router_id", &router_id),
            ("local_as", &local_as),
        ],
        1,
    );
    e.single(
        "podbgp_start_time_seconds",
        Kind::Gauge,
        "When the speaker started, Unix seconds.",
        s.started_unix,
    );

    // Sessions by state: every state, zeros included, so a state that empties reads 0.
    e.family(
        "podbgp_sessions",
        Kind::Gauge,
        "BGP sessions (configured peers) by RFC 4271 session state.",
    );
    for st in STATES {
        let n = s.peers.iter().filter(|p| p.state == st).count();
        e.sample(&[("state", state_label(st))], n);
    }
    e.single(
        "podbgp_loc_rib_prefixes",
        Kind::Gauge,
        "Prefixes in the Loc-RIB (with at least one path).",
        v.loc_rib_prefixes,
    );
    e.single(
        "podbgp_decision_runs_total",
        Kind::Counter,
        "Runs of the BGP decision process.",
        v.decision_runs,
    );
    e.single(
        "podbgp_updates_received_total",
        Kind::Counter,
        "UPDATE messages received, all peers.",
        v.updates_received,
    );
    e.single(
        "podbgp_updates_sent_total",
        Kind::Counter,
        "UPDATE messages sent, all peers.",
        v.updates_sent,
    );

    peer_metrics(&mut e, s.peers);

    if let Some(f) = &v.fib {
        e.single(
            "podbgp_fib_routes",
            Kind::Gauge,
            "Kernel routes podbgp installed (its protocol, its table).",
            f.installed,
        );
        e.single(
            "podbgp_fib_foreign_prefixes",
            Kind::Gauge,
            "Prefixes podbgp wants to install but another protocol's route holds (left untouched).",
            f.foreign,
        );
        e.family(
            "podbgp_fib_operations_total",
            Kind::Counter,
            "Kernel route operations that succeeded, by kind.",
        )
        .sample(&[("op", "add")], f.adds)
        .sample(&[("op", "replace")], f.replaces)
        .sample(&[("op", "delete")], f.deletes);
        e.single(
            "podbgp_fib_failures_total",
            Kind::Counter,
            "Kernel route operations that failed.",
            f.failures,
        );
        e.single(
            "podbgp_fib_repairs_total",
            Kind::Counter,
            "Kernel routes of podbgp's put back after someone else deleted or changed them.",
            f.repairs,
        );
        e.single(
            "podbgp_fib_swept_total",
            Kind::Counter,
            "Stale kernel routes (found at start, unclaimed) deleted after initial convergence.",
            f.swept,
        );
        e.single(
            "podbgp_fib_batches_total",
            Kind::Counter,
            "Batches of route operations handed to the kernel.",
            f.batches,
        );
    }

    if let Some(d) = s.datastore {
        e.single(
            "podbgp_datastore_events_total",
            Kind::Counter,
            "Datastore events applied to the cluster view (snapshots, change batches, problems).",
            d.events,
        );
        e.single(
            "podbgp_datastore_errors_total",
            Kind::Counter,
            "Datastore problems and failed derivations (the last good configuration stays in force).",
            d.errors,
        );
        e.single(
            "podbgp_datastore_derivations_total",
            Kind::Counter,
            "Derivations of this node's configuration from the cluster view.",
            d.derivations,
        );
        e.single(
            "podbgp_datastore_configs_published_total",
            Kind::Counter,
            "Derived configurations that differed from the previous one and were applied.",
            d.published,
        );
    }
    e.finish()
}

fn peer_metrics(e: &mut Exposition, peers: &[PeerView]) {
    let mut peers: Vec<&PeerView> = peers.iter().collect();
    peers.sort_by_key(|p| p.address);
    let addrs: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
    let each = |e: &mut Exposition, value: &dyn Fn(&PeerView) -> u64| {
        for (p, a) in peers.iter().zip(&addrs) {
            e.sample(&[("peer", a)], value(p));
        }
    };
    e.family(
        "podbgp_peer_established",
        Kind::Gauge,
        "1 when the session to the peer is Established, else 0.",
    );
    each(e, &|p| u64::from(p.state == State::Established));

    type Prefixes = fn(&crate::speaker::FamilyCounters) -> u64;
    let prefix_families: [(&'static str, &str, Prefixes); 3] = [
        (
            "podbgp_peer_prefixes_received",
            "Prefixes held from the peer (Adj-RIB-In), per address family.",
            |f| f.received,
        ),
        (
            "podbgp_peer_prefixes_accepted",
            "Prefixes from the peer accepted by import policy, per address family.",
            |f| f.accepted,
        ),
        (
            "podbgp_peer_prefixes_advertised",
            "Prefixes advertised to the peer (Adj-RIB-Out), per address family.",
            |f| f.advertised,
        ),
    ];
    for (name, help, value) in prefix_families {
        e.family(name, Kind::Gauge, help);
        for (p, a) in peers.iter().zip(&addrs) {
            for f in &p.families {
                let family = f.family.to_string();
                e.sample(&[("peer", a), ("family", &family)], value(f));
            }
        }
    }

    type Counter = fn(&PeerView) -> u64;
    let counters: [(&'static str, &str, Counter); 5] = [
        (
            "podbgp_peer_updates_received_total",
            "UPDATE messages received from the peer.",
            |p| p.updates_received,
        ),
        (
            "podbgp_peer_updates_sent_total",
            "UPDATE messages sent to the peer.",
            |p| p.updates_sent,
        ),
        (
            "podbgp_peer_messages_received_total",
            "BGP messages of any type received from the peer.",
            |p| p.messages_received,
        ),
        (
            "podbgp_peer_messages_sent_total",
            "BGP messages of any type sent to the peer.",
            |p| p.messages_sent,
        ),
        (
            "podbgp_peer_established_transitions_total",
            "Times the session to the peer reached Established.",
            |p| p.established_transitions,
        ),
    ];
    for (name, help, value) in counters {
        e.family(name, Kind::Counter, help);
        each(e, &value);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::{PeerOrigin, PeerRole};
    use crate::speaker::{FamilyCounters, FibCounters};
    use crate::wire::Family;

    fn speaker(fib: Option<FibCounters>) -> SpeakerView {
        SpeakerView {
            local_as: 64512,
            router_id: "198.18.0.11".parse().unwrap(),
            listen: None,
            started: Instant::now(),
            peers_configured: 2,
            peers_established: 1,
            loc_rib_prefixes: 5,
            decision_runs: 7,
            updates_received: 8,
            updates_sent: 9,
            fib,
        }
    }

    fn peer(addr: &str, state: State) -> PeerView {
        PeerView {
            address: addr.parse().unwrap(),
            port: 179,
            remote_as: 65001,
            local_as: 64512,
            role: PeerRole::Ebgp,
            origin: PeerOrigin::Global,
            state,
            since: Instant::now(),
            info: String::new(),
            remote_id: None,
            hold_time: 0,
            keepalive: 0,
            families: vec![FamilyCounters {
                family: Family::IPV4_UNICAST,
                received: 4,
                accepted: 3,
                advertised: 1,
            }],
            updates_received: 6,
            updates_sent: 2,
            messages_received: 20,
            messages_sent: 21,
            last_error: None,
            passive: false,
            description: None,
            established_transitions: 1,
        }
    }

    /// Every sample line of `text` for exactly this metric and label set.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn every_family_has_help_and_type_and_values_come_from_the_views() {
        let peers = [
            peer("198.18.0.2", State::Active),
            peer("198.18.0.1", State::Established),
        ];
        let fib = FibCounters {
            installed: 3,
            adds: 4,
            replaces: 1,
            deletes: 2,
            repairs: 1,
            ..FibCounters::default()
        };
        let ds = FollowerStats {
            events: 3,
            errors: 1,
            derivations: 2,
            published: 1,
        };
        let sp = speaker(Some(fib));
        let text = render(&Snapshot {
            speaker: &sp,
            peers: &peers,
            datastore: Some(&ds),
            started_unix: 1_700_000_000,
        });
        let mut families = 0;
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                families += 1;
                let name = rest.split(' ').next().unwrap();
                assert!(name.starts_with("podbgp_"), "{name}");
                assert!(
                    text.contains(&format!("# HELP {name} ")),
                    "{name} has no HELP"
                );
                if name.ends_with("_total") {
                    assert!(rest.ends_with(" counter"), "{l}");
                }
            }
        }
        assert_eq!(families, 27);
        let v = |s: &str| value(&text, s).unwrap_or_else(|| panic!("no {s} in\n{text}"));
        assert_eq!(v(r#"podbgp_sessions{state="established"}"#), "1");
        assert_eq!(v(r#"podbgp_sessions{state="active"}"#), "1");
        assert_eq!(v(r#"podbgp_sessions{state="idle"}"#), "0");
        assert_eq!(
            v(r#"podbgp_peer_prefixes_received{peer="198.18.0.1",family="ipv4-unicast"}"#),
            "4"
        );
        assert_eq!(
            v(r#"podbgp_peer_prefixes_accepted{peer="198.18.0.1",family="ipv4-unicast"}"#),
            "3"
        );
        assert_eq!(v(r#"podbgp_peer_established{peer="198.18.0.2"}"#), "0");
        assert_eq!(
            v(r#"podbgp_peer_updates_received_total{peer="198.18.0.1"}"#),
            "6"
        );
        assert_eq!(v("podbgp_loc_rib_prefixes"), "5");
        assert_eq!(v("podbgp_decision_runs_total"), "7");
        assert_eq!(v(r#"podbgp_fib_operations_total{op="delete"}"#), "2");
        assert_eq!(v("podbgp_fib_routes"), "3");
        assert_eq!(v("podbgp_datastore_errors_total"), "1");
        assert_eq!(v("podbgp_start_time_seconds"), "1700000000");
        // Peers in address order.
        let first = text.find(r#"peer="198.18.0.1""#).unwrap();
        let second = text.find(r#"peer="198.18.0.2""#).unwrap();
        assert!(first < second);
    }

    #[test]
    fn fib_and_datastore_families_only_when_present() {
        let sp = speaker(None);
        let text = render(&Snapshot {
            speaker: &sp,
            peers: &[],
            datastore: None,
            started_unix: 0,
        });
        assert!(!text.contains("podbgp_fib_"));
        assert!(!text.contains("podbgp_datastore_"));
        assert!(text.contains("podbgp_sessions{state=\"established\"} 0\n"));
    }
}
