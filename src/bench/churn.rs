//! Scenario **churn**: propagation latency of withdrawals and announcements through the
//! device, after an initial load.
//!
//! The set-up is rr-fanin's (the device a route reflector, K injectors × P prefixes, M
//! monitors; see [`super::rr_fanin`]) and so is the initial load, measured the same way. Then
//! injector 1 runs `--waves` waves over `--wave-prefixes` W of its own prefixes (wave k takes
//! the W consecutive numbers from k × W, wrapping within its P): it withdraws them, and once
//! every monitor has seen all W withdrawn it announces them again, with the same attributes,
//! and waits until every monitor holds them again. Each phase is a `write` of pre-encoded
//! UPDATEs (as many prefixes per 4096-octet message as fit).
//!
//! Latency: the injector's writer timestamps each phase just before its `write`; a monitor
//! timestamps the bytes it reads (one `Instant` per `read`) and, per UPDATE, counts the
//! prefixes it held that were withdrawn (withdraw phase) or that it had seen withdrawn and
//! now are announced again (announce phase). A prefix's latency is its monitor's read time
//! minus its phase's write time, the same monotonic clock in one process; p50, p99 and max are
//! over every (prefix, monitor, phase) of the run. `wall_s` runs from the first wave's write
//! to the last phase's last prefix at the slowest monitor, and `cpu_s` is the device's CPU
//! over that interval. The initial load's wall time is `load_wall_s`.
//!
//! Anomalies: anything a monitor sees that is not a transition of the current phase (an
//! announcement during a withdraw phase, a withdrawal of a prefix it did not hold, more than W
//! transitions), plus rr-fanin's checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;
use tokio::sync::mpsc;

use super::dut::{self, DeviceKind, DeviceRun, Setup};
use super::peer::Event;
use super::plan::{self, Plan};
use super::report::{Metric, Record, quantile, thousands};
use super::rr_fanin::{self, ConnectOpts, Encoded};
use super::sessions::{Role, Sessions};
use super::{DeviceArgs, conclude, interleave};

/// How long one phase (every monitor seeing a wave's W changes) may take.
const PHASE_LIMIT: Duration = Duration::from_secs(60);

#[derive(clap::Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Injecting clients (K).
    #[arg(long, default_value_t = 4)]
    pub injectors: u32,
    /// IPv4 prefixes per injector (P).
    #[arg(long, default_value_t = 10_000)]
    pub prefixes: u32,
    /// Counting clients (M).
    #[arg(long, default_value_t = 2)]
    pub monitors: u32,
    /// Withdraw + announce-again waves.
    #[arg(long, default_value_t = 10)]
    pub waves: u32,
    /// Prefixes per wave (W, at most P).
    #[arg(long, default_value_t = 1_000)]
    pub wave_prefixes: u32,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

pub async fn main(a: ChurnArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.monitors >= 1, "--monitors must be at least 1");
    anyhow::ensure!(a.waves >= 1, "--waves must be at least 1");
    anyhow::ensure!(
        (1..=a.prefixes).contains(&a.wave_prefixes),
        "--wave-prefixes must be 1..=--prefixes"
    );
    let mut plan = Plan::new(a.injectors, a.prefixes, a.monitors)?;
    plan.hold_time = a.dev.hold_time;
    let devices = a.dev.resolve()?;
    let encoded = rr_fanin::encode_all(&plan, "[setup]");
    let (records, failed) = interleave(&a.dev, &devices, |kind, program, run| {
        device_once(&a, plan, run, kind, program, encoded.clone())
    })
    .await?;
    let title = format!(
        "churn: {} injectors x {} prefixes -> {} monitors, then {} waves of {} withdrawn and announced again by injector 1",
        plan.injectors,
        thousands(u64::from(plan.prefixes)),
        plan.monitors,
        a.waves,
        thousands(u64::from(a.wave_prefixes)),
    );
    let notes = vec![
        "latency: injector write -> monitor read, per prefix and monitor, both phases; \
         wall_s and cpu_s: first wave's write -> last phase complete at every monitor"
            .to_string(),
    ];
    conclude(&a.dev, &title, &records, &notes, &failed)
}

