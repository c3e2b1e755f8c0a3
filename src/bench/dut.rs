//! The device under test: its configuration, its process, and what /proc says about it.
//!
//! Only podbgp is described today ([`podbgp_device`]); another speaker (bird, FRR bgpd,
//! gobgpd) is a [`DeviceSpec`] with its own command line and configuration text that makes
//! it listen on `listen`, passive toward every client, AS 64512, router id and cluster id
//! 198.18.0.1, every client an iBGP route-reflector client.

use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::plan::{ASN, DEVICE_ID, Plan};

/// How to start one device.
#[derive(Clone, Debug)]
pub struct DeviceSpec {
    /// Name in the report (`podbgp`).
    pub name: String,
    pub program: PathBuf,
    /// Arguments; `{config}` is replaced by the configuration file's path.
    pub args: Vec<String>,
    /// File name of the configuration inside the run directory.
    pub config_name: String,
    pub config: String,
}

/// podbgp as a route reflector: `podbgp run -c <yaml> --api-listen none --log warn`.
pub fn podbgp_device(program: PathBuf, listen: SocketAddr, plan: &Plan) -> DeviceSpec {
    let mut y = format!(
        "# podbgp bench rr-fanin: {k} injectors x {p} prefixes -> {m} monitors\n\
         local_as: {ASN}\nrouter_id: {DEVICE_ID}\ncluster_id: {DEVICE_ID}\n\
         listen: {{ address: \"{ip}\", port: {port} }}\nhold_time: {hold}\n\
         families: [ipv4-unicast]\nneighbors:\n",
        k = plan.injectors,
        p = plan.prefixes,
        m = plan.monitors,
        ip = listen.ip(),
        port = listen.port(),
        hold = plan.hold_time,
    );
    let clients = (0..plan.injectors)
        .map(|i| (plan.injector_addr(i), format!("injector-{}", i + 1)))
        .chain((0..plan.monitors).map(|j| (plan.monitor_addr(j), format!("monitor-{}", j + 1))));
    for (addr, desc) in clients {
        y.push_str(&format!(
            "  - {{ address: {addr}, remote_as: {ASN}, role: rr-client, passive: true, description: {desc} }}\n"
        ));
    }
    DeviceSpec {
        name: "podbgp".into(),
        program,
        args: [
            "run",
            "-c",
            "{config}",
            "--api-listen",
            "none",
            "--log",
            "warn",
        ]
        .map(String::from)
        .to_vec(),
        config_name: "podbgp.yaml".into(),
        config: y,
    }
}

/// CPU time and memory of a process, from /proc.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcSample {
    /// utime + stime, seconds (all threads).
    pub cpu_s: f64,
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS), KiB.
    pub hwm_kib: u64,
}

/// Reads /proc/`pid`/stat and /proc/`pid`/status (`pid` "self" for this process).
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_s: (utime + stime) as f64 / tck,
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
    })
}

/// A running device. Dropping it stops the process (SIGTERM, then SIGKILL), by PID.
#[derive(Debug)]
pub struct Device {
    child: Child,
    pub pid: u32,
    pub name: String,
    pub log: PathBuf,
    pub command: String,
}

impl Device {
    /// Writes the configuration into `dir` and starts the device with stdout and stderr in
    /// `dir/device.log`. Must be called from the thread that lives as long as the run (the
    /// child gets SIGKILL when that thread exits, so a killed benchmark leaves no device).
    pub fn spawn(spec: &DeviceSpec, dir: &Path) -> anyhow::Result<Device> {
        let cfg = dir.join(&spec.config_name);
        std::fs::write(&cfg, &spec.config)
            .with_context(|| format!("cannot write {}", cfg.display()))?;
        let log = dir.join("device.log");
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let cfg_s = cfg.display().to_string();
        let args: Vec<String> = spec
            .args
            .iter()
            .map(|a| a.replace("{config}", &cfg_s))
            .collect();
        let mut cmd = Command::new(&spec.program);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: Ctrl-C reaches only the benchmark, which stops the device.
            .process_group(0);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", spec.program.display()))?;
        let command = std::iter::once(spec.program.display().to_string())
            .chain(args)
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Device {
            pid: child.id(),
            child,
            name: spec.name.clone(),
            log,
            command,
        })
    }

    pub fn sample(&self) -> Option<ProcSample> {
        sample(&self.pid.to_string())
    }

    /// `Err` with the exit status and the log's tail if the device has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => anyhow::bail!(
                "device {} exited ({st}); last log lines:\n{}",
                self.name,
                self.log_tail(20)
            ),
            Err(e) => anyhow::bail!("device {}: {e}", self.name),
        }
    }

    /// The last `n` lines of the device's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, up to 2 s for a clean exit, then SIGKILL; idempotent.
    pub fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.pid as libc::pid_t;
        // SAFETY: kill has no memory preconditions; `pid` is our own unreaped child, so the
        // PID cannot have been reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
