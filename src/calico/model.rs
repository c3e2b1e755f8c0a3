//! Typed Calico v3 resources, as calicoctl applies them and as Calico stores them in etcd.
//!
//! Only what BGP route distribution needs is typed; every other field Calico defines for these
//! kinds is accepted and ignored, and a field Calico does not define is an error (a typo such as
//! `peerIp` must not silently drop a peering). Errors name the resource, the field path and the
//! offending value, e.g. `BGPPeer "rack1-tor": spec.asNumber: invalid AS number "65x"`.
//!
//! Parsing goes through `serde_json::Value` (YAML documents are converted first), so one code
//! path serves the file datastore and etcd's JSON values; `serde_path_to_error` supplies the
//! field path.
//!
//! Value shapes follow projectcalico/calico's v3 API (`api/pkg/apis/projectcalico/v3`) and
//! libcalico's backend model for IPAM (see shared/reference/calico-bgp.md §1).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use serde::de::{self, IgnoredAny};
use serde::{Deserialize, Deserializer};

use super::selector::Selector;

/// Calico's default AS number when neither the node nor BGPConfiguration sets one.
pub const DEFAULT_AS: u32 = 64512;

/// An error in one resource: which one, where, and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {path}{sep}{message}", sep = if path.is_empty() { "" } else { ": " })]
pub struct ResourceError {
    pub kind: String,
    pub name: String,
    /// Field path such as `spec.peerIP` (empty when the whole resource is at fault).
    pub path: String,
    pub message: String,
}

/// One Calico resource of a kind podbgp consumes.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    Node(Node),
    BgpConfiguration(BgpConfiguration),
    BgpPeer(BgpPeer),
    IpPool(IpPool),
    BlockAffinity(BlockAffinity),
    IpamBlock(IpamBlock),
    /// A Kubernetes Secret (BGP passwords); see `secret.rs`.
    Secret(super::secret::Secret),
}

impl Resource {
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::Node(_) => "Node",
            Resource::BgpConfiguration(_) => "BGPConfiguration",
            Resource::BgpPeer(_) => "BGPPeer",
            Resource::IpPool(_) => "IPPool",
            Resource::BlockAffinity(_) => "BlockAffinity",
            Resource::IpamBlock(_) => "IPAMBlock",
            Resource::Secret(_) => "Secret",
        }
    }
}

/// A node's labels and BGP identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub bgp: Option<NodeBgp>,
}

/// An interface address in CIDR form: the address and its subnet (CrossSubnet uses the subnet).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfAddr {
    pub addr: IpAddr,
    pub prefix_len: u8,
}

impl IfAddr {
    pub fn network(&self) -> IpNet {
        // The prefix length was validated on parse.
        IpNet::new(self.addr, self.prefix_len)
            .map(|n| n.trunc())
            .unwrap_or_else(|_| IpNet::from(self.addr))
    }
}

impl fmt::Display for IfAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for IfAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<IpNet>() {
            return Ok(IfAddr {
                addr: n.addr(),
                prefix_len: n.prefix_len(),
            });
        }
        match s.parse::<IpAddr>() {
            Ok(a) => Ok(IfAddr {
                addr: a,
                prefix_len: if a.is_ipv4() { 32 } else { 128 },
            }),
            Err(_) => Err(format!(
                "invalid address {s:?} (expected an IP or IP/prefix)"
            )),
        }
    }
}

/// `Node.spec.bgp`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NodeBgp {
    pub ipv4_address: Option<IfAddr>,
    pub ipv6_address: Option<IfAddr>,
    pub as_number: Option<u32>,
    pub ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
}

/// `BGPConfiguration` (`default` is global, `node.<name>` a per-node override).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BgpConfiguration {
    pub name: String,
    pub as_number: Option<u32>,
    pub node_to_node_mesh_enabled: Option<bool>,
    pub listen_port: Option<u16>,
    pub bind_mode_node_ip: bool,
    pub log_severity_screen: Option<String>,
    pub node_mesh_password: Option<SecretKeyRef>,
    pub node_mesh_max_restart_time: Option<Duration>,
    pub communities: Vec<Community>,
    pub prefix_advertisements: Vec<PrefixAdvertisement>,
    pub service_cluster_ips: Vec<IpNet>,
    pub service_external_ips: Vec<IpNet>,
    pub service_load_balancer_ips: Vec<IpNet>,
}

/// A named community (`BGPConfiguration.spec.communities`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Community {
    pub name: String,
    pub value: String,
}

/// `BGPConfiguration.spec.prefixAdvertisements[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixAdvertisement {
    pub cidr: IpNet,
    pub communities: Vec<String>,
}

/// A reference to a key in a Kubernetes Secret (BGP passwords).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

/// Where the remote end of a BGPPeer is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerTarget {
    /// A fixed address (`peerIP`, optionally with a port).
    Ip { addr: IpAddr, port: Option<u16> },
    /// Calico nodes matching `peerSelector`.
    Nodes(Selector),
    /// Local workloads (`localWorkloadSelector`); not supported by podbgp, kept for errors.
    LocalWorkloads(Selector),
}

/// Which nodes a BGPPeer applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerScope {
    /// Neither `node` nor `nodeSelector`: every node.
    Global,
    Node(String),
    Selector(Selector),
}

/// `BGPPeer.spec.nextHopMode` (with the deprecated `keepOriginalNextHop` folded in).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum NextHopModeSpec {
    #[default]
    Auto,
    Self_,
    Keep,
}

/// `BGPPeer`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpPeer {
    pub name: String,
    pub scope: PeerScope,
    pub target: PeerTarget,
    pub as_number: Option<u32>,
    pub local_as_number: Option<u32>,
    pub next_hop_mode: NextHopModeSpec,
    /// `sourceAddress: UseNodeIP` (the default) binds to the node IP; `None` leaves it to the
    /// kernel.
    pub source_node_ip: bool,
    pub password: Option<SecretKeyRef>,
    pub max_restart_time: Option<Duration>,
    pub keepalive_time: Option<Duration>,
    pub num_allowed_local_as_numbers: Option<u8>,
    pub ttl_security: Option<u8>,
    pub reachable_by: Option<IpAddr>,
    pub filters: Vec<String>,
    /// `reversePeering: Auto` (default) adds the reverse peering on selected nodes.
    pub reverse_peering_auto: bool,
}

