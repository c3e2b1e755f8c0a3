//! podbgp against real FRR 8.4 in network namespaces: iBGP and eBGP, IPv4 and IPv6, both
//! directions, peer restart without a podbgp restart, clean shutdown.
//!
//! Topology (one bridge segment, three routers):
//!
//! ```text
//!   pod   198.18.0.1 2001:db8::1  podbgp AS 4200000001  originates 10.244.1.0/26, 10.244.1.64/26,
//!                                                                  2001:db8:1::/64
//!   ibgp  198.18.0.2 2001:db8::2  FRR    AS 4200000001  announces  10.244.2.0/26,
//!                                                                  2001:db8:2::/64, 2001:db8:2:1::/64
//!   ebgp  198.18.0.3 2001:db8::3  FRR    AS 65010       announces  10.244.3.{0,64,128}/26,
//!                                                                  2001:db8:3::/64
//! ```
//!
//! Each FRR has two sessions with podbgp: one over IPv4 carrying IPv4 unicast only, one over
//! IPv6 carrying IPv6 unicast only. The FRRs do not peer with each other, so whatever one
//! learns from the other went through podbgp. Every router announces a different number of
//! prefixes per family, so a count in the wrong place shows.
//!
//! Expected propagation (RFC 4271 §5.1.3, §9.1.3 and §9.2):
//! * podbgp's own routes go to everyone: toward iBGP with an empty AS_PATH, LOCAL_PREF 100
//!   and next hop podbgp's session address; toward eBGP with AS_PATH `4200000001`, no
//!   LOCAL_PREF and next hop podbgp's session address.
//! * iBGP-learned routes go to the eBGP peer (AS_PATH `4200000001`, next hop self) and NOT to
//!   another iBGP peer (here the only other iBGP neighbour is the same FRR over the other
//!   transport, which carries the other family anyway).
//! * eBGP-learned routes go to the iBGP peer with the next hop unchanged (the eBGP FRR's
//!   address), AS_PATH `65010` and LOCAL_PREF 100.
//! * Nothing goes back to the peer it came from. (FRR does echo podbgp's routes back over
//!   eBGP with AS_PATH `65010 4200000001`; podbgp must drop them by AS-path loop detection,
//!   §9.1.2, so they count in FRR's `pfxSnt` but not in podbgp's received/accepted.)
//!
//! Scenario:
//! 1. all four sessions Established; FRR's `show bgp summary json` has the exact `pfxRcd`
//!    (and `pfxSnt`) per session; FRR's BGP tables hold exactly the expected prefixes with
//!    the expected AS path, next hop, LOCAL_PREF; podbgp's `peers --json` agrees (state,
//!    remote AS, received/accepted/advertised per family) and its Loc-RIB (`routes --json`)
//!    holds exactly the expected prefixes with the right peer, next hop and AS path; zebra
//!    on both FRRs installed the routes learned through podbgp with the right gateway;
//! 2. the eBGP FRR's bgpd is stopped (SIGTERM; FRR 8.4 sends no NOTIFICATION when graceful
//!    restart was negotiated, "configured Graceful-Restart, skipping unconfig notification",
//!    so podbgp sees the TCP connection close; FRR's GR capability lists no families, so
//!    podbgp keeps nothing as stale): podbgp's two sessions to it leave Established, its
//!    routes leave podbgp's Loc-RIB and the iBGP FRR's table, the iBGP sessions stay up;
//! 3. the eBGP FRR's bgpd restarts: everything of step 1 holds again, with the same podbgp
//!    process (same PID, still running) and the iBGP sessions never flapped;
//! 4. podbgp gets SIGTERM: it exits with status 0 within a few seconds; both FRRs see their
//!    sessions closed without a NOTIFICATION and keep podbgp's routes as stale (graceful
//!    restart).
//!
//! Run: `cargo test --test netns_frr -- --nocapture` (as root, FRR installed).

mod common;

use common::*;
use std::collections::BTreeSet;
use std::time::Instant;

const POD_AS: u32 = 4_200_000_001;
const EBGP_AS: u32 = 65_010;

/// Session set-up, including FRR's `timers connect 5` and podbgp's idle hold.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Route propagation once sessions are up, and session teardown.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long podbgp may take to exit after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One router of the lab: addresses and what it announces.
struct Router {
    name: &'static str,
    asn: u32,
    v4: &'static str,
    v6: &'static str,
    nets4: &'static [&'static str],
    nets6: &'static [&'static str],
}

