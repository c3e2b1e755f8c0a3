//! The stable `--json` output of the operator CLI.
//!
//! These serde types (not the protobuf messages) are the contract scripts and integration
//! tests parse. Keys are snake_case; enumerations are snake_case strings; absent optional
//! values are `null`; addresses and prefixes are strings in their canonical text form; times
//! are Unix seconds (`*_unix`) or milliseconds (`*_unix_ms`). Fields may be added; existing
//! fields keep their name, type and meaning.
//!
//! | command   | output                                                         |
//! |-----------|----------------------------------------------------------------|
//! | `status`  | one [`StatusJson`] object                                      |
//! | `peers`   | an array of [`PeerJson`]                                       |
//! | `peer`    | one [`PeerJson`]                                               |
//! | `routes`  | an array of [`RouteJson`]                                      |
//! | `reset`   | one [`ResetJson`]                                              |
//! | `watch`   | JSON lines, one [`EventJson`] per line                         |
//! | `speaker` | one [`SpeakerJson`]                                            |
//! | `config`  | one [`ConfigJson`]                                             |
//! | `health`  | one [`HealthJson`]                                             |

use serde::{Deserialize, Serialize};

use crate::api::proto;

/// RFC 4271 §8.2.2 session state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStateJson {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
    /// A value this client does not know (a newer daemon).
    Unspecified,
}

impl SessionStateJson {
    pub fn from_proto(v: i32) -> Self {
        use proto::SessionState as S;
        match S::try_from(v) {
            Ok(S::Idle) => Self::Idle,
            Ok(S::Connect) => Self::Connect,
            Ok(S::Active) => Self::Active,
            Ok(S::OpenSent) => Self::OpenSent,
            Ok(S::OpenConfirm) => Self::OpenConfirm,
            Ok(S::Established) => Self::Established,
            Ok(S::Unspecified) | Err(_) => Self::Unspecified,
        }
    }

    /// The RFC/BIRD spelling: `Idle`, `OpenSent`, `Established`, …
    pub fn display(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
            Self::Unspecified => "Unknown",
        }
    }

    /// BIRD's protocol state as calicoctl shows it in STATE: `up` once established, `start`
    /// while the session is being (re)started.
    pub fn bird_state(self) -> &'static str {
        if self == Self::Established {
            "up"
        } else {
            "start"
        }
    }
}

/// calicoctl's PEER TYPE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerTypeJson {
    /// "node-to-node mesh"
    Mesh,
    /// "global" (a global BGPPeer)
    Global,
    /// "node specific" (a node-scoped BGPPeer)
    NodeSpecific,
    /// "route reflector" (a reflection session from the speaker configuration file)
    RouteReflector,
    /// "configured" (any other peer from the speaker configuration file)
    Configured,
    Unspecified,
}

impl PeerTypeJson {
    pub fn from_proto(v: i32) -> Self {
        use proto::PeerType as T;
        match T::try_from(v) {
            Ok(T::Mesh) => Self::Mesh,
            Ok(T::Global) => Self::Global,
            Ok(T::NodeSpecific) => Self::NodeSpecific,
            Ok(T::RouteReflector) => Self::RouteReflector,
            Ok(T::Configured) => Self::Configured,
            Ok(T::Unspecified) | Err(_) => Self::Unspecified,
        }
    }

    /// The calicoctl text.
    pub fn display(self) -> &'static str {
        match self {
            Self::Mesh => "node-to-node mesh",
            Self::Global => "global",
            Self::NodeSpecific => "node specific",
            Self::RouteReflector => "route reflector",
            Self::Configured => "configured",
            Self::Unspecified => "unknown",
        }
    }
}

/// How the peer relates to us.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeerRoleJson {
    Mesh,
    RrClient,
    RrPeer,
    Ebgp,
    Unspecified,
}

impl PeerRoleJson {
    pub fn from_proto(v: i32) -> Self {
        use proto::PeerRole as R;
        match R::try_from(v) {
            Ok(R::Mesh) => Self::Mesh,
            Ok(R::RrClient) => Self::RrClient,
            Ok(R::RrPeer) => Self::RrPeer,
            Ok(R::Ebgp) => Self::Ebgp,
            Ok(R::Unspecified) | Err(_) => Self::Unspecified,
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::RrClient => "rr-client",
            Self::RrPeer => "rr-peer",
            Self::Ebgp => "ebgp",
            Self::Unspecified => "unknown",
        }
    }
}

