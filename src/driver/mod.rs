//! The driver: the only tokio code. It owns the sockets, the clock and the tasks, and runs
//! the [`Speaker`] in one event loop.
//!
//! ```text
//!  listener task ──Accepted──┐                        ┌──► writer task per conn (Bytes → socket)
//!  connect task ──Connected──┤                        │        └─ Sent{bytes} (flow credit) ─┐
//!  reader task per conn ─────┼──► core loop (Speaker) ─┤                                      │
//!     (frames with            │   handle / handle_timeout ──► Output::Event → broadcast (API) │
//!      wire::frame_len)       └──◄────────────────────────────────────────────────────────────┘
//!  API requests (mpsc + oneshot) ─► core loop: query/command (FIB queries: the FIB manager)
//! ```
//! Child tasks only send messages back to the loop; none of them touches speaker state.
//! Reader → loop uses a bounded channel (TCP backpressure); loop → writer is bounded in
//! practice by the speaker's send window (only KEEPALIVE/NOTIFICATION bypass it).

mod fib;
mod net;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rustc_hash::FxHashMap;
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info};

pub use crate::api::ApiRequest;
use crate::config::{ConfigDiff, SpeakerConfig};
use crate::rib::{AcceptAll, Policy};
use crate::session::ConnId;
use crate::speaker::{Input, Output, Speaker, SpeakerEvent};

pub use fib::FibSetup;
pub use net::listen_socket;

/// Errors that stop the driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Channels into a running driver.
#[derive(Clone, Debug)]
pub struct DriverHandle {
    pub api: mpsc::Sender<ApiRequest>,
    pub events: broadcast::Sender<SpeakerEvent>,
    shutdown: mpsc::Sender<()>,
    reload: mpsc::Sender<Reload>,
    policy: mpsc::Sender<SetPolicy>,
    fib: mpsc::Sender<fib::FibFacts>,
}

/// A policy to install, and where to confirm it is in place.
#[derive(Debug)]
struct SetPolicy {
    policy: Arc<dyn Policy>,
    reply: oneshot::Sender<()>,
}

/// A configuration to apply, and where to report what changed.
#[derive(Debug)]
struct Reload {
    cfg: SpeakerConfig,
    reply: oneshot::Sender<ConfigDiff>,
}

impl DriverHandle {
    /// Asks the driver to stop (sessions get Cease/Administrative Shutdown).
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(()).await;
    }

    /// Applies a new configuration live (`Speaker::apply_config`: only what changed is
    /// touched; unaffected sessions keep running) and returns the difference that was applied.
    /// `None` when the driver has stopped.
    pub async fn reload(&self, cfg: SpeakerConfig) -> Option<ConfigDiff> {
        let (reply, rx) = oneshot::channel();
        self.reload.send(Reload { cfg, reply }).await.ok()?;
        rx.await.ok()
    }

    /// Installs a new import/export policy live (`Speaker::set_policy`): every Established
    /// peer's advertisements are re-evaluated, only what the policy change affects is
    /// announced or withdrawn, and no session is reset. Returns once the policy is in place
    /// (UPDATEs follow); `false` when the driver has stopped.
    pub async fn set_policy(&self, policy: Arc<dyn Policy>) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.policy.send(SetPolicy { policy, reply }).await.is_err() {
            return false;
        }
        rx.await.is_ok()
    }

    /// New Calico facts for the kernel routes (pools and subnets, and the local blocks to
    /// blackhole): only the routes they change are rewritten. Ignored when the driver runs
    /// without a FIB.
    pub async fn set_fib_facts(
        &self,
        ctx: crate::fib::FibContext,
        blackholes: Vec<ipnet::IpNet>,
    ) -> bool {
        self.fib
            .send(fib::FibFacts { ctx, blackholes })
            .await
            .is_ok()
    }
}

/// Messages from child tasks to the loop.
#[derive(Debug)]
pub(crate) enum TaskMsg {
    Accepted {
        stream: tokio::net::TcpStream,
        remote: SocketAddr,
        local: SocketAddr,
    },
    Connected {
        conn: ConnId,
        stream: tokio::net::TcpStream,
    },
    ConnectFailed {
        conn: ConnId,
        reason: String,
    },
    Input(Input),
}

/// Builds the driver channels; `run` consumes the receivers.
pub struct Driver {
    cfg: SpeakerConfig,
    api_rx: mpsc::Receiver<ApiRequest>,
    shutdown_rx: mpsc::Receiver<()>,
    reload_rx: mpsc::Receiver<Reload>,
    policy_rx: mpsc::Receiver<SetPolicy>,
    /// The policy in place from the start (before any session can come up).
    initial_policy: Arc<dyn Policy>,
    events: broadcast::Sender<SpeakerEvent>,
    fib: Option<FibSetup>,
    fib_rx: mpsc::Receiver<fib::FibFacts>,
}

impl Driver {
    /// A driver with the accept-all policy ([`AcceptAll`]).
    pub fn new(cfg: SpeakerConfig) -> (Driver, DriverHandle) {
        Driver::with_policy(cfg, Arc::new(AcceptAll))
    }