/// Withdraw, then announce again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Withdraw,
    Announce,
}

/// What the waves measured.
#[derive(Debug, Default)]
struct Waves {
    /// (latency ms, prefixes) per UPDATE read, by phase.
    withdraw: Vec<(f64, u64)>,
    announce: Vec<(f64, u64)>,
    wall_s: f64,
    cpu_s: Option<f64>,
    anomalies: u64,
}

async fn device_once(
    a: &ChurnArgs,
    plan: Plan,
    run: u32,
    kind: DeviceKind,
    program: PathBuf,
    encoded: Encoded,
) -> anyhow::Result<Record> {
    let label = format!("[run {run}/{} {}]", a.dev.runs, kind.name());
    let (chunks, messages, bytes) = encoded;
    let listen = SocketAddr::from(([127, 0, 0, 1], dut::free_port()?));
    let spec = dut::spec(kind, program, &Setup::reflector("churn", listen, &plan))?;
    let mut dr = DeviceRun::start(&spec, &format!("{run}-{}", kind.name()), label.clone())?;
    let result = async {
        let (wave_tx, wave_rx) = mpsc::unbounded_channel();
        let opts = ConnectOpts {
            observe: true,
            later: Some(wave_rx),
        };
        let mut s = rr_fanin::connect(&plan, listen, &mut dr.dev, chunks, opts).await?;
        let load = s
            .measure(&mut dr.dev, Duration::from_secs(a.dev.timeout), &label)
            .await?;
        eprintln!(
            "{label} initial load: {:.3} s; {} waves of {} prefixes",
            load.wall_s, a.waves, a.wave_prefixes
        );
        let w = waves(a, &plan, &mut s, &mut dr, &wave_tx).await?;
        let anomalies = s.anomalies();
        let peak = dr.dev.as_ref().and_then(|d| d.sample()).map(|p| p.hwm_kib);
        drop(s);
        anyhow::Ok((load, w, anomalies, peak))
    }
    .await;
    let name = dr.name.clone();
    let command = dr.command.clone();
    let (load, mut w, anomalies, peak) = dr.finish(result)?;
    let mut all: Vec<(f64, u64)> = w.withdraw.iter().chain(&w.announce).copied().collect();
    let p50 = quantile(&mut all, 0.5);
    let p99 = quantile(&mut all, 0.99);
    let max = quantile(&mut all, 1.0);
    let wd99 = quantile(&mut w.withdraw, 0.99);
    let an99 = quantile(&mut w.announce, 0.99);
    eprintln!(
        "{label} done: waves {:.3} s, latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        w.wall_s,
        p50.unwrap_or(f64::NAN),
        p99.unwrap_or(f64::NAN),
        max.unwrap_or(f64::NAN)
    );
    Ok(Record {
        scenario: "churn",
        device: name,
        run,
        sizes: vec![
            ("injectors", u64::from(plan.injectors)),
            ("prefixes", u64::from(plan.prefixes)),
            ("monitors", u64::from(plan.monitors)),
            ("waves", u64::from(a.waves)),
            ("wave_prefixes", u64::from(a.wave_prefixes)),
        ],
        wall_s: w.wall_s,
        cpu_s: w.cpu_s,
        peak_rss_kib: peak,
        metrics: vec![
            Metric::lower("p50_ms", p50, 2),
            Metric::lower("p99_ms", p99, 2),
            Metric::lower("max_ms", max, 2),
            Metric::lower("withdraw_p99_ms", wd99, 2),
            Metric::lower("announce_p99_ms", an99, 2),
            Metric::lower("load_wall_s", Some(load.wall_s), 3),
        ],
        extra: vec![
            ("load_cpu_s", json!(load.cpu_s)),
            ("updates_injected", json!(messages)),
            ("bytes_injected", json!(bytes)),
            ("anomalies", json!(anomalies + w.anomalies)),
        ],
        command,
    })
}

