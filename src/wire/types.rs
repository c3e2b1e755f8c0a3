//! Plain data types of the BGP-4 wire format (RFC 4271 §4) and its extensions.
//!
//! These types are the contract between the codec (`decode.rs`, `encode.rs`) and the rest of
//! the speaker. They hold *decoded* values: 2-octet/4-octet AS encodings, AS4_PATH merging
//! (RFC 6793 §4.2.3) and the extended-length flag are codec concerns and never appear here.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnet::IpNet;

/// Address family identifier (IANA "Address Family Numbers").
pub const AFI_IPV4: u16 = 1;
/// Address family identifier for IPv6.
pub const AFI_IPV6: u16 = 2;
/// Subsequent address family identifier: unicast (RFC 4760).
pub const SAFI_UNICAST: u8 = 1;

/// AS_TRANS (RFC 6793 §9): stands in for a 4-octet AS on 2-octet fields.
pub const AS_TRANS: u16 = 23456;

/// An (AFI, SAFI) pair. Only IPv4 and IPv6 unicast are routed by podbgp; other pairs can still
/// be decoded from capabilities so they can be ignored by the negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family {
        afi: AFI_IPV4,
        safi: SAFI_UNICAST,
    };
    pub const IPV6_UNICAST: Family = Family {
        afi: AFI_IPV6,
        safi: SAFI_UNICAST,
    };

    /// The family a prefix belongs to when carried as unicast.
    pub fn of(prefix: &IpNet) -> Family {
        match prefix {
            IpNet::V4(_) => Family::IPV4_UNICAST,
            IpNet::V6(_) => Family::IPV6_UNICAST,
        }
    }

    /// True for the two families podbgp routes.
    pub fn is_supported(self) -> bool {
        self == Family::IPV4_UNICAST || self == Family::IPV6_UNICAST
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi{afi}/safi{safi}"),
        }
    }
}

/// BGP message type codes (RFC 4271 §4.1, RFC 2918).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    RouteRefresh = 5,
}

/// One decoded BGP message.
// UPDATE dominates the traffic; boxing it would cost an allocation per message for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// OPEN message (RFC 4271 §4.2).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
/// Optional parameters of type 2 (RFC 5492) are flattened into `capabilities`, in wire order.
/// The RFC 9072 extended optional-parameter length is accepted on decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// The 2-octet "My Autonomous System" field (AS_TRANS when the real AS needs 4 octets).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// The peer's real AS: the 4-octet AS capability value if present, else `my_as`.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }
}

/// ADD-PATH send/receive mode (RFC 7911 §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AddPathMode {
    Receive = 1,
    Send = 2,
    Both = 3,
}

/// Per-family entry of the graceful-restart capability (RFC 4724 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrFamily {
    pub family: Family,
    /// F bit: forwarding state was preserved for this family.
    pub forwarding_preserved: bool,
}

/// A capability (RFC 5492) as advertised in an OPEN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Code 1, RFC 4760.
    Multiprotocol(Family),
    /// Code 2, RFC 2918.
    RouteRefresh,
    /// Code 6, RFC 8654.
    ExtendedMessage,
    /// Code 64, RFC 4724 (N bit from RFC 8538).
    GracefulRestart {
        restart_state: bool,
        notification: bool,
        restart_time: u16,
        families: Vec<GrFamily>,
    },
    /// Code 65, RFC 6793.
    FourOctetAs(u32),
    /// Code 69, RFC 7911. Tuples with an invalid Send/Receive value are dropped on decode.
    AddPath(Vec<(Family, AddPathMode)>),
    /// Code 70, RFC 7313.
    EnhancedRouteRefresh,
    /// Anything else: kept verbatim, ignored by negotiation (RFC 5492 §4).
    Unknown { code: u8, value: Bytes },
}

/// NOTIFICATION message (RFC 4271 §4.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

/// ROUTE-REFRESH message (RFC 2918, RFC 7313 subtypes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    /// 0 = normal request, 1 = BoRR, 2 = EoRR (RFC 7313).
    pub subtype: u8,
}

/// An NLRI entry: a prefix plus, when ADD-PATH receive is negotiated, its path identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nlri {
    pub prefix: IpNet,
    pub path_id: Option<u32>,
}

impl From<IpNet> for Nlri {
    fn from(prefix: IpNet) -> Self {
        Nlri {
            prefix,
            path_id: None,
        }
    }
}

/// UPDATE message (RFC 4271 §4.3) after RFC 7606 classification.
///
/// A decoded `Update` is always *usable*: errors that require a session reset are returned as
/// a `DecodeError` instead. Weaker errors are reported here:
/// * `treat_as_withdraw` set: every prefix in `nlri` and `mp_reach` must be handled as
///   withdrawn (RFC 7606 §2); `attrs` must not be used for those prefixes.
/// * `discarded`: attributes dropped by "attribute discard"; the route is otherwise valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// IPv4 withdrawn routes (the classic field).
    pub withdrawn: Vec<Nlri>,
    /// Path attributes other than MP_REACH_NLRI/MP_UNREACH_NLRI.
    pub attrs: PathAttrs,
    /// IPv4 NLRI (the classic field); NEXT_HOP applies to these.
    pub nlri: Vec<Nlri>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// RFC 7606 treat-as-withdraw: the first error that triggered it.
    pub treat_as_withdraw: Option<AttrError>,
    /// RFC 7606 attribute-discard events.
    pub discarded: Vec<AttrError>,
}

