//! `podbgp demo`: a three-node Calico cluster on loopback, from the embedded file datastore,
//! with nothing to install and no privileges.
//!
//! The cluster is `topologies/demo.yaml` (compiled into the binary): three nodes on 127.0.0.1-3
//! in a node-to-node mesh, one confirmed block each, and one *pending* block that must not be
//! advertised. The demo writes that file to a temporary directory and starts each node exactly
//! as `podbgp run --datastore file:PATH --node NAME` would (datastore follower + driver + API on
//! its own Unix socket), on a free port. It then
//!
//! 1. waits until every session is Established and every node holds every confirmed block,
//!    and prints the calicoctl-style status table and the Loc-RIB of each node through the same
//!    CLI code operators use;
//! 2. edits the file the way an operator (or IPAM) would — confirms node-1's pending block —
//!    and measures how long until the other nodes hold it, without any session resetting;
//! 3. shuts the nodes down (Cease/Administrative Shutdown) and checks that they exit cleanly.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::api::{ApiListen, ApiRequest};
use crate::calico::DeriveOptions;
use crate::cli::{ApiTarget, ClientCommand, JsonFlag, RoutesArgs, TableArg};
use crate::datastore::DatastoreSpec;
use crate::driver::DriverHandle;
use crate::node::{NodeOptions, RunningNode, start};
use crate::speaker::{Query, View};

/// The embedded demo cluster.
pub const DEMO_TOPOLOGY: &str = include_str!("../topologies/demo.yaml");

const NODES: [&str; 3] = ["node-1", "node-2", "node-3"];

async fn query(h: &DriverHandle, q: Query) -> Option<View> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    h.api
        .send(ApiRequest::Query {
            query: q,
            reply: tx,
        })
        .await
        .ok()?;
    rx.await.ok()?.ok()
}

/// Polls every node until `pred` holds for all of them, or fails after `limit`.
async fn wait_all(
    nodes: &[RunningNode],
    limit: Duration,
    what: &str,
    pred: impl Fn(usize, &View) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    loop {
        let mut done = true;
        for (i, n) in nodes.iter().enumerate() {
            match query(&n.driver, Query::Speaker).await {
                Some(v) if pred(i, &v) => {}
                _ => done = false,
            }
        }
        if done {
            return Ok(start.elapsed());
        }
        if start.elapsed() > limit {
            anyhow::bail!("{what}: not reached within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn established(v: &View) -> usize {
    match v {
        View::Speaker(s) => s.peers_established,
        _ => 0,
    }
}

fn loc_rib(v: &View) -> usize {
    match v {
        View::Speaker(s) => s.loc_rib_prefixes,
        _ => 0,
    }
}

async fn uptimes(nodes: &[RunningNode]) -> Vec<Vec<(std::net::IpAddr, std::time::Instant)>> {
    let mut all = Vec::new();
    for n in nodes {
        let mut v = Vec::new();
        if let Some(View::Peers(peers)) = query(&n.driver, Query::Peers).await {
            for p in peers {
                v.push((p.address, p.since));
            }
        }
        all.push(v);
    }
    all
}

async fn print_node(i: usize, sock: &Path) -> anyhow::Result<()> {
    let target = ApiTarget::Unix(sock.to_path_buf());
    println!("== {}: podbgp --api {} status", NODES[i], sock.display());
    crate::cli::run_client(
        ClientCommand::Status(JsonFlag { json: false }),
        target.clone(),
    )
    .await?;
    println!("== {}: podbgp --api {} routes", NODES[i], sock.display());
    let routes = RoutesArgs {
        table: TableArg::LocRib,
        peer: None,
        prefix: None,
        output: JsonFlag { json: false },
    };
    crate::cli::run_client(ClientCommand::Routes(routes), target).await?;
    println!();
    Ok(())
}

/// Runs the demo; returns an error when the cluster does not behave.
pub async fn run() -> anyhow::Result<()> {
    // Every node listens on its own 127.0.0.n (all of 127/8 is local on Linux) on one port the
    // kernel picks, released just before the nodes bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("podbgp-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("cluster.yaml");
    std::fs::write(&file, DEMO_TOPOLOGY)?;
    println!(
        "datastore: file:{} (topologies/demo.yaml), BGP port {port}",
        file.display()
    );

    let mut nodes = Vec::new();
    let mut sockets: Vec<PathBuf> = Vec::new();
    for name in NODES {
        let sock = dir.join(format!("{name}.sock"));
        let node = start(NodeOptions {
            datastore: DatastoreSpec::File(file.clone()),
            node: name.to_string(),
            derive: DeriveOptions {
                listen_port: Some(port),
                ..DeriveOptions::default()
            },
            api: Some(ApiListen::Unix(sock.clone())),
            api_tls: None,
            adjust: Some(Box::new(move |v| {
                // Peers connect to the port of the node they dial: use the free port everywhere.
                if let Some(g) = v.bgp_configs.get_mut("default") {
                    g.listen_port = Some(port);
                }
            })),
            // The nodes talk over loopback, but a loopback next hop is rightly refused by every
            // BGP speaker (RFC 4271 §5.1.3): advertise 198.18.0.n (a benchmarking range; the
            // demo installs nothing in the kernel) as each node's next hop instead.
            finish: Some(Box::new(move |d| {
                if let Some(std::net::IpAddr::V4(a)) = d.ipv4.map(|a| a.addr) {
                    let o = a.octets();
                    d.config.next_hop_ipv4 = Some(std::net::Ipv4Addr::new(198, 18, 0, o[3]));
                }
            })),
            // The demo runs in the caller's namespace: it never writes kernel routes.
            fib: None,
            metrics: None,
        })
        .await?;
        println!("{name}: API at {}", sock.display());
        nodes.push(node);
        sockets.push(sock);
    }

    println!("waiting for the mesh to converge ...");
    let took = wait_all(
        &nodes,
        Duration::from_secs(30),
        "mesh convergence",
        |_, v| established(v) == NODES.len() - 1 && loc_rib(v) == NODES.len(),
    )
    .await?;
    println!(
        "converged in {took:.0?}: every node has 2 Established sessions and 3 blocks; the pending block 10.244.9.0/26 is advertised by no one\n"
    );
    for (i, sock) in sockets.iter().enumerate() {
        print_node(i, sock).await?;
    }

    println!("editing the datastore: confirming node-1's pending block 10.244.9.0/26 ...");
    let before = uptimes(&nodes).await;
    let text = std::fs::read_to_string(&file)?.replace("state: pending", "state: confirmed");
    std::fs::write(&file, text)?;
    let took = wait_all(&nodes, Duration::from_secs(10), "the new block", |_, v| {
        loc_rib(v) == NODES.len() + 1
    })
    .await?;
    let after = uptimes(&nodes).await;
    anyhow::ensure!(
        before == after,
        "a session was reset by an unrelated datastore change"
    );
    println!(
        "10.244.9.0/26 reached every node {took:.0?} after the edit (file poll interval 250 ms); no session was reset\n"
    );
    print_node(1, &sockets[1]).await?;

    println!("shutting down ...");
    for n in nodes {
        n.shutdown().await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "demo passed: {} nodes from the file datastore, full mesh, live block change applied without resets, clean shutdown",
        NODES.len()
    );
    Ok(())
}
