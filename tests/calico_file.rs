//! The file datastore end to end: three podbgp nodes follow `topologies/mesh.yaml` (a
//! multi-document file of Calico v3 resources) in network namespaces, with FRR as the
//! top-of-rack router and as an extra peer, and the test edits the file.
//!
//! Checked (tests/common/calico.rs): a confirmed affinity for node-1 reaches node-1's mesh
//! peers and the ToR (latency printed); deleting it withdraws it; a pending affinity
//! advertises nothing; a new BGPPeer opens exactly one session and no other session moves.
//! Then, file only: a malformed edit is rejected with a message naming the line, resource,
//! field and value, routing goes on (sessions and routes intact), and the next good edit is
//! applied.
//!
//! Run: `cargo test --test calico_file -- --nocapture` (root, FRR installed).

mod common;

use common::calico::*;
use common::*;

#[test]
fn file_datastore_follows_edits() {
    if !require_root_and_frr() {
        return;
    }
    let mut store = FileStore::new("calico_file");
    let mut m = run_scenario("calico_file", &mut store);

    // A malformed edit: rejected with a precise message, nothing changes.
    let before = session_marks(&m.pods);
    let routes_before: Vec<_> = m.pods.iter().map(|p| best_routes(p).unwrap()).collect();
    store.garbage = Some(
        "---\napiVersion: projectcalico.org/v3\nkind: BGPPeer\nmetadata:\n  name: broken\nspec:\n  peerIP: 198.18.0.9\n  asNumber: 65x\n"
            .to_string(),
    );
    store.put(affinity("node-1", "198.19.1.128/26", "confirmed"));
    poll_until(CHANGE_TIMEOUT, "node-1 logs the rejected edit", || {
        let log = m.pods[0].proc.output();
        let line = log
            .lines()
            .find(|l| l.contains("rejected"))
            .ok_or("no rejection logged yet")?;
        for want in ["BGPPeer \"broken\"", "spec.asNumber", "65x", "line "] {
            if !line.contains(want) {
                return Err(format!("rejection line lacks {want:?}: {line}"));
            }
        }
        Ok(())
    });
    // Every node rejected the whole edit: the affinity in it was not applied either.
    for (pod, want) in m.pods.iter().zip(&routes_before) {
        assert_eq!(
            &best_routes(pod).unwrap(),
            want,
            "{}: routes changed",
            pod.name
        );
    }
    assert_eq!(
        session_marks(&m.pods),
        before,
        "a session moved after a rejected edit"
    );

    // The fixed file is applied.
    store.garbage = None;
    store.write();
    let took = m.wait_at_peers("198.19.1.128/26", true);
    eprintln!("fixed edit applied after {took:.0?}");
    assert_service_range_only_from_tor(&m);
    m.pods.iter_mut().for_each(|p| p.assert_running());
}