impl Update {
    /// True when this UPDATE is an End-of-RIB marker (RFC 4724 §2) and for which family.
    /// Only the exactly-empty forms count: an UPDATE that needed any RFC 7606 handling (even an
    /// attribute discard) is not an End-of-RIB (cf. FRR CVE-2023-47235).
    pub fn end_of_rib(&self) -> Option<Family> {
        let no_classic =
            self.withdrawn.is_empty() && self.nlri.is_empty() && self.mp_reach.is_none();
        if !no_classic || self.treat_as_withdraw.is_some() || !self.discarded.is_empty() {
            return None;
        }
        match &self.mp_unreach {
            None if self.attrs.is_empty() => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() && self.attrs.is_empty() => Some(u.family),
            _ => None,
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: MpNextHop,
    pub nlri: Vec<Nlri>,
}

/// The next hop of MP_REACH_NLRI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MpNextHop {
    V4(Ipv4Addr),
    /// RFC 2545 §3: a global address, optionally followed by a link-local one (length 32).
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Nlri>,
}

/// ORIGIN values (RFC 4271 §5.1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SegmentType {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

/// One AS_PATH segment; ASNs are always held as 4-octet values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentType,
    pub asns: Vec<u32>,
}

/// AS_PATH (RFC 4271 §5.1.2), already merged with AS4_PATH for 2-octet sessions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// Path length for the decision process (RFC 4271 §9.1.2.2 a): an AS_SET counts as 1,
    /// confederation segments count 0.
    pub fn len_for_decision(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                SegmentType::ConfedSequence | SegmentType::ConfedSet => 0,
            })
            .sum()
    }

    /// The first AS of the path (the neighbour AS, RFC 4271 §9.1.2.2 c), if any.
    pub fn first_asn(&self) -> Option<u32> {
        self.segments
            .iter()
            .find(|s| matches!(s.kind, SegmentType::Sequence))
            .and_then(|s| s.asns.first().copied())
    }

    /// Number of times `asn` occurs anywhere in the path.
    pub fn count(&self, asn: u32) -> usize {
        self.segments
            .iter()
            .flat_map(|s| s.asns.iter())
            .filter(|a| **a == asn)
            .count()
    }

    /// Returns this path with `asn` prepended as the leftmost AS_SEQUENCE member.
    pub fn prepended(&self, asn: u32) -> AsPath {
        let mut segments = self.segments.clone();
        match segments.first_mut() {
            Some(seg) if seg.kind == SegmentType::Sequence && seg.asns.len() < 255 => {
                seg.asns.insert(0, asn)
            }
            _ => segments.insert(
                0,
                AsSegment {
                    kind: SegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
        AsPath { segments }
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7), 4-octet AS form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// LARGE_COMMUNITY element (RFC 8092).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global_admin: u32,
    pub local1: u32,
    pub local2: u32,
}

/// An attribute the codec does not interpret: kept verbatim with its flags.
/// Only optional attributes can be held here (an unknown well-known attribute is an error).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RawAttr {
    /// The received flags with the Extended Length bit cleared.
    pub flags: u8,
    pub type_code: u8,
    pub value: Bytes,
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Path attribute type codes.
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    pub const LARGE_COMMUNITY: u8 = 32;
}

/// The path attributes of an UPDATE, other than MP_REACH/MP_UNREACH (those live in `Update`).
///
/// Equality and hashing cover every field, so a `PathAttrs` can key an interner.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct PathAttrs {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES (RFC 1997), in received order.
    pub communities: Vec<u32>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    /// EXTENDED_COMMUNITIES (RFC 4360), each 8 octets as a big-endian u64.
    pub ext_communities: Vec<u64>,
    pub large_communities: Vec<LargeCommunity>,
    /// Unrecognised optional attributes, in received order. Transitive ones are passed on with
    /// the Partial bit set; non-transitive ones are never sent.
    pub unknown: Vec<RawAttr>,
}

impl PathAttrs {
    /// True when no attribute at all is present.
    pub fn is_empty(&self) -> bool {
        *self == PathAttrs::default()
    }
}

/// RFC 7606 §2 error-handling approaches, weakest first so `max()` picks the strongest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttrAction {
    AttributeDiscard,
    TreatAsWithdraw,
    SessionReset,
}

/// A non-fatal attribute error found while decoding an UPDATE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttrError {
    pub action: AttrAction,
    /// The attribute's type code.
    pub type_code: u8,
    /// The NOTIFICATION subcode RFC 4271 would have used (code 3), kept for logs and counters.
    pub subcode: u8,
    /// The offending attribute (type, length, value) as received, for the log hex dump.
    pub data: Bytes,
}

/// The codec context negotiated for one session (RFC 6793, RFC 8654, RFC 7911).
///
/// Never global: every decode and encode call takes it explicitly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionCodec {
    /// Both sides advertised the 4-octet AS capability.
    pub four_octet_as: bool,
    /// Both sides advertised Extended Message (max length 65535 instead of 4096).
    pub extended_message: bool,
    /// Families for which we receive path identifiers (we advertised Receive/Both and the peer
    /// Send/Both).
    pub add_path_rx: Vec<Family>,
    /// Families for which we send path identifiers.
    pub add_path_tx: Vec<Family>,
    /// True on an iBGP session (some RFC 7606 rules depend on it).
    pub ibgp: bool,
}

impl Default for SessionCodec {
    /// The context before an OPEN is exchanged: 2-octet AS, 4096-octet messages.
    fn default() -> Self {
        SessionCodec {
            four_octet_as: false,
            extended_message: false,
            add_path_rx: Vec::new(),
            add_path_tx: Vec::new(),
            ibgp: false,
        }
    }
}

impl SessionCodec {
    /// Maximum message length under this context (RFC 8654 §4).
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            super::MAX_EXT_MESSAGE_LEN
        } else {
            super::MAX_MESSAGE_LEN
        }
    }
}