impl Router {
    /// The transport address of the session carrying `afi`.
    fn addr(&self, afi: Afi) -> &'static str {
        match afi {
            Afi::Ipv4 => self.v4,
            Afi::Ipv6 => self.v6,
        }
    }

    fn nets(&self, afi: Afi) -> &'static [&'static str] {
        match afi {
            Afi::Ipv4 => self.nets4,
            Afi::Ipv6 => self.nets6,
        }
    }
}

const POD: Router = Router {
    name: "pod",
    asn: POD_AS,
    v4: "198.18.0.1",
    v6: "2001:db8::1",
    nets4: &["10.244.1.0/26", "10.244.1.64/26"],
    nets6: &["2001:db8:1::/64"],
};

const IBGP: Router = Router {
    name: "ibgp",
    asn: POD_AS,
    v4: "198.18.0.2",
    v6: "2001:db8::2",
    nets4: &["10.244.2.0/26"],
    nets6: &["2001:db8:2::/64", "2001:db8:2:1::/64"],
};

const EBGP: Router = Router {
    name: "ebgp",
    asn: EBGP_AS,
    v4: "198.18.0.3",
    v6: "2001:db8::3",
    nets4: &["10.244.3.0/26", "10.244.3.64/26", "10.244.3.128/26"],
    nets6: &["2001:db8:3::/64"],
};

/// The podbgp speaker configuration: one neighbour entry per FRR and transport family.
fn podbgp_config() -> String {
    let mut c = format!(
        "local_as: {}\nrouter_id: {}\nlisten: {{ address: \"::\", port: 179 }}\n\
         connect_retry: 3\nidle_hold_min: 1\nidle_hold_max: 4\noriginate:\n",
        POD.asn, POD.v4
    );
    for net in POD.nets4.iter().chain(POD.nets6) {
        c.push_str(&format!("  - \"{net}\"\n"));
    }
    c.push_str("neighbors:\n");
    for peer in [&IBGP, &EBGP] {
        for afi in Afi::ALL {
            c.push_str(&format!(
                "  - {{ address: \"{}\", remote_as: {}, families: [{}-unicast], description: {}-{} }}\n",
                peer.addr(afi),
                peer.asn,
                afi.frr_name(),
                peer.name,
                afi.frr_name(),
            ));
        }
    }
    c
}

/// FRR's `bgpd.conf` for `me`, peering with podbgp over IPv4 and IPv6.
fn frr_config(me: &Router) -> String {
    let mut conf = BgpdConfig::new(me.asn, me.v4)
        .hostname(me.name)
        .neighbor(POD.v4, POD.asn)
        .neighbor(POD.v6, POD.asn);
    for net in me.nets4.iter().chain(me.nets6) {
        conf = conf.network(net);
    }
    conf.render()
}

/// The family name podbgp uses in `peers --json`.
fn pod_family(afi: Afi) -> &'static str {
    match afi {
        Afi::Ipv4 => "ipv4-unicast",
        Afi::Ipv6 => "ipv6-unicast",
    }
}

/// What the world looks like: whether the eBGP FRR is up.
#[derive(Clone, Copy)]
struct World {
    ebgp_up: bool,
}

