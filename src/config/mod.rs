//! The typed, validated speaker configuration (`SpeakerConfig`) and its YAML form.
//!
//! This is the daemon's explicit mode (like a `gobgpd.toml` or `bird.conf`): the Calico
//! datastore mode derives the very same `SpeakerConfig` from cluster resources, so nothing
//! here knows about Calico.
//!
//! YAML goes in through serde with `deny_unknown_fields` (a typo is an error naming the
//! field, with line and column), and is validated once into newtypes and enums: a
//! `SpeakerConfig` that exists is a config that makes sense (hold time 0 or ≥ 3, AS ≠ 0,
//! unique neighbours, role consistent with the AS numbers).
//!
//! A reload compares two of them with [`diff()`] (`diff.rs`), which classifies every change as
//! in place, next connection, or session reset.

mod auth;
pub mod diff;
mod yaml;

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU8;
use std::time::Duration;

use ipnet::IpNet;

pub(crate) use auth::wipe;
pub use auth::{KeyProblem, MD5_MAX_KEY_LEN, Md5Key, TcpAuth, UnavailableKey};
pub use diff::{Apply, ConfigDiff, PeerChange, PeerField, SpeakerApply, SpeakerField, diff};
pub use yaml::{ConfigError, ConfigErrorKind, parse_yaml, render_yaml};

use crate::session::SessionConfig;
use crate::wire::Family;

/// How a neighbour relates to us; decides export rules (RFC 4456, RFC 4271 §9.1.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerRole {
    /// iBGP, non-client: a full-mesh node (Calico node-to-node mesh).
    Mesh,
    /// iBGP route-reflector client: we reflect routes to it (RFC 4456).
    RrClient,
    /// iBGP toward a reflector (ours, or a fellow reflector): a non-client that is not part of a
    /// mesh. Export rules equal `Mesh`; kept apart for operators and the status table.
    RrPeer,
    /// eBGP, e.g. a top-of-rack router.
    Ebgp,
}

impl PeerRole {
    pub fn is_ibgp(self) -> bool {
        !matches!(self, PeerRole::Ebgp)
    }
}

/// What kind of configuration created a peer (shown as calicoctl's PEER TYPE).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerOrigin {
    /// From a speaker configuration file.
    Configured,
    /// Calico node-to-node mesh.
    Mesh,
    /// Calico global BGPPeer.
    Global,
    /// Calico node-specific BGPPeer.
    NodeSpecific,
}

/// Next-hop handling toward an eBGP peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NextHopMode {
    /// Our own address (the default for eBGP).
    #[serde(rename = "self")]
    Self_,
    /// Keep the received next hop (Calico `keepOriginalNextHop`, BIRD `next hop keep`).
    Keep,
}

/// One neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    /// Our AS toward this peer (defaults to the speaker's).
    pub local_as: u32,
    pub role: PeerRole,
    pub origin: PeerOrigin,
    pub passive: bool,
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Source address for outgoing connections.
    pub local_address: Option<IpAddr>,
    pub next_hop: NextHopMode,
    pub description: Option<String>,
    /// How many times our own AS may appear in a received AS_PATH (BIRD `allow local as`).
    pub allowed_local_as: u8,
    pub families: Vec<Family>,
    /// Most prefixes accepted from this peer (all families); one more closes the session
    /// with Cease / Maximum Number of Prefixes Reached (RFC 4486).
    pub max_prefixes: Option<MaxPrefixes>,
    /// TCP MD5 signatures on the session's connections (RFC 2385).
    pub auth: TcpAuth,
    /// GTSM (RFC 5082): the peer is at most this many hops away. We send with TTL (hop limit)
    /// 255 and accept only segments that arrive with TTL ≥ 256 − hops. `None`: off (the
    /// kernel's default TTL, any TTL accepted — Calico's `multihop`).
    pub ttl_security: Option<NonZeroU8>,
    /// The graceful-restart Restart Time advertised to this peer, when the speaker does
    /// graceful restart (`None`: the speaker's `graceful_restart_time`; Calico's
    /// `maxRestartTime` / `nodeMeshMaxRestartTime`).
    pub restart_time: Option<u16>,
}

/// A maximum-prefix limit (FRR `maximum-prefix N restart M`, BIRD `import limit N`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPrefixes {
    pub limit: u32,
    /// Start the session again this long after it was closed; `None` keeps it down until an
    /// operator resets it.
    pub restart_after: Option<Duration>,
}

impl PeerConfig {
    /// Session parameters for the FSM.
    pub fn session(&self, speaker: &SpeakerConfig) -> SessionConfig {
        SessionConfig {
            local_as: self.local_as,
            remote_as: self.remote_as,
            router_id: speaker.router_id,
            hold_time: self.hold_time,
            min_hold_time: 3,
            connect_retry: self.connect_retry,
            idle_hold_min: speaker.idle_hold_min,
            idle_hold_max: speaker.idle_hold_max,
            passive: self.passive,
            families: self.families.clone(),
            extended_message: true,
            graceful_restart_time: speaker
                .graceful_restart_time
                .map(|t| self.restart_time.unwrap_or(t)),
            // Our kernel routes outlive the process, and pod forwarding never depended on it.
            gr_forwarding: true,
        }
    }
}

/// The whole speaker configuration, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Listen address and port; `None` means do not listen (outgoing connections only).
    pub listen: Option<(IpAddr, u16)>,
    /// Route-reflector cluster id (RFC 4456); defaults to the router id.
    pub cluster_id: Ipv4Addr,
    pub idle_hold_min: Duration,
    pub idle_hold_max: Duration,
    pub graceful_restart_time: Option<u16>,
    /// Maximum number of equal-cost paths handed to the FIB.
    pub max_ecmp: usize,
    /// Prefixes this speaker originates.
    pub originate: Vec<IpNet>,
    /// Next-hop-self addresses (a Calico node's IPv4/IPv6 address); default: the session's
    /// local address (IPv4-mapped for IPv6 routes over an IPv4 session).
    pub next_hop_ipv4: Option<Ipv4Addr>,
    pub next_hop_ipv6: Option<std::net::Ipv6Addr>,
    pub neighbors: Vec<PeerConfig>,
}

impl SpeakerConfig {
    pub fn neighbor(&self, addr: IpAddr) -> Option<&PeerConfig> {
        self.neighbors.iter().find(|n| n.address == addr)
    }
}