/// IPIP / VXLAN mode of a pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub enum EncapMode {
    #[default]
    Never,
    Always,
    CrossSubnet,
}

/// `IPPool`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpPool {
    pub name: String,
    pub cidr: IpNet,
    pub ipip_mode: EncapMode,
    pub vxlan_mode: EncapMode,
    pub disabled: bool,
    pub disable_bgp_export: bool,
    pub block_size: u8,
    pub node_selector: Option<Selector>,
}

/// State of a block affinity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AffinityState {
    /// `confirmed`, or absent (legacy rows).
    Confirmed,
    Pending,
    PendingDeletion,
}

/// A block affine to a node (`/calico/ipam/v2/host/<node>/ipvX/block/<cidr>` or a
/// `BlockAffinity` resource).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockAffinity {
    pub node: String,
    pub cidr: IpNet,
    pub state: AffinityState,
    /// Soft-deleted rows (`deleted: true`) count as absent.
    pub deleted: bool,
    /// `host` affinities; `virtual` ones (load-balancer controller) are not a node's blocks.
    pub host: bool,
}

/// An IPAM block (only what routing cross-checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpamBlock {
    pub cidr: IpNet,
    /// `host:<node>` affinity, if any.
    pub affinity: Option<String>,
    pub deleted: bool,
}

// ---------------------------------------------------------------------------------------------
// Scalar parsers shared by the serde adapters.

/// Parses Calico's AS number forms: a number, a decimal string, or dotted `a.b` (asdot).
pub fn parse_as_number(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let bad = || format!("invalid AS number {s:?}");
    let n = if let Some((hi, lo)) = s.split_once('.') {
        let hi: u16 = hi.parse().map_err(|_| bad())?;
        let lo: u16 = lo.parse().map_err(|_| bad())?;
        (u32::from(hi) << 16) | u32::from(lo)
    } else {
        s.parse::<u32>().map_err(|_| bad())?
    };
    if n == 0 {
        return Err(format!(
            "invalid AS number {s:?}: AS 0 is reserved (RFC 7607)"
        ));
    }
    Ok(n)
}

/// Parses a Go duration string (`120s`, `2m30s`, `1.5h`, `500ms`) as Calico stores them.
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let orig = s;
    let bad = || format!("invalid duration {orig:?} (expected e.g. \"120s\", \"2m\", \"500ms\")");
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut total = 0f64;
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > 1e9 {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses `peerIP`: `a.b.c.d`, `a.b.c.d:port`, `v6`, `[v6]:port`.
pub fn parse_peer_ip(s: &str) -> Result<(IpAddr, Option<u16>), String> {
    let s = s.trim();
    let bad = || format!("invalid peer address {s:?} (expected IP, IP:port or [IPv6]:port)");
    if let Ok(a) = s.parse::<IpAddr>() {
        return Ok((a, None));
    }
    let sa: std::net::SocketAddr = s.parse().map_err(|_| bad())?;
    if sa.port() == 0 {
        return Err(bad());
    }
    Ok((sa.ip(), Some(sa.port())))
}

fn parse_encap(s: &str) -> Result<EncapMode, String> {
    match s {
        "" | "Never" | "never" => Ok(EncapMode::Never),
        "Always" | "always" => Ok(EncapMode::Always),
        "CrossSubnet" | "cross-subnet" => Ok(EncapMode::CrossSubnet),
        _ => Err(format!(
            "invalid encapsulation mode {s:?} (expected Never, Always or CrossSubnet)"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// serde adapters: each turns a scalar into a typed value with a message naming the value.

/// A JSON scalar that may be a number or a string (AS numbers, ports).
#[derive(Deserialize)]
#[serde(untagged)]
enum NumOrStr {
    Num(u64),
    Str(String),
}

fn de_as<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v: Option<NumOrStr> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(NumOrStr::Num(n)) => match u32::try_from(n) {
            Ok(0) | Err(_) => Err(de::Error::custom(format!("invalid AS number {n}"))),
            Ok(n) => Ok(Some(n)),
        },
        Some(NumOrStr::Str(s)) if s.is_empty() => Ok(None),
        Some(NumOrStr::Str(s)) => parse_as_number(&s).map(Some).map_err(de::Error::custom),
    }
}

fn de_from_str_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let v: Option<String> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => s
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| de::Error::custom(format!("invalid value {s:?}: {e}"))),
    }
}

fn de_ifaddr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IfAddr>, D::Error> {
    de_from_str_opt::<D, IfAddr>(d)
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => parse_go_duration(&s).map(Some).map_err(de::Error::custom),
    }
}

fn de_encap<'de, D: Deserializer<'de>>(d: D) -> Result<EncapMode, D::Error> {
    let v: Option<String> = Option::deserialize(d)?;
    parse_encap(v.as_deref().unwrap_or("")).map_err(de::Error::custom)
}

/// `deleted` is a bool in v3 and etcd, a string `"true"`/`"false"` in v1 CRDs.
fn de_loose_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum B {
        Bool(bool),
        Str(String),
    }
    match Option::<B>::deserialize(d)? {
        None => Ok(false),
        Some(B::Bool(b)) => Ok(b),
        Some(B::Str(s)) => match s.as_str() {
            "true" | "True" => Ok(true),
            "false" | "False" | "" => Ok(false),
            _ => Err(de::Error::custom(format!(
                "invalid boolean {s:?} (expected true or false)"
            ))),
        },
    }
}

