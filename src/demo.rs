//! `podbgp demo`: a three-node full mesh on loopback, in one process, with nothing to install.
//!
//! Each node is a complete daemon (driver + speaker + API on its own Unix socket) speaking BGP
//! over real TCP on 127.0.0.1 with its own port. The demo waits until every session is
//! Established and every node holds every block, prints the calicoctl-style status table and
//! the Loc-RIB of each node through the same CLI code operators use, then shuts the nodes down
//! (Cease/Administrative Shutdown) and checks that they exit cleanly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::api::{ApiHandle, ApiListen, ApiRequest, Clock};
use crate::cli::{ApiTarget, ClientCommand, JsonFlag, RoutesArgs, TableArg};
use crate::config::parse_yaml;
use crate::driver::{Driver, DriverHandle};
use crate::speaker::{Query, View};

const NODES: usize = 3;

fn node_yaml(i: usize, port: u16) -> String {
    let mut s = format!(
        "local_as: 64512\nrouter_id: 198.18.0.{n}\nlisten: {{ address: \"127.0.0.{n}\", port: {port} }}\n\
         next_hop_ipv4: 198.18.0.{n}\nnext_hop_ipv6: \"2001:db8::{n}\"\nconnect_retry: 1\nidle_hold_max: 2\n\
         originate: [10.244.{n}.0/26, \"2001:db8:244:{n}::/64\"]\nneighbors:\n",
        n = i + 1,
    );
    for j in 0..NODES {
        if j != i {
            // Calico's mesh rule: the side with the higher address is passive.
            s.push_str(&format!(
                "  - {{ address: 127.0.0.{m}, port: {port}, remote_as: 64512, role: mesh, passive: {passive}, \
                 local_address: 127.0.0.{n} }}\n",
                m = j + 1,
                n = i + 1,
                passive = i > j
            ));
        }
    }
    s
}

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

/// Runs the demo; returns an error when the mesh does not converge.
pub async fn run() -> anyhow::Result<()> {
    // Node n listens on 127.0.0.n (all of 127/8 is local on Linux), on one port the kernel
    // picks, released just before the nodes bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = std::env::temp_dir().join(format!("podbgp-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut handles = Vec::new();
    let mut tasks = Vec::new();
    let mut sockets: Vec<PathBuf> = Vec::new();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    for i in 0..NODES {
        let yaml = node_yaml(i, port);
        let cfg = parse_yaml(&yaml)?;
        let (driver, handle) = Driver::new(cfg);
        let sock = dir.join(format!("node{}.sock", i + 1));
        let (_, yaml_rx) = tokio::sync::watch::channel(yaml);
        let api = ApiHandle {
            requests: handle.api.clone(),
            events: handle.events.clone(),
            config_yaml: yaml_rx,
            clock: Clock::now(),
        };
        let mut stop = stop_tx.subscribe();
        tokio::spawn(crate::api::serve(
            ApiListen::Unix(sock.clone()),
            api,
            async move {
                let _ = stop.recv().await;
            },
        ));
        println!(
            "node{n} listening on 127.0.0.{n}:{port}, API at {}",
            sock.display(),
            n = i + 1
        );
        tasks.push(tokio::spawn(driver.run()));
        handles.push(handle);
        sockets.push(sock);
    }

    println!("waiting for the mesh to converge ...");
    let start = Instant::now();
    let want = 2 * NODES; // every node: one v4 and one v6 block per node
    loop {
        let mut done = true;
        for h in &handles {
            match query(h, Query::Speaker).await {
                Some(View::Speaker(s))
                    if s.peers_established == NODES - 1 && s.loc_rib_prefixes == want => {}
                _ => done = false,
            }
        }
        if done {
            break;
        }
        if start.elapsed() > Duration::from_secs(30) {
            anyhow::bail!("the mesh did not converge within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("converged in {:.0?}\n", start.elapsed());

    for (i, sock) in sockets.iter().enumerate() {
        let target = ApiTarget::Unix(sock.clone());
        println!("== node{}: podbgp --api {} status", i + 1, sock.display());
        crate::cli::run_client(
            ClientCommand::Status(JsonFlag { json: false }),
            target.clone(),
        )
        .await?;
        println!("== node{}: podbgp --api {} routes", i + 1, sock.display());
        let routes = RoutesArgs {
            table: TableArg::LocRib,
            peer: None,
            prefix: None,
            output: JsonFlag { json: false },
        };
        crate::cli::run_client(ClientCommand::Routes(routes), target).await?;
        println!();
    }

    println!("shutting down ...");
    for h in &handles {
        h.shutdown().await;
    }
    for t in tasks {
        t.await??;
    }
    let _ = stop_tx.send(());
    let _ = std::fs::remove_dir_all(&dir);
    println!("demo passed: {NODES} nodes, full mesh, every block on every node, clean shutdown");
    Ok(())
}
