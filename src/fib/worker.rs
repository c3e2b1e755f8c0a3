//! The FIB writer thread: the one place kernel routes are written from in the daemon.
//!
//! Netlink calls block (a batch of 8,192 routes takes tens of milliseconds), so they run on a
//! thread of their own, never on the event loop. The thread owns the [`Fib`]; the driver sends
//! it one [`Command`] at a time (a table read, or a batch from the
//! [`FibManager`](super::FibManager)) and gets one [`Report`] back for each, plus
//! [`Report::Events`] whenever the kernel reports changes made by someone else; it looks for
//! those after every batch and at least every [`POLL`] when idle, which bounds how long a
//! route deleted by hand stays missing.
//!
//! The thread is created in the calling thread's network namespace (netlink sockets are bound
//! to the namespace they were opened in).

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::mpsc;
use tracing::{error, warn};

use super::{Fib, FibError, FibOp, KernelEvent, KernelTable};

/// How often an idle writer looks for kernel events.
pub const POLL: Duration = Duration::from_millis(200);
/// Wait between attempts at reading the table when it fails.
const LOAD_RETRY: Duration = Duration::from_secs(1);

/// What the driver asks of the writer.
#[derive(Debug)]
pub enum Command {
    /// Read the table (answered with [`Report::Loaded`]); retried until it works.
    Load,
    /// Apply a batch (answered with [`Report::Applied`]).
    Apply(Vec<FibOp>),
}

/// What the writer tells the driver.
#[derive(Debug)]
pub enum Report {
    Loaded(KernelTable),
    /// The batch, given back, and the routes of it that failed.
    Applied {
        ops: Vec<FibOp>,
        errors: Vec<(IpNet, FibError)>,
    },
    /// Changes made by others; `Err` when events were lost (read the table again).
    Events(Result<Vec<KernelEvent>, FibError>),
    /// The FIB could not be opened; the writer has stopped.
    Failed(FibError),
}

/// Opens the FIB on the writer thread.
pub type Opener = Box<dyn FnOnce() -> Result<Box<dyn Fib + Send>, FibError> + Send>;

/// A running writer thread. Dropping it stops the thread after the command in progress.
#[derive(Debug)]
pub struct Worker {
    tx: Option<std_mpsc::Sender<Command>>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    /// Starts the thread; `open` runs on it, first.
    pub fn spawn(open: Opener, reports: mpsc::UnboundedSender<Report>) -> std::io::Result<Worker> {
        let (tx, rx) = std_mpsc::channel::<Command>();
        let thread = std::thread::Builder::new()
            .name("podbgp-fib".into())
            .spawn(move || run(open, rx, reports))?;
        Ok(Worker {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues a command; `false` when the thread has stopped.
    pub fn send(&self, cmd: Command) -> bool {
        self.tx.as_ref().is_some_and(|t| t.send(cmd).is_ok())
    }

    /// Stops the thread and waits for it (after the command in progress).
    pub fn stop(mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.tx.take();
    }
}

fn run(open: Opener, rx: std_mpsc::Receiver<Command>, reports: mpsc::UnboundedSender<Report>) {
    let mut fib = match open() {
        Ok(f) => f,
        Err(e) => {
            error!(error = %e, "cannot open the kernel routing table; routes will not be installed");
            let _ = reports.send(Report::Failed(e));
            return;
        }
    };
    let mut load_failed = false;
    loop {
        let report = match rx.recv_timeout(POLL) {
            Ok(Command::Load) => loop {
                match fib.dump_table() {
                    Ok(t) => break Report::Loaded(t),
                    Err(e) => {
                        if !load_failed {
                            warn!(error = %e, "cannot read the kernel routing table; retrying");
                        }
                        load_failed = true;
                        std::thread::sleep(LOAD_RETRY);
                    }
                }
            },
            Ok(Command::Apply(ops)) => {
                let errors = fib.apply(&ops);
                Report::Applied { ops, errors }
            }
            Err(std_mpsc::RecvTimeoutError::Timeout) => match fib.poll_events() {
                Ok(ev) if ev.is_empty() => continue,
                r => Report::Events(r),
            },
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let applied = matches!(report, Report::Applied { .. });
        if reports.send(report).is_err() {
            return;
        }
        // Changes made by others while the batch ran.
        if applied {
            match fib.poll_events() {
                Ok(ev) if ev.is_empty() => {}
                r => {
                    if reports.send(Report::Events(r)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}