impl World {
    /// Prefixes of `afi` that `frr` (IBGP or EBGP) should receive from podbgp.
    fn frr_receives(self, frr: &Router, afi: Afi) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = POD.nets(afi).to_vec();
        if frr.name == IBGP.name && self.ebgp_up {
            v.extend_from_slice(EBGP.nets(afi));
        }
        if frr.name == EBGP.name {
            v.extend_from_slice(IBGP.nets(afi));
        }
        v
    }

    /// FRR's `pfxSnt` toward podbgp's `afi` session: its own prefixes; the eBGP FRR also
    /// echoes everything it learned from podbgp back to it (FRR does not filter by the
    /// receiver's AS), which podbgp must drop by AS-path loop detection (RFC 4271 §9.1.2).
    fn frr_sends(self, frr: &Router, afi: Afi) -> usize {
        let own = frr.nets(afi).len();
        if frr.name == EBGP.name {
            own + self.frr_receives(frr, afi).len()
        } else {
            own
        }
    }

    /// Prefixes of `afi` podbgp should receive (and keep) from `frr`.
    fn pod_receives(self, frr: &Router, afi: Afi) -> usize {
        if frr.name == EBGP.name && !self.ebgp_up {
            0
        } else {
            frr.nets(afi).len()
        }
    }

    /// The expected path (FRR JSON subset) of every prefix in `frr`'s `afi` table.
    fn frr_table(self, frr: &Router, afi: Afi) -> Vec<(&'static str, Value)> {
        let mut table = Vec::new();
        let scope = |v: Value| match afi {
            Afi::Ipv4 => v,
            Afi::Ipv6 => {
                let mut v = v;
                v["scope"] = json!("global");
                v
            }
        };
        // Locally originated by `network`.
        for net in frr.nets(afi) {
            table.push((
                *net,
                json!({"valid": true, "bestpath": true, "path": "", "weight": 32768}),
            ));
        }
        let pod_addr = POD.addr(afi);
        let ibgp_side = frr.name == IBGP.name;
        for net in self.frr_receives(frr, afi) {
            let from_ebgp = EBGP.nets(afi).contains(&net);
            let (path, next_hop) = if ibgp_side {
                // From podbgp over iBGP: podbgp's own routes with next hop self, eBGP-learned
                // ones with the next hop unchanged and the eBGP FRR's AS.
                if from_ebgp {
                    (EBGP_AS.to_string(), EBGP.addr(afi))
                } else {
                    (String::new(), pod_addr)
                }
            } else {
                // From podbgp over eBGP: next hop self, podbgp's AS prepended.
                (POD_AS.to_string(), pod_addr)
            };
            let local_pref = if ibgp_side { json!(100) } else { Value::Null };
            table.push((
                net,
                json!({
                    "valid": true,
                    "bestpath": true,
                    "pathFrom": if ibgp_side { "internal" } else { "external" },
                    "path": path,
                    "origin": "IGP",
                    "locPrf": local_pref,
                    "peerId": pod_addr,
                    "nexthops": [scope(json!({"ip": next_hop}))],
                }),
            ));
        }
        table
    }

    /// FRR `show bgp summary json` subset for `frr`'s two sessions with podbgp.
    fn frr_summary(self, frr: &Router) -> Value {
        let mut doc = json!({});
        for afi in Afi::ALL {
            let other = match afi {
                Afi::Ipv4 => POD.v6,
                Afi::Ipv6 => POD.v4,
            };
            doc[afi.frr_json_key()] = json!({
                "as": frr.asn,
                "peers": {
                    POD.addr(afi): {
                        "remoteAs": POD.asn,
                        "state": "Established",
                        "pfxRcd": self.frr_receives(frr, afi).len(),
                        "pfxSnt": self.frr_sends(frr, afi),
                    },
                    other: null,
                },
            });
        }
        doc
    }

    /// `(prefix, peer, AS path)` of every Loc-RIB entry podbgp should have; the peer is
    /// `None` for its own routes, and learned routes' next hop is the peer's address.
    fn pod_loc_rib(self) -> Vec<(&'static str, Option<&'static str>, Vec<u32>)> {
        let mut v = Vec::new();
        for afi in Afi::ALL {
            for net in POD.nets(afi) {
                v.push((*net, None, vec![]));
            }
            for net in IBGP.nets(afi) {
                v.push((*net, Some(IBGP.addr(afi)), vec![]));
            }
            if self.ebgp_up {
                for net in EBGP.nets(afi) {
                    v.push((*net, Some(EBGP.addr(afi)), vec![EBGP_AS]));
                }
            }
        }
        v
    }
}

