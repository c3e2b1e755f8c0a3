//! Scenario **rr-fanin** (K × P → M): the device under test is a route reflector; K
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
//! [`connect`] (clients up, probes reflected) is shared with churn and memory.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::dut::{self, Device, DeviceKind, DeviceRun, Setup};
use super::peer::{self, Event, Identity, ReadyOn, Receive};
use super::plan::{self, DEVICE_ID, Expect, Plan, PrefixCounter};
use super::report::{Metric, Record, thousands};
use super::sessions::{Io, Measured, Role, Sessions};
use super::{DeviceArgs, conclude, interleave};

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
    /// No device: injectors send straight to an in-process counting sink.
    #[arg(long)]
    pub calibrate: bool,
    #[command(flatten)]
    pub dev: DeviceArgs,
}

/// Pre-encoded UPDATEs of every injector, with their message and byte counts.
pub type Encoded = (Vec<Vec<Bytes>>, usize, usize);

pub async fn main(a: RrFaninArgs) -> anyhow::Result<()> {
    anyhow::ensure!(a.monitors >= 1, "--monitors must be at least 1");
    let mut plan = Plan::new(a.injectors, a.prefixes, a.monitors)?;
    plan.hold_time = a.dev.hold_time;
    let (records, failed) = if a.calibrate {
        let mut records = Vec::new();
        for run in 1..=a.dev.runs {
            let r = calibrate_once(&a, plan, run).await?;
            println!("{}", r.json());
            records.push(r);
        }
        (records, Vec::new())
    } else {
        let devices = a.dev.resolve()?;
        let encoded = encode_all(&plan, "[setup]");
        interleave(&a.dev, &devices, |kind, program, run| {
            device_once(&a, plan, run, kind, program, encoded.clone())
        })
        .await?
    };
    let title = format!(
        "rr-fanin: {} injectors x {} prefixes (/{}) -> {} {}",
        plan.injectors,
        thousands(u64::from(plan.prefixes)),
        plan.prefix_len,
        if a.calibrate { 1 } else { plan.monitors },
        if a.calibrate {
            "in-process sink (calibration, no device)"
        } else {
            "monitors"
        }
    );
    let mut notes = Vec::new();
    if let Some(r) = records.first() {
        let field = |k: &str| {
            r.extra
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.clone())
        };
        notes.push(format!(
            "wall_s: release of the injectors -> last of {} prefixes at the slowest {}; \
             {} UPDATEs ({:.1} MB) injected",
            thousands(u64::from(plan.total())),
            if a.calibrate { "sink" } else { "monitor" },
            field("updates_injected").unwrap_or_default(),
            field("bytes_injected")
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0)
                / 1e6
        ));
    }
    let anomalies: u64 = records
        .iter()
        .flat_map(|r| r.extra.iter())
        .filter(|(k, _)| *k == "anomalies")
        .filter_map(|(_, v)| v.as_u64())
        .sum();
    if anomalies > 0 {
        notes.push(format!(
            "WARNING: {anomalies} withdrawn/unexpected/wrong-attribute/duplicate prefixes seen (see stderr)"
        ));
    }
    conclude(&a.dev, &title, &records, &notes, &failed)
}

