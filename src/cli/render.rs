//! Human-readable output: the calicoctl-style status table and the other listings.
//! Everything here is a pure function of the JSON types (plus "now" and the zone offset).

use std::fmt::Write as _;
use std::net::IpAddr;

use super::json::{
    EventJson, EventKindJson, PeerJson, RouteJson, SpeakerJson, StatusJson, StatusRowJson,
};
use super::table::render_table;
use super::time::{format_bird_since, format_utc, format_utc_millis};

/// Sorts peers by address (numerically, IPv4 before IPv6).
pub fn sort_peers(peers: &mut [PeerJson]) {
    peers.sort_by(|a, b| {
        let ka = a.address.parse::<IpAddr>().ok();
        let kb = b.address.parse::<IpAddr>().ok();
        ka.cmp(&kb).then_with(|| a.address.cmp(&b.address))
    });
}

fn is_v6(address: &str) -> bool {
    address.contains(':')
}

/// The `status` data: one row per peer in calicoctl's terms, split by address family and
/// sorted by address. `utc_offset(t)` gives the local zone's offset at Unix time `t`.
pub fn build_status(
    peers: &[PeerJson],
    now_unix: i64,
    utc_offset: impl Fn(i64) -> i64,
) -> StatusJson {
    let mut peers = peers.to_vec();
    sort_peers(&mut peers);
    let mut status = StatusJson {
        process_running: true,
        ipv4: vec![],
        ipv6: vec![],
    };
    for p in &peers {
        let row = StatusRowJson {
            peer_address: p.address.clone(),
            peer_type: p.peer_type.display().to_string(),
            state: p.state.bird_state().to_string(),
            since: format_bird_since(p.since_unix, now_unix, utc_offset(p.since_unix)),
            since_unix: p.since_unix,
            info: if p.info.is_empty() {
                p.state.display().to_string()
            } else {
                p.info.clone()
            },
            session_state: p.state,
        };
        if is_v6(&p.address) {
            status.ipv6.push(row);
        } else {
            status.ipv4.push(row);
        }
    }
    status
}

/// `podbgp status`, laid out like `calicoctl node status` (calicoctl commands/node/status.go:
/// a blank line before each family header, tablewriter tables, a final blank line).
pub fn render_status(status: &StatusJson) -> String {
    let mut s = String::from("podbgp process is running.\n");
    for (name, rows) in [("IPv4", &status.ipv4), ("IPv6", &status.ipv6)] {
        let _ = write!(s, "\n{name} BGP status\n");
        if rows.is_empty() {
            let _ = writeln!(s, "No {name} peers found.");
            continue;
        }
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.peer_address.clone(),
                    r.peer_type.clone(),
                    r.state.clone(),
                    r.since.clone(),
                    r.info.clone(),
                ]
            })
            .collect();
        s.push_str(&render_table(
            &["PEER ADDRESS", "PEER TYPE", "STATE", "SINCE", "INFO"],
            &body,
        ));
    }
    s.push('\n');
    s
}

fn totals(p: &PeerJson) -> (u64, u64, u64) {
    p.families.iter().fold((0, 0, 0), |(r, a, d), f| {
        (r + f.received, a + f.accepted, d + f.advertised)
    })
}

/// `podbgp peers`.
pub fn peers_table(peers: &[PeerJson], now_unix: i64, utc_offset: impl Fn(i64) -> i64) -> String {
    if peers.is_empty() {
        return "No peers configured.\n".to_string();
    }
    let rows: Vec<Vec<String>> = peers
        .iter()
        .map(|p| {
            let (rcvd, acc, adv) = totals(p);
            vec![
                p.address.clone(),
                p.remote_as.to_string(),
                p.peer_type.display().to_string(),
                p.role.display().to_string(),
                p.state.display().to_string(),
                format_bird_since(p.since_unix, now_unix, utc_offset(p.since_unix)),
                rcvd.to_string(),
                acc.to_string(),
                adv.to_string(),
                if p.info.is_empty() {
                    p.state.display().to_string()
                } else {
                    p.info.clone()
                },
            ]
        })
        .collect();
    render_table(
        &[
            "PEER ADDRESS",
            "REMOTE AS",
            "PEER TYPE",
            "ROLE",
            "STATE",
            "SINCE",
            "RECEIVED",
            "ACCEPTED",
            "ADVERTISED",
            "INFO",
        ],
        &rows,
    )
}

