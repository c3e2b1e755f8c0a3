//! YAML form of [`SpeakerConfig`] and its validation.
//!
//! ```yaml
//! local_as: 65001
//! router_id: 198.18.0.1
//! listen: { address: "0.0.0.0", port: 179 }   # or `listen: false`
//! hold_time: 90
//! originate: [10.244.1.0/26, "2001:db8:1::/64"]
//! next_hop_ipv4: 198.18.0.1        # next-hop-self address (default: the session's local one)
//! next_hop_ipv6: "2001:db8::1"
//! neighbors:
//!   - address: 198.18.0.2
//!     remote_as: 65001
//!     role: mesh            # mesh | rr-client | rr-peer | ebgp (default: by AS)
//!     passive: false
//!     password: "s3cret"    # TCP MD5 key (RFC 2385), 1-80 bytes
//!     ttl_security: 1       # GTSM (RFC 5082): at most this many hops away
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::{
    KeyProblem, Md5Key, NextHopMode, PeerConfig, PeerOrigin, PeerRole, SpeakerConfig, TcpAuth,
};
use crate::wire::Family;

/// A configuration error: where (a YAML path such as `neighbors[1].hold_time`) and what.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{path}: {kind}")]
pub struct ConfigError {
    pub path: String,
    pub kind: ConfigErrorKind,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// The YAML does not parse or does not match the schema (unknown field, wrong type...).
    #[error("{0}")]
    Syntax(String),
    #[error("AS number 0 is reserved (RFC 7607)")]
    ZeroAs,
    #[error("hold time {0} is invalid: must be 0 or at least 3 seconds (RFC 4271 §4.2)")]
    HoldTime(u16),
    #[error("router id 0.0.0.0 is invalid (RFC 6286)")]
    ZeroRouterId,
    #[error("duplicate neighbor {0}")]
    DuplicateNeighbor(IpAddr),
    #[error("role {role:?} needs {need} (local AS {local}, remote AS {remote})")]
    RoleMismatch {
        role: PeerRole,
        need: &'static str,
        local: u32,
        remote: u32,
    },
    #[error("unknown address family {0:?} (expected ipv4-unicast or ipv6-unicast)")]
    Family(String),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("idle_hold_min {min}s is larger than idle_hold_max {max}s")]
    IdleHold { min: u64, max: u64 },
    /// A password that cannot be a TCP MD5 key (the value is never part of the message).
    #[error("{0}")]
    Password(KeyProblem),
}