    /// A driver whose speaker starts with `policy` in place, so no route is advertised under
    /// any other policy; change it later with [`DriverHandle::set_policy`].
    pub fn with_policy(cfg: SpeakerConfig, policy: Arc<dyn Policy>) -> (Driver, DriverHandle) {
        let (api_tx, api_rx) = mpsc::channel(64);
        let (shutdown_tx, shutdown_rx) = mpsc::channel(1);
        let (reload_tx, reload_rx) = mpsc::channel(4);
        let (policy_tx, policy_rx) = mpsc::channel(4);
        let (fib_tx, fib_rx) = mpsc::channel(4);
        let (events, _) = broadcast::channel(4096);
        let handle = DriverHandle {
            api: api_tx,
            events: events.clone(),
            shutdown: shutdown_tx,
            reload: reload_tx,
            policy: policy_tx,
            fib: fib_tx,
        };
        (
            Driver {
                cfg,
                api_rx,
                shutdown_rx,
                reload_rx,
                policy_rx,
                initial_policy: policy,
                events,
                fib: None,
                fib_rx,
            },
            handle,
        )
    }

    /// Installs best paths into the kernel (see [`FibSetup`]); without this the driver
    /// writes no kernel route.
    pub fn with_fib(mut self, setup: FibSetup) -> Driver {
        self.fib = Some(setup);
        self
    }

    /// Runs until shutdown. Binds the listener first so errors surface immediately.
    pub async fn run(mut self) -> Result<(), DriverError> {
        let (task_tx, mut task_rx) = mpsc::channel::<TaskMsg>(1024);
        let mut listener = match self.cfg.listen {
            Some((ip, port)) => {
                let addr = SocketAddr::new(ip, port);
                let l = net::Listener::bind(addr, &task_tx)
                    .map_err(|source| DriverError::Listen { addr, source })?;
                info!(%addr, "listening for BGP connections");
                Some(l)
            }
            None => None,
        };
        let mut speaker = Speaker::with_policy(
            self.cfg.clone(),
            self.initial_policy.clone(),
            Instant::now(),
        );
        let mut conns: FxHashMap<ConnId, net::ConnHandle> = FxHashMap::default();
        let next_accept = Arc::new(AtomicU64::new(1 << 63));
        let mut shutting_down = false;
        // Connections being flushed and closed; awaited (bounded) before returning.
        let mut closing: Vec<tokio::task::JoinHandle<()>> = Vec::new();
        let (fib_report_tx, mut fib_reports) = mpsc::unbounded_channel();
        let mut fib = match self.fib.take() {
            Some(setup) => fib::FibRun::start(setup, fib_report_tx, Instant::now()),
            None => None,
        };

        loop {
            let more = drain(
                &mut speaker,
                &mut conns,
                &mut closing,
                &task_tx,
                &self.events,
                fib.as_mut().map(|f| &mut f.mgr),
            );
            if shutting_down {
                break;
            }
            if let Some(f) = fib.as_mut() {
                let now = Instant::now();
                f.check_convergence(now, !more && speaker.initial_sync_done());
                f.pump(now);
            }
            let deadline = [
                speaker.poll_timeout(),
                fib.as_ref().and_then(|f| f.poll_timeout()),
            ]
            .into_iter()
            .flatten()
            .min();
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = task_rx.recv() => {
                    let Some(msg) = msg else { break };
                    handle_task(&mut speaker, &mut conns, &task_tx, &next_accept, msg);
                    // Batch whatever else is already queued before running the decision process.
                    for _ in 0..256 {
                        match task_rx.try_recv() {
                            Ok(m) => handle_task(&mut speaker, &mut conns, &task_tx, &next_accept, m),
                            Err(_) => break,
                        }
                    }
                    // Under constant input, timers (KEEPALIVEs) must still run.
                    if speaker.poll_timeout().is_some_and(|t| t <= Instant::now()) {
                        speaker.handle_timeout(Instant::now());
                    }
                }
                req = self.api_rx.recv() => {
                    if let Some(req) = req {
                        match req {
                            ApiRequest::Query { query, reply } => {
                                let fib = fib.as_ref().map(|f| &f.mgr);
                                let _ = reply.send(fib::answer(&speaker, fib, &query));
                            }
                            ApiRequest::Command { command, reply } => {
                                let _ = reply.send(speaker.command(Instant::now(), command));
                            }
                        }
                    }
                }
                _ = sleep => {
                    // Input that is already queued (say a KEEPALIVE that arrived while we were
                    // busy) goes first, so it can restart a hold timer before timers fire.
                    for _ in 0..1024 {
                        match task_rx.try_recv() {
                            Ok(m) => handle_task(&mut speaker, &mut conns, &task_tx, &next_accept, m),
                            Err(_) => break,
                        }
                    }
                    speaker.handle_timeout(Instant::now());
                }
                reload = self.reload_rx.recv() => {
                    if let Some(Reload { cfg, reply }) = reload {
                        let diff = speaker.apply_config(Instant::now(), cfg);
                        log_reload(&diff);
                        if diff.listen_changed() {
                            let want = speaker.config().listen.map(|(ip, port)| SocketAddr::new(ip, port));
                            net::rebind(&mut listener, want, &task_tx).await;
                        }
                        let _ = reply.send(diff);
                    }
                }
                Some(report) = fib_reports.recv(), if fib.is_some() => {
                    if let Some(f) = fib.as_mut()
                        && !f.on_report(Instant::now(), report)
                    {
                        fib = None;
                    }
                }
                Some(facts) = self.fib_rx.recv() => {
                    if let Some(f) = fib.as_mut() {
                        f.set_facts(facts);
                    }
                }
                set = self.policy_rx.recv() => {
                    if let Some(SetPolicy { policy, reply }) = set {
                        info!(?policy, "installing a new routing policy");
                        speaker.set_policy(policy);
                        let _ = reply.send(());
                    }
                }
                // More decision/UPDATE work is waiting: come back right after the events above.
                _ = std::future::ready(()), if more => {}
                _ = self.shutdown_rx.recv() => {
                    info!("shutting down: closing every session");
                    speaker.handle(Instant::now(), Input::Shutdown);
                    shutting_down = true;
                }
            }
        }
        if let Some(l) = listener.take() {
            l.close().await;
        }
        if let Some(f) = fib.take() {
            f.finish(&mut fib_reports).await;
        }
        // Let writers flush the NOTIFICATIONs, bounded in time.
        closing.extend(conns.into_values().map(|c| tokio::spawn(c.close())));
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(2),
            futures::future::join_all(closing),
        )
        .await;
        Ok(())
    }
}

