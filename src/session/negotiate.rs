//! OPEN construction and validation, capability intersection (RFC 4271 §4.2 and §6.2,
//! RFC 5492, RFC 4760, RFC 6793, RFC 6286, RFC 8654, RFC 4724, RFC 7911).
//!
//! The codec already rejected OPENs that are malformed on their own (version, hold time 1–2,
//! zero identifier, broken capabilities). This module checks an OPEN against *our* config:
//! peer AS, identifier clash on iBGP, AS_TRANS consistency.

use std::net::Ipv4Addr;

use bytes::Bytes;

use super::SessionConfig;
use crate::wire::{AS_TRANS, Capability, Family, GrFamily, Notification, Open, SessionCodec};

/// What both sides agreed on, valid for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub codec: SessionCodec,
    /// Families both sides advertised (RFC 4760 §6; IPv4 unicast implied without MP caps).
    pub families: Vec<Family>,
    /// Negotiated hold time in seconds (0 = no hold timer, no keepalives).
    pub hold_time: u16,
    /// Keepalive interval in seconds (hold / 3, 0 when hold is 0).
    pub keepalive: u16,
    pub remote_id: Ipv4Addr,
    pub remote_as: u32,
    /// The peer supports ROUTE-REFRESH (RFC 2918).
    pub route_refresh: bool,
    /// The peer's graceful-restart capability (RFC 4724), if any.
    pub peer_graceful_restart: Option<PeerGracefulRestart>,
}

/// The graceful-restart capability as advertised by the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerGracefulRestart {
    pub restart_state: bool,
    pub notification: bool,
    pub restart_time: u16,
    pub families: Vec<GrFamily>,
}

/// Our OPEN for this session; `restarting` is the Restart State (R) bit.
pub fn local_open(cfg: &SessionConfig, restarting: bool) -> Open {
    let mut capabilities = Vec::with_capacity(cfg.families.len() + 4);
    for f in &cfg.families {
        capabilities.push(Capability::Multiprotocol(*f));
    }
    capabilities.push(Capability::RouteRefresh);
    capabilities.push(Capability::FourOctetAs(cfg.local_as));
    if cfg.extended_message {
        capabilities.push(Capability::ExtendedMessage);
    }
    if let Some(restart_time) = cfg.graceful_restart_time {
        // RFC 4724 §3: every family we exchange is listed, so a peer keeps our routes when our
        // session drops; F tells it whether our forwarding survived (checked on the new OPEN).
        let families = cfg
            .families
            .iter()
            .map(|f| GrFamily {
                family: *f,
                forwarding_preserved: cfg.gr_forwarding,
            })
            .collect();
        capabilities.push(Capability::GracefulRestart {
            restart_state: restarting,
            notification: true,
            restart_time: restart_time.min(4095),
            families,
        });
    }
    let my_as = u16::try_from(cfg.local_as).unwrap_or(AS_TRANS);
    Open {
        version: 4,
        my_as,
        hold_time: cfg.hold_time,
        bgp_id: cfg.router_id,
        capabilities,
    }
}

fn open_error(subcode: u8, data: Bytes) -> Notification {
    Notification {
        code: 2,
        subcode,
        data,
    }
}

/// Validates the peer's OPEN against our configuration and computes the session parameters.
/// An error is the NOTIFICATION to send (code 2).
pub fn negotiate(cfg: &SessionConfig, peer: &Open) -> Result<Negotiated, Notification> {
    let mut four_octet: Option<u32> = None;
    let mut families: Vec<Family> = Vec::new();
    let mut route_refresh = false;
    let mut extended_message = false;
    let mut peer_gr = None;
    for cap in &peer.capabilities {
        match cap {
            Capability::FourOctetAs(a) => {
                if four_octet.is_none() {
                    four_octet = Some(*a);
                }
            }
            Capability::Multiprotocol(f) => {
                if !families.contains(f) {
                    families.push(*f);
                }
            }
            Capability::RouteRefresh | Capability::EnhancedRouteRefresh => route_refresh = true,
            Capability::ExtendedMessage => extended_message = true,
            Capability::GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families,
            } => {
                peer_gr = Some(PeerGracefulRestart {
                    restart_state: *restart_state,
                    notification: *notification,
                    restart_time: *restart_time,
                    families: families.clone(),
                });
            }
            Capability::AddPath(_) | Capability::Unknown { .. } => {}
        }
    }

    // RFC 6793 §4.1 / RFC 7607: the real AS is the capability's; AS_TRANS must not appear there
    // and a 2-octet My AS other than AS_TRANS must agree with it.
    let remote_as = match four_octet {
        Some(a) => {
            if a == 0 || a == u32::from(AS_TRANS) {
                return Err(open_error(2, Bytes::new()));
            }
            if peer.my_as != AS_TRANS && u32::from(peer.my_as) != a {
                return Err(open_error(2, Bytes::new()));
            }
            a
        }
        None => {
            if peer.my_as == 0 {
                return Err(open_error(2, Bytes::new()));
            }
            u32::from(peer.my_as)
        }
    };
    if remote_as != cfg.remote_as {
        // RFC 4271 §6.2: Bad Peer AS. Data: the AS we saw, for the operator's logs.
        return Err(open_error(
            2,
            Bytes::copy_from_slice(&peer.my_as.to_be_bytes()),
        ));
    }
    let ibgp = remote_as == cfg.local_as;
    // RFC 6286 §2.2: on iBGP the identifiers must differ.
    if peer.bgp_id == Ipv4Addr::UNSPECIFIED || (ibgp && peer.bgp_id == cfg.router_id) {
        return Err(open_error(3, Bytes::copy_from_slice(&peer.bgp_id.octets())));
    }

    // RFC 4760 §8: without any MP capability, IPv4 unicast is implied.
    let peer_families = if families.is_empty() {
        vec![Family::IPV4_UNICAST]
    } else {
        families
    };
    let families: Vec<Family> = cfg
        .families
        .iter()
        .copied()
        .filter(|f| peer_families.contains(f))
        .collect();

    // RFC 4271 §4.2: the smaller of the two; a configurable floor is allowed ("MAY reject").
    let hold_time = cfg.hold_time.min(peer.hold_time);
    if hold_time != 0 && hold_time < cfg.min_hold_time.max(3) {
        return Err(open_error(
            6,
            Bytes::copy_from_slice(&peer.hold_time.to_be_bytes()),
        ));
    }
    let keepalive = if hold_time == 0 {
        0
    } else {
        (hold_time / 3).max(1)
    };

    let codec = SessionCodec {
        four_octet_as: four_octet.is_some(),
        extended_message: extended_message && cfg.extended_message,
        add_path_rx: Vec::new(),
        add_path_tx: Vec::new(),
        ibgp,
    };
    Ok(Negotiated {
        codec,
        families,
        hold_time,
        keepalive,
        remote_id: peer.bgp_id,
        remote_as,
        route_refresh,
        peer_graceful_restart: peer_gr,
    })
}