/// Checks one FRR instance against the expected world: summary counters and both tables.
fn check_frr(frr: &Frr, me: &Router, world: World) -> Result<(), String> {
    let summary = frr.try_vtysh_json("show bgp summary json")?;
    json_subset(&world.frr_summary(me), &summary)
        .map_err(|e| format!("{}: show bgp summary json: {e}", me.name))?;
    for afi in Afi::ALL {
        let table = frr.routes(afi)?;
        let want = world.frr_table(me, afi);
        let want_keys: BTreeSet<&str> = want.iter().map(|(p, _)| *p).collect();
        let have_keys: BTreeSet<&str> = table.keys().map(String::as_str).collect();
        if want_keys != have_keys {
            return Err(format!(
                "{}: show bgp {} unicast json has prefixes {have_keys:?}, want {want_keys:?}",
                me.name,
                afi.frr_name()
            ));
        }
        for (prefix, path) in want {
            let paths = table[prefix].as_array().cloned().unwrap_or_default();
            if paths.len() != 1 {
                return Err(format!(
                    "{}: {prefix} has {} paths, want 1: {}",
                    me.name,
                    paths.len(),
                    Value::Array(paths.clone())
                ));
            }
            json_subset(&path, &paths[0])
                .map_err(|e| format!("{}: {prefix}: {e}\npath: {}", me.name, paths[0]))?;
        }
    }
    Ok(())
}

/// The podbgp `peers --json` entry of `addr`.
fn find_peer<'a>(peers: &'a [Value], addr: &str) -> Result<&'a Value, String> {
    peers
        .iter()
        .find(|p| p["address"] == addr)
        .ok_or_else(|| format!("podbgp: no peer {addr} in peers --json"))
}

/// Checks podbgp's own view: peer states and per-family counters, and the Loc-RIB.
fn check_pod(pod: &Podbgp, world: World) -> Result<(), String> {
    let peers = pod.peers()?;
    if peers.len() != 4 {
        return Err(format!("podbgp has {} peers, want 4", peers.len()));
    }
    for frr in [&IBGP, &EBGP] {
        for afi in Afi::ALL {
            let addr = frr.addr(afi);
            let p = find_peer(&peers, addr)?;
            let up = frr.name == IBGP.name || world.ebgp_up;
            if !up {
                if p["state"] == "established" {
                    return Err(format!("podbgp: {addr} still established"));
                }
                // Nothing held from or advertised to a peer that is down.
                for f in p["families"].as_array().into_iter().flatten() {
                    if f["received"] != 0 || f["accepted"] != 0 || f["advertised"] != 0 {
                        return Err(format!("podbgp peer {addr} is down but counts {f}"));
                    }
                }
                continue;
            }
            let received = world.pod_receives(frr, afi);
            let advertised = world.frr_receives(frr, afi).len();
            json_subset(
                &json!({
                    "state": "established",
                    "remote_as": frr.asn,
                    "local_as": POD_AS,
                    "role": if frr.asn == POD_AS { "mesh" } else { "ebgp" },
                    "families": [{
                        "family": pod_family(afi),
                        "received": received,
                        "accepted": received,
                        "advertised": advertised,
                    }],
                }),
                p,
            )
            .map_err(|e| format!("podbgp peer {addr}: {e}\npeer: {p}"))?;
            // The session carries only its own family.
            let other = match afi {
                Afi::Ipv4 => Afi::Ipv6,
                Afi::Ipv6 => Afi::Ipv4,
            };
            for f in p["families"].as_array().into_iter().flatten() {
                if f["family"] == pod_family(other) && (f["received"] != 0 || f["advertised"] != 0)
                {
                    return Err(format!(
                        "podbgp peer {addr}: traffic in the other family: {f}"
                    ));
                }
            }
        }
    }

    let rib = pod.loc_rib()?;
    let want = world.pod_loc_rib();
    let want_keys: BTreeSet<&str> = want.iter().map(|(p, _, _)| *p).collect();
    let have_keys: BTreeSet<&str> = rib.iter().filter_map(|r| r["prefix"].as_str()).collect();
    if want_keys != have_keys {
        return Err(format!(
            "podbgp Loc-RIB has prefixes {have_keys:?}, want {want_keys:?}"
        ));
    }
    for (prefix, peer, as_path) in want {
        let entries: Vec<&Value> = rib.iter().filter(|r| r["prefix"] == prefix).collect();
        if entries.len() != 1 {
            return Err(format!(
                "podbgp Loc-RIB: {} entries for {prefix}, want 1: {entries:?}",
                entries.len()
            ));
        }
        let mut expected = json!({"best": true, "peer": peer, "as_path": as_path});
        if let Some(peer) = peer {
            // Learned routes keep the sender's next hop (its session address).
            expected["next_hops"] = json!([peer]);
            // LOCAL_PREF as received: FRR sends 100 over iBGP, none over eBGP.
            expected["local_pref"] = if as_path.is_empty() {
                json!(100)
            } else {
                Value::Null
            };
            expected["origin"] = json!("igp");
        }
        json_subset(&expected, entries[0])
            .map_err(|e| format!("podbgp Loc-RIB {prefix}: {e}\nroute: {}", entries[0]))?;
        // Exact AS path (subset matching of arrays would accept extra ASes).
        if entries[0]["as_path"] != json!(as_path) {
            return Err(format!(
                "podbgp Loc-RIB {prefix}: as_path {}, want {as_path:?}",
                entries[0]["as_path"]
            ));
        }
    }
    Ok(())
}