fn or_dash(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("-")
}

/// `podbgp peer ADDRESS`.
pub fn peer_detail(p: &PeerJson, now_unix: i64, utc_offset: impl Fn(i64) -> i64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Peer {} port {}", p.address, p.port);
    let rows: [(&str, String); 14] = [
        ("Description", or_dash(&p.description).to_string()),
        ("Peer type", p.peer_type.display().to_string()),
        ("Role", p.role.display().to_string()),
        ("Remote AS", p.remote_as.to_string()),
        ("Local AS", p.local_as.to_string()),
        (
            "State",
            format!(
                "{} since {} ({})",
                p.state.display(),
                format_bird_since(p.since_unix, now_unix, utc_offset(p.since_unix)),
                format_utc(p.since_unix)
            ),
        ),
        ("Info", p.info.clone()),
        ("Remote router ID", or_dash(&p.remote_router_id).to_string()),
        (
            "Hold time",
            format!("{} s (keepalive {} s)", p.hold_time, p.keepalive),
        ),
        ("Passive", if p.passive { "yes" } else { "no" }.to_string()),
        ("Last error", or_dash(&p.last_error).to_string()),
        (
            "Established",
            format!("{} time(s)", p.established_transitions),
        ),
        (
            "Messages",
            format!("{} received, {} sent", p.messages_received, p.messages_sent),
        ),
        (
            "UPDATEs",
            format!("{} received, {} sent", p.updates_received, p.updates_sent),
        ),
    ];
    for (k, v) in rows {
        let _ = writeln!(s, "  {:<18}{v}", format!("{k}:"));
    }
    if !p.families.is_empty() {
        let _ = writeln!(s, "  Prefixes:");
        for f in &p.families {
            let _ = writeln!(
                s,
                "    {:<16}{} received, {} accepted, {} advertised",
                f.family, f.received, f.accepted, f.advertised
            );
        }
    }
    s
}

/// `podbgp routes`.
pub fn routes_table(routes: &[RouteJson]) -> String {
    if routes.is_empty() {
        return "No routes.\n".to_string();
    }
    let opt = |v: Option<u32>| v.map(|v| v.to_string()).unwrap_or_default();
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            vec![
                r.prefix.clone(),
                r.next_hops.join(" "),
                r.peer.clone().unwrap_or_else(|| "local".to_string()),
                r.as_path
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(" "),
                r.origin
                    .map(|o| o.display().to_string())
                    .unwrap_or_default(),
                opt(r.local_pref),
                opt(r.med),
                if r.best { "*" } else { "" }.to_string(),
                r.reason.clone(),
            ]
        })
        .collect();
    render_table(
        &[
            "PREFIX",
            "NEXT HOP",
            "PEER",
            "AS PATH",
            "ORIGIN",
            "LOCAL PREF",
            "MED",
            "BEST",
            "REASON",
        ],
        &rows,
    )
}

