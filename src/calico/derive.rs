//! `derive`: from the cluster view and this node's name to the node's speaker configuration and
//! local routes — what confd renders into `bird.cfg`, as a pure function.
//!
//! The rules are Calico's (shared/reference/calico-bgp.md §2.1, §3.1–§3.5); each is a short
//! block below, named after the section it implements, and has a table test.
//!
//! Passwords (`password.secretKeyRef`, `nodeMeshPassword`) are resolved here through a
//! [`SecretSource`]; one that cannot be read gives the peer [`TcpAuth::Unavailable`] (the
//! session stays down) and a note naming the BGPPeer and the Secret. `ttlSecurity` and
//! `sourceAddress` apply to the forward and the automatic reverse peerings alike, as in confd
//! (`setPeerConfigFieldsFromV3Resource`); mesh sessions never use GTSM.
//!
//! Where the same `(address, port)` would be produced twice, the first producer wins, in this
//! order: node-to-node mesh, global BGPPeers, node-specific BGPPeers, automatic reverse
//! peerings. Within one group, BGPPeers are taken in name order and nodes in name order, so the
//! result never depends on datastore iteration order.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU8;
use std::time::Duration;

use ipnet::IpNet;

use super::ClusterView;
use super::model::{
    AffinityState, BgpPeer, DEFAULT_AS, EncapMode, IfAddr, IpPool, NextHopModeSpec, Node,
    PeerScope, PeerTarget,
};
use super::secret::{Secret, SecretSource};
use crate::config::{NextHopMode, PeerConfig, PeerOrigin, PeerRole, SpeakerConfig, TcpAuth};
use crate::wire::Family;

/// How the router id is chosen (calico/node's `CALICO_ROUTER_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RouterIdMode {
    /// The node's IPv4 address; a hash of the node name when it has none.
    #[default]
    NodeIp,
    /// Always the hash of the node name (`CALICO_ROUTER_ID=hash`).
    Hash,
    /// A fixed id.
    Fixed(Ipv4Addr),
}

/// Knobs that are not in the datastore (daemon flags / environment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeriveOptions {
    pub router_id: RouterIdMode,
    /// Hold time offered on every session (Calico/BIRD: 240 s).
    pub hold_time: u16,
    pub connect_retry: Duration,
    pub idle_hold_min: Duration,
    pub idle_hold_max: Duration,
    /// Graceful-restart time advertised (Calico: 120 s).
    pub graceful_restart_time: Option<u16>,
    pub max_ecmp: usize,
    /// Overrides the listen port from BGPConfiguration (tests, side-by-side daemons).
    pub listen_port: Option<u16>,
    /// A maximum-prefix limit for every peer (`podbgp run --max-prefixes`); Calico has no
    /// per-peer field for it.
    pub max_prefixes: Option<crate::config::MaxPrefixes>,
}

impl Default for DeriveOptions {
    fn default() -> Self {
        DeriveOptions {
            router_id: RouterIdMode::NodeIp,
            hold_time: 240,
            connect_retry: Duration::from_secs(5),
            idle_hold_min: Duration::from_secs(1),
            idle_hold_max: Duration::from_secs(30),
            graceful_restart_time: Some(120),
            max_ecmp: 16,
            listen_port: None,
            max_prefixes: None,
        }
    }
}

/// An IP pool as the FIB and export policy need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    pub cidr: IpNet,
    pub ipip: EncapMode,
    pub vxlan: EncapMode,
    pub disable_bgp_export: bool,
    /// `spec.blockSize`: the prefix length of the pool's IPAM blocks.
    pub block_size: u8,
}

