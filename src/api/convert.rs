//! Protobuf ↔ core conversions, and the one place errors become `tonic::Status`.
//!
//! Requests convert with `TryFrom` into [`Query`]/[`Command`]; a bad field is a
//! [`FieldError`] that names the field (→ `INVALID_ARGUMENT`). Views convert into protobuf
//! messages; `Instant`s go through the handle's [`Clock`]. Empty strings stand for absent
//! optional values on the wire (proto3 style); nothing else in the crate sees prost types.

use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::time::SystemTime;

use ipnet::IpNet;

use super::proto;
use super::{Clock, unix_millis, unix_seconds};
use crate::config::{PeerOrigin, PeerRole};
use crate::session::State;
use crate::speaker::{
    Command, FamilyCounters, FibCounters, KernelNextHop, KernelRouteKind, KernelRouteView,
    PeerView, Query, QueryError, RouteView, SpeakerEvent, SpeakerView, TableKind,
};
use crate::wire::{Family, Origin};

/// A request field that does not hold an acceptable value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// The protobuf field name, e.g. `prefix`.
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError {
            field,
            reason: reason.into(),
        }
    }
}

/// Why an RPC failed. Mapped onto `tonic::Status` by the single `From` impl below.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    InvalidField(#[from] FieldError),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("the speaker is not running (the daemon is shutting down?)")]
    SpeakerGone,
    #[error("the speaker answered a {asked} query with a {got} view")]
    UnexpectedView {
        asked: &'static str,
        got: &'static str,
    },
}

impl From<ServiceError> for tonic::Status {
    fn from(e: ServiceError) -> Self {
        let msg = e.to_string();
        match e {
            ServiceError::InvalidField(_) => tonic::Status::invalid_argument(msg),
            ServiceError::Query(QueryError::NoSuchPeer(_)) => tonic::Status::not_found(msg),
            ServiceError::Query(QueryError::PeerRequired(_)) => {
                tonic::Status::invalid_argument(msg)
            }
            ServiceError::Query(QueryError::NoFib) => tonic::Status::failed_precondition(msg),
            ServiceError::SpeakerGone => tonic::Status::unavailable(msg),
            ServiceError::UnexpectedView { .. } => tonic::Status::internal(msg),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------

/// A required IP address.
pub fn parse_addr(field: &'static str, s: &str) -> Result<IpAddr, FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "required"));
    }
    IpAddr::from_str(s).map_err(|_| FieldError::new(field, format!("not an IP address: {s:?}")))
}

/// An optional IP address (empty string = absent).
pub fn parse_optional_addr(field: &'static str, s: &str) -> Result<Option<IpAddr>, FieldError> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_addr(field, s).map(Some)
    }
}

/// A required IPv4 router id / originator id.
pub fn parse_ipv4(field: &'static str, s: &str) -> Result<Ipv4Addr, FieldError> {
    Ipv4Addr::from_str(s).map_err(|_| FieldError::new(field, format!("not an IPv4 address: {s:?}")))
}

/// A required prefix in canonical form ("10.244.1.0/26"; host bits must be zero).
pub fn parse_prefix(field: &'static str, s: &str) -> Result<IpNet, FieldError> {
    if s.is_empty() {
        return Err(FieldError::new(field, "required"));
    }
    let net = IpNet::from_str(s).map_err(|_| {
        FieldError::new(
            field,
            format!("not a prefix: {s:?} (expected ADDRESS/LENGTH, e.g. 10.244.1.0/26)"),
        )
    })?;
    if net.trunc() != net {
        return Err(FieldError::new(
            field,
            format!("{s:?} has host bits set (did you mean {}?)", net.trunc()),
        ));
    }
    Ok(net)
}

/// An optional prefix (empty string = absent).
pub fn parse_optional_prefix(field: &'static str, s: &str) -> Result<Option<IpNet>, FieldError> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse_prefix(field, s).map(Some)
    }
}

/// An RFC 1997 community as "ASN:VALUE".
pub fn format_community(c: u32) -> String {
    format!("{}:{}", c >> 16, c & 0xffff)
}

/// Parses "ASN:VALUE" (each half 0..=65535) into an RFC 1997 community.
pub fn parse_community(field: &'static str, s: &str) -> Result<u32, FieldError> {
    let bad = || FieldError::new(field, format!("not a community ASN:VALUE: {s:?}"));
    let (hi, lo) = s.split_once(':').ok_or_else(bad)?;
    let hi = u16::from_str(hi).map_err(|_| bad())?;
    let lo = u16::from_str(lo).map_err(|_| bad())?;
    Ok((u32::from(hi) << 16) | u32::from(lo))
}