/// Pre-encodes every injector's UPDATEs.
pub fn encode_all(plan: &Plan, label: &str) -> Encoded {
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

/// The record of an initial load (rr-fanin's, and the first phase of the others).
pub fn fanin_record(
    scenario: &'static str,
    run: u32,
    device: &str,
    plan: &Plan,
    m: &Measured,
    (messages, bytes): (usize, usize),
    anomalies: u64,
) -> Record {
    Record {
        scenario,
        device: device.to_string(),
        run,
        sizes: vec![
            ("injectors", u64::from(plan.injectors)),
            ("prefixes", u64::from(plan.prefixes)),
            ("monitors", u64::from(plan.monitors.max(1))),
        ],
        wall_s: m.wall_s,
        cpu_s: m.cpu_s,
        peak_rss_kib: m.peak_rss_kib,
        metrics: vec![
            Metric::lower("converged_s", Some(m.converged_s), 4),
            Metric::info("inject_s", Some(m.inject_s), 4),
            Metric::lower("cpu_total_s", m.cpu_total_s, 2),
            Metric::higher(
                "prefixes_per_s",
                Some(f64::from(plan.total()) / m.wall_s),
                0,
            ),
            Metric::info("bench_cpu_s", Some(m.bench_cpu_s), 2),
        ],
        extra: vec![
            ("prefix_len", plan.prefix_len.into()),
            ("updates_injected", messages.into()),
            ("bytes_injected", bytes.into()),
            ("anomalies", anomalies.into()),
        ],
        command: String::new(),
    }
}

/// How [`connect`] sets the clients up beyond rr-fanin's defaults.
#[derive(Default)]
pub struct ConnectOpts {
    /// Monitors also report withdrawals and announcements again ([`Event::Seen`]).
    pub observe: bool,
    /// Later writes of injector 1 (churn waves).
    pub later: Option<mpsc::UnboundedReceiver<Bytes>>,
}

/// Connects every injector and monitor of `plan` to the device at `listen` (retrying while it
/// starts), spawns their tasks with the injectors' `chunks`, and waits until every probe
/// route is reflected to every client.
pub async fn connect(
    plan: &Plan,
    listen: SocketAddr,
    dev: &mut Option<Device>,
    chunks: Vec<Vec<Bytes>>,
    mut opts: ConnectOpts,
) -> anyhow::Result<Sessions> {
    let plan = *plan;
    let mut s = Sessions::new();
    // Generous: FRR takes seconds to bring up 200 passive sessions.
    let connect_deadline = Instant::now() + Duration::from_secs(60);
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
        let mut counter = PrefixCounter::new(
            plan,
            Expect::Reflected {
                cluster_id: DEVICE_ID,
            },
        );
        if opts.observe {
            counter = counter.observe();
        }
        let receive = Receive::Count {
            counter: Box::new(counter),
            expect: total,
        };
        plans.push((me, receive, Vec::new()));
    }
    let mut setup = JoinSet::new();
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
    let streams = handshakes(setup, plans.len(), dev).await?;
    for (id, ((me, receive, ch), conn)) in plans.into_iter().zip(streams).enumerate() {
        let (stream, buf) = conn.context("missing session")?;
        // Ready once the other injectors' probes arrived; an injector's own probe reaching
        // the monitors shows its session is up.
        let (ready_on, probe) = match me.name {
            "injector" => (
                ReadyOn::Probes(plan.injectors - 1),
                Some(plan::encode_probe(&plan, me.index)),
            ),
            _ => (ReadyOn::Probes(plan.injectors), None),
        };
        let later = if me.name == "injector" && me.index == 0 {
            opts.later.take()
        } else {
            None
        };
        s.spawn_io(
            id,
            Io {
                me,
                stream,
                buf,
                receive,
                ready_on,
                probe,
                chunks: ch,
                later,
            },
        );
    }
    s.wait_ready(dev, Duration::from_secs(30)).await?;
    Ok(s)
}

/// Waits for every handshake task, checking the device is alive; the streams by session id.
pub async fn handshakes(
    mut setup: JoinSet<anyhow::Result<(usize, tokio::net::TcpStream, BytesMut)>>,
    n: usize,
    dev: &mut Option<Device>,
) -> anyhow::Result<Vec<Option<(tokio::net::TcpStream, BytesMut)>>> {
    let mut streams: Vec<Option<(tokio::net::TcpStream, BytesMut)>> =
        (0..n).map(|_| None).collect();
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
    Ok(streams)
}

