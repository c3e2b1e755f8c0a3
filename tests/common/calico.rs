//! The Calico datastore scenario shared by the file and etcd datastore tests.
//!
//! Three podbgp nodes follow `topologies/mesh.yaml` through a datastore ([`Store`]), each in
//! its own namespace on one LAN (198.18.0.0/24 and 2001:db8:18::/64), with the FRR top-of-rack
//! router the topology names (198.18.0.1, AS 65001) and one more FRR (`ext`, 198.18.0.2,
//! AS 65002) that a BGPPeer added during the test points at.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::{Value, json};

use super::*;

/// The topology every datastore test uses.
pub const MESH_YAML: &str = include_str!("../../topologies/mesh.yaml");

pub const NODES: [(&str, &str, &str); 3] = [
    ("node-1", "198.18.0.11", "2001:db8:18::11"),
    ("node-2", "198.18.0.12", "2001:db8:18::12"),
    ("node-3", "198.18.0.13", "2001:db8:18::13"),
];
pub const TOR: &str = "198.18.0.1";
pub const TOR_AS: u32 = 65001;
pub const EXT: &str = "198.18.0.2";
pub const EXT_AS: u32 = 65002;
pub const CLUSTER_AS: u32 = 64512;
/// Announced by the ToR; outside every pool.
pub const SERVICE_RANGE: &str = "10.96.0.0/12";

/// Session set-up (both ends connect immediately; FRR `timers connect 5`).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
/// Datastore change → routes at the peers.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// A Calico datastore the test can edit.
pub trait Store {
    /// Called once the lab and its LAN exist, before any node starts (an etcd member joins
    /// the LAN here).
    fn attach(&mut self, _lab: &Lab, _lan: &Lan) {}
    /// `--datastore` argument.
    fn datastore_arg(&self) -> String;
    /// Extra environment for `podbgp run`.
    fn env(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// Creates or replaces a resource (a v3 document as JSON).
    fn put(&mut self, doc: Value);
    /// Deletes a resource created with [`Store::put`].
    fn delete(&mut self, doc: &Value);
}

/// A block affinity document.
pub fn affinity(node: &str, cidr: &str, state: &str) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "BlockAffinity",
        "metadata": {"name": format!("{node}-{}", cidr.replace(['.', ':', '/'], "-"))},
        "spec": {"node": node, "cidr": cidr, "state": state, "deleted": false}
    })
}

/// A node-specific BGPPeer document.
pub fn node_peer(name: &str, node: &str, ip: &str, asn: u32) -> Value {
    json!({
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"node": node, "peerIP": ip, "asNumber": asn}
    })
}

/// The file datastore: `topologies/mesh.yaml` plus the documents the test adds, rewritten
/// atomically (write + rename) on every change.
pub struct FileStore {
    pub path: PathBuf,
    extra: BTreeMap<String, Value>,
    /// Appended verbatim after the documents (a malformed edit).
    pub garbage: Option<String>,
}

fn doc_key(doc: &Value) -> String {
    format!(
        "{}/{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?"),
        doc["spec"]["node"].as_str().unwrap_or("")
    )
}