/// What `derive` produces for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// The speaker configuration; `config.originate` holds the blocks to advertise.
    pub config: SpeakerConfig,
    /// Local blocks that get a blackhole route (every confirmed or pendingDeletion affinity
    /// except /32 and /128 blocks, calico-bgp.md §2.1).
    pub blackholes: Vec<IpNet>,
    pub pools: Vec<PoolInfo>,
    /// This node's addresses (CIDR form: the subnet decides CrossSubnet).
    pub ipv4: Option<IfAddr>,
    pub ipv6: Option<IfAddr>,
    /// Every node's BGP addresses (this one included), sorted: the next hops node routes
    /// may have (the import guard).
    pub node_addrs: Vec<IpAddr>,
    /// Things the datastore asks for that podbgp does not do (yet), and inconsistencies, one
    /// sentence each; logged when they change.
    pub notes: Vec<String>,
}

/// Why no configuration can be derived for this node (calico/node would not start BIRD).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeriveError {
    #[error("node {0:?} is not in the datastore")]
    NoSuchNode(String),
    #[error("node {0:?} has no spec.bgp.ipv4Address or spec.bgp.ipv6Address")]
    NoAddress(String),
}

/// A Calico node with the facts the rules use.
struct NodeFacts<'a> {
    node: &'a Node,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    asn: u32,
    cluster_id: Option<Ipv4Addr>,
    port: u16,
}

impl NodeFacts<'_> {
    fn addr(&self, fam: Fam) -> Option<IpAddr> {
        match fam {
            Fam::V4 => self.v4.map(IpAddr::V4),
            Fam::V6 => self.v6.map(IpAddr::V6),
        }
    }
    fn has_addr(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.v4 == Some(a),
            IpAddr::V6(a) => self.v6 == Some(a),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fam {
    V4,
    V6,
}

const FAMS: [Fam; 2] = [Fam::V4, Fam::V6];

fn fam_of(a: IpAddr) -> Fam {
    if a.is_ipv4() { Fam::V4 } else { Fam::V6 }
}

/// Router id from the node name: the first 4 bytes of SHA-256(name), with the first octet
/// lowered by 32 when above 223 (so it is never multicast/reserved), as calico/node does.
pub fn hashed_router_id(name: &str) -> Ipv4Addr {
    use sha2::Digest;
    let d = sha2::Sha256::digest(name.as_bytes());
    let mut b = [d[0], d[1], d[2], d[3]];
    if b[0] > 223 {
        b[0] -= 32;
    }
    Ipv4Addr::from(b)
}

fn node_facts(n: &Node, global_as: u32, port: u16) -> NodeFacts<'_> {
    let bgp = n.bgp.as_ref();
    NodeFacts {
        node: n,
        v4: bgp.and_then(|b| match b.ipv4_address.map(|a| a.addr) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        }),
        v6: bgp.and_then(|b| match b.ipv6_address.map(|a| a.addr) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        }),
        asn: bgp.and_then(|b| b.as_number).unwrap_or(global_as),
        cluster_id: bgp.and_then(|b| b.route_reflector_cluster_id),
        port,
    }
}

/// The peers being collected, keyed by `(address, port)`; the first writer wins.
struct PeerSet {
    peers: BTreeMap<(IpAddr, u16), PeerConfig>,
}

impl PeerSet {
    fn add(&mut self, p: PeerConfig) {
        self.peers.entry((p.address, p.port)).or_insert(p);
    }
}

/// Derives this node's speaker configuration. Pure: same view, same answer. Passwords come
/// from the view's Secrets only.
pub fn derive(
    view: &ClusterView,
    node_name: &str,
    opts: &DeriveOptions,
) -> Result<Derived, DeriveError> {
    derive_with_secrets(view, node_name, opts, &BTreeMap::new())
}

