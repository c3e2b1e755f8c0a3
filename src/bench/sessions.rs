//! The client sessions of one run: their roles, counters and tasks, the wait until every one
//! is ready, and the measurement of the initial load (the clock of rr-fanin, and the first
//! phase of churn and memory).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::dut::{self, Device, ProcSample};
use super::peer::{self, Event, Identity, ReadyOn, Receive, SessionId, Stats};
use super::report::thousands;

/// Who a session is in the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Injector,
    /// Counts what the device sends (headline).
    Monitor,
    /// Calibration: counts what one injector sends (headline).
    Sink,
}

/// What [`Sessions::spawn_io`] needs for one established session.
pub struct Io {
    pub me: Identity,
    pub stream: tokio::net::TcpStream,
    /// Bytes already read after the handshake.
    pub buf: BytesMut,
    pub receive: Receive,
    pub ready_on: ReadyOn,
    /// Written at once (before the start signal).
    pub probe: Option<Bytes>,
    /// Written after the start signal.
    pub chunks: Vec<Bytes>,
    /// Written as they come, after the chunks, each reported with [`Event::Sent`].
    pub later: Option<mpsc::UnboundedReceiver<Bytes>>,
}

/// The sessions of a run and what the measurement waits for.
pub struct Sessions {
    pub roles: Vec<Role>,
    pub stats: Vec<Arc<Stats>>,
    /// Prefixes each session must receive (0: nothing to wait for).
    pub expect: Vec<u64>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub ev_tx: mpsc::UnboundedSender<Event>,
    start: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// The initial load, as [`Sessions::measure`] saw it.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Clock start to the last expected prefix at the slowest monitor (sink).
    pub wall_s: f64,
    /// Clock start to every session holding everything (injectors included).
    pub converged_s: f64,
    /// Clock start to the last injector having written its last chunk.
    pub inject_s: f64,
    /// Device CPU from clock start to the headline.
    pub cpu_s: Option<f64>,
    /// Device CPU from its start to convergence.
    pub cpu_total_s: Option<f64>,
    pub peak_rss_kib: Option<u64>,
    /// CPU of this benchmark process over the measured interval.
    pub bench_cpu_s: f64,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new()
    }
}

impl Sessions {
    pub fn new() -> Self {
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

    pub fn add(&mut self, role: Role, expect: u64) -> (SessionId, Arc<Stats>) {
        let st = Arc::new(Stats::default());
        self.roles.push(role);
        self.stats.push(st.clone());
        self.expect.push(expect);
        (self.roles.len() - 1, st)
    }

    pub fn sum(&self, role: Role, f: impl Fn(&Stats) -> u64) -> u64 {
        self.roles
            .iter()
            .zip(&self.stats)
            .filter(|(r, _)| **r == role)
            .map(|(_, s)| f(s))
            .sum()
    }

    pub fn min_rx(&self, role: Role) -> u64 {
        self.roles
            .iter()
            .zip(&self.stats)
            .filter(|(r, _)| **r == role)
            .map(|(_, s)| s.rx_prefixes.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    /// Spawns the reader and writer tasks of an established session.
    pub fn spawn_io(&mut self, id: SessionId, io: Io) {
        let (rd, wr) = io.stream.into_split();
        let st = self.stats[id].clone();
        self.tasks.spawn(peer::read_loop(
            id,
            io.me,
            rd,
            io.buf,
            io.receive,
            io.ready_on,
            st.clone(),
            self.ev_tx.clone(),
        ));
        self.tasks.spawn(peer::write_loop(
            id,
            io.me,
            wr,
            peer::Writes {
                probe: io.probe,
                chunks: io.chunks,
                later: io.later,
            },
            self.start.subscribe(),
            st,
            self.ev_tx.clone(),
        ));
    }

    /// Releases the writers' chunks.
    pub fn start(&self) {
        let _ = self.start.send(true);
    }

    /// Waits until every session reported Ready, for at most `limit`.
    pub async fn wait_ready(
        &mut self,
        dev: &mut Option<Device>,
        limit: Duration,
    ) -> anyhow::Result<()> {
        let mut ready = vec![false; self.roles.len()];
        let deadline = tokio::time::Instant::now() + limit;
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
                    "{} of {} sessions not ready after {} s",
                    ready.iter().filter(|r| !**r).count(),
                    ready.len(),
                    limit.as_secs()
                ),
            }
        }
        Ok(())
    }

    /// Starts the clock, releases the injectors, and waits until every session has what it
    /// expects and every injector has written everything.
    pub async fn measure(
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
        self.start();
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
                    Some(Event::Failed(m)) => bail!("{m}"),
                    Some(_) => {}
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

    pub fn progress(&self, t0: Instant, dev: Option<&Device>) -> String {
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

    /// Total of the monitors' (sinks') anomaly counters: spurious withdrawals, unexpected,
    /// wrong-attribute and duplicate prefixes; each non-zero one is printed on stderr.
    /// Waits `d`, failing if a session does.
    pub async fn idle(&mut self, d: Duration) -> anyhow::Result<()> {
        let end = tokio::time::sleep(d);
        tokio::pin!(end);
        loop {
            tokio::select! {
                ev = self.events.recv() => match ev {
                    Some(Event::Failed(m)) => bail!("{m}"),
                    Some(_) => {}
                    None => bail!("every session task ended"),
                },
                _ = &mut end => return Ok(()),
            }
        }
    }

    pub fn anomalies(&self) -> u64 {
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