impl Drop for FileStore {
    fn drop(&mut self) {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl FileStore {
    /// A fresh file in its own temporary directory (removed on drop).
    pub fn new(name: &str) -> FileStore {
        let dir = std::env::temp_dir().join(format!("podbgp-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the datastore directory");
        let s = FileStore {
            path: dir.join("cluster.yaml"),
            extra: BTreeMap::new(),
            garbage: None,
        };
        s.write();
        s
    }

    pub fn write(&self) {
        let mut text = MESH_YAML.to_string();
        for d in self.extra.values() {
            // JSON is YAML: one flow-mapping document per resource.
            text.push_str(&format!("---\n{d}\n"));
        }
        if let Some(g) = &self.garbage {
            text.push_str(g);
        }
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, text).expect("writing the datastore file");
        std::fs::rename(&tmp, &self.path).expect("renaming the datastore file");
    }
}

impl Store for FileStore {
    fn datastore_arg(&self) -> String {
        format!("file:{}", self.path.display())
    }
    fn put(&mut self, doc: Value) {
        self.extra.insert(doc_key(&doc), doc);
        self.write();
    }
    fn delete(&mut self, doc: &Value) {
        self.extra.remove(&doc_key(doc));
        self.write();
    }
}

/// The running lab.
pub struct MeshLab {
    pub lab: Lab,
    pub node_ns: Vec<Netns>,
    pub pods: Vec<Podbgp>,
    pub tor: Frr,
    pub ext: Frr,
}

/// `peers --json` of a node, by address.
pub fn peers_by_addr(pod: &Podbgp) -> Result<BTreeMap<String, Value>, String> {
    Ok(pod
        .peers()?
        .into_iter()
        .map(|p| (p["address"].as_str().unwrap_or("?").to_string(), p))
        .collect())
}

/// Best Loc-RIB prefixes of a node with their next hops.
pub fn best_routes(pod: &Podbgp) -> Result<BTreeMap<String, Vec<String>>, String> {
    let mut out = BTreeMap::new();
    for r in pod.loc_rib()? {
        if r["best"] == true {
            let nh = r["next_hops"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            out.insert(r["prefix"].as_str().unwrap_or("?").to_string(), nh);
        }
    }
    Ok(out)
}

/// The (address → established_transitions, since) of every peer of every node.
pub fn session_marks(pods: &[Podbgp]) -> Vec<BTreeMap<String, (u64, i64)>> {
    pods.iter()
        .map(|p| {
            peers_by_addr(p)
                .unwrap_or_else(|e| panic!("{e}"))
                .into_iter()
                .map(|(a, v)| {
                    (
                        a,
                        (
                            v["established_transitions"].as_u64().unwrap_or(0),
                            v["since_unix"].as_i64().unwrap_or(0),
                        ),
                    )
                })
                .collect()
        })
        .collect()
}

fn frr_config(asn: u32, me: &str, with_nodes: bool) -> String {
    let mut c = BgpdConfig::new(asn, me).hostname(if asn == TOR_AS { "tor" } else { "ext" });
    if with_nodes {
        for (_, v4, _) in NODES {
            c = c.neighbor(v4, CLUSTER_AS);
        }
        // A service range outside every IP pool: each node learns it from the ToR, and
        // Calico's export policy keeps nodes from passing it on over the mesh.
        c = c.network(SERVICE_RANGE);
    } else {
        c = c.neighbor(NODES[0].1, CLUSTER_AS);
    }
    c.render()
}

impl MeshLab {
    /// Builds the LAN, starts both FRRs and the three nodes on `store`, and waits until every
    /// mesh and ToR session is Established and every node holds every other node's blocks.
    pub fn start(name: &str, store: &mut dyn Store) -> MeshLab {
        let lab = Lab::new(name);
        let lan = lab.lan("lan");
        let node_ns: Vec<Netns> = NODES
            .iter()
            .map(|(n, v4, v6)| {
                let ns = lab.netns(&n.replace('-', "_"));
                lan.attach(&ns, "eth0", &[&format!("{v4}/24"), &format!("{v6}/64")]);
                ns
            })
            .collect();
        let tor_ns = lab.netns("tor");
        lan.attach(&tor_ns, "eth0", &[&format!("{TOR}/24")]);
        let ext_ns = lab.netns("ext");
        lan.attach(&ext_ns, "eth0", &[&format!("{EXT}/24")]);
        store.attach(&lab, &lan);
        let tor = Frr::new(&tor_ns, &frr_config(TOR_AS, TOR, true));
        let ext = Frr::new(&ext_ns, &frr_config(EXT_AS, EXT, false));
        let env = store.env();
        let pods: Vec<Podbgp> = node_ns
            .iter()
            .zip(NODES)
            .map(|(ns, (n, _, _))| {
                // The ToR's service range passes the import guard by name.
                let allow = ["--import-allow", SERVICE_RANGE];
                Podbgp::start_datastore_with(ns, n, &store.datastore_arg(), &env, &allow)
            })
            .collect();
        let t0 = Instant::now();
        let m = MeshLab {
            lab,
            node_ns,
            pods,
            tor,
            ext,
        };
        poll_until(
            SESSION_TIMEOUT,
            "mesh (v4 + v6) and ToR sessions Established, every block everywhere",
            || m.check_converged(),
        );
        eprintln!(
            "cluster converged {:.1?} after the nodes started",
            t0.elapsed()
        );
        m
    }

    /// Every node: 4 mesh sessions (v4 + v6) + the ToR Established; the other nodes' blocks
    /// with the originating node as next hop.
    pub fn check_converged(&self) -> Result<(), String> {
        for (i, pod) in self.pods.iter().enumerate() {
            let peers = peers_by_addr(pod)?;
            let mut want: Vec<String> = vec![TOR.to_string()];
            for (j, (_, v4, v6)) in NODES.iter().enumerate() {
                if j != i {
                    want.push(v4.to_string());
                    want.push(v6.to_string());
                }
            }
            for a in &want {
                let st = peers
                    .get(a)
                    .map(|p| p["state"].as_str().unwrap_or("?").to_string());
                if st.as_deref() != Some("established") {
                    return Err(format!("{}: peer {a} state {st:?}", pod.name));
                }
            }
            let routes = best_routes(pod)?;
            for (j, (_, v4, v6)) in NODES.iter().enumerate() {
                if j == i {
                    continue;
                }
                let n = j + 1;
                let v4_block = format!("198.19.{n}.0/26");
                let v6_block = format!("2001:db8:244:0:{n}::/122");
                if routes.get(&v4_block) != Some(&vec![v4.to_string()]) {
                    return Err(format!(
                        "{}: {v4_block} → {:?}",
                        pod.name,
                        routes.get(&v4_block)
                    ));
                }
                if routes.get(&v6_block) != Some(&vec![v6.to_string()]) {
                    return Err(format!(
                        "{}: {v6_block} → {:?}",
                        pod.name,
                        routes.get(&v6_block)
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits until node-2 and node-3 (node-1's mesh peers) and the ToR hold (or, with
    /// `present = false`, no longer hold) `prefix`; returns how long that took.
    pub fn wait_at_peers(&self, prefix: &str, present: bool) -> Duration {
        let t0 = Instant::now();
        let what = format!(
            "{prefix} {} at node-2, node-3 and the ToR",
            if present { "present" } else { "absent" }
        );
        poll_until(CHANGE_TIMEOUT, &what, || {
            for pod in &self.pods[1..] {
                let routes = best_routes(pod)?;
                let got = routes.get(prefix);
                let ok = match present {
                    true => got == Some(&vec![NODES[0].1.to_string()]),
                    false => got.is_none(),
                };
                if !ok {
                    return Err(format!("{}: {prefix} → {got:?}", pod.name));
                }
            }
            let tor = self.tor.routes(Afi::Ipv4)?;
            if tor.contains_key(prefix) != present {
                return Err(format!("tor: {prefix} present = {}", !present));
            }
            Ok(())
        });
        t0.elapsed()
    }
}

/// Calico's export policy, checked once more late in a test (when any leak would long have
/// arrived): every path a node has for the ToR's service range is the ToR's own.
pub fn assert_service_range_only_from_tor(m: &MeshLab) {
    for pod in &m.pods {
        let paths: Vec<Value> = pod
            .loc_rib()
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|r| r["prefix"] == SERVICE_RANGE)
            .collect();
        assert!(
            !paths.is_empty() && paths.iter().all(|r| r["peer"] == TOR),
            "{}: paths for {SERVICE_RANGE} should all come from the ToR: {paths:?}",
            pod.name
        );
    }
}

/// The datastore scenario of the datastore issue, on any store. Returns the lab for
/// store-specific steps.
pub fn run_scenario(name: &str, store: &mut dyn Store) -> MeshLab {
    let mut m = MeshLab::start(name, store);

    // A confirmed affinity for node-1: its mesh peers (and the ToR) get the /26.
    let a1 = affinity("node-1", "198.19.1.64/26", "confirmed");
    store.put(a1.clone());
    let took = m.wait_at_peers("198.19.1.64/26", true);
    eprintln!("confirmed affinity → 198.19.1.64/26 at every peer after {took:.0?}");

    // Deleting it withdraws it.
    store.delete(&a1);
    let took = m.wait_at_peers("198.19.1.64/26", false);
    eprintln!("affinity deleted → 198.19.1.64/26 withdrawn everywhere after {took:.0?}");

    // A pending affinity advertises nothing. Written before a confirmed marker block of the
    // same node: once the marker arrived, node-1 has processed the pending one too.
    let pending = affinity("node-1", "198.19.1.128/26", "pending");
    store.put(pending.clone());
    let marker = affinity("node-1", "198.19.1.192/26", "confirmed");
    store.put(marker.clone());
    m.wait_at_peers("198.19.1.192/26", true);
    for pod in &m.pods {
        let routes = best_routes(pod).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            !routes.contains_key("198.19.1.128/26"),
            "{}: the pending block 198.19.1.128/26 is in the Loc-RIB",
            pod.name
        );
    }
    assert!(
        !m.tor
            .routes(Afi::Ipv4)
            .unwrap()
            .contains_key("198.19.1.128/26"),
        "the ToR got the pending block"
    );
    eprintln!("pending affinity → nothing advertised");

    // A new BGPPeer for node-1 opens exactly one new session; nobody else's sessions move.
    let before = session_marks(&m.pods);
    store.put(node_peer("node-1-ext", "node-1", EXT, EXT_AS));
    let t0 = Instant::now();
    poll_until(
        SESSION_TIMEOUT,
        "node-1's new session to ext Established",
        || {
            let peers = peers_by_addr(&m.pods[0])?;
            match peers.get(EXT) {
                Some(p) if p["state"] == "established" => Ok(()),
                other => Err(format!("ext: {other:?}")),
            }
        },
    );
    eprintln!(
        "BGPPeer added → session Established after {:.1?}",
        t0.elapsed()
    );
    m.ext.wait_established(&[NODES[0].1], SESSION_TIMEOUT);
    let after = session_marks(&m.pods);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let mut a = a.clone();
        if i == 0 {
            let new = a.remove(EXT);
            assert!(new.is_some(), "node-1 has no session to {EXT}");
        }
        assert_eq!(
            b, &a,
            "{}: other sessions' (established_transitions, since) changed",
            NODES[i].0
        );
    }
    // Calico's export policy: the ToR's non-pool route reached every node from the ToR (the
    // poll) and was never passed on over the mesh (every path is the ToR's).
    poll_until(
        CHANGE_TIMEOUT,
        "every node has the ToR's service range",
        || {
            for pod in &m.pods {
                let paths: Vec<Value> = pod
                    .loc_rib()?
                    .into_iter()
                    .filter(|r| r["prefix"] == SERVICE_RANGE)
                    .collect();
                if paths.is_empty() {
                    return Err(format!("{}: no path for {SERVICE_RANGE}", pod.name));
                }
                assert!(
                    paths.iter().all(|r| r["peer"] == TOR),
                    "{}: paths for {SERVICE_RANGE} should all come from the ToR: {paths:?}",
                    pod.name
                );
            }
            Ok(())
        },
    );
    m.pods.iter_mut().for_each(|p| p.assert_running());
    m
}
