//! Read-only queries and operator commands, and the plain-data views they return.
//!
//! These types cross the seam to the API adapter (`api/`): they carry no protobuf types and
//! no references into speaker state. Times are `Instant`s of the core's clock; the adapter
//! converts them to wall-clock time.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::config::{PeerOrigin, PeerRole};
use crate::session::State;
use crate::wire::{Family, Origin};

/// Which table a route listing reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableKind {
    AdjRibIn,
    LocRib,
    AdjRibOut,
    /// The kernel routes the daemon installed. Not the speaker's: the driver answers it
    /// ([`Speaker::query`](super::Speaker::query) says [`QueryError::NoFib`]).
    Fib,
}

/// A read-only question to the speaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    Speaker,
    Peers,
    Peer(IpAddr),
    Routes {
        table: TableKind,
        peer: Option<IpAddr>,
        prefix: Option<IpNet>,
    },
}

/// An operator command that changes state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Hard reset (Cease/Administrative Reset, RFC 4486) or soft reset (RFC 2918 route refresh
    /// toward the peer and a full re-send of our Adj-RIB-Out).
    ResetPeer { address: IpAddr, soft: bool },
}

/// Why a query or command failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no such peer {0}")]
    NoSuchPeer(IpAddr),
    #[error("table {0:?} needs a peer address")]
    PeerRequired(TableKind),
    /// The FIB table was asked of a daemon that installs no kernel routes (`--fib off`, or a
    /// configuration-file daemon).
    #[error("this daemon installs no kernel routes (the FIB is off)")]
    NoFib,
}

/// The answer to a [`Query`].
#[derive(Clone, Debug, PartialEq)]
pub enum View {
    Speaker(SpeakerView),
    Peers(Vec<PeerView>),
    Peer(Box<PeerView>),
    Routes(Vec<RouteView>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerView {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub listen: Option<(IpAddr, u16)>,
    pub started: Instant,
    pub peers_configured: usize,
    pub peers_established: usize,
    pub loc_rib_prefixes: usize,
    pub decision_runs: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    /// Kernel route counters; `None` when the daemon installs no kernel routes. The speaker
    /// holds no kernel table: the driver, which owns the FIB, fills this in.
    pub fib: Option<FibCounters>,
}

/// Counters of the kernel route installer (the driver's FIB manager).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FibCounters {
    /// Our routes in the kernel, as far as we know.
    pub installed: u64,
    /// Prefixes we want but another protocol's route holds (left untouched).
    pub foreign: u64,
    pub adds: u64,
    pub replaces: u64,
    pub deletes: u64,
    /// Kernel operations that failed (retried where that can help).
    pub failures: u64,
    /// Routes put back after someone else deleted or changed them.
    pub repairs: u64,
    /// Stale routes (found at start, unclaimed) deleted after initial convergence.
    pub swept: u64,
    /// Batches handed to the kernel.
    pub batches: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyCounters {
    pub family: Family,
    /// Prefixes currently held from the peer (Adj-RIB-In).
    pub received: u64,
    /// Of those, accepted by import policy.
    pub accepted: u64,
    /// Prefixes currently advertised to the peer (Adj-RIB-Out).
    pub advertised: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub local_as: u32,
    pub role: PeerRole,
    pub origin: PeerOrigin,
    pub state: State,
    /// When the state last changed.
    pub since: Instant,
    /// calicoctl-style INFO text: "Established", or the last error.
    pub info: String,
    pub remote_id: Option<Ipv4Addr>,
    pub hold_time: u16,
    pub keepalive: u16,
    pub families: Vec<FamilyCounters>,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub last_error: Option<String>,
    pub passive: bool,
    pub description: Option<String>,
    pub established_transitions: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteView {
    pub prefix: IpNet,
    pub next_hops: Vec<IpAddr>,
    /// The peer the route came from (`None`: originated locally).
    pub peer: Option<IpAddr>,
    pub as_path: Vec<u32>,
    pub origin: Option<Origin>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub best: bool,
    /// Decision reason: why the best path won, or why this one lost.
    pub reason: String,
    /// A BGP path kept through a restart, or a kernel route found at start and kept until
    /// initial convergence.
    pub stale: bool,
    /// Set for FIB entries only: the kernel route as installed (`next_hops` then holds its
    /// gateways, `peer` is `None` and no BGP attribute is set).
    pub kernel: Option<KernelRouteView>,
}

/// A kernel route of ours (FIB table).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRouteView {
    pub kind: KernelRouteKind,
    /// Empty for a blackhole.
    pub next_hops: Vec<KernelNextHop>,
}

/// What a kernel route does with packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelRouteKind {
    Unicast,
    Blackhole,
    /// Another route type carrying our protocol (e.g. left behind by BIRD): the kernel's
    /// `rtm_type`.
    Other(u8),
}

/// One next hop of a kernel route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelNextHop {
    pub gateway: IpAddr,
    /// The output device when we named one (IPIP: `tunl0`).
    pub device: Option<String>,
    /// `RTNH_F_ONLINK`.
    pub onlink: bool,
}

/// Something that happened, for `WatchEvents` and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeakerEvent {
    PeerState {
        address: IpAddr,
        from: State,
        to: State,
        cause: String,
    },
    BestPath {
        prefix: IpNet,
        next_hops: Vec<IpAddr>,
        peer: Option<IpAddr>,
    },
}

/// Uptime helper for adapters.
pub fn age(since: Instant, now: Instant) -> Duration {
    now.saturating_duration_since(since)
}