async fn device_once(
    a: &RrFaninArgs,
    plan: Plan,
    run: u32,
    kind: DeviceKind,
    program: PathBuf,
    encoded: Encoded,
) -> anyhow::Result<Record> {
    let label = format!("[run {run}/{} {}]", a.dev.runs, kind.name());
    let (chunks, messages, bytes) = encoded;
    let listen = SocketAddr::from(([127, 0, 0, 1], dut::free_port()?));
    let spec = dut::spec(kind, program, &Setup::reflector("rr-fanin", listen, &plan))?;
    let t = Instant::now();
    let mut dr = DeviceRun::start(&spec, &format!("{run}-{}", kind.name()), label.clone())?;
    let result = async {
        let mut s = connect(&plan, listen, &mut dr.dev, chunks, ConnectOpts::default()).await?;
        eprintln!(
            "{label} {} sessions up (every probe route reflected to every client) {:.2} s after start; releasing the injectors",
            s.roles.len(),
            t.elapsed().as_secs_f64()
        );
        let m = s
            .measure(&mut dr.dev, Duration::from_secs(a.dev.timeout), &label)
            .await?;
        let anomalies = s.anomalies();
        drop(s); // aborts the session tasks before the device stops
        anyhow::Ok((m, anomalies))
    }
    .await;
    let name = dr.name.clone();
    let command = dr.command.clone();
    let (m, anomalies) = dr.finish(result)?;
    let mut r = fanin_record(
        "rr-fanin",
        run,
        &name,
        &plan,
        &m,
        (messages, bytes),
        anomalies,
    );
    r.command = command;
    eprintln!(
        "{label} done: {:.3} s to the last prefix at the slowest monitor ({} prefixes/s), converged {:.3} s",
        m.wall_s,
        thousands((f64::from(plan.total()) / m.wall_s).round() as u64),
        m.converged_s
    );
    Ok(r)
}

async fn calibrate_once(a: &RrFaninArgs, plan: Plan, run: u32) -> anyhow::Result<Record> {
    let label = format!("[calibration {run}/{}]", a.dev.runs);
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
        let (id, stream, buf, sink) = r.context("session setup task")??;
        let io = if sink {
            let me = Identity {
                name: "sink",
                index: (id - k) as u32,
                router_id: DEVICE_ID,
                hold_time: plan.hold_time,
            };
            let counter = Box::new(PrefixCounter::new(plan, Expect::Direct));
            let expect = u64::from(plan.prefixes);
            let _ = s.ev_tx.send(Event::Ready(id));
            Io {
                me,
                stream,
                buf,
                receive: Receive::Count { counter, expect },
                ready_on: ReadyOn::Now,
                probe: None,
                chunks: Vec::new(),
                later: None,
            }
        } else {
            let me = Identity {
                name: "injector",
                index: id as u32,
                router_id: plan.injector_id(id as u32),
                hold_time: plan.hold_time,
            };
            Io {
                me,
                stream,
                buf,
                receive: Receive::Drain { expect: 0, plan },
                ready_on: ReadyOn::EndOfRib,
                probe: None,
                chunks: chunks[id].take().unwrap_or_default(),
                later: None,
            }
        };
        s.spawn_io(id, io);
    }
    let mut none = None;
    s.wait_ready(&mut none, Duration::from_secs(30)).await?;
    let m = s
        .measure(&mut none, Duration::from_secs(a.dev.timeout), &label)
        .await?;
    let anomalies = s.anomalies();
    drop(s);
    let mut cal = plan;
    cal.monitors = 1;
    let r = fanin_record(
        "rr-fanin",
        run,
        "calibration",
        &cal,
        &m,
        (messages, bytes),
        anomalies,
    );
    eprintln!(
        "{label} done: {:.3} s for {} prefixes injected, decoded and counted ({} prefixes/s)",
        m.wall_s,
        thousands(u64::from(plan.total())),
        thousands((f64::from(plan.total()) / m.wall_s).round() as u64)
    );
    Ok(r)
}