/// Parses a family name as printed by `Family`'s `Display` ("ipv4-unicast", "ipv6-unicast").
pub fn parse_family(field: &'static str, s: &str) -> Result<Family, FieldError> {
    match s {
        "ipv4-unicast" => Ok(Family::IPV4_UNICAST),
        "ipv6-unicast" => Ok(Family::IPV6_UNICAST),
        _ => {
            let bad = || FieldError::new(field, format!("unknown address family {s:?}"));
            let rest = s.strip_prefix("afi").ok_or_else(bad)?;
            let (afi, safi) = rest.split_once("/safi").ok_or_else(bad)?;
            Ok(Family {
                afi: afi.parse().map_err(|_| bad())?,
                safi: safi.parse().map_err(|_| bad())?,
            })
        }
    }
}

fn opt_string<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------

impl From<State> for proto::SessionState {
    fn from(s: State) -> Self {
        match s {
            State::Idle => proto::SessionState::Idle,
            State::Connect => proto::SessionState::Connect,
            State::Active => proto::SessionState::Active,
            State::OpenSent => proto::SessionState::OpenSent,
            State::OpenConfirm => proto::SessionState::OpenConfirm,
            State::Established => proto::SessionState::Established,
        }
    }
}

impl TryFrom<proto::SessionState> for State {
    type Error = FieldError;
    fn try_from(s: proto::SessionState) -> Result<Self, FieldError> {
        Ok(match s {
            proto::SessionState::Unspecified => {
                return Err(FieldError::new("state", "unspecified"));
            }
            proto::SessionState::Idle => State::Idle,
            proto::SessionState::Connect => State::Connect,
            proto::SessionState::Active => State::Active,
            proto::SessionState::OpenSent => State::OpenSent,
            proto::SessionState::OpenConfirm => State::OpenConfirm,
            proto::SessionState::Established => State::Established,
        })
    }
}

/// A session state from its wire number (unknown numbers are an error naming `field`).
pub fn state_from_i32(field: &'static str, v: i32) -> Result<State, FieldError> {
    let s = proto::SessionState::try_from(v)
        .map_err(|_| FieldError::new(field, format!("unknown session state {v}")))?;
    State::try_from(s).map_err(|e| FieldError { field, ..e })
}

impl From<TableKind> for proto::Table {
    fn from(t: TableKind) -> Self {
        match t {
            TableKind::AdjRibIn => proto::Table::AdjRibIn,
            TableKind::LocRib => proto::Table::LocRib,
            TableKind::AdjRibOut => proto::Table::AdjRibOut,
            TableKind::Fib => proto::Table::Fib,
        }
    }
}

impl From<proto::Table> for TableKind {
    /// `TABLE_UNSPECIFIED` means the Loc-RIB (the documented default).
    fn from(t: proto::Table) -> Self {
        match t {
            proto::Table::Unspecified | proto::Table::LocRib => TableKind::LocRib,
            proto::Table::AdjRibIn => TableKind::AdjRibIn,
            proto::Table::AdjRibOut => TableKind::AdjRibOut,
            proto::Table::Fib => TableKind::Fib,
        }
    }
}

impl From<PeerRole> for proto::PeerRole {
    fn from(r: PeerRole) -> Self {
        match r {
            PeerRole::Mesh => proto::PeerRole::Mesh,
            PeerRole::RrClient => proto::PeerRole::RrClient,
            PeerRole::RrPeer => proto::PeerRole::RrPeer,
            PeerRole::Ebgp => proto::PeerRole::Ebgp,
        }
    }
}

impl TryFrom<proto::PeerRole> for PeerRole {
    type Error = FieldError;
    fn try_from(r: proto::PeerRole) -> Result<Self, FieldError> {
        Ok(match r {
            proto::PeerRole::Unspecified => return Err(FieldError::new("role", "unspecified")),
            proto::PeerRole::Mesh => PeerRole::Mesh,
            proto::PeerRole::RrClient => PeerRole::RrClient,
            proto::PeerRole::RrPeer => PeerRole::RrPeer,
            proto::PeerRole::Ebgp => PeerRole::Ebgp,
        })
    }
}