/// Runs every wave through injector 1's writer (`wave_tx`) and collects the monitors'
/// observations.
async fn waves(
    a: &ChurnArgs,
    plan: &Plan,
    s: &mut Sessions,
    dr: &mut DeviceRun,
    wave_tx: &mpsc::UnboundedSender<bytes::Bytes>,
) -> anyhow::Result<Waves> {
    let monitors: Vec<usize> = (0..s.roles.len())
        .filter(|&i| s.roles[i] == Role::Monitor)
        .collect();
    let wp = a.wave_prefixes;
    let span = plan.prefixes - wp + 1;
    let mut out = Waves::default();
    let cpu0 = dr.dev.as_ref().and_then(|d| d.sample());
    let mut first_sent: Option<Instant> = None;
    let mut last_seen: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    for k in 0..a.waves {
        let first = (k * wp) % span;
        for phase in [Phase::Withdraw, Phase::Announce] {
            let msg = match phase {
                Phase::Withdraw => plan::encode_withdraw(plan, first, wp),
                Phase::Announce => plan::encode_reannounce(plan, 0, first, wp),
            };
            if wave_tx.send(msg).is_err() {
                bail!("injector 1's writer has ended");
            }
            let mut sent: Option<Instant> = None;
            // Transitions still expected per session id (monitors only).
            let mut left: Vec<u64> = vec![0; s.roles.len()];
            for &m in &monitors {
                left[m] = u64::from(wp);
            }
            // Observations that arrive before their Sent cannot: the writer reports before it
            // writes. Kept in order anyway.
            let deadline = tokio::time::Instant::now() + PHASE_LIMIT;
            while monitors.iter().any(|&m| left[m] > 0) {
                tokio::select! {
                    ev = s.events.recv() => match ev {
                        Some(Event::Sent(0, t)) => {
                            sent = Some(t);
                            first_sent.get_or_insert(t);
                        }
                        Some(Event::Seen { id, at, withdrawn, announced }) => {
                            let (ours, theirs) = match phase {
                                Phase::Withdraw => (withdrawn, announced),
                                Phase::Announce => (announced, withdrawn),
                            };
                            out.anomalies += u64::from(theirs);
                            let Some(t0) = sent else {
                                bail!("a monitor saw changes before the wave was written");
                            };
                            let n = u64::from(ours);
                            let counted = n.min(left[id]);
                            out.anomalies += n - counted;
                            left[id] -= counted;
                            if counted > 0 {
                                let ms = at.saturating_duration_since(t0).as_secs_f64() * 1e3;
                                match phase {
                                    Phase::Withdraw => out.withdraw.push((ms, counted)),
                                    Phase::Announce => out.announce.push((ms, counted)),
                                }
                                last_seen = Some(last_seen.map_or(at, |l| l.max(at)));
                            }
                        }
                        Some(Event::Failed(m)) => bail!("{m}"),
                        Some(_) => {}
                        None => bail!("every session task ended"),
                    },
                    _ = tick.tick() => {
                        if let Some(d) = dr.dev.as_mut() {
                            d.check_alive()?;
                        }
                    }
                    _ = tokio::time::sleep_until(deadline) => {
                        let behind = monitors.iter().filter(|&&m| left[m] > 0).count();
                        bail!(
                            "wave {} {phase:?}: {behind} of {} monitors still missing changes after {} s (most missing: {})",
                            k + 1,
                            monitors.len(),
                            PHASE_LIMIT.as_secs(),
                            monitors.iter().map(|&m| left[m]).max().unwrap_or(0)
                        );
                    }
                }
            }
        }
    }
    let cpu1 = dr.dev.as_ref().and_then(|d| d.sample());
    out.cpu_s = cpu0.zip(cpu1).map(|(a, b)| b.cpu_s - a.cpu_s);
    out.wall_s = match (first_sent, last_seen) {
        (Some(a), Some(b)) => b.saturating_duration_since(a).as_secs_f64(),
        _ => 0.0,
    };
    Ok(out)
}
