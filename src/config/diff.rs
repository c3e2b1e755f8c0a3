//! The difference between two [`SpeakerConfig`]s, classified by how it can be applied
//! (ARCHITECTURE.md §11.8, rule 9: BIRD's `bgp_reconfigure` "in place or restart" as a type).
//!
//! [`diff`] is pure: it never looks at session state. The speaker applies the result
//! (`Speaker::apply_config`) with the least disturbance: a reload must never reset a session
//! whose configuration did not change (the Calico/BIRD "re-render and SIGHUP" failure mode).
//!
//! Neighbours are identified by their address: a new address is a new peer (and the old one is
//! removed), whatever else stayed the same.
//!
//! # Per-peer fields ([`PeerField::apply`])
//!
//! | field | [`Apply`] | why |
//! |---|---|---|
//! | `description`, `origin` | `InPlace` | labels for operators (status table, PEER TYPE) |
//! | `passive`, `connect_retry` | `NextConnection` | only decide how the next TCP connection is made; an Established session keeps running, a session that is not Established is restarted so the new value takes effect now |
//! | `remote_as`, `local_as`, `hold_time`, `families` | `Reset` | negotiated in the OPEN (RFC 4271 §4.2, RFC 4760 §8) |
//! | `role`, `next_hop`, `allowed_local_as` | `Reset` | decide import/export of routes already exchanged (split horizon, reflection, next-hop-self, loop check); re-filtering in place (a soft refresh) is not implemented, a reset re-exchanges everything |
//! | `port`, `local_address` | `Reset` | the transport endpoints of the session itself (and `local_address` is the next-hop-self default) |
//! | `auth`, `ttl_security` | `Reset` | socket options of the connection (TCP MD5 has no key rollover, RFC 2385); the new connection gets the new ones |
//!
//! A reset sends NOTIFICATION Cease / Other Configuration Change (RFC 4486 subcode 6) and
//! restarts the session with the new configuration.
//!
//! # Speaker-wide fields ([`SpeakerField::apply`])
//!
//! * `local_as`, `router_id`, `cluster_id`, `graceful_restart_time`: carried in every OPEN or
//!   baked into every exported route (ORIGINATOR_ID/CLUSTER_LIST checks, RFC 4456 §8), so every
//!   session is reset ([`SpeakerApply::ResetAll`]).
//! * `next_hop_ipv4`/`next_hop_ipv6`: next-hop-self of every route we advertise; every session is
//!   reset (a re-export in place is not implemented).
//! * `idle_hold_min`/`idle_hold_max`: only the backoff after the *next* failure: in place.
//! * `max_ecmp`: only how many equal-cost paths go to the FIB (the advertised best path does not
//!   depend on it): in place, every prefix is decided again.
//! * `listen`: the driver rebinds its listener ([`SpeakerApply::Rebind`]); no session is touched
//!   (connections already accepted stay up).
//! * `originate`: the prefixes that appear or disappear are announced or withdrawn; nothing else.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{PeerConfig, SpeakerConfig};

/// How a change can be applied, weakest first (`Ord`: the strongest of several wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Apply {
    /// Store the new value; nothing on the wire changes.
    InPlace,
    /// Affects only how the next TCP connection is made: an Established session keeps running;
    /// one that is not Established is restarted.
    NextConnection,
    /// The session must be reset (Cease / Other Configuration Change) and restarted.
    Reset,
}

/// One per-peer configuration field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PeerField {
    Port,
    RemoteAs,
    LocalAs,
    Role,
    Origin,
    Passive,
    HoldTime,
    ConnectRetry,
    LocalAddress,
    NextHop,
    Description,
    AllowedLocalAs,
    Families,
    MaxPrefixes,
    Auth,
    TtlSecurity,
    RestartTime,
}

