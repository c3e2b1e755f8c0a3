//! The policy through the real driver (tokio, loopback TCP): `Driver::with_policy` is in force
//! from the first UPDATE, and `DriverHandle::set_policy` changes exports live without a reset.
//!
//! A (127.0.0.1) originates 10.244.1.0/26 and 10.245.1.0/26 and starts with a Calico policy
//! whose pool 10.245.0.0/16 has disableBGPExport; B (127.0.0.2) is its iBGP peer.

use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use podbgp::calico::CalicoPolicy;
use podbgp::config::parse_yaml;
use podbgp::driver::{ApiRequest, Driver, DriverHandle};
use podbgp::speaker::{PeerView, Query, RouteView, TableKind, View};
use tokio::sync::oneshot;

fn lo(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

fn free_port(addr: Ipv4Addr) -> u16 {
    TcpListener::bind((addr, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
}

fn config(me: u8, port: u16, other: u8, other_port: u16, originate: &[&str]) -> String {
    let list: Vec<String> = originate.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "local_as: 64512\nrouter_id: 198.18.0.{me}\n\
         listen: {{ address: \"{}\", port: {port} }}\nnext_hop_ipv4: 198.18.0.{me}\n\
         connect_retry: 1\nidle_hold_min: 1\nidle_hold_max: 2\n\
         originate: [{}]\nneighbors:\n  - {{ address: {}, port: {other_port}, remote_as: 64512, \
         local_address: {}, passive: {} }}\n",
        lo(me),
        list.join(", "),
        lo(other),
        lo(me),
        other < me
    )
}

async fn query(h: &DriverHandle, query: Query) -> View {
    let (reply, rx) = oneshot::channel();
    h.api
        .send(ApiRequest::Query { query, reply })
        .await
        .unwrap();
    rx.await.unwrap().unwrap()
}

async fn loc_rib(h: &DriverHandle) -> Vec<RouteView> {
    let q = Query::Routes {
        table: TableKind::LocRib,
        peer: None,
        prefix: None,
    };
    match query(h, q).await {
        View::Routes(r) => r,
        v => panic!("{v:?}"),
    }
}

async fn peer_of(h: &DriverHandle) -> PeerView {
    match query(h, Query::Peers).await {
        View::Peers(p) => p.into_iter().next().unwrap(),
        v => panic!("{v:?}"),
    }
}

async fn prefixes_at(h: &DriverHandle) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = loc_rib(h).await.iter().map(|r| r.prefix).collect();
    v.sort();
    v.dedup();
    v
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn initial_policy_holds_from_the_start_and_changes_live() {
    let (pa, pb) = (free_port(lo(1)), free_port(lo(2)));
    let ca = parse_yaml(&config(1, pa, 2, pb, &["10.244.1.0/26", "10.245.1.0/26"])).unwrap();
    let cb = parse_yaml(&config(2, pb, 1, pa, &["10.244.2.0/26"])).unwrap();
    let pools = [(net("10.244.0.0/16"), true), (net("10.245.0.0/16"), false)];
    let (da, ha) = Driver::with_policy(ca, Arc::new(CalicoPolicy::new(pools)));
    let (db, hb) = Driver::new(cb);
    let (ta, tb) = (tokio::spawn(da.run()), tokio::spawn(db.run()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let at_b = prefixes_at(&hb).await;
        if at_b.contains(&net("10.244.1.0/26")) {
            assert_eq!(
                at_b,
                vec![net("10.244.1.0/26"), net("10.244.2.0/26")],
                "the disableBGPExport block never reaches B"
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never got A's block"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let since = peer_of(&hb).await.since;
    let transitions = peer_of(&hb).await.established_transitions;

    // The pool loses disableBGPExport: A's block there is announced, the session stays.
    assert!(
        ha.set_policy(Arc::new(CalicoPolicy::new([(net("10.0.0.0/8"), true)])))
            .await
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !prefixes_at(&hb).await.contains(&net("10.245.1.0/26")) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never got 10.245.1.0/26"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let p = peer_of(&hb).await;
    assert_eq!(
        (p.since, p.established_transitions),
        (since, transitions),
        "session reset"
    );
    assert_eq!(
        loc_rib(&hb)
            .await
            .iter()
            .find(|r| r.prefix == net("10.245.1.0/26"))
            .unwrap()
            .peer,
        Some(IpAddr::V4(lo(1)))
    );

    ha.shutdown().await;
    hb.shutdown().await;
    let _ = (ta.await, tb.await);
    assert!(
        !ha.set_policy(Arc::new(CalicoPolicy::default())).await,
        "driver stopped"
    );
}