/// [`derive`], with `mounted` Secrets (`--secrets-dir`) looked at before the view's.
pub fn derive_with_secrets(
    view: &ClusterView,
    node_name: &str,
    opts: &DeriveOptions,
    mounted: &BTreeMap<String, Secret>,
) -> Result<Derived, DeriveError> {
    let secrets = SecretSource {
        mounted,
        datastore: &view.secrets,
    };
    let me_node = view
        .nodes
        .get(node_name)
        .ok_or_else(|| DeriveError::NoSuchNode(node_name.to_string()))?;
    let global = view.bgp_configs.get("default");
    let global_as = global.and_then(|g| g.as_number).unwrap_or(DEFAULT_AS);
    let global_port = global.and_then(|g| g.listen_port).unwrap_or(179);
    let node_cfg = |n: &str| view.bgp_configs.get(&format!("node.{n}"));
    let port_of = |n: &Node| {
        node_cfg(&n.name)
            .and_then(|c| c.listen_port)
            .unwrap_or(global_port)
    };
    let me = node_facts(me_node, global_as, port_of(me_node));
    if me.v4.is_none() && me.v6.is_none() {
        return Err(DeriveError::NoAddress(node_name.to_string()));
    }
    let nodes: Vec<NodeFacts<'_>> = view
        .nodes
        .values()
        .filter(|n| n.name != me_node.name)
        .map(|n| node_facts(n, global_as, port_of(n)))
        .collect();
    let mut notes = Vec::new();

    let base = |fam: Fam, addr: IpAddr, port: u16, remote_as: u32, local_as: u32| PeerConfig {
        address: addr,
        port,
        remote_as,
        local_as,
        role: if remote_as == local_as {
            PeerRole::RrPeer
        } else {
            PeerRole::Ebgp
        },
        origin: PeerOrigin::Global,
        passive: false,
        hold_time: opts.hold_time,
        connect_retry: opts.connect_retry,
        local_address: me.addr(fam),
        next_hop: NextHopMode::Self_,
        description: None,
        allowed_local_as: 0,
        families: vec![match fam {
            Fam::V4 => Family::IPV4_UNICAST,
            Fam::V6 => Family::IPV6_UNICAST,
        }],
        max_prefixes: opts.max_prefixes,
        auth: TcpAuth::None,
        ttl_security: None,
        restart_time: None,
    };
    // §3.4: on a reflector with cluster id C, an iBGP peer is a client unless it is a reflector
    // of the same cluster (`None`: unknown, as for peerIP peers → client).
    let rr_role = |p: &mut PeerConfig, peer_cluster: Option<Option<Ipv4Addr>>| {
        if p.remote_as != p.local_as {
            p.role = PeerRole::Ebgp;
            return;
        }
        if let Some(c) = me.cluster_id {
            let same = matches!(peer_cluster, Some(Some(pc)) if pc == c);
            p.role = if same {
                PeerRole::RrPeer
            } else {
                PeerRole::RrClient
            };
        }
    };
    // §3.3: passive toward every peer whose IP string is greater than ours.
    let passive_rule = |fam: Fam, remote: IpAddr| match me.addr(fam) {
        Some(mine) => remote.to_string() > mine.to_string(),
        None => false,
    };

    let mut set = PeerSet {
        peers: BTreeMap::new(),
    };

    // §3.1 node-to-node mesh: not on reflectors, never toward reflectors or ourselves.
    let mesh_enabled = global
        .and_then(|g| g.node_to_node_mesh_enabled)
        .unwrap_or(true);
    if mesh_enabled && me.cluster_id.is_none() {
        let mesh_auth = match global.and_then(|g| g.node_mesh_password.as_ref()) {
            Some(r) => secrets.resolve(r),
            None => TcpAuth::None,
        };
        if let TcpAuth::Unavailable(e) = &mesh_auth {
            notes.push(format!(
                "BGPConfiguration default: nodeMeshPassword: {e}; node-to-node mesh sessions stay down until it can be read"
            ));
        }
        let mesh_restart_time = global
            .and_then(|g| g.node_mesh_max_restart_time)
            .map(restart_secs);
        for n in nodes.iter().filter(|n| n.cluster_id.is_none()) {
            for fam in FAMS {
                let (Some(_), Some(addr)) = (me.addr(fam), n.addr(fam)) else {
                    continue;
                };
                if me.has_addr(addr) {
                    continue;
                }
                let mut p = base(fam, addr, n.port, n.asn, me.asn);
                p.role = if n.asn == me.asn {
                    PeerRole::Mesh
                } else {
                    PeerRole::Ebgp
                };
                p.origin = PeerOrigin::Mesh;
                p.auth = mesh_auth.clone();
                p.restart_time = mesh_restart_time;
                p.passive = passive_rule(fam, addr);
                p.description = Some(format!("node-to-node mesh: {}", n.node.name));
                set.add(p);
            }
        }
    }

    // §3.1 BGPPeers: globals first, then node-specific ones.
    let applies = |scope: &PeerScope, n: &Node| match scope {
        PeerScope::Global => true,
        PeerScope::Node(name) => *name == n.name,
        PeerScope::Selector(s) => s.matches(&n.labels),
    };
    for global_pass in [true, false] {
        for bp in view.peers.values() {
            if matches!(bp.scope, PeerScope::Global) != global_pass || !applies(&bp.scope, me_node)
            {
                continue;
            }
            peer_notes(bp, &mut notes);
            let origin = if global_pass {
                PeerOrigin::Global
            } else {
                PeerOrigin::NodeSpecific
            };
            let local_as = bp.local_as_number.unwrap_or(me.asn);
            let auth = peer_auth(bp, &secrets, &mut notes);
            let tune = |p: &mut PeerConfig| {
                p.origin = origin;
                p.allowed_local_as = bp.num_allowed_local_as_numbers.unwrap_or(0);
                transport(bp, &auth, p);
                p.next_hop = match bp.next_hop_mode {
                    NextHopModeSpec::Keep => NextHopMode::Keep,
                    _ => NextHopMode::Self_,
                };
                p.description = Some(format!("BGPPeer {}", bp.name));
            };
            match &bp.target {
                PeerTarget::Ip { addr, port } => {
                    let fam = fam_of(*addr);
                    if me.has_addr(*addr) {
                        continue;
                    }
                    if me.addr(fam).is_none() {
                        notes.push(format!(
                            "BGPPeer {}: this node has no {} address, peer {addr} skipped",
                            bp.name,
                            if fam == Fam::V4 { "IPv4" } else { "IPv6" }
                        ));
                        continue;
                    }
                    let remote_as = bp.as_number.unwrap_or(me.asn);
                    // Without a port, a peerIP that is a Calico node with the same AS is
                    // reached on that node's listen port.
                    let same_as_node = nodes
                        .iter()
                        .find(|n| n.has_addr(*addr) && n.asn == remote_as);
                    let port = port.or(same_as_node.map(|n| n.port)).unwrap_or(179);
                    let mut p = base(fam, *addr, port, remote_as, local_as);
                    tune(&mut p);
                    rr_role(&mut p, None);
                    self_on_ibgp(bp, &p, &mut notes);
                    // §3.3: a global peering whose peerIP is any Calico node's address
                    // (confd's `calico_node`, whatever the AS) follows the passive rule.
                    if global_pass && nodes.iter().any(|n| n.has_addr(*addr)) {
                        p.passive = passive_rule(fam, *addr);
                    }
                    set.add(p);
                }
                PeerTarget::Nodes(sel) => {
                    for n in nodes.iter().filter(|n| sel.matches(&n.node.labels)) {
                        for fam in FAMS {
                            let (Some(_), Some(addr)) = (me.addr(fam), n.addr(fam)) else {
                                continue;
                            };
                            if me.has_addr(addr) {
                                continue;
                            }
                            let mut p = base(fam, addr, n.port, n.asn, local_as);
                            tune(&mut p);
                            rr_role(&mut p, Some(n.cluster_id));
                            self_on_ibgp(bp, &p, &mut notes);
                            set.add(p);
                        }
                    }
                }
                PeerTarget::LocalWorkloads(_) => {
                    notes.push(format!(
                        "BGPPeer {}: localWorkloadSelector peerings are not supported; ignored",
                        bp.name
                    ));
                }
            }
        }
    }

    // §3.1 automatic reverse peerings: a BGPPeer whose remote side selects this node gives this
    // node a node-specific peering toward each node of its local side. The reverse of a
    // peerSelector peering exists in both families; the reverse of a peerIP peering only in the
    // peer IP's family, like the forward peering (confd client.go: includeV4/includeV6).
    for bp in view.peers.values().filter(|bp| bp.reverse_peering_auto) {
        let (selects_me, fams): (bool, &[Fam]) = match &bp.target {
            PeerTarget::Nodes(sel) => (sel.matches(&me_node.labels), &FAMS),
            PeerTarget::Ip { addr, .. } => (
                me.has_addr(*addr) && bp.as_number.unwrap_or(me.asn) == me.asn,
                if addr.is_ipv4() {
                    &[Fam::V4]
                } else {
                    &[Fam::V6]
                },
            ),
            PeerTarget::LocalWorkloads(_) => (false, &[]),
        };
        if !selects_me {
            continue;
        }
        let auth = peer_auth(bp, &secrets, &mut notes);
        for n in nodes.iter().filter(|n| applies(&bp.scope, n.node)) {
            for &fam in fams {
                let (Some(_), Some(addr)) = (me.addr(fam), n.addr(fam)) else {
                    continue;
                };
                if me.has_addr(addr) {
                    continue;
                }
                // The reverse session's remote AS is the local side's (its localASNumber when
                // the BGPPeer sets one).
                let remote_as = bp.local_as_number.unwrap_or(n.asn);
                let mut p = base(fam, addr, n.port, remote_as, me.asn);
                p.origin = PeerOrigin::NodeSpecific;
                transport(bp, &auth, &mut p);
                p.description = Some(format!("BGPPeer {} (reverse)", bp.name));
                rr_role(&mut p, Some(n.cluster_id));
                set.add(p);
            }
        }
    }

    // §2.1 local blocks.
    let pools: Vec<PoolInfo> = view
        .pools
        .values()
        .map(|p: &IpPool| PoolInfo {
            name: p.name.clone(),
            cidr: p.cidr,
            ipip: p.ipip_mode,
            vxlan: p.vxlan_mode,
            disable_bgp_export: p.disable_bgp_export,
            block_size: p.block_size,
        })
        .collect();
    // Pool membership decides like the export policy: the most specific pool wins.
    let verdict = super::policy::CalicoPolicy::from_pools(&pools);
    let mut originate = Vec::new();
    let mut blackholes = Vec::new();
    for a in view
        .affinities
        .values()
        .filter(|a| a.node == me_node.name && a.host && !a.deleted)
    {
        let export = match a.state {
            // Ignored entirely (projectcalico/calico#6867).
            AffinityState::Pending => continue,
            // calico_aggr(): the exact block, unless its pool disables export.
            AffinityState::Confirmed => verdict.pool_verdict(&a.cidr) != Some(false),
            // No aggregation rule: exported only through the pool accept.
            AffinityState::PendingDeletion => verdict.pool_verdict(&a.cidr) == Some(true),
        };
        if a.cidr.prefix_len() != a.cidr.max_prefix_len() {
            blackholes.push(a.cidr);
        }
        if export {
            originate.push(a.cidr);
        }
        // projectcalico/calico#4471: an affinity whose IPAM block says otherwise.
        if let Some(b) = view.blocks.get(&a.cidr)
            && !b.deleted
            && b.affinity.as_deref() != Some(&format!("host:{}", me_node.name))
        {
            notes.push(format!(
                "block {} is affine to this node but its IPAM block says affinity {:?}",
                a.cidr, b.affinity
            ));
        }
    }
    originate.sort();
    blackholes.sort();

    let router_id = match opts.router_id {
        RouterIdMode::Fixed(id) => id,
        RouterIdMode::NodeIp => me.v4.unwrap_or_else(|| hashed_router_id(&me_node.name)),
        RouterIdMode::Hash => hashed_router_id(&me_node.name),
    };
    let bind_node_ip = global.is_some_and(|g| g.bind_mode_node_ip);
    let listen_port = opts.listen_port.unwrap_or(me.port);
    let listen_addr = match (bind_node_ip, me.v4, me.v6) {
        (true, Some(a), _) => IpAddr::V4(a),
        (true, None, Some(a)) => IpAddr::V6(a),
        (_, _, Some(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    if bind_node_ip && me.v4.is_some() && me.v6.is_some() {
        notes.push("bindMode NodeIP: listening on the IPv4 node address only".to_string());
    }
    let bgp = me_node.bgp.as_ref();
    let config = SpeakerConfig {
        local_as: me.asn,
        router_id,
        listen: Some((listen_addr, listen_port)),
        cluster_id: me.cluster_id.unwrap_or(router_id),
        idle_hold_min: opts.idle_hold_min,
        idle_hold_max: opts.idle_hold_max,
        graceful_restart_time: opts.graceful_restart_time,
        max_ecmp: opts.max_ecmp,
        originate,
        next_hop_ipv4: me.v4,
        next_hop_ipv6: me.v6,
        neighbors: set.peers.into_values().collect(),
    };
    let mut node_addrs: Vec<IpAddr> = view
        .nodes
        .values()
        .filter_map(|n| n.bgp.as_ref())
        .flat_map(|b| {
            [
                b.ipv4_address.map(|a| a.addr),
                b.ipv6_address.map(|a| a.addr),
            ]
        })
        .flatten()
        .collect();
    node_addrs.sort();
    node_addrs.dedup();
    Ok(Derived {
        config,
        blackholes,
        pools,
        node_addrs,
        ipv4: bgp.and_then(|b| b.ipv4_address),
        ipv6: bgp.and_then(|b| b.ipv6_address),
        notes,
    })
}

/// The TCP MD5 setting of a BGPPeer's sessions (its `password`), with a note when the Secret
/// cannot be read.
fn peer_auth(bp: &BgpPeer, secrets: &SecretSource<'_>, notes: &mut Vec<String>) -> TcpAuth {
    let Some(r) = &bp.password else {
        return TcpAuth::None;
    };
    let auth = secrets.resolve(r);
    if let TcpAuth::Unavailable(e) = &auth {
        let note = format!(
            "BGPPeer {}: {e}; its sessions stay down until it can be read",
            bp.name
        );
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    auth
}

/// The transport settings a BGPPeer gives each of its sessions, forward and reverse:
/// `password`, `ttlSecurity` (0 = off) and `sourceAddress` (`None`: the kernel chooses).
fn transport(bp: &BgpPeer, auth: &TcpAuth, p: &mut PeerConfig) {
    p.auth = auth.clone();
    p.ttl_security = bp.ttl_security.and_then(NonZeroU8::new);
    p.restart_time = bp.max_restart_time.map(restart_secs);
    if !bp.source_node_ip {
        p.local_address = None;
    }
}

/// A restart time as the capability carries it: whole seconds, at most 4095 (12 bits).
fn restart_secs(d: std::time::Duration) -> u16 {
    d.as_secs().min(4095) as u16
}

/// `nextHopMode: Self` is what podbgp does toward eBGP peers anyway; toward iBGP peers it is
/// not applied yet (the received next hop is kept).
fn self_on_ibgp(bp: &BgpPeer, p: &PeerConfig, notes: &mut Vec<String>) {
    let note = format!(
        "BGPPeer {}: nextHopMode Self toward iBGP peers is not supported yet; the next hop is kept",
        bp.name
    );
    if bp.next_hop_mode == NextHopModeSpec::Self_
        && p.role != PeerRole::Ebgp
        && !notes.contains(&note)
    {
        notes.push(note);
    }
}

fn peer_notes(bp: &BgpPeer, notes: &mut Vec<String>) {
    let mut unsupported = Vec::new();
    if bp.keepalive_time.is_some() {
        unsupported.push("keepaliveTime");
    }
    if bp.reachable_by.is_some() {
        unsupported.push("reachableBy");
    }
    if !bp.filters.is_empty() {
        unsupported.push("filters");
    }
    if !unsupported.is_empty() {
        notes.push(format!(
            "BGPPeer {}: not supported yet, ignored: {}",
            bp.name,
            unsupported.join(", ")
        ));
    }
}