impl PeerField {
    /// How a change of this field is applied (see the module documentation).
    pub fn apply(self) -> Apply {
        match self {
            PeerField::Description | PeerField::Origin | PeerField::MaxPrefixes => Apply::InPlace,
            PeerField::Passive | PeerField::ConnectRetry | PeerField::RestartTime => {
                Apply::NextConnection
            }
            PeerField::Port
            | PeerField::RemoteAs
            | PeerField::LocalAs
            | PeerField::Role
            | PeerField::HoldTime
            | PeerField::LocalAddress
            | PeerField::NextHop
            | PeerField::AllowedLocalAs
            | PeerField::Families
            | PeerField::Auth
            | PeerField::TtlSecurity => Apply::Reset,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PeerField::Port => "port",
            PeerField::RemoteAs => "remote_as",
            PeerField::LocalAs => "local_as",
            PeerField::Role => "role",
            PeerField::Origin => "origin",
            PeerField::Passive => "passive",
            PeerField::HoldTime => "hold_time",
            PeerField::ConnectRetry => "connect_retry",
            PeerField::LocalAddress => "local_address",
            PeerField::NextHop => "next_hop",
            PeerField::Description => "description",
            PeerField::AllowedLocalAs => "allowed_local_as",
            PeerField::MaxPrefixes => "max_prefixes",
            PeerField::Families => "families",
            PeerField::Auth => "password",
            PeerField::TtlSecurity => "ttl_security",
            PeerField::RestartTime => "restart_time",
        }
    }
}

/// How a speaker-wide change is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SpeakerApply {
    /// Store the new value (and let the speaker recompute what depends on it).
    InPlace,
    /// The driver closes its listener and binds the new address.
    Rebind,
    /// Every session is reset (Cease / Other Configuration Change) and restarted.
    ResetAll,
}

/// One speaker-wide configuration field (`originate` and `neighbors` have their own lists).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpeakerField {
    LocalAs,
    RouterId,
    Listen,
    ClusterId,
    IdleHold,
    GracefulRestartTime,
    MaxEcmp,
    NextHopIpv4,
    NextHopIpv6,
}

impl SpeakerField {
    /// How a change of this field is applied (see the module documentation).
    pub fn apply(self) -> SpeakerApply {
        match self {
            SpeakerField::Listen => SpeakerApply::Rebind,
            SpeakerField::IdleHold | SpeakerField::MaxEcmp => SpeakerApply::InPlace,
            SpeakerField::LocalAs
            | SpeakerField::RouterId
            | SpeakerField::ClusterId
            | SpeakerField::GracefulRestartTime
            | SpeakerField::NextHopIpv4
            | SpeakerField::NextHopIpv6 => SpeakerApply::ResetAll,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SpeakerField::LocalAs => "local_as",
            SpeakerField::RouterId => "router_id",
            SpeakerField::Listen => "listen",
            SpeakerField::ClusterId => "cluster_id",
            SpeakerField::IdleHold => "idle_hold",
            SpeakerField::GracefulRestartTime => "graceful_restart_time",
            SpeakerField::MaxEcmp => "max_ecmp",
            SpeakerField::NextHopIpv4 => "next_hop_ipv4",
            SpeakerField::NextHopIpv6 => "next_hop_ipv6",
        }
    }
}

/// The changed fields of a peer present in both configurations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerChange {
    pub address: IpAddr,
    /// Never empty; in declaration order of [`PeerField`].
    pub fields: Vec<PeerField>,
}

impl PeerChange {
    /// The strongest treatment any of the changed fields needs.
    pub fn apply(&self) -> Apply {
        self.fields
            .iter()
            .map(|f| f.apply())
            .max()
            .unwrap_or(Apply::InPlace)
    }
}

/// Everything that differs between two configurations. See the module documentation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigDiff {
    /// Neighbours only in the new configuration, in its order.
    pub peers_added: Vec<IpAddr>,
    /// Neighbours only in the old configuration, in its order.
    pub peers_removed: Vec<IpAddr>,
    /// Neighbours in both, with at least one field changed, in the new configuration's order.
    pub peers_changed: Vec<PeerChange>,
    /// Prefixes to start originating, in the new configuration's order.
    pub originate_added: Vec<IpNet>,
    /// Prefixes to stop originating, in the old configuration's order.
    pub originate_removed: Vec<IpNet>,
    /// Speaker-wide fields that changed, in declaration order of [`SpeakerField`].
    pub speaker: Vec<SpeakerField>,
}