/// `podbgp routes --table fib`: the kernel routes, `ip route` style.
pub fn fib_table(routes: &[RouteJson]) -> String {
    if routes.is_empty() {
        return "No routes.\n".to_string();
    }
    let rows: Vec<Vec<String>> = routes
        .iter()
        .map(|r| {
            let (kind, hops) = match &r.kernel {
                Some(k) => {
                    let hops: Vec<String> = k
                        .next_hops
                        .iter()
                        .map(|h| {
                            let mut s = format!("via {}", h.gateway);
                            if let Some(d) = &h.device {
                                let _ = write!(s, " dev {d}");
                            }
                            if h.onlink {
                                s.push_str(" onlink");
                            }
                            s
                        })
                        .collect();
                    let kind = match k.rtm_type {
                        Some(t) => format!("type {t}"),
                        None => k.route_type.clone(),
                    };
                    (kind, hops.join(", "))
                }
                None => (String::new(), r.next_hops.join(", ")),
            };
            vec![
                r.prefix.clone(),
                kind,
                hops,
                if r.stale { "stale" } else { "" }.to_string(),
            ]
        })
        .collect();
    render_table(&["PREFIX", "TYPE", "NEXT HOPS", "STATE"], &rows)
}

fn duration_text(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    } else {
        format!("{h:02}:{m:02}:{s:02}")
    }
}

/// `podbgp speaker`.
pub fn speaker_detail(v: &SpeakerJson) -> String {
    let listen = match (&v.listen_address, v.listen_port) {
        (Some(a), Some(p)) => format!("{a} port {p}"),
        _ => "not listening".to_string(),
    };
    let rows = [
        ("Local AS", v.local_as.to_string()),
        ("Router ID", v.router_id.clone()),
        ("Listening on", listen),
        ("Version", v.version.clone()),
        (
            "Started",
            format!(
                "{} (up {})",
                format_utc(v.started_unix),
                duration_text(v.uptime_seconds)
            ),
        ),
        (
            "Peers",
            format!(
                "{} configured, {} established",
                v.peers_configured, v.peers_established
            ),
        ),
        ("Loc-RIB prefixes", v.loc_rib_prefixes.to_string()),
        ("Decision runs", v.decision_runs.to_string()),
        (
            "UPDATEs",
            format!("{} received, {} sent", v.updates_received, v.updates_sent),
        ),
        (
            "Kernel routes",
            match &v.fib {
                Some(f) => format!(
                    "{} installed, {} held by another protocol; {} adds, {} replaces, \
                     {} deletes, {} failures, {} repairs, {} swept",
                    f.installed,
                    f.foreign,
                    f.adds,
                    f.replaces,
                    f.deletes,
                    f.failures,
                    f.repairs,
                    f.swept
                ),
                None => "not installed (FIB off)".to_string(),
            },
        ),
    ];
    let mut s = String::new();
    for (k, val) in rows {
        let _ = writeln!(s, "{:<18}{val}", format!("{k}:"));
    }
    s
}

