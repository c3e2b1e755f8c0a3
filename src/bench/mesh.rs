//! Scenario **mesh**: the device as one node of a Calico-style iBGP full mesh.
//!
//! N simulated nodes (the benchmark's clients, 127.0.0.101 and up) each hold one plain iBGP
//! session (no route reflection) with the device, which originates B /26 blocks of its own;
//! each node announces B /26 blocks of its own. In a full mesh every node talks to every
//! other node directly, so the only sessions that involve the device are these N.
//!
//! ```text
//!  node 1 ──┐   B blocks each ──►
//!  …        ├── device 127.0.0.1 (iBGP mesh member, originates B blocks)
//!  node N ──┘   ◄── the device's B blocks only (iBGP split horizon: nothing reflected)
//! ```
//!
//! Method:
//! * sessions are up when every node holds the device's B blocks (its own routes, which every
//!   device sends once a session is Established); that is the readiness check, before the
//!   clock starts;
//! * the clock starts when the nodes are released; each writes its pre-encoded blocks (one
//!   UPDATE for up to about 1,000 blocks, then End-of-RIB);
//! * the device's table is then read through its own control interface every `--poll-ms`:
//!   `podbgp speaker --json` (`loc_rib_prefixes`, over its API socket), `birdc show route
//!   count` (networks in master4), `show bgp ipv4 unicast statistics json` (`totalPrefixes`)
//!   written straight to bgpd's vty socket as vtysh does (vtysh itself takes 70-120 ms to
//!   start), and `gobgp global rib summary -a ipv4` (destinations); each takes a few
//!   milliseconds. The clock stops at the end of the first query that counts all (N + 1) × B
//!   prefixes. `wall_s` is therefore an upper bound, late by at most one query plus one poll
//!   interval (`resolution_ms`: from the start of the last query that fell short to the end
//!   of the one that did not); `cpu_s` is the device's CPU over that interval, answering the
//!   queries included;
//! * after that, `--settle-ms` of quiet: no node may receive anything but the device's own B
//!   blocks (a route of another node would be an iBGP route reflected or re-advertised, which
//!   a mesh member must not do); any such prefix, duplicate or wrong attribute counts in
//!   `anomalies`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::json;
use tokio::task::JoinSet;

use super::dut::{self, DeviceKind, DeviceRun, DutRole, Setup};
use super::peer::{self, Event, Identity, ReadyOn, Receive};
use super::plan::{self, Expect, Plan, PrefixCounter};
use super::report::{Metric, Record, thousands};
use super::rr_fanin;
use super::sessions::{Io, Role, Sessions};
use super::{DeviceArgs, conclude, interleave};

#[derive(clap::Args, Debug, Clone)]
pub struct MeshArgs {
    /// Simulated nodes (N), the device being node N + 1.
    #[arg(long, default_value_t = 200)]
    pub nodes: u32,
    /// /26 blocks per node, the device's own included (B).
    #[arg(long, default_value_t = 10)]
    pub blocks: u32,
    /// Pause between two queries of the device's table, milliseconds.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    pub poll_ms: u64,
    /// Quiet time after convergence during which no node may receive another node's blocks.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub settle_ms: u64,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

pub async fn main(a: MeshArgs) -> anyhow::Result<()> {
    let mut plan = Plan::mesh(a.nodes, a.blocks)?;
    plan.hold_time = a.dev.hold_time;
    let devices = a.dev.resolve()?;
    let (records, failed) = interleave(&a.dev, &devices, |kind, program, run| {
        device_once(&a, plan, run, kind, program)
    })
    .await?;
    let title = format!(
        "mesh: the device and {} simulated nodes x {} /26 blocks in an iBGP full mesh ({} routes to learn)",
        a.nodes,
        a.blocks,
        thousands(u64::from(a.nodes) * u64::from(a.blocks))
    );
    let notes = vec![format!(
        "wall_s: release of the nodes -> end of the first table query (every {} ms) counting all {} prefixes",
        a.poll_ms,
        thousands(u64::from(a.nodes + 1) * u64::from(a.blocks))
    )];
    conclude(&a.dev, &title, &records, &notes, &failed)
}

/// What the convergence poll found.
struct Converged {
    wall_s: f64,
    resolution_ms: f64,
    cpu_s: Option<f64>,
    queries: u32,
    count: u64,
    /// Table size before the clock started (the device's own blocks).
    before: u64,
}

async fn device_once(
    a: &MeshArgs,
    plan: Plan,
    run: u32,
    kind: DeviceKind,
    program: PathBuf,
) -> anyhow::Result<Record> {
    let label = format!("[run {run}/{} {}]", a.dev.runs, kind.name());
    let n = a.nodes;
    let b = a.blocks;
    let own_first = n * b;
    let listen = SocketAddr::from(([127, 0, 0, 1], dut::free_port()?));
    let setup = Setup {
        title: format!("podbgp bench mesh: the device and {n} nodes x {b} blocks"),
        listen,
        role: DutRole::MeshNode,
        clients: (0..n)
            .map(|j| (plan.monitor_addr(j), format!("node{}", j + 1)))
            .collect(),
        originate: (own_first..own_first + b).map(|g| plan.prefix(g)).collect(),
        hold_time: plan.hold_time,
    };
    let spec = dut::spec(kind, program, &setup)?;
    let mut dr = DeviceRun::start(&spec, &format!("{run}-{}", kind.name()), label.clone())?;
    let result = async {
        if let Some(d) = dr.dev.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(30);
            tokio::task::block_in_place(|| d.run_after_start(deadline))?;
        }
        let mut s = connect_nodes(&plan, a, listen, &mut dr).await?;
        eprintln!("{label} {n} nodes up (each holds the device's {b} blocks); releasing them");
        let c = converge(a, &mut s, &mut dr, &label).await?;
        // Quiet time: a mesh member must send the nodes nothing more.
        s.idle(Duration::from_millis(a.settle_ms)).await?;
        let anomalies = s.anomalies();
        let peak = dr.dev.as_ref().and_then(|d| d.sample()).map(|p| p.hwm_kib);
        let query = dr.dev.as_ref().and_then(|d| d.rib_query_command());
        drop(s);
        anyhow::Ok((c, anomalies, peak, query))
    }
    .await;
    let name = dr.name.clone();
    let command = dr.command.clone();
    let (c, anomalies, peak, query) = dr.finish(result)?;
    let learned = u64::from(n) * u64::from(b);
    eprintln!(
        "{label} done: {} routes in the table {:.3} s after release ({} queries)",
        thousands(c.count),
        c.wall_s,
        c.queries
    );
    Ok(Record {
        scenario: "mesh",
        device: name,
        run,
        sizes: vec![("nodes", u64::from(n)), ("blocks", u64::from(b))],
        wall_s: c.wall_s,
        cpu_s: c.cpu_s,
        peak_rss_kib: peak,
        metrics: vec![
            Metric::higher("routes_per_s", Some(learned as f64 / c.wall_s), 0),
            Metric::info("resolution_ms", Some(c.resolution_ms), 1),
        ],
        extra: vec![
            ("table_before", json!(c.before)),
            ("table_after", json!(c.count)),
            ("queries", json!(c.queries)),
            ("query", json!(query)),
            ("anomalies", json!(anomalies)),
        ],
        command,
    })
}

