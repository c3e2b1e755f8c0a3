//! Scenario **memory**: what paths and idle peers cost the device in resident memory. Each run
//! starts the device twice, as a route reflector (the rr-fanin set-up, [`super::rr_fanin`]):
//!
//! * **paths**: one injector announces `--paths` P prefixes, reflected to one monitor. The
//!   device's VmRSS is read once both sessions are up (probe reflected), and its VmHWM once
//!   the monitor holds all P: `peak_rss_kib` is that peak, and `rss_per_path_b` is
//!   (peak − RSS when ready) / P, in bytes: one Adj-RIB-In path, its Loc-RIB entry and one
//!   Adj-RIB-Out entry (toward the monitor), plus whatever the device keeps per prefix.
//!   `wall_s` and `cpu_s` are the load's, measured as in rr-fanin;
//! * **peers**: `--peers` N idle monitors and one injector (which only sends its probe route,
//!   so each peer holds one route) are configured. VmRSS is read once the device listens plus
//!   `--settle-ms` (configuration loaded, no session yet), then again `--settle-ms` after all
//!   N + 1 sessions are up: `rss_per_peer_kib` is the difference / (N + 1), `peers_rss_kib`
//!   the second reading.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use super::dut::{self, DeviceKind, DeviceRun, Setup};
use super::plan::Plan;
use super::report::{Metric, Record, thousands};
use super::rr_fanin::{self, ConnectOpts};
use super::sessions::Measured;
use super::{DeviceArgs, conclude, interleave};

#[derive(clap::Args, Debug, Clone)]
pub struct MemoryArgs {
    /// Paths loaded into the device (one injector, reflected to one monitor).
    #[arg(long, default_value_t = 1_000_000)]
    pub paths: u32,
    /// Idle peers (monitors) of the second device.
    #[arg(long, default_value_t = 200)]
    pub peers: u32,
    /// Quiet time before each RSS reading of the peers phase.
    #[arg(long, default_value_t = 2000, value_name = "MS")]
    pub settle_ms: u64,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

pub async fn main(a: MemoryArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.peers >= 1, "--peers must be at least 1");
    let mut paths = Plan::new(1, a.paths, 1)?;
    paths.hold_time = a.dev.hold_time;
    let mut peers = Plan::new(1, 1, a.peers)?;
    peers.hold_time = a.dev.hold_time;
    let devices = a.dev.resolve()?;
    let encoded = rr_fanin::encode_all(&paths, "[setup]");
    let (records, failed) = interleave(&a.dev, &devices, |kind, program, run| {
        let chunks = encoded.0.clone();
        let a = &a;
        async move {
            let (load, rss_ready, anomalies) =
                paths_phase(a, paths, run, kind, program.clone(), chunks).await?;
            let (base, idle, idle_hwm) = peers_phase(a, peers, run, kind, program).await?;
            let peak = load.peak_rss_kib;
            let per_path = peak
                .zip(rss_ready)
                .map(|(p, r)| p.saturating_sub(r) as f64 * 1024.0 / f64::from(a.paths));
            let per_peer = base
                .zip(idle)
                .map(|(b, i)| (i as f64 - b as f64) / f64::from(a.peers + 1));
            eprintln!(
                "[run {run}/{} {}] done: peak {} KiB after {} paths ({:.0} B/path), {} KiB with {} idle peers ({:.1} KiB/peer)",
                a.dev.runs,
                kind.name(),
                peak.unwrap_or(0),
                thousands(u64::from(a.paths)),
                per_path.unwrap_or(f64::NAN),
                idle.unwrap_or(0),
                a.peers,
                per_peer.unwrap_or(f64::NAN)
            );
            anyhow::Ok(Record {
                scenario: "memory",
                device: kind.name().into(),
                run,
                sizes: vec![("paths", u64::from(a.paths)), ("peers", u64::from(a.peers))],
                wall_s: load.wall_s,
                cpu_s: load.cpu_s,
                peak_rss_kib: peak,
                metrics: vec![
                    Metric::lower("rss_per_path_b", per_path, 1),
                    Metric::lower("peers_rss_kib", idle.map(|k| k as f64), 0),
                    Metric::lower("rss_per_peer_kib", per_peer, 1),
                    Metric::lower("base_rss_kib", base.map(|k| k as f64), 0),
                ],
                extra: vec![
                    ("rss_ready_kib", json!(rss_ready)),
                    ("peers_peak_rss_kib", json!(idle_hwm)),
                    ("anomalies", json!(anomalies)),
                ],
                command: String::new(),
            })
        }
    })
    .await?;
    let title = format!(
        "memory: {} paths (1 injector -> 1 monitor), then {} idle peers, the device a route reflector",
        thousands(u64::from(a.paths)),
        a.peers
    );
    let notes = vec![
        "rss_per_path_b: (peak RSS after the load - RSS with both sessions up) / paths; \
         rss_per_peer_kib: (RSS with every session up - RSS before any) / (peers + 1)"
            .to_string(),
    ];
    conclude(&a.dev, &title, &records, &notes, &failed)
}