/// One `podbgp watch` line.
pub fn event_line(e: &EventJson) -> String {
    let at = format_utc_millis(e.time_unix_ms);
    match &e.event {
        EventKindJson::PeerState {
            address,
            from,
            to,
            cause,
        } => {
            let mut s = format!("{at} peer {address} {} -> {}", from.display(), to.display());
            if !cause.is_empty() {
                let _ = write!(s, " ({cause})");
            }
            s
        }
        EventKindJson::BestPath {
            prefix,
            next_hops,
            peer,
        } => {
            if next_hops.is_empty() {
                format!("{at} best {prefix} unreachable")
            } else {
                format!(
                    "{at} best {prefix} via {} from {}",
                    next_hops.join(" "),
                    peer.as_deref().unwrap_or("local")
                )
            }
        }
        EventKindJson::Unknown => format!("{at} (unknown event)"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::json::{FamilyJson, PeerRoleJson, PeerTypeJson, SessionStateJson};
    use super::*;

    const NOW: i64 = 1_700_000_000; // 2023-11-14 22:13:20 UTC

    fn peer(
        address: &str,
        t: PeerTypeJson,
        state: SessionStateJson,
        ago: i64,
        info: &str,
    ) -> PeerJson {
        PeerJson {
            address: address.into(),
            port: 179,
            remote_as: 64512,
            local_as: 64512,
            peer_type: t,
            role: PeerRoleJson::Mesh,
            state,
            since_unix: NOW - ago,
            info: info.into(),
            remote_router_id: None,
            hold_time: 90,
            keepalive: 30,
            families: vec![FamilyJson {
                family: "ipv4-unicast".into(),
                received: 2,
                accepted: 2,
                advertised: 1,
            }],
            updates_received: 0,
            updates_sent: 0,
            messages_received: 0,
            messages_sent: 0,
            last_error: None,
            passive: false,
            description: None,
            established_transitions: 0,
        }
    }

    /// Golden: the layout of `calicoctl node status` (compare the samples in
    /// projectcalico/calicoctl#1883 and kubernetes/kops#10546), including tablewriter's
    /// wrap of a long INFO cell at 30 columns.
    #[test]
    fn status_golden() {
        use PeerTypeJson::*;
        use SessionStateJson::*;
        let peers = vec![
            peer("172.31.40.217", Mesh, Established, 3600, "Established"),
            peer(
                "10.0.0.3",
                Global,
                Active,
                60,
                "Active Socket: Connection refused",
            ),
            peer("172.31.5.1", NodeSpecific, Idle, 3 * 86_400, ""),
            peer("10.0.0.10", Mesh, Connect, 5, "Passive"),
            peer("fd00::2", Configured, Established, 25 * 3600, "Established"),
        ];
        let status = build_status(&peers, NOW, |_| 0);
        assert_eq!(
            render_status(&status),
            "\
podbgp process is running.

IPv4 BGP status
+---------------+-------------------+-------+------------+--------------------------------+
| PEER ADDRESS  |     PEER TYPE     | STATE |   SINCE    |              INFO              |
+---------------+-------------------+-------+------------+--------------------------------+
| 10.0.0.3      | global            | start | 22:12:20   | Active Socket: Connection      |
|               |                   |       |            | refused                        |
| 10.0.0.10     | node-to-node mesh | start | 22:13:15   | Passive                        |
| 172.31.5.1    | node specific     | start | 2023-11-11 | Idle                           |
| 172.31.40.217 | node-to-node mesh | up    | 21:13:20   | Established                    |
+---------------+-------------------+-------+------------+--------------------------------+

IPv6 BGP status
+--------------+------------+-------+------------+-------------+
| PEER ADDRESS | PEER TYPE  | STATE |   SINCE    |    INFO     |
+--------------+------------+-------+------------+-------------+
| fd00::2      | configured | up    | 2023-11-13 | Established |
+--------------+------------+-------+------------+-------------+

"
        );
    }

    #[test]
    fn status_without_peers() {
        let status = build_status(&[], NOW, |_| 0);
        assert_eq!(
            render_status(&status),
            "podbgp process is running.\n\nIPv4 BGP status\nNo IPv4 peers found.\n\nIPv6 BGP status\nNo IPv6 peers found.\n\n"
        );
    }

    #[test]
    fn event_lines() {
        let e = EventJson {
            time_unix_ms: NOW * 1000 + 5,
            event: EventKindJson::PeerState {
                address: "10.0.0.2".into(),
                from: SessionStateJson::OpenConfirm,
                to: SessionStateJson::Established,
                cause: "KEEPALIVE received".into(),
            },
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.005Z peer 10.0.0.2 OpenConfirm -> Established (KEEPALIVE received)"
        );
        let e = EventJson {
            time_unix_ms: NOW * 1000,
            event: EventKindJson::BestPath {
                prefix: "10.244.1.0/26".into(),
                next_hops: vec![],
                peer: None,
            },
        };
        assert_eq!(
            event_line(&e),
            "2023-11-14T22:13:20.000Z best 10.244.1.0/26 unreachable"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration_text(59), "00:00:59");
        assert_eq!(duration_text(86_400 + 3661), "1d 01:01:01");
    }
}