/// Polls until both FRRs and podbgp agree with `world`.
#[track_caller]
fn wait_world(pod: &Podbgp, ibgp: &Frr, ebgp: Option<&Frr>, world: World, timeout: Duration) {
    let what = format!(
        "FRR and podbgp converged (eBGP FRR {})",
        if world.ebgp_up { "up" } else { "down" }
    );
    poll_until(timeout, &what, || {
        check_frr(ibgp, &IBGP, world)?;
        if let Some(ebgp) = ebgp {
            check_frr(ebgp, &EBGP, world)?;
        }
        check_pod(pod, world)
    });
}

/// `established_transitions` of podbgp's peer `addr`.
fn transitions(pod: &Podbgp, addr: &str) -> u64 {
    let peers = pod.peers().unwrap_or_else(|e| panic!("{e}"));
    find_peer(&peers, addr).unwrap_or_else(|e| panic!("{e}"))["established_transitions"]
        .as_u64()
        .unwrap_or_else(|| panic!("podbgp peer {addr}: no established_transitions"))
}

#[test]
fn podbgp_with_frr_ibgp_ebgp_v4_v6_restart_and_shutdown() {
    if !require_root_and_frr() {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::new("netns_frr");
    let lan = lab.lan("lan");
    let pod_ns = lab.netns(POD.name);
    let ibgp_ns = lab.netns(IBGP.name);
    let ebgp_ns = lab.netns(EBGP.name);
    for (ns, r) in [(&pod_ns, &POD), (&ibgp_ns, &IBGP), (&ebgp_ns, &EBGP)] {
        lan.attach(
            ns,
            "eth0",
            &[&format!("{}/24", r.v4), &format!("{}/64", r.v6)],
        );
    }

    // podbgp first, so the FRRs' first connection attempts find it listening.
    let mut pod = Podbgp::start(&pod_ns, "pod", &podbgp_config());
    let pod_pid = pod.proc.pid();

    let ibgp = Frr::new(&ibgp_ns, &frr_config(&IBGP));
    let mut ebgp = Frr::new(&ebgp_ns, &frr_config(&EBGP));

    // 1. Everything up, routes exchanged both ways.
    let up = World { ebgp_up: true };
    wait_world(&pod, &ibgp, Some(&ebgp), up, SESSION_TIMEOUT);
    let t_up = t0.elapsed();
    eprintln!("all sessions up and converged after {t_up:.1?}");
    let ibgp_transitions: Vec<u64> = Afi::ALL
        .iter()
        .map(|afi| transitions(&pod, IBGP.addr(*afi)))
        .collect();
    assert_eq!(
        ibgp_transitions,
        [1, 1],
        "iBGP sessions flapped during start-up"
    );

    // zebra installed the routes learned through podbgp: the eBGP FRR's routes in the iBGP
    // FRR's FIB via the unchanged next hop, the iBGP FRR's routes in the eBGP FRR's FIB via
    // podbgp (next hop self).
    for (ns, dst, gateway) in [
        (&ibgp_ns, EBGP.nets4[0], EBGP.v4),
        (&ibgp_ns, POD.nets4[0], POD.v4),
        (&ebgp_ns, IBGP.nets4[0], POD.v4),
        (&ebgp_ns, POD.nets4[0], POD.v4),
    ] {
        let what = format!("{}: FIB route {dst} via {gateway}", ns.short_name());
        poll_until(CONVERGE_TIMEOUT, &what, || {
            let route = ns.route(dst).ok_or("no such kernel route")?;
            json_subset(
                &json!({"protocol": "bgp", "dev": "eth0", "gateway": gateway}),
                &route.raw,
            )
        });
    }

    // The 4-octet AS went through the 4-octet AS capability on both sides.
    for (frr, me) in [(&ibgp, &IBGP), (&ebgp, &EBGP)] {
        let neighbors = Value::Object(frr.neighbors().unwrap_or_else(|e| panic!("{e}")));
        let link = if me.asn == POD_AS {
            "nbrInternalLink"
        } else {
            "nbrExternalLink"
        };
        for afi in Afi::ALL {
            assert_json_subset(
                &json!({POD.addr(afi): {
                    "remoteAs": POD_AS,
                    "localAs": me.asn,
                    link: true,
                    "bgpState": "Established",
                    "neighborCapabilities": {"4byteAs": "advertisedAndReceived"},
                }}),
                &neighbors,
            );
        }
    }

    // 2. Stop the eBGP FRR: its sessions drop, its routes are withdrawn everywhere.
    let t_stop = Instant::now();
    ebgp.stop();
    let down = World { ebgp_up: false };
    wait_world(&pod, &ibgp, None, down, CONVERGE_TIMEOUT);
    eprintln!(
        "eBGP FRR stopped: podbgp and iBGP FRR converged after {:.1?}",
        t_stop.elapsed()
    );
    assert!(pod.proc.is_running(), "podbgp exited");
    assert_eq!(pod.proc.pid(), pod_pid);

    // 3. Restart it: the sessions come back without touching podbgp.
    let old_bgpd = ebgp.bgpd_pid();
    let t_start = Instant::now();
    ebgp.start();
    assert_ne!(
        ebgp.bgpd_pid(),
        old_bgpd,
        "eBGP FRR's bgpd was not restarted"
    );
    wait_world(&pod, &ibgp, Some(&ebgp), up, SESSION_TIMEOUT);
    eprintln!(
        "eBGP FRR restarted: re-established and converged after {:.1?}",
        t_start.elapsed()
    );
    assert!(pod.proc.is_running(), "podbgp exited");
    assert_eq!(pod.proc.pid(), pod_pid, "podbgp was restarted");
    for afi in Afi::ALL {
        assert_eq!(
            transitions(&pod, IBGP.addr(afi)),
            1,
            "iBGP session over {} flapped",
            afi.frr_name()
        );
        assert_eq!(
            transitions(&pod, EBGP.addr(afi)),
            2,
            "eBGP session over {}: want exactly one re-establishment",
            afi.frr_name()
        );
    }

    // 4. SIGTERM: podbgp exits 0 promptly. Both FRRs negotiated graceful restart with it, so
    // it closes the sessions without a NOTIFICATION (a restart, RFC 4724) and each FRR keeps
    // podbgp's routes, marked stale, for podbgp's restart time.
    let t_term = Instant::now();
    let status = pod.proc.terminate(SHUTDOWN_GRACE);
    let took = t_term.elapsed();
    assert!(
        status.success() && took < SHUTDOWN_GRACE,
        "podbgp after SIGTERM: {status} after {took:.1?}\n{}",
        pod.proc.output()
    );
    eprintln!("podbgp exited with {status} {took:.1?} after SIGTERM");
    for (frr, me) in [(&ibgp, &IBGP), (&ebgp, &EBGP)] {
        let what = format!(
            "{}: sessions to podbgp down, podbgp's routes kept as stale",
            me.name
        );
        poll_until(CONVERGE_TIMEOUT, &what, || {
            let neighbors = Value::Object(frr.neighbors()?);
            for afi in Afi::ALL {
                let n = &neighbors[POD.addr(afi)];
                if n["bgpState"] == "Established" {
                    return Err(format!("{} still Established", POD.addr(afi)));
                }
                if n["lastResetDueTo"] == "BGP Notification received" {
                    return Err(format!(
                        "{}: got a NOTIFICATION ({}), want a bare close",
                        POD.addr(afi),
                        n["lastNotificationReason"]
                    ));
                }
                let table = frr.routes(afi)?;
                for net in POD.nets(afi) {
                    let paths = table
                        .get(*net)
                        .and_then(Value::as_array)
                        .ok_or_else(|| format!("{net} gone from {}", me.name))?;
                    if !paths.iter().any(|p| p["stale"] == true) {
                        return Err(format!("{net} at {} is not stale: {paths:?}", me.name));
                    }
                }
            }
            Ok(())
        });
    }
    eprintln!("scenario took {:.1?}", t0.elapsed());
}