/// Connects every node, spawns its tasks with its blocks, and waits until each holds the
/// device's own blocks.
async fn connect_nodes(
    plan: &Plan,
    a: &MeshArgs,
    listen: SocketAddr,
    dr: &mut DeviceRun,
) -> anyhow::Result<Sessions> {
    let plan = *plan;
    let (n, b) = (a.nodes, a.blocks);
    let mut s = Sessions::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut setup = JoinSet::new();
    let mut who = Vec::new();
    for j in 0..n {
        s.add(Role::Monitor, u64::from(b));
        let me = Identity {
            name: "node",
            index: j,
            router_id: plan.monitor_id(j),
            hold_time: plan.hold_time,
        };
        who.push(me);
        let local = plan.monitor_addr(j);
        setup.spawn(async move {
            let (st, buf) = peer::connect_and_handshake(local, listen, &me, deadline).await?;
            anyhow::Ok((j as usize, st, buf))
        });
    }
    let streams = rr_fanin::handshakes(setup, n as usize, &mut dr.dev).await?;
    for (j, (me, conn)) in who.into_iter().zip(streams).enumerate() {
        let (stream, buf) = conn.context("missing session")?;
        let counter = PrefixCounter::new(
            plan,
            Expect::Originated {
                first: n * b,
                count: b,
            },
        );
        let blocks = plan::encode_range(&plan, j as u32 * b, b, me.router_id);
        s.spawn_io(
            j,
            Io {
                me,
                stream,
                buf,
                receive: Receive::Count {
                    counter: Box::new(counter),
                    expect: u64::from(b),
                },
                ready_on: ReadyOn::Done,
                probe: None,
                chunks: blocks.chunks,
                later: None,
            },
        );
    }
    s.wait_ready(&mut dr.dev, Duration::from_secs(60)).await?;
    Ok(s)
}

/// Releases the nodes and queries the device's table until it holds every prefix.
async fn converge(
    a: &MeshArgs,
    s: &mut Sessions,
    dr: &mut DeviceRun,
    label: &str,
) -> anyhow::Result<Converged> {
    let want = u64::from(a.nodes + 1) * u64::from(a.blocks);
    let query = |dr: &DeviceRun| -> anyhow::Result<u64> {
        let d = dr.dev.as_ref().context("no device")?;
        tokio::task::block_in_place(|| d.rib_count())
    };
    let before = query(dr)?;
    let cpu0 = dr.dev.as_ref().and_then(|d| d.sample());
    let t0 = Instant::now();
    s.start();
    let limit = t0 + Duration::from_secs(a.dev.timeout);
    let mut prev_start = t0;
    let mut queries = 0u32;
    let mut last_print = t0;
    loop {
        // Sessions failing (a NOTIFICATION, a closed connection) end the run.
        while let Ok(ev) = s.events.try_recv() {
            if let Event::Failed(m) = ev {
                bail!("{m}");
            }
        }
        if let Some(d) = dr.dev.as_mut() {
            d.check_alive()?;
        }
        let q_start = Instant::now();
        let count = query(dr)?;
        let q_end = Instant::now();
        queries += 1;
        if count >= want {
            let cpu1 = dr.dev.as_ref().and_then(|d| d.sample());
            return Ok(Converged {
                wall_s: (q_end - t0).as_secs_f64(),
                resolution_ms: (q_end - prev_start).as_secs_f64() * 1e3,
                cpu_s: cpu0.zip(cpu1).map(|(a, b)| b.cpu_s - a.cpu_s),
                queries,
                count,
                before,
            });
        }
        if q_end >= limit {
            bail!(
                "timed out after {} s: the device's table holds {count} of {want} prefixes",
                a.dev.timeout
            );
        }
        if q_end - last_print >= Duration::from_secs(2) {
            last_print = q_end;
            eprintln!(
                "{label} {:6.1} s: table {} of {}",
                t0.elapsed().as_secs_f64(),
                thousands(count),
                thousands(want)
            );
        }
        prev_start = q_start;
        tokio::time::sleep(Duration::from_millis(a.poll_ms)).await;
    }
}
