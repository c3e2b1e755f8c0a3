//! `podbgp bench`: benchmarks of a BGP speaker end to end, and of the kernel route writer.
//!
//! Scenarios, each in its own file:
//! * **rr-fanin** ([`rr_fanin`]): the device reflects K injectors × P prefixes to M monitors;
//! * **churn** ([`churn`]): after that initial load, one injector withdraws and announces
//!   again a subset of its prefixes in waves; per-prefix propagation latency at the monitors;
//! * **mesh** ([`mesh`]): the device is one node of an iBGP full mesh with N simulated nodes
//!   announcing B /26 blocks each; time until the device's table holds them all;
//! * **memory** ([`memory`]): peak RSS per path after loading P paths, and RSS per idle peer
//!   with N idle sessions;
//! * **fib** ([`fib`]): podbgp's kernel route writer against `ip -batch`, installing and
//!   deleting N routes in a throw-away network namespace.
//!
//! The BGP scenarios share their parts: the device under test ([`dut`]: podbgp, BIRD 2, FRR's
//! bgpd or GoBGP from a configuration template, a child process stopped by PID), the address
//! plan and pre-encoded UPDATEs ([`plan`]), the benchmark's own minimal BGP clients ([`peer`])
//! and their bookkeeping ([`sessions`]), and the report ([`report`]: one JSON line per run
//! with the same leading keys in every scenario, then a table of the runs, medians per device
//! and podbgp's medians over the best other device's). `--device podbgp,bird,frr,gobgp`
//! measures several devices in one invocation, interleaved: run 1 of each, then run 2 of each,
//! …, a fresh device process every time.
//!
//! Every session is on loopback (127.0.0.0/8, one source address per client, the device on
//! 127.0.0.1): these scenarios measure a BGP speaker, not a kernel path, so they need no
//! network namespace. Only `fib` uses one (it writes kernel routes).

mod churn;
mod dut;
mod fib;
mod memory;
mod mesh;
mod peer;
mod plan;
mod report;
mod rr_fanin;
mod sessions;

use std::future::Future;
use std::path::PathBuf;

use anyhow::{Context, bail};

use dut::DeviceKind;

pub use fib::FibArgs;
pub use report::thousands;

/// `podbgp bench …`
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(clap::Subcommand, Debug)]
pub enum Scenario {
    /// Route reflector fan-in: K injecting clients × P prefixes, reflected to M monitors.
    RrFanin(rr_fanin::RrFaninArgs),
    /// Withdraw / announce-again waves after an rr-fanin load: propagation latency p50/p99.
    Churn(churn::ChurnArgs),
    /// The device as one node of an iBGP full mesh of N simulated nodes × B /26 blocks.
    Mesh(mesh::MeshArgs),
    /// Peak RSS per path (P paths loaded) and RSS per idle peer (N idle sessions).
    Memory(memory::MemoryArgs),
    /// Kernel routes: install then delete N routes with podbgp's netlink writer and with
    /// `ip -batch`, in a throw-away network namespace (root).
    Fib(FibArgs),
}

/// The options every device scenario shares.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
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
    /// Hold time of the device and the clients (0 or at least 3).
    #[arg(long, default_value_t = plan::HOLD_TIME, value_name = "SECONDS")]
    pub hold_time: u16,
    /// Give up on a run after this many seconds of measurement.
    #[arg(long, default_value_t = 900, value_name = "SECONDS")]
    pub timeout: u64,
}

impl DeviceArgs {
    /// Checks the options and finds every device's program (podbgp: `--device-bin` or this
    /// executable), so a missing one fails before the first run.
    fn resolve(&self) -> anyhow::Result<Vec<(DeviceKind, PathBuf)>> {
        anyhow::ensure!(self.runs >= 1, "--runs must be at least 1");
        anyhow::ensure!(
            self.hold_time == 0 || self.hold_time >= 3,
            "--hold-time must be 0 or at least 3"
        );
        anyhow::ensure!(
            !self.device.is_empty(),
            "--device needs at least one device"
        );
        let mut devices: Vec<(DeviceKind, PathBuf)> = Vec::new();
        for &kind in &self.device {
            if devices.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let program = match kind {
                DeviceKind::Podbgp => match &self.device_bin {
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
        Ok(devices)
    }
}

/// Makes the child of `cmd` get SIGKILL when the benchmark dies, so no device or tool
/// outlives it.
fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Runs a benchmark: the BGP scenarios on their own tokio runtime, fib on plain threads.
pub fn main(args: BenchArgs) -> anyhow::Result<()> {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")
    };
    // Devices are spawned from the future block_on polls, i.e. from this thread, which
    // outlives the run (see Device::spawn).
    match args.scenario {
        Scenario::RrFanin(a) => rt()?.block_on(rr_fanin::main(a)),
        Scenario::Churn(a) => rt()?.block_on(churn::main(a)),
        Scenario::Mesh(a) => rt()?.block_on(mesh::main(a)),
        Scenario::Memory(a) => rt()?.block_on(memory::main(a)),
        Scenario::Fib(a) => fib::main(a),
    }
}

/// Runs `one` for every run and device, interleaved, printing each record's JSON line as it
/// comes; with several devices a failed run is reported and the others go on. Returns the
/// records and the failures. Ctrl-C or SIGTERM ends the benchmark (dropping the running
/// future stops its device, aborts its sessions and removes its directory).
async fn interleave<F, Fut>(
    args: &DeviceArgs,
    devices: &[(DeviceKind, PathBuf)],
    mut one: F,
) -> anyhow::Result<(Vec<report::Record>, Vec<String>)>
where
    F: FnMut(DeviceKind, PathBuf, u32) -> Fut,
    Fut: Future<Output = anyhow::Result<report::Record>>,
{
    let mut records = Vec::new();
    let mut failed = Vec::new();
    // SIGTERM (a test harness's timeout, `kill`) ends the run as Ctrl-C does, so the devices
    // are stopped and the scratch directories removed.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot handle SIGTERM")?;
    for run in 1..=args.runs {
        for (kind, program) in devices {
            let r = tokio::select! {
                r = one(*kind, program.clone(), run) => r,
                _ = tokio::signal::ctrl_c() => bail!("interrupted"),
                _ = term.recv() => bail!("terminated"),
            };
            match r {
                Ok(r) => {
                    println!("{}", r.json());
                    records.push(r);
                }
                Err(e) if devices.len() > 1 => {
                    eprintln!("[run {run}/{} {}] FAILED: {e:#}", args.runs, kind.name());
                    failed.push(format!("run {run} {}: {e:#}", kind.name()));
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok((records, failed))
}

/// Prints the table unless `--json`, then fails if any run did.
fn conclude(
    args: &DeviceArgs,
    title: &str,
    records: &[report::Record],
    notes: &[String],
    failed: &[String],
) -> anyhow::Result<()> {
    if !args.json {
        report::print_table(title, records, notes);
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