/// The ORIGIN attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OriginJson {
    Igp,
    Egp,
    Incomplete,
}

impl OriginJson {
    pub fn from_proto(v: i32) -> Option<Self> {
        use proto::RouteOrigin as O;
        match O::try_from(v) {
            Ok(O::Igp) => Some(Self::Igp),
            Ok(O::Egp) => Some(Self::Egp),
            Ok(O::Incomplete) => Some(Self::Incomplete),
            Ok(O::Unspecified) | Err(_) => None,
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            Self::Igp => "i",
            Self::Egp => "e",
            Self::Incomplete => "?",
        }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// `status --json`: the calicoctl table as data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusJson {
    /// Always `true` in output (an unreachable daemon exits with code 3 instead).
    pub process_running: bool,
    /// Sessions to IPv4 peers, sorted by address.
    pub ipv4: Vec<StatusRowJson>,
    /// Sessions to IPv6 peers, sorted by address.
    pub ipv6: Vec<StatusRowJson>,
}

/// One row of the status table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRowJson {
    /// PEER ADDRESS.
    pub peer_address: String,
    /// PEER TYPE as calicoctl prints it: "node-to-node mesh", "global", "node specific",
    /// "route reflector", "configured".
    pub peer_type: String,
    /// STATE as BIRD prints it: "up" (established) or "start".
    pub state: String,
    /// SINCE as BIRD prints it (local "HH:MM:SS" within 20 h, else "YYYY-MM-DD").
    pub since: String,
    /// The same instant as Unix seconds.
    pub since_unix: i64,
    /// INFO: "Established", or the session state and last error.
    pub info: String,
    /// The session state.
    pub session_state: SessionStateJson,
}

/// Per-family prefix counters of a peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FamilyJson {
    /// "ipv4-unicast" or "ipv6-unicast".
    pub family: String,
    /// Prefixes held from the peer (Adj-RIB-In).
    pub received: u64,
    /// Of those, accepted by import policy.
    pub accepted: u64,
    /// Prefixes advertised to the peer (Adj-RIB-Out).
    pub advertised: u64,
}

/// `peers --json` (array) and `peer ADDRESS --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerJson {
    pub address: String,
    pub port: u32,
    pub remote_as: u32,
    pub local_as: u32,
    pub peer_type: PeerTypeJson,
    pub role: PeerRoleJson,
    pub state: SessionStateJson,
    /// Last session state change, Unix seconds.
    pub since_unix: i64,
    /// calicoctl-style INFO text.
    pub info: String,
    /// `null` until an OPEN was received.
    pub remote_router_id: Option<String>,
    /// Negotiated (established) or configured hold time, seconds.
    pub hold_time: u32,
    pub keepalive: u32,
    pub families: Vec<FamilyJson>,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub last_error: Option<String>,
    pub passive: bool,
    pub description: Option<String>,
    pub established_transitions: u64,
}

impl From<&proto::Peer> for PeerJson {
    fn from(p: &proto::Peer) -> Self {
        PeerJson {
            address: p.address.clone(),
            port: p.port,
            remote_as: p.remote_as,
            local_as: p.local_as,
            peer_type: PeerTypeJson::from_proto(p.peer_type),
            role: PeerRoleJson::from_proto(p.role),
            state: SessionStateJson::from_proto(p.state),
            since_unix: p.since_unix,
            info: p.info.clone(),
            remote_router_id: non_empty(&p.remote_router_id),
            hold_time: p.hold_time,
            keepalive: p.keepalive,
            families: p
                .families
                .iter()
                .map(|f| FamilyJson {
                    family: f.family.clone(),
                    received: f.received,
                    accepted: f.accepted,
                    advertised: f.advertised,
                })
                .collect(),
            updates_received: p.updates_received,
            updates_sent: p.updates_sent,
            messages_received: p.messages_received,
            messages_sent: p.messages_sent,
            last_error: non_empty(&p.last_error),
            passive: p.passive,
            description: non_empty(&p.description),
            established_transitions: p.established_transitions,
        }
    }
}

