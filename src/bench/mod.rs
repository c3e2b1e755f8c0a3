//! `podbgp bench`: throughput benchmarks. Two scenarios:
//!
//! * **rr-fanin** (this file): a BGP speaker end to end over loopback, described below;
//! * **fib** ([`fib`]): podbgp's kernel route writer against `ip -batch`, installing and
//!   deleting N routes in a throw-away network namespace.
//!
//! Scenario **rr-fanin** (K × P → M): the device under test (podbgp, BIRD 2, FRR's bgpd or
//! GoBGP, see [`dut`]; `--device` lists them and `--runs` repeats the list) is a route
//! reflector; K
//! *injector* clients each announce P distinct IPv4 prefixes, M *monitor* clients count what
//! the reflector sends them. Every client is an iBGP route-reflector client of the device, so
//! the device reflects each injector's routes to all the other clients too: the injectors
//! receive (K−1) × P prefixes each and drain them, as real clients would.
//!
//! ```text
//!  injector 1 (127.0.0.11) ──┐                         ┌──► monitor 1 (127.0.0.101)
//!  …                         ├──► device 127.0.0.1:port ┼──► monitor M (127.0.0.10M)
//!  injector K (127.0.0.1K) ──┘   (child process)        └──► every injector (drained)
//! ```
//!
//! Method:
//! * all UPDATEs are encoded before the device starts (as many NLRI per 4096-octet message as
//!   fit, then End-of-RIB), so injecting costs a `write` per 256 KiB;
//! * every session must be Established on the device, and the device forwarding between
//!   them, before the clock starts: once its handshake is done each injector announces one
//!   probe route (198.51.100.(i+1)/32, outside the measured prefixes), and we wait until every
//!   client holds every other injector's probe. This works for every speaker (BIRD, FRR and
//!   GoBGP send no End-of-RIB unless graceful restart is negotiated), and a device only
//!   reflects routes over Established sessions, so it is at least as strict as End-of-RIB;
//! * the clock starts when the injectors are released and stops when the slowest monitor
//!   holds all K × P distinct prefixes (`wall_s`); `converged_s` is when the injectors also
//!   hold their (K−1) × P;
//! * device CPU is utime + stime from /proc/PID/stat: `cpu_s` over the measured interval,
//!   `cpu_total_s` from start to convergence; `peak_rss_kib` is VmHWM from /proc/PID/status;
//! * `--calibrate` runs the same injectors against an in-process sink that decodes and counts
//!   like a monitor, with no device, to show the harness is not the bottleneck.
//!
//! The device is a child process in its own process group, stopped by PID (SIGTERM, then
//! SIGKILL) when a run ends, fails or is interrupted, and killed by the kernel if the
//! benchmark itself dies (PR_SET_PDEATHSIG).

mod dut;
mod fib;
mod peer;
mod plan;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use dut::{Device, DeviceKind, DeviceSpec, ProcSample};
use peer::{Event, Identity, ReadyOn, Receive, SessionId, Stats};
use plan::{DEVICE_ID, Expect, Plan, PrefixCounter};

pub use fib::FibArgs;

/// `podbgp bench …`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
pub enum Scenario {
    /// Route reflector fan-in: K injecting clients × P prefixes, reflected to M monitors.
    RrFanin(RrFaninArgs),
    /// Kernel routes: install then delete N routes with podbgp's netlink writer and with
    /// `ip -batch`, in a throw-away network namespace (root).
    Fib(FibArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct RrFaninArgs {
    /// Injecting clients (K).
    #[arg(long, default_value_t = 10)]
    pub injectors: u32,
    /// IPv4 prefixes per injector (P).
    #[arg(long, default_value_t = 100_000)]
    pub prefixes: u32,
    /// Counting clients (M).
    #[arg(long, default_value_t = 2)]
    pub monitors: u32,
    /// Devices under test, comma-separated; each run measures them in this order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "podbgp",
        value_name = "LIST"
    )]
    pub device: Vec<DeviceKind>,
    /// Repetitions of each device, interleaved (podbgp, bird, …, podbgp, bird, …), each with a
    /// fresh device.
    #[arg(long, default_value_t = 1)]
    pub runs: u32,
    /// The podbgp binary to benchmark (default: this executable).
    #[arg(long, value_name = "PATH")]
    pub device_bin: Option<PathBuf>,
    /// Print only the JSON lines on stdout (no table).
    #[arg(long)]
    pub json: bool,
    /// No device: injectors send straight to an in-process counting sink.
    #[arg(long)]
    pub calibrate: bool,
    /// Hold time of the device and the clients (0 or at least 3).
    #[arg(long, default_value_t = plan::HOLD_TIME, value_name = "SECONDS")]
    pub hold_time: u16,
    /// Give up on a run after this many seconds of measurement.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
}

