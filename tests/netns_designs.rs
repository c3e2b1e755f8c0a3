//! The two Calico deployment designs, podbgp against real FRR 8.4 in network namespaces.
//!
//! (a) `podbgp_reflects_for_three_frr_clients`: podbgp is the route reflector of an iBGP
//! cluster whose three clients are FRRs that peer only with it.
//!
//! ```text
//!   rr  198.18.0.1   podbgp AS 64512  cluster id 198.18.0.1, neighbours role rr-client
//!   c1  198.18.0.11  FRR    AS 64512  announces 10.244.11.0/26, 10.244.11.64/26
//!   c2  198.18.0.12  FRR    AS 64512  announces 10.244.12.0/26, 10.244.12.64/26
//!   c3  198.18.0.13  FRR    AS 64512  announces 10.244.13.0/26, 10.244.13.64/26
//! ```
//!
//! Every client learns the other clients' four blocks, and only through the reflector, with
//! the next hop of the originating client (RFC 4456 §10: reflection leaves NEXT_HOP alone),
//! ORIGINATOR_ID = the originator's router id and CLUSTER_LIST = [198.18.0.1] (RFC 4456 §8),
//! LOCAL_PREF 100 and an empty AS_PATH; zebra installs them with the originator as gateway.
//! podbgp's `peers --json` agrees (three established rr-client sessions, 2 received and 4
//! advertised each) and so does its Loc-RIB. A block withdrawn at one client (`no network`)
//! leaves the other clients' tables and FIBs, the counters follow, and it comes back when
//! announced again; no session flaps.
//!
//! (b) `podbgp_mesh_with_frr_tor`: three podbgp nodes in a Calico node-to-node mesh (one AS,
//! iBGP full mesh, the node with the higher address passive toward lower ones), each
//! originating two blocks with `next_hop_ipv4` = its address, plus one FRR top-of-rack
//! router with an eBGP session to every node, announcing a service range.
//!
//! ```text
//!   n1  198.18.0.1    podbgp AS 64512  originates 10.244.1.0/26, 10.244.1.64/26
//!   n2  198.18.0.2    podbgp AS 64512  originates 10.244.2.0/26, 10.244.2.64/26
//!   n3  198.18.0.3    podbgp AS 64512  originates 10.244.3.0/26, 10.244.3.64/26
//!   tor 198.18.0.254  FRR    AS 65000  announces  10.96.0.0/16
//! ```
//!
//! The ToR has every node's blocks with next hop = that node and AS path `64512`: every
//! path it holds for a block points at the originating node, one of them was learned from
//! that node directly, the best path points at it and zebra installed the block with that
//! node as the only gateway. (A node that re-advertises another node's block to the ToR must
//! therefore keep the originator's next hop, which is on the shared subnet: RFC 4271
//! §5.1.3 third-party next hop, what BIRD does for Calico; or not re-advertise it at all.)
//! Every node learns the other nodes' blocks over the mesh (next hop = the originating node,
//! empty AS_PATH) and the ToR's 10.96.0.0/16 with next hop 198.18.0.254 and AS path `65000`;
//! it also gets that range from the two other nodes over the mesh (next hop unchanged), but
//! its best path is the direct eBGP one.
//!
//! All addresses are on one bridge segment (198.18.0.0/24). Run:
//! `cargo test --test netns_designs -- --nocapture` (as root, FRR installed).

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

/// The cluster's AS (Calico's default).
const CLUSTER_AS: u32 = 64512;
/// The top-of-rack router's AS in design (b).
const TOR_AS: u32 = 65000;

/// Session set-up, including FRR's `timers connect 5` and podbgp's idle hold.
const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Route propagation once sessions are up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The `peers --json` entry of `addr`.
fn find_peer<'a>(peers: &'a [Value], addr: &str) -> Result<&'a Value, String> {
    peers
        .iter()
        .find(|p| p["address"] == addr)
        .ok_or_else(|| format!("no peer {addr} in peers --json"))
}