/// calicoctl's PEER TYPE for a peer. The Calico origins keep calicoctl's types (a reflector
/// configured through a BGPPeer shows as `global`/`node specific`, as with BIRD); peers from
/// a speaker configuration file show as `route reflector` when the session is a reflection
/// session (either side reflects), else `configured`.
pub fn peer_type(origin: PeerOrigin, role: PeerRole) -> proto::PeerType {
    match (origin, role) {
        (PeerOrigin::Mesh, _) => proto::PeerType::Mesh,
        (PeerOrigin::Global, _) => proto::PeerType::Global,
        (PeerOrigin::NodeSpecific, _) => proto::PeerType::NodeSpecific,
        (PeerOrigin::Configured, PeerRole::RrClient | PeerRole::RrPeer) => {
            proto::PeerType::RouteReflector
        }
        (PeerOrigin::Configured, PeerRole::Mesh | PeerRole::Ebgp) => proto::PeerType::Configured,
    }
}

impl From<Option<Origin>> for proto::RouteOrigin {
    fn from(o: Option<Origin>) -> Self {
        match o {
            None => proto::RouteOrigin::Unspecified,
            Some(Origin::Igp) => proto::RouteOrigin::Igp,
            Some(Origin::Egp) => proto::RouteOrigin::Egp,
            Some(Origin::Incomplete) => proto::RouteOrigin::Incomplete,
        }
    }
}