/// Runs a benchmark: rr-fanin on its own tokio runtime, fib on plain threads.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    match args.scenario {
        Scenario::RrFanin(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?;
            // The device is spawned from the future block_on polls, i.e. from this thread,
            // which outlives the run (see Device::spawn).
            rt.block_on(rr_fanin(a))
        }
        Scenario::Fib(a) => fib::main(a),
    }
}

/// One measured run.
#[derive(Clone, Debug)]
struct RunResult {
    run: u32,
    device: String,
    plan: Plan,
    calibrate: bool,
    /// Clock start to the last expected prefix at the slowest monitor (sink).
    wall_s: f64,
    /// Clock start to every client holding everything (injectors included).
    converged_s: f64,
    /// Clock start to the last injector having written its last UPDATE.
    inject_s: f64,
    cpu_s: Option<f64>,
    cpu_total_s: Option<f64>,
    peak_rss_kib: Option<u64>,
    /// CPU of this benchmark process over the measured interval.
    bench_cpu_s: f64,
    messages: usize,
    bytes: usize,
    /// Withdrawn, unexpected, wrong-attribute or duplicate prefixes seen by monitors.
    anomalies: u64,
    command: String,
}

impl RunResult {
    fn prefixes_per_s(&self) -> f64 {
        f64::from(self.plan.total()) / self.wall_s
    }

    /// One JSON object, keys in a fixed order (the required keys first).
    fn json(&self) -> String {
        use serde_json::{Value, json};
        let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
        let r6 = |x: f64| (x * 1e6).round() / 1e6;
        let fields: [(&str, Value); 18] = [
            ("scenario", json!("rr-fanin")),
            ("device", json!(self.device)),
            ("injectors", json!(self.plan.injectors)),
            ("prefixes", json!(self.plan.prefixes)),
            (
                "monitors",
                json!(if self.calibrate {
                    1
                } else {
                    self.plan.monitors
                }),
            ),
            ("wall_s", json!(r6(self.wall_s))),
            ("cpu_s", json!(self.cpu_s.map(r3))),
            ("peak_rss_kib", json!(self.peak_rss_kib)),
            (
                "prefixes_per_s",
                json!(self.prefixes_per_s().round() as u64),
            ),
            ("run", json!(self.run)),
            ("converged_s", json!(r6(self.converged_s))),
            ("inject_s", json!(r6(self.inject_s))),
            ("cpu_total_s", json!(self.cpu_total_s.map(r3))),
            ("bench_cpu_s", json!(r3(self.bench_cpu_s))),
            ("prefix_len", json!(self.plan.prefix_len)),
            ("updates_injected", json!(self.messages)),
            ("bytes_injected", json!(self.bytes)),
            ("anomalies", json!(self.anomalies)),
        ];
        let body: Vec<String> = fields
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(*k)))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