impl ConfigDiff {
    pub fn is_empty(&self) -> bool {
        *self == ConfigDiff::default()
    }

    /// True when a speaker-wide change resets every session.
    pub fn resets_all(&self) -> bool {
        self.speaker
            .iter()
            .any(|f| f.apply() == SpeakerApply::ResetAll)
    }

    /// True when the listen address changed (the driver rebinds).
    pub fn listen_changed(&self) -> bool {
        self.speaker.contains(&SpeakerField::Listen)
    }

    /// Changed peers whose session is reset because of their own fields (a speaker-wide reset
    /// comes on top, see [`ConfigDiff::resets_all`]).
    pub fn peers_reset(&self) -> impl Iterator<Item = &PeerChange> {
        self.peers_changed
            .iter()
            .filter(|c| c.apply() == Apply::Reset)
    }
}

impl std::fmt::Display for ConfigDiff {
    /// A one-line summary for logs: `+[a, b] -[c] ~[d(hold_time)!] originate +1 -0 speaker[...]`,
    /// where `!` marks a peer whose session is reset.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let list = |v: &[IpAddr]| {
            v.iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let changed: Vec<String> = self
            .peers_changed
            .iter()
            .map(|c| {
                let fields: Vec<&str> = c.fields.iter().map(|x| x.name()).collect();
                let mark = if c.apply() == Apply::Reset { "!" } else { "" };
                format!("{}({}){mark}", c.address, fields.join(","))
            })
            .collect();
        let speaker: Vec<&str> = self.speaker.iter().map(|x| x.name()).collect();
        write!(
            f,
            "peers added [{}] removed [{}] changed [{}]; originate +{} -{}; speaker [{}]",
            list(&self.peers_added),
            list(&self.peers_removed),
            changed.join(", "),
            self.originate_added.len(),
            self.originate_removed.len(),
            speaker.join(", ")
        )?;
        if self.resets_all() {
            f.write_str(" (all sessions reset)")?;
        }
        Ok(())
    }
}

/// The fields in which two configurations of the same neighbour differ.
pub fn peer_fields(old: &PeerConfig, new: &PeerConfig) -> Vec<PeerField> {
    let mut v = Vec::new();
    let mut check = |changed: bool, f: PeerField| {
        if changed {
            v.push(f);
        }
    };
    check(old.port != new.port, PeerField::Port);
    check(old.remote_as != new.remote_as, PeerField::RemoteAs);
    check(old.local_as != new.local_as, PeerField::LocalAs);
    check(old.role != new.role, PeerField::Role);
    check(old.origin != new.origin, PeerField::Origin);
    check(old.passive != new.passive, PeerField::Passive);
    check(old.hold_time != new.hold_time, PeerField::HoldTime);
    check(
        old.connect_retry != new.connect_retry,
        PeerField::ConnectRetry,
    );
    check(
        old.local_address != new.local_address,
        PeerField::LocalAddress,
    );
    check(old.next_hop != new.next_hop, PeerField::NextHop);
    check(old.description != new.description, PeerField::Description);
    check(
        old.allowed_local_as != new.allowed_local_as,
        PeerField::AllowedLocalAs,
    );
    check(old.families != new.families, PeerField::Families);
    check(old.max_prefixes != new.max_prefixes, PeerField::MaxPrefixes);
    check(old.auth != new.auth, PeerField::Auth);
    check(old.ttl_security != new.ttl_security, PeerField::TtlSecurity);
    check(old.restart_time != new.restart_time, PeerField::RestartTime);
    // Every field of `PeerConfig` but `address` (the identity) is compared above; keep this
    // destructuring exhaustive so a new field cannot be forgotten here.
    let PeerConfig {
        address: _,
        port: _,
        remote_as: _,
        local_as: _,
        role: _,
        origin: _,
        passive: _,
        hold_time: _,
        connect_retry: _,
        local_address: _,
        next_hop: _,
        description: _,
        allowed_local_as: _,
        families: _,
        max_prefixes: _,
        auth: _,
        ttl_security: _,
        restart_time: _,
    } = new;
    v
}