fn err(path: impl Into<String>, kind: ConfigErrorKind) -> ConfigError {
    ConfigError {
        path: path.into(),
        kind,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    local_as: u32,
    router_id: Ipv4Addr,
    #[serde(default)]
    listen: Option<RawListen>,
    #[serde(default)]
    cluster_id: Option<Ipv4Addr>,
    #[serde(default = "default_hold")]
    hold_time: u16,
    #[serde(default = "default_connect_retry")]
    connect_retry: u64,
    #[serde(default = "default_idle_min")]
    idle_hold_min: u64,
    #[serde(default = "default_idle_max")]
    idle_hold_max: u64,
    #[serde(default = "default_gr")]
    graceful_restart_time: Option<u16>,
    #[serde(default = "default_ecmp")]
    max_ecmp: usize,
    #[serde(default = "default_families")]
    families: Vec<String>,
    #[serde(default)]
    originate: Vec<IpNet>,
    #[serde(default)]
    next_hop_ipv4: Option<Ipv4Addr>,
    #[serde(default)]
    next_hop_ipv6: Option<std::net::Ipv6Addr>,
    #[serde(default)]
    neighbors: Vec<RawNeighbor>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawListen {
    Enabled(bool),
    At {
        #[serde(default = "default_listen_addr")]
        address: IpAddr,
        #[serde(default = "default_port")]
        port: u16,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNeighbor {
    address: IpAddr,
    remote_as: u32,
    #[serde(default)]
    local_as: Option<u32>,
    #[serde(default = "default_port")]
    port: u16,
    #[serde(default)]
    role: Option<PeerRole>,
    #[serde(default)]
    passive: bool,
    #[serde(default)]
    hold_time: Option<u16>,
    #[serde(default)]
    connect_retry: Option<u64>,
    #[serde(default)]
    local_address: Option<IpAddr>,
    #[serde(default)]
    next_hop: Option<NextHopMode>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    allowed_local_as: u8,
    #[serde(default)]
    families: Option<Vec<String>>,
    /// Maximum prefixes accepted (see `PeerConfig::max_prefixes`).
    #[serde(default)]
    max_prefixes: Option<u32>,
    /// Seconds before a session closed by `max_prefixes` starts again (default: never).
    #[serde(default)]
    max_prefixes_restart: Option<u64>,
    /// TCP MD5 key (RFC 2385).
    #[serde(default)]
    password: Option<String>,
    /// GTSM hop count (RFC 5082), 1-255.
    #[serde(default)]
    ttl_security: Option<u8>,
    /// Graceful-restart Restart Time advertised to this peer (seconds, ≤ 4095).
    #[serde(default)]
    restart_time: Option<u16>,
}

fn default_hold() -> u16 {
    90
}
fn default_connect_retry() -> u64 {
    3
}
fn default_idle_min() -> u64 {
    1
}
fn default_idle_max() -> u64 {
    60
}
fn default_gr() -> Option<u16> {
    Some(120)
}
fn default_ecmp() -> usize {
    16
}
fn default_families() -> Vec<String> {
    vec!["ipv4-unicast".into(), "ipv6-unicast".into()]
}
fn default_listen_addr() -> IpAddr {
    IpAddr::from([0u8, 0, 0, 0])
}
fn default_port() -> u16 {
    179
}

fn parse_family(s: &str, path: &str) -> Result<Family, ConfigError> {
    match s {
        "ipv4-unicast" | "ipv4" => Ok(Family::IPV4_UNICAST),
        "ipv6-unicast" | "ipv6" => Ok(Family::IPV6_UNICAST),
        other => Err(err(path, ConfigErrorKind::Family(other.to_string()))),
    }
}

fn check_hold(h: u16, path: &str) -> Result<u16, ConfigError> {
    if h == 1 || h == 2 {
        Err(err(path, ConfigErrorKind::HoldTime(h)))
    } else {
        Ok(h)
    }
}

/// Parses and validates a YAML speaker configuration.
pub fn parse_yaml(text: &str) -> Result<SpeakerConfig, ConfigError> {
    let raw: RawConfig = serde_saphyr::from_str(text)
        .map_err(|e| err("<document>", ConfigErrorKind::Syntax(e.to_string())))?;
    if raw.local_as == 0 {
        return Err(err("local_as", ConfigErrorKind::ZeroAs));
    }
    if raw.router_id.is_unspecified() {
        return Err(err("router_id", ConfigErrorKind::ZeroRouterId));
    }
    let hold = check_hold(raw.hold_time, "hold_time")?;
    if raw.connect_retry == 0 {
        return Err(err("connect_retry", ConfigErrorKind::Zero("connect_retry")));
    }
    if raw.max_ecmp == 0 {
        return Err(err("max_ecmp", ConfigErrorKind::Zero("max_ecmp")));
    }
    if raw.idle_hold_min > raw.idle_hold_max {
        return Err(err(
            "idle_hold_min",
            ConfigErrorKind::IdleHold {
                min: raw.idle_hold_min,
                max: raw.idle_hold_max,
            },
        ));
    }
    let families = raw
        .families
        .iter()
        .enumerate()
        .map(|(i, f)| parse_family(f, &format!("families[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let listen = match raw.listen {
        None | Some(RawListen::Enabled(true)) => Some((default_listen_addr(), default_port())),
        Some(RawListen::Enabled(false)) => None,
        Some(RawListen::At { address, port }) => Some((address, port)),
    };

    let mut neighbors: Vec<PeerConfig> = Vec::with_capacity(raw.neighbors.len());
    for (i, n) in raw.neighbors.into_iter().enumerate() {
        let p = |f: &str| format!("neighbors[{i}].{f}");
        if n.remote_as == 0 {
            return Err(err(p("remote_as"), ConfigErrorKind::ZeroAs));
        }
        let local_as = n.local_as.unwrap_or(raw.local_as);
        if local_as == 0 {
            return Err(err(p("local_as"), ConfigErrorKind::ZeroAs));
        }
        let ibgp = local_as == n.remote_as;
        let role = n
            .role
            .unwrap_or(if ibgp { PeerRole::Mesh } else { PeerRole::Ebgp });
        if role.is_ibgp() != ibgp {
            let need = if ibgp {
                "a different remote AS"
            } else {
                "the same remote AS"
            };
            return Err(err(
                p("role"),
                ConfigErrorKind::RoleMismatch {
                    role,
                    need,
                    local: local_as,
                    remote: n.remote_as,
                },
            ));
        }
        if neighbors.iter().any(|x| x.address == n.address) {
            return Err(err(
                p("address"),
                ConfigErrorKind::DuplicateNeighbor(n.address),
            ));
        }
        let hold_time = check_hold(n.hold_time.unwrap_or(hold), &p("hold_time"))?;
        let connect_retry = n.connect_retry.unwrap_or(raw.connect_retry);
        if connect_retry == 0 {
            return Err(err(
                p("connect_retry"),
                ConfigErrorKind::Zero("connect_retry"),
            ));
        }
        let families = match n.families {
            None => families.clone(),
            Some(fs) => fs
                .iter()
                .enumerate()
                .map(|(j, f)| parse_family(f, &p(&format!("families[{j}]"))))
                .collect::<Result<Vec<_>, _>>()?,
        };
        let auth = match n.password {
            None => TcpAuth::None,
            Some(pw) => TcpAuth::Md5(
                Md5Key::new(pw).map_err(|e| err(p("password"), ConfigErrorKind::Password(e)))?,
            ),
        };
        let ttl_security = match n.ttl_security {
            None => None,
            Some(h) => Some(
                std::num::NonZeroU8::new(h)
                    .ok_or_else(|| err(p("ttl_security"), ConfigErrorKind::Zero("ttl_security")))?,
            ),
        };
        neighbors.push(PeerConfig {
            address: n.address,
            port: n.port,
            remote_as: n.remote_as,
            local_as,
            role,
            origin: PeerOrigin::Configured,
            passive: n.passive,
            hold_time,
            connect_retry: Duration::from_secs(connect_retry),
            local_address: n.local_address,
            next_hop: n.next_hop.unwrap_or(NextHopMode::Self_),
            description: n.description,
            allowed_local_as: n.allowed_local_as,
            families,
            max_prefixes: n.max_prefixes.map(|limit| crate::config::MaxPrefixes {
                limit,
                restart_after: n.max_prefixes_restart.map(Duration::from_secs),
            }),
            auth,
            ttl_security,
            restart_time: n.restart_time.map(|t| t.min(4095)),
        });
    }

    Ok(SpeakerConfig {
        local_as: raw.local_as,
        router_id: raw.router_id,
        listen,
        cluster_id: raw.cluster_id.unwrap_or(raw.router_id),
        idle_hold_min: Duration::from_secs(raw.idle_hold_min),
        idle_hold_max: Duration::from_secs(raw.idle_hold_max),
        graceful_restart_time: raw.graceful_restart_time,
        max_ecmp: raw.max_ecmp,
        originate: raw.originate,
        next_hop_ipv4: raw.next_hop_ipv4,
        next_hop_ipv6: raw.next_hop_ipv6,
        neighbors,
    })
}

/// Renders a configuration in the YAML form [`parse_yaml`] reads (what `podbgp config` shows
/// for a configuration derived from the Calico datastore). Each neighbour's origin is given as a
/// comment, since the file form has no field for it.
pub fn render_yaml(cfg: &SpeakerConfig) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(s, "local_as: {}", cfg.local_as);
    let _ = writeln!(s, "router_id: {}", cfg.router_id);
    match cfg.listen {
        Some((a, p)) => {
            let _ = writeln!(s, "listen: {{ address: \"{a}\", port: {p} }}");
        }
        None => s.push_str("listen: false\n"),
    }
    let _ = writeln!(s, "cluster_id: {}", cfg.cluster_id);
    let _ = writeln!(s, "idle_hold_min: {}", cfg.idle_hold_min.as_secs());
    let _ = writeln!(s, "idle_hold_max: {}", cfg.idle_hold_max.as_secs());
    match cfg.graceful_restart_time {
        Some(t) => {
            let _ = writeln!(s, "graceful_restart_time: {t}");
        }
        None => s.push_str("graceful_restart_time: null\n"),
    }
    let _ = writeln!(s, "max_ecmp: {}", cfg.max_ecmp);
    if let Some(a) = cfg.next_hop_ipv4 {
        let _ = writeln!(s, "next_hop_ipv4: {a}");
    }
    if let Some(a) = cfg.next_hop_ipv6 {
        let _ = writeln!(s, "next_hop_ipv6: \"{a}\"");
    }
    if cfg.originate.is_empty() {
        s.push_str("originate: []\n");
    } else {
        s.push_str("originate:\n");
        for p in &cfg.originate {
            let _ = writeln!(s, "  - \"{p}\"");
        }
    }
    if cfg.neighbors.is_empty() {
        s.push_str("neighbors: []\n");
    } else {
        s.push_str("neighbors:\n");
    }
    for n in &cfg.neighbors {
        let role = match n.role {
            PeerRole::Mesh => "mesh",
            PeerRole::RrClient => "rr-client",
            PeerRole::RrPeer => "rr-peer",
            PeerRole::Ebgp => "ebgp",
        };
        let origin = match n.origin {
            PeerOrigin::Configured => "configured",
            PeerOrigin::Mesh => "node-to-node mesh",
            PeerOrigin::Global => "global BGPPeer",
            PeerOrigin::NodeSpecific => "node-specific BGPPeer",
        };
        let _ = writeln!(s, "  # {origin}");
        let _ = writeln!(s, "  - address: \"{}\"", n.address);
        let _ = writeln!(s, "    port: {}", n.port);
        let _ = writeln!(s, "    remote_as: {}", n.remote_as);
        let _ = writeln!(s, "    local_as: {}", n.local_as);
        let _ = writeln!(s, "    role: {role}");
        let _ = writeln!(s, "    passive: {}", n.passive);
        let _ = writeln!(s, "    hold_time: {}", n.hold_time);
        let _ = writeln!(s, "    connect_retry: {}", n.connect_retry.as_secs());
        if let Some(a) = n.local_address {
            let _ = writeln!(s, "    local_address: \"{a}\"");
        }
        let nh = match n.next_hop {
            NextHopMode::Self_ => "self",
            NextHopMode::Keep => "keep",
        };
        let _ = writeln!(s, "    next_hop: {nh}");
        if let Some(d) = &n.description {
            let _ = writeln!(
                s,
                "    description: {}",
                serde_json::Value::String(d.clone())
            );
        }
        let _ = writeln!(s, "    allowed_local_as: {}", n.allowed_local_as);
        if let Some(m) = &n.max_prefixes {
            let _ = writeln!(s, "    max_prefixes: {}", m.limit);
            if let Some(r) = m.restart_after {
                let _ = writeln!(s, "    max_prefixes_restart: {}", r.as_secs());
            }
        }
        match &n.auth {
            TcpAuth::None => {}
            // Never rendered: `podbgp config` output ends up in tickets and chat.
            TcpAuth::Md5(_) => s.push_str("    # password: set (TCP MD5), not shown\n"),
            TcpAuth::Unavailable(e) => {
                let _ = writeln!(
                    s,
                    "    # password: unavailable ({e}); the session stays down"
                );
            }
        }
        if let Some(t) = n.restart_time {
            let _ = writeln!(s, "    restart_time: {t}");
        }
        if let Some(h) = n.ttl_security {
            let _ = writeln!(s, "    ttl_security: {h}");
        }
        let fams: Vec<String> = n
            .families
            .iter()
            .map(|f| {
                if *f == Family::IPV6_UNICAST {
                    "ipv6-unicast".to_string()
                } else {
                    "ipv4-unicast".to_string()
                }
            })
            .collect();
        let _ = writeln!(s, "    families: [{}]", fams.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse_yaml("local_as: 65001\nrouter_id: 198.18.0.1\nneighbors:\n  - address: 198.18.0.2\n    remote_as: 65002\n")
            .unwrap();
        assert_eq!(c.listen, Some((IpAddr::from([0, 0, 0, 0]), 179)));
        assert_eq!(c.neighbors[0].role, PeerRole::Ebgp);
        assert_eq!(c.neighbors[0].hold_time, 90);
        assert_eq!(c.cluster_id, Ipv4Addr::new(198, 18, 0, 1));
    }

    #[test]
    fn unknown_field_is_named() {
        let e = parse_yaml("local_as: 65001\nrouter_id: 198.18.0.1\nbogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn bad_hold_time_names_the_neighbor_field() {
        let e = parse_yaml(
            "local_as: 65001\nrouter_id: 198.18.0.1\nneighbors:\n  - address: 198.18.0.2\n    remote_as: 65001\n    hold_time: 2\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "neighbors[0].hold_time");
        assert_eq!(e.kind, ConfigErrorKind::HoldTime(2));
    }

    #[test]
    fn role_must_match_as_numbers() {
        let e = parse_yaml(
            "local_as: 65001\nrouter_id: 198.18.0.1\nneighbors:\n  - address: 198.18.0.2\n    remote_as: 65002\n    role: rr-client\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "neighbors[0].role");
    }

    #[test]
    fn duplicate_neighbor_rejected() {
        let e = parse_yaml(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n  - {address: 198.18.0.2, remote_as: 2}\n  - {address: 198.18.0.2, remote_as: 3}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "neighbors[1].address");
    }

    #[test]
    fn password_and_ttl_security() {
        let c = parse_yaml(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n  - {address: 198.18.0.2, remote_as: 2, password: \"s3cret\", ttl_security: 1}\n",
        )
        .unwrap();
        let n = &c.neighbors[0];
        assert_eq!(n.auth.md5().map(|k| k.as_bytes()), Some(&b"s3cret"[..]));
        assert_eq!(n.ttl_security.map(|h| h.get()), Some(1));
        let shown = render_yaml(&c);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("ttl_security: 1"), "{shown}");
        assert!(!format!("{c:?}").contains("s3cret"));
        // Rendered output parses back to the same thing, minus the password.
        let mut again = parse_yaml(&shown).unwrap();
        again.neighbors[0].auth = n.auth.clone();
        assert_eq!(again.neighbors[0], *n);
    }

    #[test]
    fn bad_password_and_ttl_security_name_the_field() {
        let long = "x".repeat(81);
        let e = parse_yaml(&format!(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n  - {{address: 198.18.0.2, remote_as: 2, password: \"{long}\"}}\n"
        ))
        .unwrap_err();
        assert_eq!(e.path, "neighbors[0].password");
        assert_eq!(e.kind, ConfigErrorKind::Password(KeyProblem::TooLong(81)));
        assert!(!e.to_string().contains(&long));
        let e = parse_yaml(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n  - {address: 198.18.0.2, remote_as: 2, password: \"\"}\n",
        )
        .unwrap_err();
        assert_eq!(e.kind, ConfigErrorKind::Password(KeyProblem::Empty));
        let e = parse_yaml(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n  - {address: 198.18.0.2, remote_as: 2, ttl_security: 0}\n",
        )
        .unwrap_err();
        assert_eq!(e.path, "neighbors[0].ttl_security");
        let e = parse_yaml(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n  - {address: 198.18.0.2, remote_as: 2, ttl_security: 256}\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("ttl_security"), "{e}");
    }
}