/// Loads the paths: the initial load's measurement, VmRSS when ready, anomalies.
async fn paths_phase(
    a: &MemoryArgs,
    plan: Plan,
    run: u32,
    kind: DeviceKind,
    program: PathBuf,
    chunks: Vec<Vec<bytes::Bytes>>,
) -> anyhow::Result<(Measured, Option<u64>, u64)> {
    let label = format!("[run {run}/{} {} paths]", a.dev.runs, kind.name());
    let listen = SocketAddr::from(([127, 0, 0, 1], dut::free_port()?));
    let spec = dut::spec(kind, program, &Setup::reflector("memory", listen, &plan))?;
    let mut dr = DeviceRun::start(
        &spec,
        &format!("{run}-{}-paths", kind.name()),
        label.clone(),
    )?;
    let result = async {
        let mut s =
            rr_fanin::connect(&plan, listen, &mut dr.dev, chunks, ConnectOpts::default()).await?;
        let ready = dr.dev.as_ref().and_then(|d| d.sample()).map(|p| p.rss_kib);
        let m = s
            .measure(&mut dr.dev, Duration::from_secs(a.dev.timeout), &label)
            .await?;
        let anomalies = s.anomalies();
        drop(s);
        anyhow::Ok((m, ready, anomalies))
    }
    .await;
    dr.finish(result)
}

/// Idle peers: VmRSS before any session and with all of them up, and VmHWM at the end.
async fn peers_phase(
    a: &MemoryArgs,
    plan: Plan,
    run: u32,
    kind: DeviceKind,
    program: PathBuf,
) -> anyhow::Result<(Option<u64>, Option<u64>, Option<u64>)> {
    let label = format!("[run {run}/{} {} peers]", a.dev.runs, kind.name());
    let listen = SocketAddr::from(([127, 0, 0, 1], dut::free_port()?));
    let spec = dut::spec(kind, program, &Setup::reflector("memory", listen, &plan))?;
    let mut dr = DeviceRun::start(
        &spec,
        &format!("{run}-{}-peers", kind.name()),
        label.clone(),
    )?;
    let settle = Duration::from_millis(a.settle_ms);
    let result = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !dut::listening(listen.port()) {
            if let Some(d) = dr.dev.as_mut() {
                d.check_alive()?;
            }
            if Instant::now() > deadline {
                bail!("the device does not listen on {listen} after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(settle).await;
        let base = dr.dev.as_ref().and_then(|d| d.sample()).map(|p| p.rss_kib);
        // One injector (its probe only) and the idle monitors.
        let mut s = rr_fanin::connect(
            &plan,
            listen,
            &mut dr.dev,
            vec![Vec::new()],
            ConnectOpts::default(),
        )
        .await?;
        s.idle(settle).await?;
        let p = dr.dev.as_ref().and_then(|d| d.sample());
        drop(s);
        anyhow::Ok((base, p.map(|p| p.rss_kib), p.map(|p| p.hwm_kib)))
    }
    .await;
    dr.finish(result)
}