/// `routes --json` (array).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteJson {
    pub prefix: String,
    pub next_hops: Vec<String>,
    /// The peer the route came from; `null` when originated locally.
    pub peer: Option<String>,
    pub as_path: Vec<u32>,
    /// `null` when the route has no ORIGIN attribute (e.g. FIB entries).
    pub origin: Option<OriginJson>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    /// RFC 1997 communities as "ASN:VALUE".
    pub communities: Vec<String>,
    pub originator_id: Option<String>,
    pub cluster_list: Vec<String>,
    pub best: bool,
    /// Why this path won or lost the decision process.
    pub reason: String,
    /// A path kept through a peer's restart, or (`--table fib`) a kernel route found at start
    /// and kept until initial convergence.
    pub stale: bool,
    /// `--table fib` only: the kernel route as installed (`next_hops` holds its gateways,
    /// `peer` and the BGP attributes are empty); `null` in the other tables.
    pub kernel: Option<KernelRouteJson>,
}

/// A kernel route of the daemon's (`routes --table fib`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelRouteJson {
    /// "unicast", "blackhole", or "other" (another route type with our protocol, left behind
    /// by an earlier daemon; `rtm_type` says which).
    #[serde(rename = "type")]
    pub route_type: String,
    /// The kernel's `rtm_type` for "other", else `null`.
    pub rtm_type: Option<u32>,
    /// Empty for a blackhole.
    pub next_hops: Vec<KernelNextHopJson>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelNextHopJson {
    pub gateway: String,
    /// `null` when the kernel chose the device.
    pub device: Option<String>,
    pub onlink: bool,
}

impl From<&proto::KernelRoute> for KernelRouteJson {
    fn from(k: &proto::KernelRoute) -> Self {
        use proto::KernelRouteType as T;
        let route_type = match T::try_from(k.route_type) {
            Ok(T::Unicast) => "unicast",
            Ok(T::Blackhole) => "blackhole",
            Ok(T::Other) => "other",
            Ok(T::Unspecified) | Err(_) => "unknown",
        };
        KernelRouteJson {
            route_type: route_type.to_string(),
            rtm_type: (route_type == "other").then_some(k.rtm_type),
            next_hops: k
                .next_hops
                .iter()
                .map(|h| KernelNextHopJson {
                    gateway: h.gateway.clone(),
                    device: non_empty(&h.device),
                    onlink: h.onlink,
                })
                .collect(),
        }
    }
}

impl From<&proto::Route> for RouteJson {
    fn from(r: &proto::Route) -> Self {
        RouteJson {
            prefix: r.prefix.clone(),
            next_hops: r.next_hops.clone(),
            peer: non_empty(&r.peer),
            as_path: r.as_path.clone(),
            origin: OriginJson::from_proto(r.origin),
            med: r.med,
            local_pref: r.local_pref,
            communities: r.communities.clone(),
            originator_id: non_empty(&r.originator_id),
            cluster_list: r.cluster_list.clone(),
            best: r.best,
            reason: r.reason.clone(),
            stale: r.stale,
            kernel: r.kernel.as_ref().map(KernelRouteJson::from),
        }
    }
}

/// `reset --json`: the reset was accepted by the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetJson {
    pub address: String,
    pub soft: bool,
}

/// `speaker --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerJson {
    pub local_as: u32,
    pub router_id: String,
    /// `null` when the speaker does not accept connections.
    pub listen_address: Option<String>,
    pub listen_port: Option<u32>,
    /// The daemon's version.
    pub version: String,
    pub started_unix: i64,
    pub uptime_seconds: u64,
    pub peers_configured: u32,
    pub peers_established: u32,
    pub loc_rib_prefixes: u64,
    pub decision_runs: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    /// Kernel route counters; `null` when the daemon installs no kernel routes.
    pub fib: Option<FibJson>,
}

/// Kernel route counters (`speaker --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FibJson {
    /// Routes of ours in the kernel.
    pub installed: u64,
    /// Prefixes another protocol's route holds (left untouched).
    pub foreign: u64,
    pub adds: u64,
    pub replaces: u64,
    pub deletes: u64,
    pub failures: u64,
    /// Routes put back after someone else deleted or changed them.
    pub repairs: u64,
    /// Stale routes deleted after initial convergence.
    pub swept: u64,
    pub batches: u64,
}