fn de_u8_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u8>, D::Error> {
    let v: Option<i64> = Option::deserialize(d)?;
    match v {
        None => Ok(None),
        Some(n) => u8::try_from(n)
            .map(Some)
            .map_err(|_| de::Error::custom(format!("invalid value {n} (expected 0..=255)"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Raw (wire) shapes.

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawNodeSpec {
    #[serde(default)]
    bgp: Option<RawNodeBgp>,
    #[serde(default, rename = "ipv4VXLANTunnelAddr")]
    _v4_vxlan: Option<IgnoredAny>,
    #[serde(default, rename = "ipv6VXLANTunnelAddr")]
    _v6_vxlan: Option<IgnoredAny>,
    #[serde(default, rename = "vxlanTunnelMACAddr")]
    _vxlan_mac: Option<IgnoredAny>,
    #[serde(default, rename = "vxlanTunnelMACAddrV6")]
    _vxlan_mac6: Option<IgnoredAny>,
    #[serde(default, rename = "orchRefs")]
    _orch_refs: Option<IgnoredAny>,
    #[serde(default, rename = "wireguard")]
    _wireguard: Option<IgnoredAny>,
    #[serde(default, rename = "addresses")]
    _addresses: Option<IgnoredAny>,
    #[serde(default, rename = "interfaces")]
    _interfaces: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNodeBgp {
    #[serde(default, rename = "ipv4Address", deserialize_with = "de_ifaddr")]
    ipv4_address: Option<IfAddr>,
    #[serde(default, rename = "ipv6Address", deserialize_with = "de_ifaddr")]
    ipv6_address: Option<IfAddr>,
    #[serde(default, rename = "asNumber", deserialize_with = "de_as")]
    as_number: Option<u32>,
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        deserialize_with = "de_from_str_opt"
    )]
    ipv4_ipip_tunnel_addr: Option<Ipv4Addr>,
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        deserialize_with = "de_from_str_opt"
    )]
    route_reflector_cluster_id: Option<Ipv4Addr>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBgpConfigSpec {
    #[serde(default, deserialize_with = "de_as")]
    as_number: Option<u32>,
    #[serde(default)]
    node_to_node_mesh_enabled: Option<bool>,
    #[serde(default)]
    listen_port: Option<u16>,
    #[serde(default)]
    bind_mode: Option<String>,
    #[serde(default)]
    log_severity_screen: Option<String>,
    #[serde(default)]
    node_mesh_password: Option<RawPassword>,
    #[serde(default, deserialize_with = "de_duration")]
    node_mesh_max_restart_time: Option<Duration>,
    #[serde(default)]
    communities: Vec<RawCommunity>,
    #[serde(default)]
    prefix_advertisements: Vec<RawPrefixAdv>,
    #[serde(default, rename = "serviceClusterIPs")]
    service_cluster_ips: Vec<RawCidr>,
    #[serde(default, rename = "serviceExternalIPs")]
    service_external_ips: Vec<RawCidr>,
    #[serde(default, rename = "serviceLoadBalancerIPs")]
    service_load_balancer_ips: Vec<RawCidr>,
    #[serde(default, rename = "serviceLoadBalancerAggregation")]
    _lb_aggregation: Option<IgnoredAny>,
    #[serde(default, rename = "ignoredInterfaces")]
    _ignored_interfaces: Option<IgnoredAny>,
    #[serde(default, rename = "localWorkloadPeeringIPV4")]
    _lw4: Option<IgnoredAny>,
    #[serde(default, rename = "localWorkloadPeeringIPV6")]
    _lw6: Option<IgnoredAny>,
    #[serde(default, rename = "programClusterRoutes")]
    _program_cluster_routes: Option<IgnoredAny>,
    #[serde(default, rename = "ipv4NormalRoutePriority")]
    _v4_prio: Option<IgnoredAny>,
    #[serde(default, rename = "ipv6NormalRoutePriority")]
    _v6_prio: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPassword {
    secret_key_ref: SecretKeyRef,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommunity {
    name: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrefixAdv {
    cidr: IpNet,
    #[serde(default)]
    communities: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCidr {
    cidr: IpNet,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBgpPeerSpec {
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    node_selector: Option<String>,
    #[serde(default, rename = "peerIP")]
    peer_ip: Option<String>,
    #[serde(default)]
    peer_selector: Option<String>,
    #[serde(default)]
    local_workload_selector: Option<String>,
    #[serde(default, deserialize_with = "de_as")]
    as_number: Option<u32>,
    #[serde(default, rename = "localASNumber", deserialize_with = "de_as")]
    local_as_number: Option<u32>,
    #[serde(default)]
    keep_original_next_hop: Option<bool>,
    #[serde(default)]
    next_hop_mode: Option<String>,
    #[serde(default)]
    source_address: Option<String>,
    #[serde(default)]
    password: Option<RawPassword>,
    #[serde(default, deserialize_with = "de_duration")]
    max_restart_time: Option<Duration>,
    #[serde(default, deserialize_with = "de_duration")]
    keepalive_time: Option<Duration>,
    /// Calico spells it `numAllowedLocalASNumbers` (camelCase would give `...AsNumbers`).
    #[serde(
        default,
        rename = "numAllowedLocalASNumbers",
        deserialize_with = "de_u8_opt"
    )]
    num_allowed_local_as_numbers: Option<u8>,
    #[serde(default, deserialize_with = "de_u8_opt")]
    ttl_security: Option<u8>,
    #[serde(default)]
    reachable_by: Option<String>,
    #[serde(default)]
    filters: Vec<String>,
    #[serde(default)]
    reverse_peering: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawIpPoolSpec {
    cidr: Option<String>,
    #[serde(default, deserialize_with = "de_encap")]
    ipip_mode: EncapMode,
    #[serde(default, deserialize_with = "de_encap")]
    vxlan_mode: EncapMode,
    #[serde(default)]
    disabled: bool,
    #[serde(default, rename = "disableBGPExport")]
    disable_bgp_export: bool,
    #[serde(default)]
    block_size: Option<u8>,
    #[serde(default)]
    node_selector: Option<String>,
    #[serde(default, rename = "natOutgoing")]
    _nat_outgoing: Option<IgnoredAny>,
    #[serde(default, rename = "namespaceSelector")]
    _namespace_selector: Option<IgnoredAny>,
    #[serde(default, rename = "allowedUses")]
    _allowed_uses: Option<IgnoredAny>,
    #[serde(default, rename = "assignmentMode")]
    _assignment_mode: Option<IgnoredAny>,
    /// v1 (pre-3.x) form, still accepted by calicoctl.
    #[serde(default, rename = "ipip")]
    _ipip_v1: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAffinitySpec {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    node: Option<String>,
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default, deserialize_with = "de_loose_bool")]
    deleted: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawBlockSpec {
    #[serde(default)]
    cidr: Option<String>,
    #[serde(default)]
    affinity: Option<String>,
    #[serde(default, deserialize_with = "de_loose_bool")]
    deleted: bool,
}

// ---------------------------------------------------------------------------------------------
// Entry points.

/// API groups accepted in `apiVersion`.
const API_VERSIONS: &[&str] = &["projectcalico.org/v3", "crd.projectcalico.org/v1"];

fn res_err(
    kind: &str,
    name: &str,
    path: impl Into<String>,
    msg: impl Into<String>,
) -> ResourceError {
    ResourceError {
        kind: kind.to_string(),
        name: name.to_string(),
        path: path.into(),
        message: msg.into(),
    }
}

/// Deserialises `spec` of a resource with the field path in errors.
fn spec<T: for<'de> Deserialize<'de> + Default>(
    kind: &str,
    name: &str,
    v: Option<&serde_json::Value>,
) -> Result<T, ResourceError> {
    let Some(v) = v else {
        return Ok(T::default());
    };
    if v.is_null() {
        return Ok(T::default());
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." {
            "spec".to_string()
        } else {
            format!("spec.{path}")
        };
        res_err(kind, name, path, e.into_inner().to_string())
    })
}

fn selector_field(
    kind: &str,
    name: &str,
    field: &str,
    s: Option<String>,
) -> Result<Option<Selector>, ResourceError> {
    match s {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => Selector::parse(&s)
            .map(Some)
            .map_err(|e| res_err(kind, name, format!("spec.{field}"), e.to_string())),
    }
}

fn cidr_field(kind: &str, name: &str, field: &str, s: &str) -> Result<IpNet, ResourceError> {
    let s = s.trim();
    let n: IpNet = s.parse().map_err(|_| {
        res_err(
            kind,
            name,
            format!("spec.{field}"),
            format!("invalid CIDR {s:?}"),
        )
    })?;
    Ok(n.trunc())
}

/// Parses one resource document (`apiVersion`, `kind`, `metadata`, `spec`). Kinds podbgp does
/// not consume give `Ok(None)` so a file may carry a whole cluster's resources.
pub fn parse_resource(doc: &serde_json::Value) -> Result<Option<Resource>, ResourceError> {
    let obj = doc.as_object().ok_or_else(|| {
        res_err(
            "resource",
            "",
            "",
            "expected a mapping with apiVersion, kind, metadata and spec",
        )
    })?;
    let kind = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or_else(|| res_err("resource", "", "kind", "missing or not a string"))?;
    let meta: RawMeta = match obj.get("metadata") {
        None => RawMeta::default(),
        Some(m) => serde_path_to_error::deserialize(m).map_err(|e| {
            res_err(
                kind,
                "",
                format!("metadata.{}", e.path()),
                e.into_inner().to_string(),
            )
        })?,
    };
    let name = meta.name.clone().unwrap_or_default();
    if kind == "Secret" {
        return super::secret::parse_secret(obj, &name).map(|s| Some(Resource::Secret(s)));
    }
    if let Some(api) = obj.get("apiVersion") {
        let api = api.as_str().unwrap_or("");
        if !API_VERSIONS.contains(&api) {
            return Err(res_err(
                kind,
                &name,
                "apiVersion",
                format!(
                    "unsupported apiVersion {api:?} (expected projectcalico.org/v3 or crd.projectcalico.org/v1)"
                ),
            ));
        }
    }
    let known = ["apiVersion", "kind", "metadata", "spec", "status"];
    if let Some(k) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(res_err(kind, &name, k.as_str(), "unknown top-level field"));
    }
    let consumed = matches!(
        kind,
        "Node" | "BGPConfiguration" | "BGPPeer" | "IPPool" | "BlockAffinity" | "IPAMBlock"
    );
    if !consumed {
        return Ok(None);
    }
    if name.is_empty() && kind != "BlockAffinity" && kind != "IPAMBlock" {
        return Err(res_err(kind, "", "metadata.name", "missing"));
    }
    let labels = meta.labels.unwrap_or_default();
    let sp = obj.get("spec");
    let r = match kind {
        "Node" => {
            let s: RawNodeSpec = spec(kind, &name, sp)?;
            Resource::Node(Node {
                name,
                labels,
                bgp: s.bgp.map(|b| NodeBgp {
                    ipv4_address: b.ipv4_address,
                    ipv6_address: b.ipv6_address,
                    as_number: b.as_number,
                    ipv4_ipip_tunnel_addr: b.ipv4_ipip_tunnel_addr,
                    route_reflector_cluster_id: b.route_reflector_cluster_id,
                }),
            })
        }
        "BGPConfiguration" => {
            let s: RawBgpConfigSpec = spec(kind, &name, sp)?;
            Resource::BgpConfiguration(bgp_config(&name, s)?)
        }
        "BGPPeer" => {
            let s: RawBgpPeerSpec = spec(kind, &name, sp)?;
            Resource::BgpPeer(bgp_peer(&name, s)?)
        }
        "IPPool" => {
            let s: RawIpPoolSpec = spec(kind, &name, sp)?;
            Resource::IpPool(ip_pool(&name, s)?)
        }
        "BlockAffinity" => {
            let s: RawAffinitySpec = spec(kind, &name, sp)?;
            let node = s
                .node
                .filter(|n| !n.is_empty())
                .ok_or_else(|| res_err(kind, &name, "spec.node", "missing"))?;
            let cidr = s
                .cidr
                .ok_or_else(|| res_err(kind, &name, "spec.cidr", "missing"))?;
            let cidr = cidr_field(kind, &name, "cidr", &cidr)?;
            let state = parse_state(s.state.as_deref())
                .map_err(|m| res_err(kind, &name, "spec.state", m))?;
            let host = match s.kind.as_deref() {
                None | Some("") | Some("host") => true,
                Some("virtual") => false,
                Some(other) => {
                    return Err(res_err(
                        kind,
                        &name,
                        "spec.type",
                        format!("invalid affinity type {other:?} (expected host or virtual)"),
                    ));
                }
            };
            Resource::BlockAffinity(BlockAffinity {
                node,
                cidr,
                state,
                deleted: s.deleted,
                host,
            })
        }
        "IPAMBlock" => {
            let s: RawBlockSpec = spec(kind, &name, sp)?;
            let cidr = s
                .cidr
                .ok_or_else(|| res_err(kind, &name, "spec.cidr", "missing"))?;
            Resource::IpamBlock(IpamBlock {
                cidr: cidr_field(kind, &name, "cidr", &cidr)?,
                affinity: s.affinity,
                deleted: s.deleted,
            })
        }
        _ => return Ok(None),
    };
    Ok(Some(r))
}

/// A two-valued string field: `false` for `default` (also when absent or empty), `true` for
/// `other`, an error naming the field and both values otherwise.
fn two_way(
    kind: &str,
    name: &str,
    field: &str,
    value: Option<&str>,
    default: &str,
    other: &str,
) -> Result<bool, ResourceError> {
    match value {
        None | Some("") => Ok(false),
        Some(v) if v == default => Ok(false),
        Some(v) if v == other => Ok(true),
        Some(v) => Err(res_err(
            kind,
            name,
            field,
            format!("invalid value {v:?} (expected {default} or {other})"),
        )),
    }
}

fn parse_state(s: Option<&str>) -> Result<AffinityState, String> {
    match s {
        None | Some("") | Some("confirmed") => Ok(AffinityState::Confirmed),
        Some("pending") => Ok(AffinityState::Pending),
        Some("pendingDeletion") => Ok(AffinityState::PendingDeletion),
        Some(other) => Err(format!(
            "invalid affinity state {other:?} (expected confirmed, pending or pendingDeletion)"
        )),
    }
}

fn bgp_config(name: &str, s: RawBgpConfigSpec) -> Result<BgpConfiguration, ResourceError> {
    const K: &str = "BGPConfiguration";
    if name != "default" && !name.starts_with("node.") {
        return Err(res_err(
            K,
            name,
            "metadata.name",
            "must be \"default\" or \"node.<nodename>\"",
        ));
    }
    let bind_mode_node_ip = two_way(
        K,
        name,
        "spec.bindMode",
        s.bind_mode.as_deref(),
        "None",
        "NodeIP",
    )?;
    if s.listen_port == Some(0) {
        return Err(res_err(K, name, "spec.listenPort", "invalid value 0"));
    }
    Ok(BgpConfiguration {
        name: name.to_string(),
        as_number: s.as_number,
        node_to_node_mesh_enabled: s.node_to_node_mesh_enabled,
        listen_port: s.listen_port,
        bind_mode_node_ip,
        log_severity_screen: s.log_severity_screen,
        node_mesh_password: s.node_mesh_password.map(|p| p.secret_key_ref),
        node_mesh_max_restart_time: s.node_mesh_max_restart_time,
        communities: s
            .communities
            .into_iter()
            .map(|c| Community {
                name: c.name,
                value: c.value,
            })
            .collect(),
        prefix_advertisements: s
            .prefix_advertisements
            .into_iter()
            .map(|p| PrefixAdvertisement {
                cidr: p.cidr.trunc(),
                communities: p.communities,
            })
            .collect(),
        service_cluster_ips: s.service_cluster_ips.into_iter().map(|c| c.cidr).collect(),
        service_external_ips: s.service_external_ips.into_iter().map(|c| c.cidr).collect(),
        service_load_balancer_ips: s
            .service_load_balancer_ips
            .into_iter()
            .map(|c| c.cidr)
            .collect(),
    })
}

fn bgp_peer(name: &str, s: RawBgpPeerSpec) -> Result<BgpPeer, ResourceError> {
    const K: &str = "BGPPeer";
    let node_selector = selector_field(K, name, "nodeSelector", s.node_selector)?;
    let node = s.node.filter(|n| !n.is_empty());
    let scope = match (node, node_selector) {
        (Some(_), Some(_)) => {
            return Err(res_err(
                K,
                name,
                "spec.nodeSelector",
                "cannot be set together with spec.node",
            ));
        }
        (Some(n), None) => PeerScope::Node(n),
        (None, Some(sel)) => PeerScope::Selector(sel),
        (None, None) => PeerScope::Global,
    };
    let peer_selector = selector_field(K, name, "peerSelector", s.peer_selector)?;
    let lw = selector_field(K, name, "localWorkloadSelector", s.local_workload_selector)?;
    let peer_ip = match s.peer_ip.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(ip) => Some(parse_peer_ip(ip).map_err(|m| res_err(K, name, "spec.peerIP", m))?),
    };
    let target = match (peer_ip, peer_selector, lw) {
        (Some((addr, port)), None, None) => {
            if s.as_number.is_none() {
                return Err(res_err(
                    K,
                    name,
                    "spec.asNumber",
                    "required with spec.peerIP",
                ));
            }
            PeerTarget::Ip { addr, port }
        }
        (None, Some(sel), None) => {
            if s.as_number.is_some() {
                return Err(res_err(
                    K,
                    name,
                    "spec.asNumber",
                    "must be empty with spec.peerSelector (the selected nodes' AS numbers are used)",
                ));
            }
            PeerTarget::Nodes(sel)
        }
        (None, None, Some(sel)) => PeerTarget::LocalWorkloads(sel),
        (None, None, None) => {
            return Err(res_err(
                K,
                name,
                "spec",
                "one of peerIP, peerSelector or localWorkloadSelector is required",
            ));
        }
        _ => {
            return Err(res_err(
                K,
                name,
                "spec.peerSelector",
                "peerIP, peerSelector and localWorkloadSelector are mutually exclusive",
            ));
        }
    };
    let next_hop_mode = match (s.next_hop_mode.as_deref(), s.keep_original_next_hop) {
        (Some(m), Some(true)) if !m.is_empty() => {
            return Err(res_err(
                K,
                name,
                "spec.keepOriginalNextHop",
                "cannot be set together with spec.nextHopMode",
            ));
        }
        (None | Some(""), Some(true)) => NextHopModeSpec::Keep,
        (None | Some("") | Some("Auto"), _) => NextHopModeSpec::Auto,
        (Some("Self"), _) => NextHopModeSpec::Self_,
        (Some("Keep"), _) => NextHopModeSpec::Keep,
        (Some(o), _) => {
            return Err(res_err(
                K,
                name,
                "spec.nextHopMode",
                format!("invalid value {o:?} (expected Auto, Self or Keep)"),
            ));
        }
    };
    let source_node_ip = !two_way(
        K,
        name,
        "spec.sourceAddress",
        s.source_address.as_deref(),
        "UseNodeIP",
        "None",
    )?;
    let reverse_peering_auto = !two_way(
        K,
        name,
        "spec.reversePeering",
        s.reverse_peering.as_deref(),
        "Auto",
        "Manual",
    )?;
    let reachable_by = match s.reachable_by.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(r) => Some(r.parse::<IpAddr>().map_err(|_| {
            res_err(
                K,
                name,
                "spec.reachableBy",
                format!("invalid address {r:?}"),
            )
        })?),
    };
    Ok(BgpPeer {
        name: name.to_string(),
        scope,
        target,
        as_number: s.as_number,
        local_as_number: s.local_as_number,
        next_hop_mode,
        source_node_ip,
        password: s.password.map(|p| p.secret_key_ref),
        max_restart_time: s.max_restart_time,
        keepalive_time: s.keepalive_time,
        num_allowed_local_as_numbers: s.num_allowed_local_as_numbers,
        ttl_security: s.ttl_security,
        reachable_by,
        filters: s.filters,
        reverse_peering_auto,
    })
}

fn ip_pool(name: &str, s: RawIpPoolSpec) -> Result<IpPool, ResourceError> {
    const K: &str = "IPPool";
    let cidr = s
        .cidr
        .ok_or_else(|| res_err(K, name, "spec.cidr", "missing"))?;
    let cidr = cidr_field(K, name, "cidr", &cidr)?;
    let block_size = s
        .block_size
        .unwrap_or(if cidr.addr().is_ipv4() { 26 } else { 122 });
    let range = if cidr.addr().is_ipv4() {
        20..=32
    } else {
        116..=128
    };
    if !range.contains(&block_size) {
        return Err(res_err(
            K,
            name,
            "spec.blockSize",
            format!(
                "invalid value {block_size} (allowed {}..={})",
                range.start(),
                range.end()
            ),
        ));
    }
    if s.ipip_mode != EncapMode::Never && s.vxlan_mode != EncapMode::Never {
        return Err(res_err(
            K,
            name,
            "spec.vxlanMode",
            "IPIP and VXLAN cannot both be enabled on one pool",
        ));
    }
    if s.ipip_mode != EncapMode::Never && !cidr.addr().is_ipv4() {
        return Err(res_err(K, name, "spec.ipipMode", "IPIP is IPv4 only"));
    }
    Ok(IpPool {
        name: name.to_string(),
        cidr,
        ipip_mode: s.ipip_mode,
        vxlan_mode: s.vxlan_mode,
        disabled: s.disabled,
        disable_bgp_export: s.disable_bgp_export,
        block_size,
        node_selector: selector_field(K, name, "nodeSelector", s.node_selector)?,
    })
}

// ---------------------------------------------------------------------------------------------
// etcd keys (libcalico-go's backend model).

/// What an etcd key under `/calico/` names, for the kinds podbgp consumes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EtcdKey {
    /// `/calico/resources/v3/projectcalico.org/<plural>/<name>`.
    Resource { kind: &'static str, name: String },
    /// `/calico/ipam/v2/host/<node>/ipv4/block/<cidr->`.
    Affinity { node: String, cidr: IpNet },
    /// `/calico/ipam/v2/assignment/ipv4/block/<cidr->`.
    Block { cidr: IpNet },
}

/// Calico's key prefix for everything podbgp watches.
pub const ETCD_PREFIX: &str = "/calico/";

/// Decodes `10.244.1.0-26` / `fd00::-122`.
pub fn parse_key_cidr(s: &str) -> Option<IpNet> {
    let (addr, len) = s.rsplit_once('-')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    IpNet::new(addr, len).ok().map(|n| n.trunc())
}

/// Encodes a CIDR as Calico puts it in a key.
pub fn key_cidr(n: &IpNet) -> String {
    format!("{}-{}", n.network(), n.prefix_len())
}

/// Classifies a key; `None` for keys podbgp ignores.
pub fn parse_etcd_key(key: &str) -> Option<EtcdKey> {
    if let Some(rest) = key.strip_prefix("/calico/resources/v3/projectcalico.org/") {
        let (plural, name) = rest.split_once('/')?;
        if name.is_empty() || name.contains('/') {
            return None;
        }
        let kind = match plural {
            "nodes" => "Node",
            "bgpconfigurations" => "BGPConfiguration",
            "bgppeers" => "BGPPeer",
            "ippools" => "IPPool",
            _ => return None,
        };
        return Some(EtcdKey::Resource {
            kind,
            name: name.to_string(),
        });
    }
    if let Some(rest) = key.strip_prefix("/calico/ipam/v2/host/") {
        // <node>/ipv4/block/<cidr>
        let parts: Vec<&str> = rest.split('/').collect();
        if let [node, fam, "block", cidr] = parts.as_slice()
            && (*fam == "ipv4" || *fam == "ipv6")
            && !node.is_empty()
        {
            return Some(EtcdKey::Affinity {
                node: node.to_string(),
                cidr: parse_key_cidr(cidr)?,
            });
        }
        return None;
    }
    if let Some(rest) = key.strip_prefix("/calico/ipam/v2/assignment/") {
        let parts: Vec<&str> = rest.split('/').collect();
        if let [fam, "block", cidr] = parts.as_slice()
            && (*fam == "ipv4" || *fam == "ipv6")
        {
            return Some(EtcdKey::Block {
                cidr: parse_key_cidr(cidr)?,
            });
        }
    }
    None
}

/// Parses the JSON value stored at an etcd key (already classified).
pub fn parse_etcd_value(key: &EtcdKey, value: &[u8]) -> Result<Resource, ResourceError> {
    let (kind, name) = match key {
        EtcdKey::Resource { kind, name } => (*kind, name.clone()),
        EtcdKey::Affinity { node, cidr } => ("BlockAffinity", format!("{node}/{cidr}")),
        EtcdKey::Block { cidr } => ("IPAMBlock", cidr.to_string()),
    };
    let v: serde_json::Value = if value.iter().all(u8::is_ascii_whitespace) {
        serde_json::Value::Object(Default::default())
    } else {
        serde_json::from_slice(value)
            .map_err(|e| res_err(kind, &name, "", format!("invalid JSON: {e}")))?
    };
    match key {
        EtcdKey::Resource { kind, name } => {
            let r = parse_resource(&v)?.ok_or_else(|| {
                res_err(kind, name, "kind", "value is not a resource of this kind")
            })?;
            if r.kind() != *kind {
                return Err(res_err(
                    kind,
                    name,
                    "kind",
                    format!("stored value is a {}", r.kind()),
                ));
            }
            Ok(r)
        }
        EtcdKey::Affinity { node, cidr } => {
            #[derive(Deserialize, Default)]
            #[serde(deny_unknown_fields)]
            struct Raw {
                #[serde(default)]
                state: Option<String>,
                #[serde(default, deserialize_with = "de_loose_bool")]
                deleted: bool,
            }
            let r: Raw = serde_path_to_error::deserialize(&v).map_err(|e| {
                res_err(
                    kind,
                    &name,
                    e.path().to_string(),
                    e.into_inner().to_string(),
                )
            })?;
            let state =
                parse_state(r.state.as_deref()).map_err(|m| res_err(kind, &name, "state", m))?;
            Ok(Resource::BlockAffinity(BlockAffinity {
                node: node.clone(),
                cidr: *cidr,
                state,
                deleted: r.deleted,
                host: true,
            }))
        }
        EtcdKey::Block { cidr } => {
            #[derive(Deserialize, Default)]
            struct Raw {
                #[serde(default)]
                affinity: Option<String>,
                #[serde(default, deserialize_with = "de_loose_bool")]
                deleted: bool,
            }
            let r: Raw = serde_path_to_error::deserialize(&v).map_err(|e| {
                res_err(
                    kind,
                    &name,
                    e.path().to_string(),
                    e.into_inner().to_string(),
                )
            })?;
            Ok(Resource::IpamBlock(IpamBlock {
                cidr: *cidr,
                affinity: r.affinity,
                deleted: r.deleted,
            }))
        }
    }
}

/// The etcd key and JSON value Calico keeps for a resource document (what `calicoctl apply`
/// writes with `DATASTORE_TYPE=etcdv3`), after validating it; `None` for kinds podbgp does not
/// read. Used to seed etcd from a topology file.
pub fn etcd_kv(doc: &serde_json::Value) -> Result<Option<(String, String)>, ResourceError> {
    let Some(r) = parse_resource(doc)? else {
        return Ok(None);
    };
    let fam = |n: &IpNet| if n.addr().is_ipv4() { "ipv4" } else { "ipv6" };
    let kv = match &r {
        Resource::BlockAffinity(a) => {
            let host = if a.host { "host" } else { "virtual" };
            let state = match a.state {
                AffinityState::Confirmed => "confirmed",
                AffinityState::Pending => "pending",
                AffinityState::PendingDeletion => "pendingDeletion",
            };
            (
                format!(
                    "/calico/ipam/v2/{host}/{}/{}/block/{}",
                    a.node,
                    fam(&a.cidr),
                    key_cidr(&a.cidr)
                ),
                serde_json::json!({"state": state, "deleted": a.deleted}).to_string(),
            )
        }
        Resource::IpamBlock(b) => (
            format!("/calico/ipam/v2/assignment/{}/block/{}", fam(&b.cidr), key_cidr(&b.cidr)),
            serde_json::json!({"cidr": b.cidr.to_string(), "affinity": b.affinity, "deleted": b.deleted})
                .to_string(),
        ),
        // Secrets live in Kubernetes, never in Calico's etcd tree.
        Resource::Secret(_) => return Ok(None),
        other => {
            let plural = match other {
                Resource::Node(_) => "nodes",
                Resource::BgpConfiguration(_) => "bgpconfigurations",
                Resource::BgpPeer(_) => "bgppeers",
                _ => "ippools",
            };
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let mut v = doc.clone();
            v["apiVersion"] = serde_json::Value::from("projectcalico.org/v3");
            (
                format!("/calico/resources/v3/projectcalico.org/{plural}/{name}"),
                v.to_string(),
            )
        }
    };
    Ok(Some(kv))
}

/// Every document of a multi-document YAML text as JSON values (empty documents skipped).
pub fn yaml_documents(text: &str) -> Result<Vec<serde_json::Value>, String> {
    serde_saphyr::from_multiple::<serde_json::Value>(text)
        .map(|v| v.into_iter().filter(|d| !d.is_null()).collect())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn as_numbers() {
        assert_eq!(parse_as_number("65000"), Ok(65000));
        assert_eq!(parse_as_number("1.10"), Ok((1 << 16) + 10));
        assert!(parse_as_number("0").is_err());
        assert!(parse_as_number("65x").unwrap_err().contains("65x"));
        assert!(parse_as_number("70000.1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_go_duration("2m30s"), Ok(Duration::from_secs(150)));
        assert_eq!(parse_go_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Ok(Duration::from_secs(5400)));
        for bad in ["", "s", "10", "-1s", "1x", "1s2"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn peer_ips() {
        assert_eq!(
            parse_peer_ip("198.18.0.1"),
            Ok(("198.18.0.1".parse().unwrap(), None))
        );
        assert_eq!(
            parse_peer_ip("198.18.0.1:1179"),
            Ok(("198.18.0.1".parse().unwrap(), Some(1179)))
        );
        assert_eq!(
            parse_peer_ip("fd00::1"),
            Ok(("fd00::1".parse().unwrap(), None))
        );
        assert_eq!(
            parse_peer_ip("[fd00::1]:180"),
            Ok(("fd00::1".parse().unwrap(), Some(180)))
        );
        assert!(parse_peer_ip("198.18.0.1:0").is_err());
        assert!(parse_peer_ip("host:179").is_err());
    }

    #[test]
    fn etcd_keys() {
        assert_eq!(
            parse_etcd_key("/calico/ipam/v2/host/node-a/ipv4/block/10.244.1.0-26"),
            Some(EtcdKey::Affinity {
                node: "node-a".into(),
                cidr: "10.244.1.0/26".parse().unwrap()
            })
        );
        assert_eq!(
            parse_etcd_key("/calico/ipam/v2/host/node-a/ipv6/block/fd00::-122"),
            Some(EtcdKey::Affinity {
                node: "node-a".into(),
                cidr: "fd00::/122".parse().unwrap()
            })
        );
        assert_eq!(
            parse_etcd_key("/calico/resources/v3/projectcalico.org/bgppeers/tor"),
            Some(EtcdKey::Resource {
                kind: "BGPPeer",
                name: "tor".into()
            })
        );
        assert_eq!(parse_etcd_key("/calico/ipam/v2/handle/x"), None);
        assert_eq!(
            parse_etcd_key("/calico/resources/v3/projectcalico.org/felixconfigurations/default"),
            None
        );
        assert_eq!(key_cidr(&"fd00::/122".parse().unwrap()), "fd00::-122");
        assert_eq!(key_cidr(&"10.244.1.0/26".parse().unwrap()), "10.244.1.0-26");
    }

    #[test]
    fn affinity_values() {
        let k = parse_etcd_key("/calico/ipam/v2/host/a/ipv4/block/10.244.1.0-26").unwrap();
        let r = parse_etcd_value(&k, b"").unwrap();
        let Resource::BlockAffinity(a) = r else {
            panic!()
        };
        assert_eq!(a.state, AffinityState::Confirmed);
        let r = parse_etcd_value(&k, br#"{"state":"pending","deleted":false}"#).unwrap();
        let Resource::BlockAffinity(a) = r else {
            panic!()
        };
        assert_eq!(a.state, AffinityState::Pending);
        let e = parse_etcd_value(&k, br#"{"state":"bogus"}"#).unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn node_resource() {
        let v = json!({
            "apiVersion": "projectcalico.org/v3", "kind": "Node",
            "metadata": {"name": "a", "labels": {"rack": "r1"}},
            "spec": {"bgp": {"ipv4Address": "198.18.1.1/24", "asNumber": "1.10",
                              "routeReflectorClusterID": "224.0.0.1"},
                     "orchRefs": [{"nodeName": "a", "orchestrator": "k8s"}]},
            "status": {"podCIDRs": []}
        });
        let Some(Resource::Node(n)) = parse_resource(&v).unwrap() else {
            panic!()
        };
        let b = n.bgp.unwrap();
        assert_eq!(b.ipv4_address.unwrap().to_string(), "198.18.1.1/24");
        assert_eq!(
            b.ipv4_address.unwrap().network().to_string(),
            "198.18.1.0/24"
        );
        assert_eq!(b.as_number, Some(65546));
        assert_eq!(n.labels["rack"], "r1");
    }

    #[test]
    fn errors_name_resource_field_and_value() {
        let v = json!({"kind": "BGPPeer", "metadata": {"name": "tor"},
                       "spec": {"peerIP": "198.18.0.1", "asNumber": "65x"}});
        let e = parse_resource(&v).unwrap_err().to_string();
        assert!(e.contains("BGPPeer \"tor\""), "{e}");
        assert!(e.contains("spec.asNumber"), "{e}");
        assert!(e.contains("65x"), "{e}");

        let v = json!({"kind": "BGPPeer", "metadata": {"name": "tor"},
                       "spec": {"peerIp": "198.18.0.1", "asNumber": 65001}});
        let e = parse_resource(&v).unwrap_err().to_string();
        assert!(e.contains("peerIp"), "{e}");

        let v = json!({"kind": "IPPool", "metadata": {"name": "p"},
                       "spec": {"cidr": "10.244.0.0/16", "ipipMode": "Sometimes"}});
        let e = parse_resource(&v).unwrap_err().to_string();
        assert!(
            e.contains("spec.ipipMode") && e.contains("Sometimes"),
            "{e}"
        );

        let v = json!({"kind": "Node", "metadata": {"name": "a"},
                       "spec": {"bgp": {"ipv4Address": "300.1.1.1/24"}}});
        let e = parse_resource(&v).unwrap_err().to_string();
        assert!(
            e.contains("spec.bgp.ipv4Address") && e.contains("300.1.1.1"),
            "{e}"
        );

        let v = json!({"kind": "BGPPeer", "metadata": {"name": "x"},
                       "spec": {"peerSelector": "rr == 'true'", "asNumber": 65001}});
        let e = parse_resource(&v).unwrap_err().to_string();
        assert!(e.contains("spec.asNumber"), "{e}");
    }

    #[test]
    fn etcd_round_trip() {
        let docs = [
            json!({"kind": "BlockAffinity", "metadata": {"name": "x"},
                   "spec": {"node": "a", "cidr": "10.244.1.0/26", "state": "pending", "deleted": "false"}}),
            json!({"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "tor"},
                   "spec": {"peerIP": "198.18.0.1", "asNumber": 65001}}),
        ];
        for d in docs {
            let (k, v) = etcd_kv(&d).unwrap().unwrap();
            let key = parse_etcd_key(&k).unwrap();
            let back = parse_etcd_value(&key, v.as_bytes()).unwrap();
            assert_eq!(Some(back), parse_resource(&d).unwrap(), "{k}");
        }
    }

    #[test]
    fn bgp_peer_field_names_as_calico_spells_them() {
        let v = json!({"kind": "BGPPeer", "metadata": {"name": "tor"},
                       "spec": {"peerIP": "198.18.0.1", "asNumber": 65001,
                                "localASNumber": 65002, "numAllowedLocalASNumbers": 1}});
        let Some(Resource::BgpPeer(p)) = parse_resource(&v).unwrap() else {
            panic!()
        };
        assert_eq!(p.num_allowed_local_as_numbers, Some(1));
        assert_eq!(p.local_as_number, Some(65002));
    }

    #[test]
    fn ignored_kinds() {
        let v = json!({"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration",
                       "metadata": {"name": "default"}, "spec": {"anything": 1}});
        assert_eq!(parse_resource(&v).unwrap(), None);
    }
}
