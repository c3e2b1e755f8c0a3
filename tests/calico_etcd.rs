//! The etcd v3 datastore end to end: a real etcd (Debian `etcd-server`) holds
//! `topologies/mesh.yaml` under Calico's key layout; three podbgp nodes follow it with
//! `--datastore etcdv3` (ETCD_ENDPOINTS) in network namespaces, with FRR as the ToR and as an
//! extra peer.
//!
//! etcd runs in its own namespace on the nodes' LAN (198.18.0.100), listening there and on
//! 127.0.0.1 (the test's control address, for `etcdctl`); it is started with a temporary
//! data directory and stopped by PID.
//!
//! Checked: the shared scenario (tests/common/calico.rs: an affinity appears at the peers with
//! its latency printed and is withdrawn, a pending affinity advertises nothing, a BGPPeer opens
//! exactly one session), then
//! * etcd stopped for 30 s: no route is lost and no session moves meanwhile; a change written
//!   after etcd is back is applied;
//! * a compaction during a watch: node-1 is frozen (SIGSTOP), etcd restarts under it, a change
//!   is written and the history compacted past node-1's position, node-1 thaws: its watch
//!   cannot resume, it lists again and applies the change.
//!
//! Run: `cargo test --test calico_etcd -- --nocapture` (root, FRR and etcd installed).

mod common;

use std::time::Instant;

use common::calico::*;
use common::etcd::Etcd;
use common::*;
use serde_json::Value;

const ETCD_ADDR: &str = "198.18.0.100";

struct EtcdStore {
    etcd: Option<Etcd>,
}

impl EtcdStore {
    fn etcd(&self) -> &Etcd {
        self.etcd.as_ref().expect("etcd attached")
    }

    fn etcd_mut(&mut self) -> &mut Etcd {
        self.etcd.as_mut().expect("etcd attached")
    }

    fn kv(doc: &Value) -> (String, String) {
        ::podbgp::calico::model::etcd_kv(doc)
            .unwrap_or_else(|e| panic!("invalid test resource: {e}"))
            .expect("a kind podbgp reads")
    }

    fn put_raw(&self, key: &str, value: &str) {
        self.etcd()
            .etcdctl(&["put", key, value])
            .unwrap_or_else(|e| panic!("etcdctl put {key}: {e}"));
    }

    /// The current revision (from `etcdctl endpoint status`).
    fn revision(&self) -> i64 {
        let out = self
            .etcd()
            .etcdctl(&["endpoint", "status", "-w", "json"])
            .unwrap_or_else(|e| panic!("etcdctl endpoint status: {e}"));
        let v: Value = serde_json::from_str(&out).expect("etcdctl JSON");
        v[0]["Status"]["header"]["revision"]
            .as_i64()
            .expect("a revision")
    }
}

impl Store for EtcdStore {
    fn attach(&mut self, lab: &Lab, lan: &Lan) {
        let ns = lab.netns("etcd");
        lan.attach(&ns, "eth0", &[&format!("{ETCD_ADDR}/24")]);
        let etcd = Etcd::new_in_netns("calico_etcd", ns.name(), ETCD_ADDR);
        self.etcd = Some(etcd);
        // Seed the cluster the way calicoctl would store it.
        let docs = ::podbgp::calico::model::yaml_documents(MESH_YAML).expect("mesh.yaml parses");
        for d in &docs {
            let (k, v) = Self::kv(d);
            self.put_raw(&k, &v);
        }
        eprintln!(
            "etcd at {} seeded with {} resources",
            self.etcd().lan_endpoint(),
            docs.len()
        );
    }

    fn datastore_arg(&self) -> String {
        "etcdv3".into()
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("ETCD_ENDPOINTS".into(), self.etcd().lan_endpoint())]
    }

    fn put(&mut self, doc: Value) {
        let (k, v) = Self::kv(&doc);
        self.put_raw(&k, &v);
    }

    fn delete(&mut self, doc: &Value) {
        let (k, _) = Self::kv(doc);
        self.etcd()
            .etcdctl(&["del", &k])
            .unwrap_or_else(|e| panic!("etcdctl del {k}: {e}"));
    }
}

#[test]
fn etcd_datastore_follows_changes_outages_and_compaction() {
    if !require_root_and_frr() {
        return;
    }
    common::etcd::require_etcd();
    let mut store = EtcdStore { etcd: None };
    let mut m = run_scenario("calico_etcd", &mut store);

    // etcd down for 30 s: nothing is lost, no session moves.
    let marks = session_marks(&m.pods);
    let routes: Vec<_> = m.pods.iter().map(|p| best_routes(p).unwrap()).collect();
    store.etcd_mut().stop();
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(30) {
        for (pod, want) in m.pods.iter().zip(&routes) {
            let got = best_routes(pod).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(
                &got, want,
                "{}: routes changed while etcd was down",
                pod.name
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(
        session_marks(&m.pods),
        marks,
        "a session moved while etcd was down"
    );
    store.etcd_mut().start();
    eprintln!(
        "etcd was down for {:.1?}: no route lost, no session moved",
        down.elapsed()
    );
    let a = affinity("node-1", "198.19.100.0/26", "confirmed");
    store.put(a);
    let took = m.wait_at_peers("198.19.100.0/26", true);
    eprintln!("change written after etcd came back applied after {took:.0?}");

    // Compaction during a watch: node-1 frozen while etcd restarts, changes and compacts.
    let listed_before = m.pods[0].proc.output().matches("etcd: listed").count();
    m.pods[0].proc.signal(libc::SIGSTOP);
    store.etcd_mut().stop();
    store.etcd_mut().start();
    store.delete(&affinity("node-1", "198.19.1.192/26", "confirmed"));
    for i in 0..5 {
        store.put_raw("/calico/test/filler", &format!("{i}"));
    }
    let rev = store.revision();
    store
        .etcd()
        .etcdctl(&["compact", &rev.to_string(), "--physical"])
        .unwrap_or_else(|e| panic!("etcdctl compact: {e}"));
    m.pods[0].proc.signal(libc::SIGCONT);
    let took = m.wait_at_peers("198.19.1.192/26", false);
    eprintln!("compacted while node-1 was frozen: change applied {took:.0?} after it resumed");
    let listed_after = m.pods[0].proc.output().matches("etcd: listed").count();
    assert!(
        listed_after > listed_before,
        "node-1 did not list again after the compaction"
    );
    m.check_converged().unwrap_or_else(|e| panic!("{e}"));
    assert_service_range_only_from_tor(&m);
    m.pods.iter_mut().for_each(|p| p.assert_running());
    // etcd lives in the lab's namespace: stop it (by PID) before the lab goes.
    store.etcd_mut().stop();
}