impl From<&proto::FibCounters> for FibJson {
    fn from(f: &proto::FibCounters) -> Self {
        FibJson {
            installed: f.installed,
            foreign: f.foreign,
            adds: f.adds,
            replaces: f.replaces,
            deletes: f.deletes,
            failures: f.failures,
            repairs: f.repairs,
            swept: f.swept,
            batches: f.batches,
        }
    }
}

impl From<&proto::GetSpeakerResponse> for SpeakerJson {
    fn from(s: &proto::GetSpeakerResponse) -> Self {
        let listening = !s.listen_address.is_empty();
        SpeakerJson {
            local_as: s.local_as,
            router_id: s.router_id.clone(),
            listen_address: non_empty(&s.listen_address),
            listen_port: listening.then_some(s.listen_port),
            version: s.version.clone(),
            started_unix: s.started_unix,
            uptime_seconds: s.uptime_seconds,
            peers_configured: s.peers_configured,
            peers_established: s.peers_established,
            loc_rib_prefixes: s.loc_rib_prefixes,
            decision_runs: s.decision_runs,
            updates_received: s.updates_received,
            updates_sent: s.updates_sent,
            fib: s.fib.as_ref().map(FibJson::from),
        }
    }
}

/// `config --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigJson {
    /// The effective configuration in the speaker's YAML format.
    pub yaml: String,
}

/// `watch --json`: one object per line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    /// When the daemon's API received the event, Unix milliseconds.
    pub time_unix_ms: i64,
    /// `"type": "peer_state"` or `"type": "best_path"` plus that event's fields.
    #[serde(flatten)]
    pub event: EventKindJson,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKindJson {
    PeerState {
        address: String,
        from: SessionStateJson,
        to: SessionStateJson,
        cause: String,
    },
    BestPath {
        prefix: String,
        /// Empty when the prefix became unreachable.
        next_hops: Vec<String>,
        /// The peer the new best path came from; `null` for local routes or none.
        peer: Option<String>,
    },
    /// An event kind this client does not know (a newer daemon).
    Unknown,
}

impl From<&proto::WatchEventsResponse> for EventJson {
    fn from(r: &proto::WatchEventsResponse) -> Self {
        use proto::watch_events_response::Event;
        let event = match &r.event {
            Some(Event::PeerState(p)) => EventKindJson::PeerState {
                address: p.address.clone(),
                from: SessionStateJson::from_proto(p.from),
                to: SessionStateJson::from_proto(p.to),
                cause: p.cause.clone(),
            },
            Some(Event::BestPath(b)) => EventKindJson::BestPath {
                prefix: b.prefix.clone(),
                next_hops: b.next_hops.clone(),
                peer: non_empty(&b.peer),
            },
            None => EventKindJson::Unknown,
        };
        EventJson {
            time_unix_ms: r.time_unix_ms,
            event,
        }
    }
}

/// `health --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthJson {
    /// "live" or "ready".
    pub check: String,
    /// The verdict (exit code 0 when true, 1 when false).
    pub ok: bool,
    /// The one-line reason that is also printed without `--json`.
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_shape() {
        let e = EventJson {
            time_unix_ms: 5,
            event: EventKindJson::PeerState {
                address: "10.0.0.2".into(),
                from: SessionStateJson::OpenConfirm,
                to: SessionStateJson::Established,
                cause: "x".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"time_unix_ms":5,"type":"peer_state","address":"10.0.0.2","from":"open_confirm","to":"established","cause":"x"}"#
        );
        let back: EventJson = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        assert_eq!(back, e);
        let b = EventJson {
            time_unix_ms: 6,
            event: EventKindJson::BestPath {
                prefix: "10.244.1.0/26".into(),
                next_hops: vec![],
                peer: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&b).unwrap(),
            r#"{"time_unix_ms":6,"type":"best_path","prefix":"10.244.1.0/26","next_hops":[],"peer":null}"#
        );
    }

    #[test]
    fn enums_are_snake_case() {
        assert_eq!(
            serde_json::to_string(&PeerTypeJson::NodeSpecific).unwrap(),
            "\"node_specific\""
        );
        assert_eq!(
            serde_json::to_string(&PeerRoleJson::RrClient).unwrap(),
            "\"rr_client\""
        );
        assert_eq!(
            serde_json::to_string(&SessionStateJson::OpenSent).unwrap(),
            "\"open_sent\""
        );
    }
}