impl From<proto::RouteOrigin> for Option<Origin> {
    fn from(o: proto::RouteOrigin) -> Self {
        match o {
            proto::RouteOrigin::Unspecified => None,
            proto::RouteOrigin::Igp => Some(Origin::Igp),
            proto::RouteOrigin::Egp => Some(Origin::Egp),
            proto::RouteOrigin::Incomplete => Some(Origin::Incomplete),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Requests → Query / Command
// ---------------------------------------------------------------------------------------

impl TryFrom<proto::GetPeerRequest> for Query {
    type Error = FieldError;
    fn try_from(r: proto::GetPeerRequest) -> Result<Self, FieldError> {
        Ok(Query::Peer(parse_addr("address", &r.address)?))
    }
}

impl TryFrom<proto::ListRoutesRequest> for Query {
    type Error = FieldError;
    fn try_from(r: proto::ListRoutesRequest) -> Result<Self, FieldError> {
        let table = proto::Table::try_from(r.table)
            .map_err(|_| FieldError::new("table", format!("unknown table {}", r.table)))?;
        Ok(Query::Routes {
            table: table.into(),
            peer: parse_optional_addr("peer", &r.peer)?,
            prefix: parse_optional_prefix("prefix", &r.prefix)?,
        })
    }
}

/// The `ListRoutes` request for a route query (the inverse of `TryFrom<ListRoutesRequest>`).
pub fn list_routes_request(
    table: TableKind,
    peer: Option<IpAddr>,
    prefix: Option<IpNet>,
) -> proto::ListRoutesRequest {
    proto::ListRoutesRequest {
        table: proto::Table::from(table) as i32,
        peer: opt_string(&peer),
        prefix: opt_string(&prefix),
    }
}

impl TryFrom<proto::ResetPeerRequest> for Command {
    type Error = FieldError;
    fn try_from(r: proto::ResetPeerRequest) -> Result<Self, FieldError> {
        Ok(Command::ResetPeer {
            address: parse_addr("address", &r.address)?,
            soft: r.soft,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Views → responses
// ---------------------------------------------------------------------------------------

/// `GetSpeaker`: `now` is the wall-clock time the uptime is measured to.
pub fn speaker_to_proto(
    v: &SpeakerView,
    clock: &Clock,
    now: SystemTime,
) -> proto::GetSpeakerResponse {
    let started = clock.to_system(v.started);
    proto::GetSpeakerResponse {
        local_as: v.local_as,
        router_id: v.router_id.to_string(),
        listen_address: v.listen.map(|(a, _)| a.to_string()).unwrap_or_default(),
        listen_port: v.listen.map(|(_, p)| u32::from(p)).unwrap_or(0),
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: now
            .duration_since(started)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        peers_configured: u32::try_from(v.peers_configured).unwrap_or(u32::MAX),
        peers_established: u32::try_from(v.peers_established).unwrap_or(u32::MAX),
        loc_rib_prefixes: v.loc_rib_prefixes as u64,
        decision_runs: v.decision_runs,
        updates_received: v.updates_received,
        updates_sent: v.updates_sent,
        started_unix: unix_seconds(started),
        fib: v.fib.as_ref().map(proto::FibCounters::from),
    }
}

impl From<&FibCounters> for proto::FibCounters {
    fn from(c: &FibCounters) -> Self {
        proto::FibCounters {
            installed: c.installed,
            foreign: c.foreign,
            adds: c.adds,
            replaces: c.replaces,
            deletes: c.deletes,
            failures: c.failures,
            repairs: c.repairs,
            swept: c.swept,
            batches: c.batches,
        }
    }
}

impl From<&KernelRouteView> for proto::KernelRoute {
    fn from(k: &KernelRouteView) -> Self {
        let (route_type, rtm_type) = match k.kind {
            KernelRouteKind::Unicast => (proto::KernelRouteType::Unicast, 0),
            KernelRouteKind::Blackhole => (proto::KernelRouteType::Blackhole, 0),
            KernelRouteKind::Other(t) => (proto::KernelRouteType::Other, u32::from(t)),
        };
        proto::KernelRoute {
            route_type: route_type as i32,
            rtm_type,
            next_hops: k
                .next_hops
                .iter()
                .map(|h| proto::KernelNextHop {
                    gateway: h.gateway.to_string(),
                    device: h.device.clone().unwrap_or_default(),
                    onlink: h.onlink,
                })
                .collect(),
        }
    }
}

impl TryFrom<&proto::KernelRoute> for KernelRouteView {
    type Error = FieldError;
    fn try_from(k: &proto::KernelRoute) -> Result<Self, FieldError> {
        let kind = match proto::KernelRouteType::try_from(k.route_type) {
            Ok(proto::KernelRouteType::Unicast) => KernelRouteKind::Unicast,
            Ok(proto::KernelRouteType::Blackhole) => KernelRouteKind::Blackhole,
            Ok(proto::KernelRouteType::Other) => {
                KernelRouteKind::Other(u8::try_from(k.rtm_type).map_err(|_| {
                    FieldError::new("kernel.rtm_type", format!("{} is not a u8", k.rtm_type))
                })?)
            }
            Ok(proto::KernelRouteType::Unspecified) | Err(_) => {
                return Err(FieldError::new(
                    "kernel.route_type",
                    format!("unknown route type {}", k.route_type),
                ));
            }
        };
        Ok(KernelRouteView {
            kind,
            next_hops: k
                .next_hops
                .iter()
                .map(|h| {
                    Ok(KernelNextHop {
                        gateway: parse_addr("kernel.next_hops.gateway", &h.gateway)?,
                        device: (!h.device.is_empty()).then(|| h.device.clone()),
                        onlink: h.onlink,
                    })
                })
                .collect::<Result<_, FieldError>>()?,
        })
    }
}

impl From<&FamilyCounters> for proto::FamilyCounters {
    fn from(c: &FamilyCounters) -> Self {
        proto::FamilyCounters {
            family: c.family.to_string(),
            received: c.received,
            accepted: c.accepted,
            advertised: c.advertised,
        }
    }
}

impl TryFrom<&proto::FamilyCounters> for FamilyCounters {
    type Error = FieldError;
    fn try_from(c: &proto::FamilyCounters) -> Result<Self, FieldError> {
        Ok(FamilyCounters {
            family: parse_family("families.family", &c.family)?,
            received: c.received,
            accepted: c.accepted,
            advertised: c.advertised,
        })
    }
}

/// One peer; `since` goes through the clock.
pub fn peer_to_proto(p: &PeerView, clock: &Clock) -> proto::Peer {
    proto::Peer {
        address: p.address.to_string(),
        port: u32::from(p.port),
        remote_as: p.remote_as,
        local_as: p.local_as,
        peer_type: peer_type(p.origin, p.role) as i32,
        role: proto::PeerRole::from(p.role) as i32,
        state: proto::SessionState::from(p.state) as i32,
        since_unix: clock.to_unix(p.since),
        info: p.info.clone(),
        remote_router_id: opt_string(&p.remote_id),
        hold_time: u32::from(p.hold_time),
        keepalive: u32::from(p.keepalive),
        families: p.families.iter().map(Into::into).collect(),
        updates_received: p.updates_received,
        updates_sent: p.updates_sent,
        messages_received: p.messages_received,
        messages_sent: p.messages_sent,
        last_error: p.last_error.clone().unwrap_or_default(),
        passive: p.passive,
        description: p.description.clone().unwrap_or_default(),
        established_transitions: p.established_transitions,
    }
}

impl From<&RouteView> for proto::Route {
    fn from(r: &RouteView) -> Self {
        proto::Route {
            prefix: r.prefix.to_string(),
            next_hops: r.next_hops.iter().map(ToString::to_string).collect(),
            peer: opt_string(&r.peer),
            as_path: r.as_path.clone(),
            origin: proto::RouteOrigin::from(r.origin) as i32,
            med: r.med,
            local_pref: r.local_pref,
            communities: r.communities.iter().map(|c| format_community(*c)).collect(),
            originator_id: opt_string(&r.originator_id),
            cluster_list: r.cluster_list.iter().map(ToString::to_string).collect(),
            best: r.best,
            reason: r.reason.clone(),
            stale: r.stale,
            kernel: r.kernel.as_ref().map(proto::KernelRoute::from),
        }
    }
}

impl TryFrom<&proto::Route> for RouteView {
    type Error = FieldError;
    fn try_from(r: &proto::Route) -> Result<Self, FieldError> {
        let origin = proto::RouteOrigin::try_from(r.origin)
            .map_err(|_| FieldError::new("origin", format!("unknown origin {}", r.origin)))?;
        Ok(RouteView {
            prefix: parse_prefix("prefix", &r.prefix)?,
            next_hops: r
                .next_hops
                .iter()
                .map(|h| parse_addr("next_hops", h))
                .collect::<Result<_, _>>()?,
            peer: parse_optional_addr("peer", &r.peer)?,
            as_path: r.as_path.clone(),
            origin: origin.into(),
            med: r.med,
            local_pref: r.local_pref,
            communities: r
                .communities
                .iter()
                .map(|c| parse_community("communities", c))
                .collect::<Result<_, _>>()?,
            originator_id: if r.originator_id.is_empty() {
                None
            } else {
                Some(parse_ipv4("originator_id", &r.originator_id)?)
            },
            cluster_list: r
                .cluster_list
                .iter()
                .map(|c| parse_ipv4("cluster_list", c))
                .collect::<Result<_, _>>()?,
            best: r.best,
            reason: r.reason.clone(),
            stale: r.stale,
            kernel: r
                .kernel
                .as_ref()
                .map(KernelRouteView::try_from)
                .transpose()?,
        })
    }
}

/// One event as streamed by `WatchEvents`; `at` is when the API received it.
pub fn event_to_proto(e: &SpeakerEvent, at: SystemTime) -> proto::WatchEventsResponse {
    use proto::watch_events_response::Event;
    let event = match e {
        SpeakerEvent::PeerState {
            address,
            from,
            to,
            cause,
        } => Event::PeerState(proto::PeerStateEvent {
            address: address.to_string(),
            from: proto::SessionState::from(*from) as i32,
            to: proto::SessionState::from(*to) as i32,
            cause: cause.clone(),
        }),
        SpeakerEvent::BestPath {
            prefix,
            next_hops,
            peer,
        } => Event::BestPath(proto::BestPathEvent {
            prefix: prefix.to_string(),
            next_hops: next_hops.iter().map(ToString::to_string).collect(),
            peer: opt_string(peer),
        }),
    };
    proto::WatchEventsResponse {
        time_unix_ms: unix_millis(at),
        event: Some(event),
    }
}

impl TryFrom<&proto::WatchEventsResponse> for SpeakerEvent {
    type Error = FieldError;
    fn try_from(r: &proto::WatchEventsResponse) -> Result<Self, FieldError> {
        use proto::watch_events_response::Event;
        match &r.event {
            None => Err(FieldError::new("event", "missing")),
            Some(Event::PeerState(p)) => Ok(SpeakerEvent::PeerState {
                address: parse_addr("peer_state.address", &p.address)?,
                from: state_from_i32("peer_state.from", p.from)?,
                to: state_from_i32("peer_state.to", p.to)?,
                cause: p.cause.clone(),
            }),
            Some(Event::BestPath(b)) => Ok(SpeakerEvent::BestPath {
                prefix: parse_prefix("best_path.prefix", &b.prefix)?,
                next_hops: b
                    .next_hops
                    .iter()
                    .map(|h| parse_addr("best_path.next_hops", h))
                    .collect::<Result<_, _>>()?,
                peer: parse_optional_addr("best_path.peer", &b.peer)?,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant, UNIX_EPOCH};

    use super::*;

    fn clock() -> Clock {
        Clock {
            instant: Instant::now(),
            system: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        }
    }

    #[test]
    fn prefix_round_trip() {
        for s in [
            "10.244.1.0/26",
            "0.0.0.0/0",
            "192.168.0.1/32",
            "fd00:10:244::/64",
            "::/0",
        ] {
            let net = parse_prefix("prefix", s).unwrap();
            assert_eq!(net.to_string(), s);
        }
    }

    #[test]
    fn bad_prefix_names_the_field() {
        let e = parse_prefix("prefix", "10.0.0.0/33").unwrap_err();
        assert_eq!(e.field, "prefix");
        assert!(e.to_string().starts_with("prefix: not a prefix"), "{e}");

        let e = parse_prefix("prefix", "10.0.0.1/24").unwrap_err();
        assert_eq!(
            e.to_string(),
            "prefix: \"10.0.0.1/24\" has host bits set (did you mean 10.0.0.0/24?)"
        );

        let req = proto::ListRoutesRequest {
            table: proto::Table::LocRib as i32,
            peer: String::new(),
            prefix: "banana".into(),
        };
        let e = Query::try_from(req).unwrap_err();
        assert_eq!(e.field, "prefix");

        let status = tonic::Status::from(ServiceError::from(e));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("prefix"), "{}", status.message());
    }

    #[test]
    fn bad_addresses_name_the_field() {
        let e = Query::try_from(proto::GetPeerRequest {
            address: "10.0.0.300".into(),
        })
        .unwrap_err();
        assert_eq!(e.field, "address");
        let e = Command::try_from(proto::ResetPeerRequest {
            address: String::new(),
            soft: false,
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "address: required");
        let e = Query::try_from(proto::ListRoutesRequest {
            table: proto::Table::AdjRibIn as i32,
            peer: "nope".into(),
            prefix: String::new(),
        })
        .unwrap_err();
        assert_eq!(e.field, "peer");
        let e = Query::try_from(proto::ListRoutesRequest {
            table: 42,
            peer: String::new(),
            prefix: String::new(),
        })
        .unwrap_err();
        assert_eq!(e.field, "table");
    }

    #[test]
    fn routes_request_round_trip() {
        let cases = [
            (TableKind::LocRib, None, None),
            (
                TableKind::AdjRibIn,
                Some("10.0.0.2".parse().unwrap()),
                Some("10.244.1.0/26".parse().unwrap()),
            ),
            (TableKind::AdjRibOut, Some("fd00::2".parse().unwrap()), None),
            (TableKind::Fib, None, Some("fd00:10::/64".parse().unwrap())),
        ];
        for (table, peer, prefix) in cases {
            let req = list_routes_request(table, peer, prefix);
            assert_eq!(
                Query::try_from(req).unwrap(),
                Query::Routes {
                    table,
                    peer,
                    prefix
                }
            );
        }
        // Unspecified table = Loc-RIB.
        let q = Query::try_from(proto::ListRoutesRequest::default()).unwrap();
        assert_eq!(
            q,
            Query::Routes {
                table: TableKind::LocRib,
                peer: None,
                prefix: None
            }
        );
    }

    #[test]
    fn reset_request() {
        let c = Command::try_from(proto::ResetPeerRequest {
            address: "fd00::1".into(),
            soft: true,
        })
        .unwrap();
        assert_eq!(
            c,
            Command::ResetPeer {
                address: "fd00::1".parse().unwrap(),
                soft: true
            }
        );
    }

    #[test]
    fn enum_round_trips() {
        for s in [
            State::Idle,
            State::Connect,
            State::Active,
            State::OpenSent,
            State::OpenConfirm,
            State::Established,
        ] {
            let p = proto::SessionState::from(s);
            assert_eq!(State::try_from(p).unwrap(), s);
            assert_eq!(state_from_i32("state", p as i32).unwrap(), s);
        }
        assert_eq!(
            state_from_i32("to", 0).unwrap_err().to_string(),
            "to: unspecified"
        );
        assert_eq!(state_from_i32("to", 99).unwrap_err().field, "to");
        for t in [
            TableKind::AdjRibIn,
            TableKind::LocRib,
            TableKind::AdjRibOut,
            TableKind::Fib,
        ] {
            assert_eq!(TableKind::from(proto::Table::from(t)), t);
        }
        for r in [
            PeerRole::Mesh,
            PeerRole::RrClient,
            PeerRole::RrPeer,
            PeerRole::Ebgp,
        ] {
            assert_eq!(PeerRole::try_from(proto::PeerRole::from(r)).unwrap(), r);
        }
        for o in [
            None,
            Some(Origin::Igp),
            Some(Origin::Egp),
            Some(Origin::Incomplete),
        ] {
            assert_eq!(Option::<Origin>::from(proto::RouteOrigin::from(o)), o);
        }
    }

    #[test]
    fn peer_types() {
        use proto::PeerType as T;
        assert_eq!(peer_type(PeerOrigin::Mesh, PeerRole::Mesh), T::Mesh);
        assert_eq!(peer_type(PeerOrigin::Global, PeerRole::Ebgp), T::Global);
        assert_eq!(peer_type(PeerOrigin::Global, PeerRole::RrPeer), T::Global);
        assert_eq!(
            peer_type(PeerOrigin::NodeSpecific, PeerRole::RrClient),
            T::NodeSpecific
        );
        assert_eq!(
            peer_type(PeerOrigin::Configured, PeerRole::RrClient),
            T::RouteReflector
        );
        assert_eq!(
            peer_type(PeerOrigin::Configured, PeerRole::RrPeer),
            T::RouteReflector
        );
        assert_eq!(
            peer_type(PeerOrigin::Configured, PeerRole::Ebgp),
            T::Configured
        );
        assert_eq!(
            peer_type(PeerOrigin::Configured, PeerRole::Mesh),
            T::Configured
        );
    }

    #[test]
    fn communities() {
        assert_eq!(format_community(0xfde8_0064), "65000:100");
        assert_eq!(parse_community("c", "65000:100").unwrap(), 0xfde8_0064);
        assert_eq!(parse_community("c", "0:0").unwrap(), 0);
        assert_eq!(parse_community("c", "65536:1").unwrap_err().field, "c");
        assert!(parse_community("c", "65000").is_err());
    }

    #[test]
    fn families() {
        for f in [
            Family::IPV4_UNICAST,
            Family::IPV6_UNICAST,
            Family { afi: 25, safi: 65 },
        ] {
            assert_eq!(parse_family("family", &f.to_string()).unwrap(), f);
        }
        assert!(parse_family("family", "ipx").is_err());
    }

    fn route() -> RouteView {
        RouteView {
            prefix: "10.244.1.0/26".parse().unwrap(),
            next_hops: vec!["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()],
            peer: Some("10.0.0.2".parse().unwrap()),
            as_path: vec![64512, 65001],
            origin: Some(Origin::Igp),
            med: Some(10),
            local_pref: Some(100),
            communities: vec![0xfde8_0064],
            originator_id: Some("10.0.0.9".parse().unwrap()),
            cluster_list: vec!["1.1.1.1".parse().unwrap()],
            best: true,
            reason: "lowest-router-id".into(),
            stale: false,
            kernel: None,
        }
    }

    #[test]
    fn route_round_trip() {
        let r = route();
        let p = proto::Route::from(&r);
        assert_eq!(p.communities, vec!["65000:100"]);
        assert_eq!(p.origin, proto::RouteOrigin::Igp as i32);
        assert_eq!(RouteView::try_from(&p).unwrap(), r);

        let local = RouteView {
            peer: None,
            origin: None,
            med: None,
            local_pref: None,
            originator_id: None,
            cluster_list: vec![],
            communities: vec![],
            next_hops: vec![],
            ..route()
        };
        let p = proto::Route::from(&local);
        assert_eq!(p.peer, "");
        assert_eq!(p.originator_id, "");
        assert_eq!(RouteView::try_from(&p).unwrap(), local);
    }

    #[test]
    fn fib_route_round_trip() {
        let gw = "198.18.0.1".parse().unwrap();
        let unicast = RouteView {
            peer: None,
            origin: None,
            med: None,
            local_pref: None,
            originator_id: None,
            cluster_list: vec![],
            communities: vec![],
            as_path: vec![],
            next_hops: vec![gw],
            reason: String::new(),
            stale: true,
            kernel: Some(KernelRouteView {
                kind: KernelRouteKind::Unicast,
                next_hops: vec![KernelNextHop {
                    gateway: gw,
                    device: Some("tunl0".into()),
                    onlink: true,
                }],
            }),
            ..route()
        };
        let p = proto::Route::from(&unicast);
        let k = p.kernel.as_ref().unwrap();
        assert_eq!(k.route_type, proto::KernelRouteType::Unicast as i32);
        assert_eq!(k.next_hops[0].device, "tunl0");
        assert_eq!(RouteView::try_from(&p).unwrap(), unicast);
        for kind in [KernelRouteKind::Blackhole, KernelRouteKind::Other(7)] {
            let r = RouteView {
                next_hops: vec![],
                kernel: Some(KernelRouteView {
                    kind,
                    next_hops: vec![],
                }),
                ..unicast.clone()
            };
            assert_eq!(RouteView::try_from(&proto::Route::from(&r)).unwrap(), r);
        }
        let mut bad = proto::Route::from(&unicast);
        bad.kernel.as_mut().unwrap().route_type = 0;
        assert_eq!(
            RouteView::try_from(&bad).unwrap_err().field,
            "kernel.route_type"
        );
    }

    #[test]
    fn event_round_trip() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let events = [
            SpeakerEvent::PeerState {
                address: "10.0.0.2".parse().unwrap(),
                from: State::OpenConfirm,
                to: State::Established,
                cause: "KEEPALIVE received".into(),
            },
            SpeakerEvent::BestPath {
                prefix: "10.244.1.0/26".parse().unwrap(),
                next_hops: vec!["10.0.0.2".parse().unwrap()],
                peer: Some("10.0.0.2".parse().unwrap()),
            },
            SpeakerEvent::BestPath {
                prefix: "fd00:10:244::/122".parse().unwrap(),
                next_hops: vec![],
                peer: None,
            },
        ];
        for e in events {
            let p = event_to_proto(&e, at);
            assert_eq!(p.time_unix_ms, 1_700_000_000_123);
            assert_eq!(SpeakerEvent::try_from(&p).unwrap(), e);
        }
    }

    #[test]
    fn views_use_the_clock() {
        let c = clock();
        let v = SpeakerView {
            local_as: 64512,
            router_id: "10.0.0.1".parse().unwrap(),
            listen: Some(("0.0.0.0".parse().unwrap(), 179)),
            started: c.instant - Duration::from_secs(100),
            peers_configured: 2,
            peers_established: 1,
            loc_rib_prefixes: 5,
            decision_runs: 7,
            updates_received: 8,
            updates_sent: 9,
            fib: None,
        };
        let now = c.system + Duration::from_secs(20);
        let p = speaker_to_proto(&v, &c, now);
        assert_eq!(p.started_unix, 1_700_000_000 - 100);
        assert_eq!(p.uptime_seconds, 120);
        assert_eq!(p.listen_address, "0.0.0.0");
        assert_eq!(p.listen_port, 179);
        assert_eq!(p.fib, None);
        let p = speaker_to_proto(&SpeakerView { listen: None, ..v }, &c, now);
        assert_eq!((p.listen_address.as_str(), p.listen_port), ("", 0));
        let fib = FibCounters {
            installed: 4,
            adds: 5,
            failures: 1,
            ..FibCounters::default()
        };
        let p = speaker_to_proto(
            &SpeakerView {
                fib: Some(fib),
                ..v
            },
            &c,
            now,
        );
        let f = p.fib.unwrap();
        assert_eq!((f.installed, f.adds, f.failures, f.swept), (4, 5, 1, 0));

        let peer = PeerView {
            address: "10.0.0.2".parse().unwrap(),
            port: 179,
            remote_as: 64512,
            local_as: 64512,
            role: PeerRole::Mesh,
            origin: PeerOrigin::Mesh,
            state: State::Established,
            since: c.instant + Duration::from_secs(5),
            info: "Established".into(),
            remote_id: None,
            hold_time: 90,
            keepalive: 30,
            families: vec![FamilyCounters {
                family: Family::IPV4_UNICAST,
                received: 3,
                accepted: 2,
                advertised: 1,
            }],
            updates_received: 1,
            updates_sent: 2,
            messages_received: 3,
            messages_sent: 4,
            last_error: None,
            passive: true,
            description: Some("node b".into()),
            established_transitions: 1,
        };
        let p = peer_to_proto(&peer, &c);
        assert_eq!(p.since_unix, 1_700_000_005);
        assert_eq!(p.peer_type, proto::PeerType::Mesh as i32);
        assert_eq!(p.state, proto::SessionState::Established as i32);
        assert_eq!(p.remote_router_id, "");
        assert_eq!(p.description, "node b");
        assert_eq!(
            FamilyCounters::try_from(&p.families[0]).unwrap(),
            peer.families[0]
        );
    }

    #[test]
    fn query_errors_map_to_status_codes() {
        let s = tonic::Status::from(ServiceError::from(QueryError::NoSuchPeer(
            "10.9.9.9".parse().unwrap(),
        )));
        assert_eq!(s.code(), tonic::Code::NotFound);
        assert_eq!(s.message(), "no such peer 10.9.9.9");
        let s = tonic::Status::from(ServiceError::from(QueryError::PeerRequired(
            TableKind::AdjRibIn,
        )));
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        let s = tonic::Status::from(ServiceError::SpeakerGone);
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let s = tonic::Status::from(ServiceError::from(QueryError::NoFib));
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
    }
}