async fn rr_fanin(a: RrFaninArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.monitors >= 1, "--monitors must be at least 1");
    anyhow::ensure!(a.runs >= 1, "--runs must be at least 1");
    anyhow::ensure!(
        a.hold_time == 0 || a.hold_time >= 3,
        "--hold-time must be 0 or at least 3"
    );
    let mut plan = Plan::new(a.injectors, a.prefixes, a.monitors)?;
    plan.hold_time = a.hold_time;
    let mut results = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    // Resolve every device's program before the first run, so a missing one fails at once.
    let mut devices: Vec<(DeviceKind, PathBuf)> = Vec::new();
    if !a.calibrate {
        anyhow::ensure!(!a.device.is_empty(), "--device needs at least one device");
        for &kind in &a.device {
            if devices.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let program = match kind {
                DeviceKind::Podbgp => match &a.device_bin {
                    Some(p) => p.clone(),
                    None => std::env::current_exe().context("cannot find this executable")?,
                },
                _ => kind.find_program().with_context(|| {
                    format!(
                        "no {} program found (install the Debian package {})",
                        kind.name(),
                        kind.package()
                    )
                })?,
            };
            devices.push((kind, program));
        }
    }
    let encoded = if a.calibrate {
        None
    } else {
        Some(encode_all(&plan, "[setup]"))
    };
    for run in 1..=a.runs {
        let per_run: Vec<Option<&(DeviceKind, PathBuf)>> = if a.calibrate {
            vec![None]
        } else {
            devices.iter().map(Some).collect()
        };
        for dev in per_run {
            let one = async {
                match (dev, &encoded) {
                    (Some((kind, program)), Some(enc)) => {
                        device_once(&a, plan, run, *kind, program, enc.clone()).await
                    }
                    _ => calibrate_once(&a, plan, run).await,
                }
            };
            // Dropping the run (Ctrl-C) drops its Device, which stops the process, and its
            // JoinSet, which aborts every session task.
            let r = tokio::select! {
                r = one => r,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            };
            match r {
                Ok(r) => {
                    println!("{}", r.json());
                    results.push(r);
                }
                // With several devices, one that fails (or times out) does not stop the others.
                Err(e) if devices.len() > 1 => {
                    let name = dev.map_or("calibration", |(k, _)| k.name());
                    eprintln!("[run {run}/{} {name}] FAILED: {e:#}", a.runs);
                    failed.push(format!("run {run} {name}: {e:#}"));
                }
                Err(e) => return Err(e),
            }
        }
    }
    if !a.json {
        print_table(&results);
    }
    if !failed.is_empty() {
        bail!(
            "{} of the runs failed:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
    Ok(())
}

fn print_table(results: &[RunResult]) {
    let Some(first) = results.first() else {
        return;
    };
    let p = first.plan;
    let opt = |x: Option<f64>, prec: usize| x.map_or("-".into(), |v| format!("{v:.prec$}"));
    println!();
    println!(
        "rr-fanin: {} injectors x {} prefixes (/{}) -> {} {}",
        p.injectors,
        thousands(u64::from(p.prefixes)),
        p.prefix_len,
        if first.calibrate { 1 } else { p.monitors },
        if first.calibrate {
            "in-process sink (calibration, no device)"
        } else {
            "monitors"
        }
    );
    println!(
        "{:<4} {:<12} {:>9} {:>12} {:>11} {:>9} {:>8} {:>11} {:>13} {:>11}",
        "run",
        "device",
        "wall_s",
        "prefixes/s",
        "converged_s",
        "inject_s",
        "cpu_s",
        "cpu_total_s",
        "peak_rss_MiB",
        "bench_cpu_s"
    );
    for r in results {
        println!(
            "{:<4} {:<12} {:>9.4} {:>12} {:>11.4} {:>9.4} {:>8} {:>11} {:>13} {:>11.2}",
            r.run,
            r.device,
            r.wall_s,
            thousands(r.prefixes_per_s().round() as u64),
            r.converged_s,
            r.inject_s,
            opt(r.cpu_s, 2),
            opt(r.cpu_total_s, 2),
            opt(r.peak_rss_kib.map(|k| k as f64 / 1024.0), 1),
            r.bench_cpu_s,
        );
    }
    println!(
        "wall_s: release of the injectors -> last of {} prefixes at the slowest {}; \
         {} UPDATEs ({:.1} MB) injected",
        thousands(u64::from(p.total())),
        if first.calibrate { "sink" } else { "monitor" },
        thousands(first.messages as u64),
        first.bytes as f64 / 1e6
    );
    let mut names: Vec<&str> = Vec::new();
    for r in results {
        if !names.contains(&r.device.as_str()) {
            names.push(&r.device);
            if !r.command.is_empty() {
                println!("{}: {}", r.device, r.command);
            }
        }
    }
    let anomalies: u64 = results.iter().map(|r| r.anomalies).sum();
    if anomalies > 0 {
        println!(
            "WARNING: {anomalies} withdrawn/unexpected/wrong-attribute/duplicate prefixes seen (see stderr)"
        );
    }
    if names.len() > 1 || results.len() > 1 {
        print_medians(results, &names);
    }
}

/// Median of `v` (mean of the middle two for an even count); `None` when empty.
fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// Per-device medians, then podbgp's median over the best (lowest) median of the others.
fn print_medians(results: &[RunResult], names: &[&str]) {
    #[derive(Clone, Copy)]
    struct Med {
        runs: usize,
        wall: Option<f64>,
        converged: Option<f64>,
        cpu: Option<f64>,
        cpu_total: Option<f64>,
        rss_mib: Option<f64>,
    }
    let med = |name: &str| {
        let rs: Vec<&RunResult> = results.iter().filter(|r| r.device == name).collect();
        let of = |f: &dyn Fn(&RunResult) -> Option<f64>| {
            median(rs.iter().filter_map(|r| f(r)).collect())
        };
        Med {
            runs: rs.len(),
            wall: of(&|r| Some(r.wall_s)),
            converged: of(&|r| Some(r.converged_s)),
            cpu: of(&|r| r.cpu_s),
            cpu_total: of(&|r| r.cpu_total_s),
            rss_mib: of(&|r| r.peak_rss_kib.map(|k| k as f64 / 1024.0)),
        }
    };
    let meds: Vec<(&str, Med)> = names.iter().map(|n| (*n, med(n))).collect();
    let opt = |x: Option<f64>, prec: usize| x.map_or("-".into(), |v| format!("{v:.prec$}"));
    let total = results.first().map_or(0, |r| r.plan.total());
    println!();
    println!("medians per device:");
    println!(
        "{:<12} {:>4} {:>9} {:>12} {:>11} {:>8} {:>11} {:>13}",
        "device",
        "runs",
        "wall_s",
        "prefixes/s",
        "converged_s",
        "cpu_s",
        "cpu_total_s",
        "peak_rss_MiB"
    );
    for (name, m) in &meds {
        println!(
            "{:<12} {:>4} {:>9} {:>12} {:>11} {:>8} {:>11} {:>13}",
            name,
            m.runs,
            opt(m.wall, 4),
            m.wall.map_or("-".into(), |w| thousands(
                (f64::from(total) / w).round() as u64
            )),
            opt(m.converged, 4),
            opt(m.cpu, 2),
            opt(m.cpu_total, 2),
            opt(m.rss_mib, 1),
        );
    }
    let Some((_, ours)) = meds.iter().find(|(n, _)| *n == "podbgp") else {
        return;
    };
    let others: Vec<&(&str, Med)> = meds.iter().filter(|(n, _)| *n != "podbgp").collect();
    if others.is_empty() {
        return;
    }
    // podbgp / the lowest median among the other devices (below 1: podbgp is better).
    let ratio = |f: &dyn Fn(&Med) -> Option<f64>| -> String {
        let best = others
            .iter()
            .filter_map(|(n, m)| f(m).map(|v| (*n, v)))
            .min_by(|a, b| a.1.total_cmp(&b.1));
        match (f(ours), best) {
            (Some(a), Some((n, b))) if b > 0.0 => format!("{:.2}x (best other: {n})", a / b),
            _ => "-".into(),
        }
    };
    println!(
        "podbgp / best other: wall_s {}, cpu_s {}, peak_rss {}",
        ratio(&|m| m.wall),
        ratio(&|m| m.cpu),
        ratio(&|m| m.rss_mib)
    );
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Who a session is in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Injector,
    /// Counts what the device reflects (headline).
    Monitor,
    /// Calibration: counts what one injector sends (headline).
    Sink,
}

/// The sessions of a run and what the measurement waits for.
struct Sessions {
    roles: Vec<Role>,
    stats: Vec<Arc<Stats>>,
    /// Prefixes each session must receive (0: nothing to wait for).
    expect: Vec<u64>,
    events: mpsc::UnboundedReceiver<Event>,
    ev_tx: mpsc::UnboundedSender<Event>,
    start: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Sessions {
    fn new() -> Self {
        let (ev_tx, events) = mpsc::unbounded_channel();
        let (start, _) = watch::channel(false);
        Sessions {
            roles: Vec::new(),
            stats: Vec::new(),
            expect: Vec::new(),
            events,
            ev_tx,
            start,
            tasks: JoinSet::new(),
        }
    }

    fn add(&mut self, role: Role, expect: u64) -> (SessionId, Arc<Stats>) {
        let st = Arc::new(Stats::default());
        self.roles.push(role);
        self.stats.push(st.clone());
        self.expect.push(expect);
        (self.roles.len() - 1, st)
    }

    fn sum(&self, role: Role, f: impl Fn(&Stats) -> u64) -> u64 {
        self.roles
            .iter()
            .zip(&self.stats)
            .filter(|(r, _)| **r == role)
            .map(|(_, s)| f(s))
            .sum()
    }

    fn min_rx(&self, role: Role) -> u64 {
        self.roles
            .iter()
            .zip(&self.stats)
            .filter(|(r, _)| **r == role)
            .map(|(_, s)| s.rx_prefixes.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Spawns the reader and writer tasks of an established session.
    #[allow(clippy::too_many_arguments)]
    fn spawn_io(
        &mut self,
        id: SessionId,
        me: Identity,
        stream: tokio::net::TcpStream,
        buf: BytesMut,
        receive: Receive,
        ready_on: ReadyOn,
        probe: Option<Bytes>,
        chunks: Vec<Bytes>,
    ) {
        let (rd, wr) = stream.into_split();
        let st = self.stats[id].clone();
        self.tasks.spawn(peer::read_loop(
            id,
            me,
            rd,
            buf,
            receive,
            ready_on,
            st.clone(),
            self.ev_tx.clone(),
        ));
        self.tasks.spawn(peer::write_loop(
            id,
            me,
            wr,
            probe,
            chunks,
            self.start.subscribe(),
            st,
            self.ev_tx.clone(),
        ));
    }

    /// Waits until every session reported Ready.
    async fn wait_ready(&mut self, dev: &mut Option<Device>) -> anyhow::Result<()> {
        let mut ready = vec![false; self.roles.len()];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        while ready.iter().any(|r| !r) {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(Event::Ready(id)) => ready[id] = true,
                    Some(Event::Failed(m)) => bail!("{m}"),
                    Some(_) => {}
                    None => bail!("every session task ended"),
                },
                _ = tick.tick() => {
                    if let Some(d) = dev.as_mut() {
                        d.check_alive()?;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => bail!(
                    "{} of {} sessions not ready (probe routes not all reflected) after 30 s",
                    ready.iter().filter(|r| !**r).count(),
                    ready.len()
                ),
            }
        }
        Ok(())
    }

    /// Starts the clock, releases the injectors, and waits until every session has what it
    /// expects and every injector has written everything.
    async fn measure(
        &mut self,
        dev: &mut Option<Device>,
        timeout: Duration,
        label: &str,
    ) -> anyhow::Result<Measured> {
        let n = self.roles.len();
        let headline = |r: Role| matches!(r, Role::Monitor | Role::Sink);
        let mut rx_done: Vec<Option<Instant>> = vec![None; n];
        let mut tx_done: Vec<Option<Instant>> = vec![None; n];
        let dev0 = dev.as_ref().and_then(|d| d.sample());
        let self0 = dut::sample("self").unwrap_or_default();
        let t0 = Instant::now();
        let _ = self.start.send(true);
        let deadline = tokio::time::Instant::from_std(t0 + timeout);
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::from_std(t0 + Duration::from_secs(2)),
            Duration::from_secs(2),
        );
        let mut at_headline: Option<(Instant, Option<ProcSample>, ProcSample)> = None;
        loop {
            let rx_all = |role_filter: &dyn Fn(Role) -> bool| {
                (0..n).all(|i| {
                    !role_filter(self.roles[i]) || self.expect[i] == 0 || rx_done[i].is_some()
                })
            };
            if at_headline.is_none() && rx_all(&|r| headline(r)) {
                let t = (0..n)
                    .filter(|&i| headline(self.roles[i]))
                    .filter_map(|i| rx_done[i])
                    .max()
                    .unwrap_or(t0);
                let d = dev.as_ref().and_then(|d| d.sample());
                let s = dut::sample("self").unwrap_or_default();
                at_headline = Some((t, d, s));
            }
            let tx_all = (0..n).all(|i| self.roles[i] != Role::Injector || tx_done[i].is_some());
            if at_headline.is_some() && rx_all(&|_| true) && tx_all {
                break;
            }
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(Event::RxDone(id, t)) => rx_done[id] = Some(t),
                    Some(Event::TxDone(id, t)) => tx_done[id] = Some(t),
                    Some(Event::Ready(_)) => {}
                    Some(Event::Failed(m)) => bail!("{m}"),
                    None => bail!("every session task ended"),
                },
                _ = tick.tick() => {
                    if let Some(d) = dev.as_mut() {
                        d.check_alive()?;
                    }
                    eprintln!("{label} {}", self.progress(t0, dev.as_ref()));
                }
                _ = tokio::time::sleep_until(deadline) => bail!(
                    "timed out after {} s: {}", timeout.as_secs(), self.progress(t0, dev.as_ref())
                ),
            }
        }
        let dev_end = dev.as_ref().and_then(|d| d.sample());
        let (t_head, dev_head, self_head) = at_headline.unwrap_or((t0, None, self0));
        let last = |v: &[Option<Instant>]| v.iter().flatten().max().copied().unwrap_or(t0);
        let converged = last(&rx_done).max(t_head);
        Ok(Measured {
            wall_s: (t_head - t0).as_secs_f64(),
            converged_s: (converged - t0).as_secs_f64(),
            inject_s: (last(&tx_done) - t0).as_secs_f64(),
            cpu_s: dev0.zip(dev_head).map(|(a, b)| b.cpu_s - a.cpu_s),
            cpu_total_s: dev_end.map(|s| s.cpu_s),
            peak_rss_kib: dev_end.map(|s| s.hwm_kib),
            bench_cpu_s: self_head.cpu_s - self0.cpu_s,
        })
    }

    fn progress(&self, t0: Instant, dev: Option<&Device>) -> String {
        let mut s = format!("{:6.1} s:", t0.elapsed().as_secs_f64());
        for (role, name) in [(Role::Monitor, "monitors"), (Role::Sink, "sinks")] {
            let want = (0..self.roles.len())
                .filter(|&i| self.roles[i] == role)
                .map(|i| self.expect[i])
                .max();
            if let Some(want) = want {
                s += &format!(
                    " {name} {}/{} (slowest)",
                    thousands(self.min_rx(role)),
                    thousands(want)
                );
            }
        }
        let inj_want: u64 = (0..self.roles.len())
            .filter(|&i| self.roles[i] == Role::Injector)
            .map(|i| self.expect[i])
            .sum();
        let tx = self.sum(Role::Injector, |s| s.tx_bytes.load(Ordering::Relaxed));
        s += &format!(" | injectors sent {:.1} MB", tx as f64 / 1e6);
        if inj_want > 0 {
            let rx = self.sum(Role::Injector, |s| s.rx_prefixes.load(Ordering::Relaxed));
            s += &format!(", received {}/{}", thousands(rx), thousands(inj_want));
        }
        if let Some(p) = dev.and_then(|d| d.sample()) {
            s += &format!(
                " | device cpu {:.1} s, rss {} MiB",
                p.cpu_s,
                p.rss_kib / 1024
            );
        }
        s
    }

    /// Total of the monitors' anomaly counters, printed when non-zero.
    fn anomalies(&self) -> u64 {
        let mut total = 0;
        for (i, st) in self.stats.iter().enumerate() {
            if !matches!(self.roles[i], Role::Monitor | Role::Sink) {
                continue;
            }
            let w = st.withdrawn.load(Ordering::Relaxed);
            let u = st.unexpected.load(Ordering::Relaxed);
            let m = st.mismatched.load(Ordering::Relaxed);
            let d = st.duplicates.load(Ordering::Relaxed);
            if w + u + m + d > 0 {
                eprintln!(
                    "session {i} ({:?}): withdrawn {w}, unexpected {u}, wrong attributes {m}, duplicates {d}",
                    self.roles[i]
                );
            }
            total += w + u + m + d;
        }
        total
    }
}

struct Measured {
    wall_s: f64,
    converged_s: f64,
    inject_s: f64,
    cpu_s: Option<f64>,
    cpu_total_s: Option<f64>,
    peak_rss_kib: Option<u64>,
    bench_cpu_s: f64,
}

/// Pre-encodes every injector's UPDATEs.
fn encode_all(plan: &Plan, label: &str) -> (Vec<Vec<Bytes>>, usize, usize) {
    let t = Instant::now();
    let (mut all, mut msgs, mut bytes) = (Vec::new(), 0, 0);
    for i in 0..plan.injectors {
        let inj = plan::encode_injection(plan, i);
        msgs += inj.messages;
        bytes += inj.bytes;
        all.push(inj.chunks);
    }
    eprintln!(
        "{label} pre-encoded {} UPDATEs ({:.1} MB, /{} prefixes) for {} injectors in {:.2} s",
        thousands(msgs as u64),
        bytes as f64 / 1e6,
        plan.prefix_len,
        plan.injectors,
        t.elapsed().as_secs_f64()
    );
    (all, msgs, bytes)
}

/// The scratch directory of one run (device configuration and log), removed on drop unless
/// `keep` was set (a failed run keeps it for its log).
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    fn new(tag: &str) -> anyhow::Result<RunDir> {
        let path = std::env::temp_dir().join(format!("podbgp-bench-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(RunDir { path, keep: false })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The specification of `kind` listening on `listen`.
fn device_spec(
    kind: DeviceKind,
    program: PathBuf,
    listen: SocketAddr,
    plan: &Plan,
) -> anyhow::Result<DeviceSpec> {
    Ok(match kind {
        DeviceKind::Podbgp => dut::podbgp_device(program, listen, plan),
        DeviceKind::Bird => dut::bird_device(program, listen, plan),
        DeviceKind::Frr => dut::frr_device(program, listen, plan),
        DeviceKind::Gobgp => dut::gobgp_device(program, listen, dut::free_port()?, plan),
    })
}

/// Pre-encoded UPDATEs of every injector, with their message and byte counts.
type Encoded = (Vec<Vec<Bytes>>, usize, usize);

async fn device_once(
    a: &RrFaninArgs,
    plan: Plan,
    run: u32,
    kind: DeviceKind,
    program: &std::path::Path,
    encoded: Encoded,
) -> anyhow::Result<RunResult> {
    let label = format!("[run {run}/{} {}]", a.runs, kind.name());
    let (chunks, messages, bytes) = encoded;
    let listen = SocketAddr::from(([127, 0, 0, 1], dut::free_port()?));
    let spec = device_spec(kind, program.to_path_buf(), listen, &plan)?;
    let mut dir = RunDir::new(&format!("{run}-{}", kind.name()))?;
    let t = Instant::now();
    let mut dev = Some(Device::spawn(&spec, &dir.path)?);
    let command = dev.as_ref().map(|d| d.command.clone()).unwrap_or_default();
    eprintln!(
        "{label} device: {command} (pid {})",
        dev.as_ref().map_or(0, |d| d.pid)
    );

    let result = async {
        let mut s = Sessions::new();
        // Generous: FRR takes seconds to bring up 200 passive sessions.
        let connect_deadline = Instant::now() + Duration::from_secs(60);
        let mut setup = JoinSet::new();
        let total = u64::from(plan.total());
        let mut plans: Vec<(Identity, Receive, Vec<Bytes>)> = Vec::new();
        for (i, ch) in chunks.into_iter().enumerate() {
            let i = i as u32;
            let expect = total - u64::from(plan.prefixes);
            s.add(Role::Injector, expect);
            let me = Identity {
                name: "injector",
                index: i,
                router_id: plan.injector_id(i),
                hold_time: plan.hold_time,
            };
            plans.push((me, Receive::Drain { expect, plan }, ch));
        }
        for j in 0..plan.monitors {
            s.add(Role::Monitor, total);
            let me = Identity {
                name: "monitor",
                index: j,
                router_id: plan.monitor_id(j),
                hold_time: plan.hold_time,
            };
            let counter = Box::new(PrefixCounter::new(
                plan,
                Expect::Reflected {
                    cluster_id: DEVICE_ID,
                },
            ));
            plans.push((me, Receive::Count { counter, expect: total }, Vec::new()));
        }
        for (id, (me, _, _)) in plans.iter().enumerate() {
            let me = *me;
            let local = match me.name {
                "injector" => plan.injector_addr(me.index),
                _ => plan.monitor_addr(me.index),
            };
            setup.spawn(async move {
                let (st, buf) =
                    peer::connect_and_handshake(local, listen, &me, connect_deadline).await?;
                anyhow::Ok((id, st, buf))
            });
        }
        let mut streams: Vec<Option<(tokio::net::TcpStream, BytesMut)>> =
            (0..plans.len()).map(|_| None).collect();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        while !setup.is_empty() {
            let r = tokio::select! {
                r = setup.join_next() => r,
                _ = tick.tick() => {
                    if let Some(d) = dev.as_mut() {
                        d.check_alive()?;
                    }
                    continue;
                }
            };
            let Some(r) = r else { break };
            let (id, st, buf) = match r.context("session setup task")? {
                Ok(x) => x,
                Err(e) => {
                    if let Some(d) = dev.as_mut() {
                        d.check_alive()?;
                    }
                    return Err(e);
                }
            };
            streams[id] = Some((st, buf));
        }
        for (id, ((me, receive, ch), conn)) in plans.into_iter().zip(streams).enumerate() {
            let (st, buf) = conn.context("missing session")?;
            // Ready once the other injectors' probes arrived; an injector's own probe reaching
            // the monitors shows its session is up.
            let (ready_on, probe) = match me.name {
                "injector" => (
                    ReadyOn::Probes(plan.injectors - 1),
                    Some(plan::encode_probe(&plan, me.index)),
                ),
                _ => (ReadyOn::Probes(plan.injectors), None),
            };
            s.spawn_io(id, me, st, buf, receive, ready_on, probe, ch);
        }
        s.wait_ready(&mut dev).await?;
        eprintln!(
            "{label} {} sessions up (every probe route reflected to every client) {:.2} s after start; releasing the injectors",
            s.roles.len(),
            t.elapsed().as_secs_f64()
        );
        let m = s
            .measure(&mut dev, Duration::from_secs(a.timeout), &label)
            .await?;
        let anomalies = s.anomalies();
        drop(s); // aborts the session tasks before the device stops
        anyhow::Ok((m, anomalies))
    }
    .await;
    let device_name = dev.as_ref().map(|d| d.name.clone()).unwrap_or_default();
    let log_path = dev.as_ref().map(|d| d.log.clone());
    if let Some(mut d) = dev.take() {
        d.stop();
    }
    dir.keep = result.is_err();
    let (m, anomalies) = result.with_context(|| match &log_path {
        Some(p) => format!("run {run} failed (device log kept in {})", p.display()),
        None => format!("run {run} failed"),
    })?;
    let log = log_path
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let lines: Vec<&str> = log.trim_end().lines().collect();
    if !lines.is_empty() {
        // FRR without zebra logs an error per next-hop registration: show the tail only.
        let shown = &lines[lines.len().saturating_sub(10)..];
        eprintln!(
            "{label} device log ({} lines, last {}):\n{}",
            lines.len(),
            shown.len(),
            shown.join("\n")
        );
    }
    let r = RunResult {
        run,
        device: device_name,
        plan,
        calibrate: false,
        wall_s: m.wall_s,
        converged_s: m.converged_s,
        inject_s: m.inject_s,
        cpu_s: m.cpu_s,
        cpu_total_s: m.cpu_total_s,
        peak_rss_kib: m.peak_rss_kib,
        bench_cpu_s: m.bench_cpu_s,
        messages,
        bytes,
        anomalies,
        command,
    };
    eprintln!(
        "{label} done: {:.3} s to the last prefix at the slowest monitor ({} prefixes/s), converged {:.3} s",
        r.wall_s,
        thousands(r.prefixes_per_s().round() as u64),
        r.converged_s
    );
    Ok(r)
}

async fn calibrate_once(a: &RrFaninArgs, plan: Plan, run: u32) -> anyhow::Result<RunResult> {
    let label = format!("[calibration {run}/{}]", a.runs);
    let (chunks, messages, bytes) = encode_all(&plan, &label);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let listen = listener.local_addr()?;
    let mut s = Sessions::new();
    let k = plan.injectors as usize;
    for _ in 0..k {
        s.add(Role::Injector, 0);
    }
    for _ in 0..k {
        s.add(Role::Sink, u64::from(plan.prefixes));
    }
    let connect_deadline = Instant::now() + Duration::from_secs(10);
    let mut setup = JoinSet::new();
    for i in 0..plan.injectors {
        let me = Identity {
            name: "injector",
            index: i,
            router_id: plan.injector_id(i),
            hold_time: plan.hold_time,
        };
        let local = plan.injector_addr(i);
        setup.spawn(async move {
            let mut st = peer::connect_from(local, listen, connect_deadline).await?;
            let mut buf = BytesMut::with_capacity(256 * 1024);
            peer::handshake(&mut st, &me, &mut buf).await?;
            anyhow::Ok((i as usize, st, buf, false))
        });
    }
    for j in 0..plan.injectors {
        let (mut st, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .context("injectors did not connect to the sink")??;
        st.set_nodelay(true)?;
        let me = Identity {
            name: "sink",
            index: j,
            router_id: Ipv4Addr::new(198, 18, 3, 1 + j as u8),
            hold_time: plan.hold_time,
        };
        setup.spawn(async move {
            let mut buf = BytesMut::with_capacity(256 * 1024);
            peer::handshake(&mut st, &me, &mut buf).await?;
            // Like the device: End-of-RIB once Established, which readies the injector.
            st.write_all(&crate::wire::end_of_rib(crate::wire::Family::IPV4_UNICAST))
                .await?;
            anyhow::Ok((k + j as usize, st, buf, true))
        });
    }
    let mut chunks: Vec<Option<Vec<Bytes>>> = chunks.into_iter().map(Some).collect();
    while let Some(r) = setup.join_next().await {
        let (id, st, buf, sink) = r.context("session setup task")??;
        if sink {
            let me = Identity {
                name: "sink",
                index: (id - k) as u32,
                router_id: DEVICE_ID,
                hold_time: plan.hold_time,
            };
            let counter = Box::new(PrefixCounter::new(plan, Expect::Direct));
            let expect = u64::from(plan.prefixes);
            s.spawn_io(
                id,
                me,
                st,
                buf,
                Receive::Count { counter, expect },
                ReadyOn::Now,
                None,
                Vec::new(),
            );
            let _ = s.ev_tx.send(Event::Ready(id));
        } else {
            let me = Identity {
                name: "injector",
                index: id as u32,
                router_id: plan.injector_id(id as u32),
                hold_time: plan.hold_time,
            };
            let ch = chunks[id].take().unwrap_or_default();
            let receive = Receive::Drain { expect: 0, plan };
            s.spawn_io(id, me, st, buf, receive, ReadyOn::EndOfRib, None, ch);
        }
    }
    let mut none = None;
    s.wait_ready(&mut none).await?;
    let m = s
        .measure(&mut none, Duration::from_secs(a.timeout), &label)
        .await?;
    let anomalies = s.anomalies();
    drop(s);
    let r = RunResult {
        run,
        device: "calibration".into(),
        plan,
        calibrate: true,
        wall_s: m.wall_s,
        converged_s: m.converged_s,
        inject_s: m.inject_s,
        cpu_s: None,
        cpu_total_s: None,
        peak_rss_kib: None,
        bench_cpu_s: m.bench_cpu_s,
        messages,
        bytes,
        anomalies,
        command: String::new(),
    };
    eprintln!(
        "{label} done: {:.3} s for {} prefixes injected, decoded and counted ({} prefixes/s)",
        r.wall_s,
        thousands(u64::from(plan.total())),
        thousands(r.prefixes_per_s().round() as u64)
    );
    Ok(r)
}