/// `established_transitions` of every peer of `pod`, by address.
fn transitions(pod: &Podbgp) -> BTreeMap<String, u64> {
    pod.peers()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap_or("?").to_string(),
                p["established_transitions"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Paths of a `show bgp ipv4 unicast json` table entry.
fn frr_paths(table: &serde_json::Map<String, Value>, prefix: &str) -> Vec<Value> {
    table
        .get(prefix)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// The gateways of a kernel route: `gateway`, or those of a multipath route's `nexthops`.
fn gateways(route: &KernelRoute) -> BTreeSet<String> {
    let mut gws: BTreeSet<String> = route.gateway.iter().cloned().collect();
    for nh in route.raw["nexthops"].as_array().into_iter().flatten() {
        if let Some(g) = nh["gateway"].as_str() {
            gws.insert(g.to_string());
        }
    }
    gws
}

/// Polls until the kernel of `ns` has `dst` from bgp with `gateway` as its only gateway.
#[track_caller]
fn wait_fib_route(ns: &Netns, dst: &str, gateway: &str) {
    let what = format!("{}: FIB route {dst} via {gateway} only", ns.short_name());
    poll_until(CONVERGE_TIMEOUT, &what, || {
        let route = ns.route(dst).ok_or("no such kernel route")?;
        json_subset(&json!({"protocol": "bgp"}), &route.raw)?;
        let gws = gateways(&route);
        if gws.len() != 1 || !gws.contains(gateway) {
            return Err(format!("gateways {gws:?}: {}", route.raw));
        }
        Ok(())
    });
}

/// Polls until the kernel of `ns` has no route for `dst`.
#[track_caller]
fn wait_fib_gone(ns: &Netns, dst: &str) {
    let what = format!("{}: FIB route {dst} removed", ns.short_name());
    poll_until(CONVERGE_TIMEOUT, &what, || match ns.route(dst) {
        Some(r) => Err(format!("still there: {}", r.raw)),
        None => Ok(()),
    });
}

// ---------------------------------------------------------------------------------------
// (a) podbgp as route reflector for three FRR clients
// ---------------------------------------------------------------------------------------

/// The reflector's address, router id and cluster id.
const RR: &str = "198.18.0.1";

/// One FRR route-reflector client: its address (= router id) and the blocks it announces.
struct Client {
    name: &'static str,
    addr: &'static str,
    nets: [&'static str; 2],
}

const CLIENTS: [Client; 3] = [
    Client {
        name: "c1",
        addr: "198.18.0.11",
        nets: ["10.244.11.0/26", "10.244.11.64/26"],
    },
    Client {
        name: "c2",
        addr: "198.18.0.12",
        nets: ["10.244.12.0/26", "10.244.12.64/26"],
    },
    Client {
        name: "c3",
        addr: "198.18.0.13",
        nets: ["10.244.13.0/26", "10.244.13.64/26"],
    },
];

/// The block withdrawn and re-announced at c1.
const FLAPPED: &str = "10.244.11.64/26";

fn reflector_config() -> String {
    let mut c = format!(
        "local_as: {CLUSTER_AS}\nrouter_id: {RR}\ncluster_id: {RR}\n\
         listen: {{ address: \"0.0.0.0\", port: 179 }}\n\
         connect_retry: 3\nidle_hold_min: 1\nidle_hold_max: 4\n\
         families: [ipv4-unicast]\nneighbors:\n"
    );
    for cl in &CLIENTS {
        c.push_str(&format!(
            "  - {{ address: \"{}\", remote_as: {CLUSTER_AS}, role: rr-client, description: {} }}\n",
            cl.addr, cl.name
        ));
    }
    c
}

fn client_config(me: &Client) -> String {
    let mut conf = BgpdConfig::new(CLUSTER_AS, me.addr)
        .hostname(me.name)
        .neighbor(RR, CLUSTER_AS);
    for net in me.nets {
        conf = conf.network(net);
    }
    conf.render()
}

/// What each client currently announces: client address → blocks.
type Announced = BTreeMap<&'static str, Vec<&'static str>>;

fn announced_all() -> Announced {
    CLIENTS.iter().map(|c| (c.addr, c.nets.to_vec())).collect()
}

/// Checks one client's BGP table: its own blocks (local) and, with exactly one path each,
/// every block the other clients announce, reflected by podbgp with the originator's next
/// hop, ORIGINATOR_ID and CLUSTER_LIST.
fn check_client(frr: &Frr, me: &Client, world: &Announced) -> Result<(), String> {
    let who = me.name;
    let summary = frr.try_vtysh_json("show bgp summary json")?;
    let others: usize = world
        .iter()
        .filter(|(a, _)| **a != me.addr)
        .map(|(_, n)| n.len())
        .sum();
    json_subset(
        &json!({"ipv4Unicast": {"as": CLUSTER_AS, "peers": {RR: {
            "remoteAs": CLUSTER_AS,
            "state": "Established",
            "pfxRcd": others,
            "pfxSnt": world[me.addr].len(),
        }}}}),
        &summary,
    )
    .map_err(|e| format!("{who}: show bgp summary json: {e}"))?;

    let table = frr.routes(Afi::Ipv4)?;
    let want: BTreeSet<&str> = world.values().flatten().copied().collect();
    let have: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    if want != have {
        return Err(format!(
            "{who}: show bgp ipv4 unicast json has {have:?}, want {want:?}"
        ));
    }
    for (origin, nets) in world {
        for net in nets {
            let paths = frr_paths(&table, net);
            if paths.len() != 1 {
                return Err(format!(
                    "{who}: {net} has {} paths, want 1: {}",
                    paths.len(),
                    Value::Array(paths)
                ));
            }
            let want = if *origin == me.addr {
                json!({"valid": true, "bestpath": true, "path": "", "weight": 32768})
            } else {
                json!({
                    "valid": true,
                    "bestpath": true,
                    "pathFrom": "internal",
                    "path": "",
                    "origin": "IGP",
                    "locPrf": 100,
                    "peerId": RR,
                    "nexthops": [{"ip": origin}],
                })
            };
            json_subset(&want, &paths[0])
                .map_err(|e| format!("{who}: {net}: {e}\npath: {}", paths[0]))?;
        }
    }
    Ok(())
}

/// `show bgp ipv4 unicast PREFIX json` on `frr`: the reflected path carries the originator's
/// next hop, ORIGINATOR_ID = the originator's router id and CLUSTER_LIST = [RR] exactly.
fn check_reflected_detail(frr: &Frr, who: &str, net: &str, origin: &str) -> Result<(), String> {
    let cmd = format!("show bgp ipv4 unicast {net} json");
    let detail = frr.try_vtysh_json(&cmd)?;
    let paths = detail["paths"].as_array().cloned().unwrap_or_default();
    if paths.len() != 1 {
        return Err(format!(
            "{who}: `{cmd}`: {} paths, want 1: {detail}",
            paths.len()
        ));
    }
    let p = &paths[0];
    json_subset(
        &json!({
            "valid": true,
            "bestpath": {"overall": true},
            "aspath": {"string": "Local"},
            "origin": "IGP",
            "locPrf": 100,
            "originatorId": origin,
            "peer": {"peerId": RR, "routerId": RR, "type": "internal"},
            "nexthops": [{"ip": origin, "accessible": true}],
        }),
        p,
    )
    .map_err(|e| format!("{who}: `{cmd}`: {e}\npath: {p}"))?;
    if p["clusterList"]["list"] != json!([RR]) {
        return Err(format!(
            "{who}: `{cmd}`: clusterList {}, want {{\"list\": [\"{RR}\"]}}\npath: {p}",
            p["clusterList"]
        ));
    }
    let hops = p["nexthops"].as_array().map_or(0, Vec::len);
    if hops != 1 {
        return Err(format!(
            "{who}: `{cmd}`: {hops} next hops, want 1\npath: {p}"
        ));
    }
    Ok(())
}

/// podbgp's view: three established rr-client sessions with the right counters, and a
/// Loc-RIB holding exactly the announced blocks, each from its originator.
fn check_reflector(pod: &Podbgp, world: &Announced) -> Result<(), String> {
    let peers = pod.peers()?;
    if peers.len() != CLIENTS.len() {
        return Err(format!(
            "podbgp has {} peers, want {}",
            peers.len(),
            CLIENTS.len()
        ));
    }
    let total: usize = world.values().map(Vec::len).sum();
    for cl in &CLIENTS {
        let p = find_peer(&peers, cl.addr)?;
        let received = world[cl.addr].len();
        json_subset(
            &json!({
                "state": "established",
                "remote_as": CLUSTER_AS,
                "local_as": CLUSTER_AS,
                "remote_router_id": cl.addr,
                "role": "rr_client",
                "families": [{
                    "family": "ipv4-unicast",
                    "received": received,
                    "accepted": received,
                    "advertised": total - received,
                }],
            }),
            p,
        )
        .map_err(|e| format!("podbgp peer {}: {e}\npeer: {p}", cl.addr))?;
    }

    let rib = pod.loc_rib()?;
    let want: BTreeSet<&str> = world.values().flatten().copied().collect();
    let have: BTreeSet<&str> = rib.iter().filter_map(|r| r["prefix"].as_str()).collect();
    if want != have {
        return Err(format!(
            "podbgp Loc-RIB has prefixes {have:?}, want {want:?}"
        ));
    }
    for (origin, nets) in world {
        for net in nets {
            let entries: Vec<&Value> = rib.iter().filter(|r| r["prefix"] == *net).collect();
            if entries.len() != 1 {
                return Err(format!(
                    "podbgp Loc-RIB: {} entries for {net}, want 1: {entries:?}",
                    entries.len()
                ));
            }
            json_subset(
                &json!({
                    "best": true,
                    "peer": origin,
                    "next_hops": [origin],
                    "as_path": [],
                    "local_pref": 100,
                    "origin": "igp",
                }),
                entries[0],
            )
            .map_err(|e| format!("podbgp Loc-RIB {net}: {e}\nroute: {}", entries[0]))?;
            if entries[0]["next_hops"] != json!([origin]) {
                return Err(format!(
                    "podbgp Loc-RIB {net}: next hops {}, want [{origin}]",
                    entries[0]["next_hops"]
                ));
            }
        }
    }
    Ok(())
}

/// Polls until podbgp and every client agree with `world`.
#[track_caller]
fn wait_reflection(
    pod: &Podbgp,
    clients: &[Frr],
    world: &Announced,
    timeout: Duration,
    what: &str,
) {
    poll_until(timeout, what, || {
        for (frr, me) in clients.iter().zip(&CLIENTS) {
            check_client(frr, me, world)?;
        }
        check_reflector(pod, world)
    });
}

#[test]
fn podbgp_reflects_for_three_frr_clients() {
    if !require_root_and_frr() {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::new("netns_designs_rr");
    let lan = lab.lan("lan");
    let rr_ns = lab.netns("rr");
    lan.attach(&rr_ns, "eth0", &[&format!("{RR}/24")]);
    let client_ns: Vec<Netns> = CLIENTS
        .iter()
        .map(|c| {
            let ns = lab.netns(c.name);
            lan.attach(&ns, "eth0", &[&format!("{}/24", c.addr)]);
            ns
        })
        .collect();

    // podbgp first, so the clients' first connection attempts find it listening.
    let mut pod = Podbgp::start(&rr_ns, "rr", &reflector_config());
    let clients: Vec<Frr> = client_ns
        .iter()
        .zip(&CLIENTS)
        .map(|(ns, c)| Frr::new(ns, &client_config(c)))
        .collect();

    // 1. Every client has the other clients' blocks, reflected.
    let mut world = announced_all();
    wait_reflection(
        &pod,
        &clients,
        &world,
        SESSION_TIMEOUT,
        "sessions up, every client has the others' blocks via the reflector",
    );
    eprintln!("reflection converged after {:.1?}", t0.elapsed());

    // Path detail (ORIGINATOR_ID, CLUSTER_LIST) and the FIBs.
    for ((frr, me), ns) in clients.iter().zip(&CLIENTS).zip(&client_ns) {
        for other in CLIENTS.iter().filter(|o| o.addr != me.addr) {
            for net in other.nets {
                let what = format!(
                    "{}: {net} reflected with originator {}",
                    me.name, other.addr
                );
                poll_until(CONVERGE_TIMEOUT, &what, || {
                    check_reflected_detail(frr, me.name, net, other.addr)
                });
                wait_fib_route(ns, net, other.addr);
            }
        }
    }
    // podbgp shows the reflection attributes it sends: e.g. c1's blocks toward c2.
    let out = pod
        .adj_rib_out(CLIENTS[1].addr)
        .unwrap_or_else(|e| panic!("{e}"));
    for net in CLIENTS[0].nets {
        let r = out
            .iter()
            .find(|r| r["prefix"] == net)
            .unwrap_or_else(|| panic!("podbgp adj-rib-out toward c2 lacks {net}: {out:?}"));
        assert_json_subset(
            &json!({"next_hops": [CLIENTS[0].addr], "originator_id": CLIENTS[0].addr, "cluster_list": [RR]}),
            r,
        );
    }

    // 2. c1 withdraws one block: it leaves the other clients' tables and FIBs.
    let t_withdraw = Instant::now();
    clients[0].configure(&[
        &format!("router bgp {CLUSTER_AS}"),
        "address-family ipv4 unicast",
        &format!("no network {FLAPPED}"),
    ]);
    world
        .get_mut(CLIENTS[0].addr)
        .unwrap()
        .retain(|n| *n != FLAPPED);
    wait_reflection(
        &pod,
        &clients,
        &world,
        CONVERGE_TIMEOUT,
        &format!("{FLAPPED} withdrawn at c1 and everywhere"),
    );
    for ns in &client_ns[1..] {
        wait_fib_gone(ns, FLAPPED);
    }
    eprintln!("withdrawal converged after {:.1?}", t_withdraw.elapsed());

    // 3. c1 announces it again: it comes back everywhere, reflected as before.
    let t_announce = Instant::now();
    clients[0].configure(&[
        &format!("router bgp {CLUSTER_AS}"),
        "address-family ipv4 unicast",
        &format!("network {FLAPPED}"),
    ]);
    world = announced_all();
    wait_reflection(
        &pod,
        &clients,
        &world,
        CONVERGE_TIMEOUT,
        &format!("{FLAPPED} announced again at c1 and reflected"),
    );
    for ((frr, me), ns) in clients.iter().zip(&CLIENTS).zip(&client_ns).skip(1) {
        let what = format!("{}: {FLAPPED} reflected again", me.name);
        poll_until(CONVERGE_TIMEOUT, &what, || {
            check_reflected_detail(frr, me.name, FLAPPED, CLIENTS[0].addr)
        });
        wait_fib_route(ns, FLAPPED, CLIENTS[0].addr);
    }
    eprintln!(
        "re-announcement converged after {:.1?}",
        t_announce.elapsed()
    );

    // No session flapped along the way.
    pod.assert_running();
    let flaps = transitions(&pod);
    let want: BTreeMap<String, u64> = CLIENTS.iter().map(|c| (c.addr.to_string(), 1)).collect();
    assert_eq!(flaps, want, "podbgp established_transitions per client");
    eprintln!("scenario took {:.1?}", t0.elapsed());
}

// ---------------------------------------------------------------------------------------
// (b) three podbgp nodes in a full mesh + one FRR ToR with eBGP to each node
// ---------------------------------------------------------------------------------------

/// One podbgp node of the mesh: its address (= router id = next hop) and its blocks.
struct Node {
    name: &'static str,
    addr: &'static str,
    nets: [&'static str; 2],
}

const NODES: [Node; 3] = [
    Node {
        name: "n1",
        addr: "198.18.0.1",
        nets: ["10.244.1.0/26", "10.244.1.64/26"],
    },
    Node {
        name: "n2",
        addr: "198.18.0.2",
        nets: ["10.244.2.0/26", "10.244.2.64/26"],
    },
    Node {
        name: "n3",
        addr: "198.18.0.3",
        nets: ["10.244.3.0/26", "10.244.3.64/26"],
    },
];

const TOR: &str = "198.18.0.254";
/// The ToR's "service range".
const SERVICE_NET: &str = "10.96.0.0/16";

/// A node's speaker configuration: mesh sessions to the other nodes (passive toward
/// lower addresses, Calico's rule) and an eBGP session to the ToR.
fn node_config(me: &Node) -> String {
    let mut c = format!(
        "local_as: {CLUSTER_AS}\nrouter_id: {addr}\n\
         listen: {{ address: \"0.0.0.0\", port: 179 }}\n\
         connect_retry: 3\nidle_hold_min: 1\nidle_hold_max: 4\n\
         families: [ipv4-unicast]\nnext_hop_ipv4: {addr}\noriginate:\n",
        addr = me.addr
    );
    for net in me.nets {
        c.push_str(&format!("  - \"{net}\"\n"));
    }
    c.push_str("neighbors:\n");
    let me_ip: std::net::Ipv4Addr = me.addr.parse().unwrap();
    for other in NODES.iter().filter(|n| n.addr != me.addr) {
        let other_ip: std::net::Ipv4Addr = other.addr.parse().unwrap();
        c.push_str(&format!(
            "  - {{ address: \"{}\", remote_as: {CLUSTER_AS}, role: mesh, passive: {}, description: {} }}\n",
            other.addr,
            other_ip < me_ip,
            other.name
        ));
    }
    c.push_str(&format!(
        "  - {{ address: \"{TOR}\", remote_as: {TOR_AS}, role: ebgp, description: tor }}\n"
    ));
    c
}

fn tor_config() -> String {
    let mut conf = BgpdConfig::new(TOR_AS, TOR).hostname("tor");
    for n in &NODES {
        conf = conf.neighbor(n.addr, CLUSTER_AS);
    }
    conf.network(SERVICE_NET).render()
}

/// The ToR: all sessions up; it has every node's blocks, each with next hop = that node on
/// every path, AS path `64512`, one path learned from the node itself, and a best path via
/// the node.
fn check_tor(tor: &Frr) -> Result<(), String> {
    let summary = tor.try_vtysh_json("show bgp summary json")?;
    let mut peers = json!({});
    for n in &NODES {
        peers[n.addr] = json!({"remoteAs": CLUSTER_AS, "state": "Established"});
    }
    json_subset(
        &json!({"ipv4Unicast": {"as": TOR_AS, "peers": peers}}),
        &summary,
    )
    .map_err(|e| format!("tor: show bgp summary json: {e}"))?;

    let table = tor.routes(Afi::Ipv4)?;
    let mut want: BTreeSet<&str> = NODES.iter().flat_map(|n| n.nets).collect();
    want.insert(SERVICE_NET);
    let have: BTreeSet<&str> = table.keys().map(String::as_str).collect();
    if want != have {
        return Err(format!(
            "tor: show bgp ipv4 unicast json has {have:?}, want {want:?}"
        ));
    }
    let service = frr_paths(&table, SERVICE_NET);
    if service.len() != 1 {
        return Err(format!(
            "tor: {SERVICE_NET} has {} paths, want 1 (its own): {}",
            service.len(),
            Value::Array(service)
        ));
    }
    json_subset(
        &json!({"valid": true, "bestpath": true, "path": "", "weight": 32768}),
        &service[0],
    )
    .map_err(|e| format!("tor: {SERVICE_NET}: {e}\npath: {}", service[0]))?;

    for node in &NODES {
        for net in node.nets {
            let paths = frr_paths(&table, net);
            let all = Value::Array(paths.clone());
            let path_want = json!({
                "valid": true,
                "pathFrom": "external",
                "path": CLUSTER_AS.to_string(),
                "origin": "IGP",
                "nexthops": [{"ip": node.addr}],
            });
            // 1. The path learned from the originating node itself: AS path `64512` (one
            //    hop), next hop = that node.
            let direct = paths
                .iter()
                .find(|p| p["peerId"] == node.addr)
                .ok_or_else(|| {
                    format!(
                        "tor: {net}: no path learned from its node {}\nall paths: {all}",
                        node.addr
                    )
                })?;
            json_subset(&path_want, direct).map_err(|e| {
                format!(
                    "tor: {net}: the path from its node {}: {e}\nall paths: {all}",
                    node.addr
                )
            })?;
            // 2. Every other path the ToR holds for the block is a copy another node passed
            //    on. Like Calico's BIRD (calico-bgp.md §2.3: a node advertises every pool route
            //    it knows to its eBGP peers, next hop self), so each copy is one AS hop too.
            for p in &paths {
                json_subset(&json!({"valid": true, "path": CLUSTER_AS.to_string()}), p).map_err(
                    |e| {
                        format!(
                            "tor: {net}: the path from {}: {e}\nall paths: {all}",
                            p["peerId"]
                        )
                    },
                )?;
            }
        }
    }
    Ok(())
}

/// A node: its sessions (mesh peers and ToR) with the right counters, and its Loc-RIB: own
/// blocks, the other nodes' blocks over the mesh, the service range from the ToR (best) and
/// from the other two nodes over the mesh.
fn check_node(pod: &Podbgp, me: &Node) -> Result<(), String> {
    let who = me.name;
    let peers = pod.peers()?;
    if peers.len() != NODES.len() {
        return Err(format!(
            "{who}: podbgp has {} peers, want {}",
            peers.len(),
            NODES.len()
        ));
    }
    let me_ip: std::net::Ipv4Addr = me.addr.parse().unwrap();
    for other in NODES.iter().filter(|n| n.addr != me.addr) {
        let p = find_peer(&peers, other.addr).map_err(|e| format!("{who}: {e}"))?;
        let other_ip: std::net::Ipv4Addr = other.addr.parse().unwrap();
        // From a mesh peer: its two blocks and the ToR's range (eBGP-learned, passed on);
        // to it: our two blocks and the ToR's range.
        json_subset(
            &json!({
                "state": "established",
                "remote_as": CLUSTER_AS,
                "local_as": CLUSTER_AS,
                "remote_router_id": other.addr,
                "role": "mesh",
                "passive": other_ip < me_ip,
                "families": [{
                    "family": "ipv4-unicast",
                    "received": 3,
                    "accepted": 3,
                    "advertised": 3,
                }],
            }),
            p,
        )
        .map_err(|e| format!("{who}: podbgp peer {}: {e}\npeer: {p}", other.addr))?;
    }
    let p = find_peer(&peers, TOR).map_err(|e| format!("{who}: {e}"))?;
    // From the ToR: the service range (the ToR also echoes the cluster's blocks with AS path
    // `65000 64512`, which loop detection drops).
    json_subset(
        &json!({
            "state": "established",
            "remote_as": TOR_AS,
            "local_as": CLUSTER_AS,
            "role": "ebgp",
            "families": [{"family": "ipv4-unicast", "received": 1, "accepted": 1}],
        }),
        p,
    )
    .map_err(|e| format!("{who}: podbgp peer {TOR}: {e}\npeer: {p}"))?;

    let rib = pod.loc_rib()?;
    let mut want: BTreeSet<&str> = NODES.iter().flat_map(|n| n.nets).collect();
    want.insert(SERVICE_NET);
    let have: BTreeSet<&str> = rib.iter().filter_map(|r| r["prefix"].as_str()).collect();
    if want != have {
        return Err(format!(
            "{who}: Loc-RIB has prefixes {have:?}, want {want:?}"
        ));
    }
    for node in &NODES {
        for net in node.nets {
            let entries: Vec<&Value> = rib.iter().filter(|r| r["prefix"] == net).collect();
            if entries.len() != 1 {
                return Err(format!(
                    "{who}: Loc-RIB: {} entries for {net}, want 1: {entries:?}",
                    entries.len()
                ));
            }
            let want = if node.addr == me.addr {
                json!({"best": true, "peer": null, "as_path": []})
            } else {
                json!({
                    "best": true,
                    "peer": node.addr,
                    "next_hops": [node.addr],
                    "as_path": [],
                    "local_pref": 100,
                    "origin": "igp",
                })
            };
            json_subset(&want, entries[0])
                .map_err(|e| format!("{who}: Loc-RIB {net}: {e}\nroute: {}", entries[0]))?;
        }
    }
    let service: Vec<&Value> = rib.iter().filter(|r| r["prefix"] == SERVICE_NET).collect();
    let sources: BTreeSet<&str> = service.iter().filter_map(|r| r["peer"].as_str()).collect();
    let mut want_sources: BTreeSet<&str> = NODES
        .iter()
        .filter(|n| n.addr != me.addr)
        .map(|n| n.addr)
        .collect();
    want_sources.insert(TOR);
    if service.len() != 3 || sources != want_sources {
        return Err(format!(
            "{who}: Loc-RIB {SERVICE_NET}: paths from {sources:?}, want one from each of {want_sources:?}: {service:?}"
        ));
    }
    for r in &service {
        // Next hop the ToR on every path (iBGP passes an eBGP-learned next hop on unchanged),
        // AS path `65000`; the direct eBGP path is the best.
        let from_tor = r["peer"] == TOR;
        json_subset(
            &json!({
                "best": from_tor,
                "next_hops": [TOR],
                "as_path": [TOR_AS],
                "origin": "igp",
            }),
            r,
        )
        .map_err(|e| {
            format!(
                "{who}: Loc-RIB {SERVICE_NET} from {}: {e}\nroute: {r}",
                r["peer"]
            )
        })?;
        if r["next_hops"] != json!([TOR]) || r["as_path"] != json!([TOR_AS]) {
            return Err(format!(
                "{who}: Loc-RIB {SERVICE_NET} from {}: next hops {}, AS path {}; want [{TOR}], [{TOR_AS}]",
                r["peer"], r["next_hops"], r["as_path"]
            ));
        }
    }
    Ok(())
}

/// A compact dump of what each node advertises to the ToR and what the ToR holds, for the
/// failure message.
fn tor_evidence(pods: &[Podbgp], tor: &Frr, tor_ns: &Netns) -> String {
    let mut s = String::new();
    for pod in pods {
        let out = pod.adj_rib_out(TOR).map_or_else(
            |e| e,
            |routes| {
                routes
                    .iter()
                    .map(|r| {
                        format!(
                            "  {} next_hops={} as_path={}\n",
                            r["prefix"], r["next_hops"], r["as_path"]
                        )
                    })
                    .collect()
            },
        );
        s.push_str(&format!("{} adj-rib-out toward the ToR:\n{out}", pod.name));
    }
    s.push_str(&format!(
        "tor `show bgp ipv4 unicast`:\n{}\n",
        tor.try_vtysh("show bgp ipv4 unicast").unwrap_or_else(|e| e)
    ));
    s.push_str("tor FIB (ip -j route show proto bgp):\n");
    for r in tor_ns.routes_filtered(Afi::Ipv4, &["proto", "bgp"]) {
        s.push_str(&format!("  {}\n", r.raw));
    }
    s
}

#[test]
fn podbgp_mesh_with_frr_tor() {
    if !require_root_and_frr() {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::new("netns_designs_mesh");
    let lan = lab.lan("lan");
    let node_ns: Vec<Netns> = NODES
        .iter()
        .map(|n| {
            let ns = lab.netns(n.name);
            lan.attach(&ns, "eth0", &[&format!("{}/24", n.addr)]);
            ns
        })
        .collect();
    let tor_ns = lab.netns("tor");
    lan.attach(&tor_ns, "eth0", &[&format!("{TOR}/24")]);

    let mut pods: Vec<Podbgp> = node_ns
        .iter()
        .zip(&NODES)
        .map(|(ns, n)| Podbgp::start(ns, n.name, &node_config(n)))
        .collect();
    let tor = Frr::new(&tor_ns, &tor_config());

    // The nodes: mesh and ToR sessions up, blocks and service range learned.
    poll_until(
        SESSION_TIMEOUT,
        "mesh and ToR sessions up, every node has every block and the service range",
        || {
            for (pod, me) in pods.iter().zip(&NODES) {
                check_node(pod, me)?;
            }
            Ok(())
        },
    );
    eprintln!("nodes converged after {:.1?}", t0.elapsed());

    // The ToR: every block via its own node. (Everything has converged on the nodes' side,
    // so what is missing or wrong here is what the nodes advertise.)
    // A hand-rolled poll (same deadline semantics as `poll_until`) so that a timeout can
    // show what each node advertises to the ToR.
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    while let Err(e) = check_tor(&tor) {
        if Instant::now() >= deadline {
            panic!(
                "timed out after {CONVERGE_TIMEOUT:?} waiting for: the ToR has every node's blocks with next hop = that node and AS path {CLUSTER_AS}\nlast error: {e}\n--- evidence ---\n{}",
                tor_evidence(&pods, &tor, &tor_ns)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("ToR converged after {:.1?}", t0.elapsed());

    // zebra on the ToR installed each block via its node (with Calico's next-hop-self copies
    // from the other nodes, an ECMP route over the nodes).
    for node in &NODES {
        for net in node.nets {
            let what = format!("tor: FIB route {net} via {}", node.addr);
            poll_until(CONVERGE_TIMEOUT, &what, || {
                let route = tor_ns.route(net).ok_or("no such kernel route")?;
                json_subset(&json!({"protocol": "bgp"}), &route.raw)?;
                let gws = gateways(&route);
                if gws.contains(node.addr) {
                    Ok(())
                } else {
                    Err(format!("gateways {gws:?}"))
                }
            });
        }
    }

    // Still converged on the nodes, nobody restarted, no session flapped.
    for (pod, me) in pods.iter_mut().zip(&NODES) {
        pod.assert_running();
        if let Err(e) = check_node(pod, me) {
            panic!("{e}");
        }
        let flaps = transitions(pod);
        let mut want: BTreeMap<String, u64> = NODES
            .iter()
            .filter(|n| n.addr != me.addr)
            .map(|n| (n.addr.to_string(), 1))
            .collect();
        want.insert(TOR.to_string(), 1);
        assert_eq!(flaps, want, "{}: established_transitions per peer", me.name);
    }
    eprintln!("scenario took {:.1?}", t0.elapsed());
}