/// One INFO line per reload: counts, and which peers.
fn log_reload(diff: &ConfigDiff) {
    let reset = if diff.resets_all() {
        "all".to_string()
    } else {
        diff.peers_reset().count().to_string()
    };
    info!(
        added = diff.peers_added.len(),
        removed = diff.peers_removed.len(),
        changed = diff.peers_changed.len(),
        reset = %reset,
        originate_added = diff.originate_added.len(),
        originate_removed = diff.originate_removed.len(),
        "configuration reloaded: {diff}"
    );
}

fn handle_task(
    speaker: &mut Speaker,
    conns: &mut FxHashMap<ConnId, net::ConnHandle>,
    task_tx: &mpsc::Sender<TaskMsg>,
    next_accept: &AtomicU64,
    msg: TaskMsg,
) {
    let now = Instant::now();
    match msg {
        TaskMsg::Accepted {
            stream,
            remote,
            local,
        } => {
            let conn = ConnId(next_accept.fetch_add(1, Ordering::Relaxed));
            conns.insert(conn, net::ConnHandle::spawn(conn, stream, task_tx.clone()));
            speaker.handle(
                now,
                Input::Accepted {
                    conn,
                    remote,
                    local,
                },
            );
        }
        TaskMsg::Connected { conn, stream } => {
            let local = stream.local_addr();
            match local {
                Ok(local) => {
                    conns.insert(conn, net::ConnHandle::spawn(conn, stream, task_tx.clone()));
                    speaker.handle(now, Input::Connected { conn, local });
                }
                Err(e) => speaker.handle(
                    now,
                    Input::ConnectFailed {
                        conn,
                        reason: e.to_string(),
                    },
                ),
            }
        }
        TaskMsg::ConnectFailed { conn, reason } => {
            speaker.handle(now, Input::ConnectFailed { conn, reason })
        }
        TaskMsg::Input(input) => {
            if let Input::Closed { conn } = &input {
                conns.remove(conn);
            }
            speaker.handle(now, input)
        }
    }
}

fn drain(
    speaker: &mut Speaker,
    conns: &mut FxHashMap<ConnId, net::ConnHandle>,
    closing: &mut Vec<tokio::task::JoinHandle<()>>,
    task_tx: &mpsc::Sender<TaskMsg>,
    events: &broadcast::Sender<SpeakerEvent>,
    mut fib: Option<&mut crate::fib::FibManager>,
) -> bool {
    // Bounded: after this many outputs, return to the event loop; `true` = more is waiting.
    let mut budget = 4096usize;
    while let Some(out) = speaker.poll_output() {
        budget -= 1;
        match out {
            Output::Connect { conn, remote, bind } => {
                debug!(%remote, ?bind, "connecting");
                tokio::spawn(net::connect(conn, remote, bind, task_tx.clone()));
            }
            Output::Send { conn, bytes } => match conns.get(&conn) {
                Some(c) => c.send(bytes),
                None => debug!(?conn, "send on a closed connection dropped"),
            },
            Output::Close { conn } => {
                if let Some(c) = conns.remove(&conn) {
                    closing.retain(|h| !h.is_finished());
                    closing.push(tokio::spawn(c.close()));
                }
            }
            Output::Event(ev) => {
                if let (
                    Some(f),
                    SpeakerEvent::BestPath {
                        prefix, next_hops, ..
                    },
                ) = (fib.as_deref_mut(), &ev)
                {
                    f.best_changed(*prefix, next_hops);
                }
                let _ = events.send(ev);
            }
        }
        if budget == 0 {
            return true;
        }
    }
    speaker.wants_flush()
}