/// The typed difference from `old` to `new`. Pure; see the module documentation.
pub fn diff(old: &SpeakerConfig, new: &SpeakerConfig) -> ConfigDiff {
    let mut d = ConfigDiff::default();
    for n in &new.neighbors {
        match old.neighbor(n.address) {
            None => d.peers_added.push(n.address),
            Some(o) => {
                let fields = peer_fields(o, n);
                if !fields.is_empty() {
                    d.peers_changed.push(PeerChange {
                        address: n.address,
                        fields,
                    });
                }
            }
        }
    }
    d.peers_removed = old
        .neighbors
        .iter()
        .filter(|o| new.neighbor(o.address).is_none())
        .map(|o| o.address)
        .collect();

    let mut seen = rustc_hash::FxHashSet::default();
    d.originate_added = new
        .originate
        .iter()
        .filter(|p| !old.originate.contains(p) && seen.insert(**p))
        .copied()
        .collect();
    seen.clear();
    d.originate_removed = old
        .originate
        .iter()
        .filter(|p| !new.originate.contains(p) && seen.insert(**p))
        .copied()
        .collect();

    let mut check = |changed: bool, f: SpeakerField| {
        if changed {
            d.speaker.push(f);
        }
    };
    check(old.local_as != new.local_as, SpeakerField::LocalAs);
    check(old.router_id != new.router_id, SpeakerField::RouterId);
    check(old.listen != new.listen, SpeakerField::Listen);
    check(old.cluster_id != new.cluster_id, SpeakerField::ClusterId);
    check(
        old.idle_hold_min != new.idle_hold_min || old.idle_hold_max != new.idle_hold_max,
        SpeakerField::IdleHold,
    );
    check(
        old.graceful_restart_time != new.graceful_restart_time,
        SpeakerField::GracefulRestartTime,
    );
    check(old.max_ecmp != new.max_ecmp, SpeakerField::MaxEcmp);
    check(
        old.next_hop_ipv4 != new.next_hop_ipv4,
        SpeakerField::NextHopIpv4,
    );
    check(
        old.next_hop_ipv6 != new.next_hop_ipv6,
        SpeakerField::NextHopIpv6,
    );
    // Exhaustive on purpose, like `peer_fields`.
    let SpeakerConfig {
        local_as: _,
        router_id: _,
        listen: _,
        cluster_id: _,
        idle_hold_min: _,
        idle_hold_max: _,
        graceful_restart_time: _,
        max_ecmp: _,
        originate: _,
        next_hop_ipv4: _,
        next_hop_ipv6: _,
        neighbors: _,
    } = new;
    d
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;
    use crate::config::{NextHopMode, PeerOrigin, PeerRole, parse_yaml};

    fn base() -> SpeakerConfig {
        parse_yaml(
            "local_as: 64512\nrouter_id: 198.18.0.1\nlisten: { address: 198.18.0.1, port: 179 }\n\
             originate: [10.244.1.0/26, 10.244.1.64/26]\nneighbors:\n\
             \x20 - { address: 198.18.0.2, remote_as: 64512 }\n\
             \x20 - { address: 198.18.0.3, remote_as: 64512 }\n\
             \x20 - { address: 198.18.0.4, remote_as: 65004 }\n",
        )
        .unwrap()
    }

    fn addr(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    fn peer_mut(c: &mut SpeakerConfig, last: u8) -> &mut PeerConfig {
        c.neighbors
            .iter_mut()
            .find(|n| n.address == addr(last))
            .unwrap()
    }

    #[test]
    fn identical_configs_have_an_empty_diff() {
        let d = diff(&base(), &base());
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(d.to_string(), "no change");
    }

    #[test]
    fn reordering_neighbours_and_prefixes_is_no_change() {
        let mut new = base();
        new.neighbors.reverse();
        new.originate.reverse();
        assert!(diff(&base(), &new).is_empty());
    }

    #[test]
    fn peers_added_removed_changed_by_address() {
        let old = base();
        let mut new = base();
        new.neighbors.retain(|n| n.address != addr(3));
        let mut d5 = new.neighbors[0].clone();
        d5.address = addr(5);
        new.neighbors.push(d5);
        peer_mut(&mut new, 2).hold_time = 30;
        let d = diff(&old, &new);
        assert_eq!(d.peers_added, vec![addr(5)]);
        assert_eq!(d.peers_removed, vec![addr(3)]);
        assert_eq!(
            d.peers_changed,
            vec![PeerChange {
                address: addr(2),
                fields: vec![PeerField::HoldTime],
            }]
        );
        assert_eq!(d.peers_reset().count(), 1);
        assert!(!d.resets_all());
        assert!(d.speaker.is_empty() && d.originate_added.is_empty());
        let s = d.to_string();
        assert!(
            s.contains("added [198.18.0.5]") && s.contains("198.18.0.2(hold_time)!"),
            "{s}"
        );
    }

    #[test]
    fn description_and_origin_change_in_place() {
        let mut new = base();
        peer_mut(&mut new, 2).description = Some("rack 7".into());
        peer_mut(&mut new, 3).origin = PeerOrigin::Global;
        let d = diff(&base(), &new);
        assert_eq!(d.peers_changed.len(), 2);
        assert!(d.peers_changed.iter().all(|c| c.apply() == Apply::InPlace));
        assert_eq!(d.peers_reset().count(), 0);
    }

    #[test]
    fn passive_and_connect_retry_apply_to_the_next_connection() {
        let mut new = base();
        peer_mut(&mut new, 2).passive = true;
        peer_mut(&mut new, 3).connect_retry = Duration::from_secs(30);
        let d = diff(&base(), &new);
        assert_eq!(
            d.peers_changed
                .iter()
                .map(|c| c.apply())
                .collect::<Vec<_>>(),
            vec![Apply::NextConnection, Apply::NextConnection]
        );
    }

    #[test]
    fn every_session_field_resets_and_the_strongest_wins() {
        type Edit = fn(&mut PeerConfig);
        let edits: [(PeerField, Edit); 11] = [
            (PeerField::Port, |p| p.port = 1179),
            (PeerField::RemoteAs, |p| p.remote_as = 65099),
            (PeerField::LocalAs, |p| p.local_as = 65098),
            (PeerField::Role, |p| p.role = PeerRole::Mesh),
            (PeerField::HoldTime, |p| p.hold_time = 9),
            (PeerField::LocalAddress, |p| p.local_address = Some(addr(1))),
            (PeerField::NextHop, |p| p.next_hop = NextHopMode::Keep),
            (PeerField::AllowedLocalAs, |p| p.allowed_local_as = 1),
            (PeerField::Families, |p| p.families.truncate(1)),
            (PeerField::Auth, |p| {
                p.auth = crate::config::TcpAuth::Md5(crate::config::Md5Key::new("k").unwrap())
            }),
            (PeerField::TtlSecurity, |p| {
                p.ttl_security = std::num::NonZeroU8::new(1)
            }),
        ];
        for (field, edit) in edits {
            let mut new = base();
            edit(peer_mut(&mut new, 4));
            let d = diff(&base(), &new);
            assert_eq!(d.peers_changed.len(), 1, "{field:?}");
            assert_eq!(d.peers_changed[0].fields, vec![field]);
            assert_eq!(d.peers_changed[0].apply(), Apply::Reset, "{field:?}");
        }
        let mut new = base();
        let p = peer_mut(&mut new, 4);
        p.description = Some("x".into());
        p.passive = true;
        p.hold_time = 30;
        let d = diff(&base(), &new);
        assert_eq!(
            d.peers_changed[0].fields,
            vec![
                PeerField::Passive,
                PeerField::HoldTime,
                PeerField::Description
            ]
        );
        assert_eq!(d.peers_changed[0].apply(), Apply::Reset);
    }

    #[test]
    fn originate_difference_only() {
        let mut new = base();
        new.originate = vec![
            "10.244.1.64/26".parse().unwrap(),
            "10.244.1.128/26".parse().unwrap(),
            "10.244.1.128/26".parse().unwrap(),
        ];
        let d = diff(&base(), &new);
        assert_eq!(
            d.originate_added,
            vec!["10.244.1.128/26".parse::<IpNet>().unwrap()]
        );
        assert_eq!(
            d.originate_removed,
            vec!["10.244.1.0/26".parse::<IpNet>().unwrap()]
        );
        assert!(d.peers_changed.is_empty() && d.speaker.is_empty());
    }

    #[test]
    fn speaker_wide_changes_are_classified() {
        type Edit = fn(&mut SpeakerConfig);
        let cases: [(SpeakerField, Edit, SpeakerApply); 9] = [
            (
                SpeakerField::LocalAs,
                |c| c.local_as = 64513,
                SpeakerApply::ResetAll,
            ),
            (
                SpeakerField::RouterId,
                |c| c.router_id = Ipv4Addr::new(198, 18, 0, 9),
                SpeakerApply::ResetAll,
            ),
            (
                SpeakerField::Listen,
                |c| c.listen = None,
                SpeakerApply::Rebind,
            ),
            (
                SpeakerField::ClusterId,
                |c| c.cluster_id = Ipv4Addr::new(198, 18, 0, 9),
                SpeakerApply::ResetAll,
            ),
            (
                SpeakerField::IdleHold,
                |c| c.idle_hold_max = Duration::from_secs(5),
                SpeakerApply::InPlace,
            ),
            (
                SpeakerField::GracefulRestartTime,
                |c| c.graceful_restart_time = None,
                SpeakerApply::ResetAll,
            ),
            (
                SpeakerField::MaxEcmp,
                |c| c.max_ecmp = 1,
                SpeakerApply::InPlace,
            ),
            (
                SpeakerField::NextHopIpv4,
                |c| c.next_hop_ipv4 = Some(Ipv4Addr::new(198, 18, 0, 1)),
                SpeakerApply::ResetAll,
            ),
            (
                SpeakerField::NextHopIpv6,
                |c| c.next_hop_ipv6 = Some("2001:db8::1".parse().unwrap()),
                SpeakerApply::ResetAll,
            ),
        ];
        for (field, edit, apply) in cases {
            let mut new = base();
            edit(&mut new);
            let d = diff(&base(), &new);
            assert_eq!(d.speaker, vec![field]);
            assert_eq!(field.apply(), apply);
            assert_eq!(d.resets_all(), apply == SpeakerApply::ResetAll, "{field:?}");
            assert_eq!(d.listen_changed(), field == SpeakerField::Listen);
            assert!(d.peers_changed.is_empty(), "{field:?}: {d:?}");
        }
    }

    #[test]
    fn speaker_local_as_propagates_to_defaulted_peers() {
        // In YAML a neighbour's local_as defaults to the speaker's: changing the speaker's AS
        // changes theirs too, and both levels say so.
        let y = |asn: u32| {
            parse_yaml(&format!(
                "local_as: {asn}\nrouter_id: 198.18.0.1\nneighbors:\n  - {{ address: 198.18.0.4, remote_as: 65004 }}\n"
            ))
            .unwrap()
        };
        let d = diff(&y(64512), &y(64513));
        assert_eq!(d.speaker, vec![SpeakerField::LocalAs]);
        assert_eq!(d.peers_changed[0].fields, vec![PeerField::LocalAs]);
        assert!(d.resets_all());
    }
}
