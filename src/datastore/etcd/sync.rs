//! The list-then-watch loop: keeps a consumer's copy of every key under one prefix (for
//! Calico: `/calico/`, filtered by the consumer) in step with etcd, across disconnections
//! and compactions, and never gives up while it runs.
//!
//! ```text
//!            ┌──────────── compacted ─────────────┐
//!            ▼                                    │
//! connect ─► list ─► Snapshot ─► watch(rev+1) ─► Changes …
//!   ▲                                             │ error / etcd gone
//!   └── backoff ◄── Disconnected (once per outage) ◄┘
//!   then: resume position still in history? ─► watch(last+1) ─► Resumed ─► Changes …
//!                                      no  ─► list ─► Snapshot ─► …
//! ```
//!
//! # What the consumer receives ([`SyncEvent`], over a bounded channel)
//!
//! * **[`SyncEvent::Snapshot`]** `{ kvs, revision }`: every key under the prefix at
//!   `revision`, in key order. It is the whole truth: the consumer replaces its copy, i.e.
//!   deletes every key it holds that is not in `kvs` (a Snapshot after the first one follows a
//!   compaction, and keys may have disappeared without a delete event ever being delivered).
//!   The first event of a syncer that could connect is always a Snapshot.
//! * **[`SyncEvent::Changes`]**: the changes of one etcd watch response (one or more whole
//!   revisions; a transaction is never split), in revision order. Every change has a
//!   `mod_revision` greater than the preceding Snapshot's `revision` and than every earlier
//!   change's: no gaps, no duplicates, no reordering within a Snapshot epoch.
//! * **[`SyncEvent::Disconnected`]** `{ reason }`: the first failure of an outage (etcd
//!   unreachable, connection lost, watch broken). The consumer's copy is now possibly stale;
//!   keep using it. Further failures of the same outage are only logged. The syncer retries
//!   with capped exponential backoff ([`Backoff`], 100 ms doubling to 5 s, jittered).
//! * **[`SyncEvent::Resumed`]** `{ revision }`: the outage is over and the watch continues
//!   from `revision + 1`, the last revision the consumer has seen, so the copy stays valid.
//!   If that revision was compacted meanwhile, the syncer lists again and sends a Snapshot
//!   instead. After a Disconnected, the next event is a Resumed or a Snapshot (unless the
//!   rare race described below sends a Resumed then a Snapshot).
//!
//! The resume check reads the prefix at the resume revision; a compaction that lands
//! between that check and the watch creation is still caught (etcd cancels the watcher
//! with the compaction revision) and handled by a re-list, so the only cost of the race is
//! a Resumed immediately followed by a Snapshot.
//!
//! # Lifetime
//!
//! [`Syncer::run`] returns only when its [`CancellationToken`] is cancelled or the event
//! receiver is dropped; both are noticed while waiting for etcd, for backoff and for channel
//! space. While the consumer does not read, the syncer stops reading the watch (the channel
//! is bounded), and etcd buffers or eventually compacts: a slow consumer gets a Snapshot
//! rather than unbounded memory use.
//!
//! # Choices
//!
//! * One prefix, one watcher: Calico's keys all live under `/calico/`, and one watch keeps
//!   a single revision order across resource kinds. Consumers filter keys themselves.
//! * No progress notifications (see [`EtcdClient::watch_prefix`]): the resume revision is
//!   the last change delivered or the Snapshot revision. After a long idle period during
//!   which etcd compacted, resuming therefore costs a re-list, never a lost change.

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::backoff::Backoff;
use super::client::{Change, EtcdClient, Kv, WatchUpdate};
use super::config::EtcdConfig;
use super::error::EtcdError;

/// What a [`Syncer`] tells its consumer; see the module documentation for the guarantees.
#[derive(Debug)]
pub enum SyncEvent {
    /// Every key under the prefix at `revision`, in key order: replace the whole copy.
    Snapshot { kvs: Vec<Kv>, revision: i64 },
    /// Changes after the previous event, in revision order.
    Changes(Vec<Change>),
    /// The first failure of an outage; the syncer keeps retrying.
    Disconnected { reason: EtcdError },
    /// The outage is over; watching continues after `revision` with nothing missed.
    Resumed { revision: i64 },
}

/// The list-then-watch loop over one key prefix.
#[derive(Debug, Clone)]
pub struct Syncer {
    config: EtcdConfig,
    prefix: Vec<u8>,
    backoff: Backoff,
    capacity: usize,
}

/// A spawned [`Syncer`]: its events, and its task (which ends on cancellation or when
/// `events` is dropped).
#[derive(Debug)]
pub struct SyncHandle {
    pub events: mpsc::Receiver<SyncEvent>,
    pub task: JoinHandle<()>,
}

/// How one connection's session ended.
enum End {
    /// The consumer is gone.
    Stop,
    /// Reconnect after a backoff.
    Failed(EtcdError),
}

/// What survives from one connection to the next.
struct Position {
    /// The revision the consumer's copy is at (Snapshot revision or last change), if any.
    last: Option<i64>,
    /// Inside an outage: Disconnected was sent, Resumed or Snapshot not yet.
    outage: bool,
    backoff: Backoff,
}

impl Syncer {
    /// Default capacity of the event channel.
    pub const DEFAULT_CAPACITY: usize = 64;

    /// A syncer for every key under `prefix`, with the default backoff (100 ms to 5 s) and
    /// channel capacity.
    pub fn new(config: EtcdConfig, prefix: impl Into<Vec<u8>>) -> Syncer {
        Syncer {
            config,
            prefix: prefix.into(),
            backoff: Backoff::default(),
            capacity: Self::DEFAULT_CAPACITY,
        }
    }

    /// Replaces the reconnect backoff schedule.
    pub fn backoff(mut self, backoff: Backoff) -> Syncer {
        self.backoff = backoff;
        self
    }

    /// Capacity of the channel [`spawn`](Self::spawn) creates (at least 1).
    pub fn channel_capacity(mut self, capacity: usize) -> Syncer {
        self.capacity = capacity.max(1);
        self
    }

    /// Runs the syncer on a new tokio task (call from inside a runtime).
    pub fn spawn(self, cancel: CancellationToken) -> SyncHandle {
        let (tx, events) = mpsc::channel(self.capacity);
        let task = tokio::spawn(self.run(tx, cancel));
        SyncHandle { events, task }
    }

    /// Runs until `cancel` is cancelled or `events`' receiver is dropped.
    pub async fn run(self, events: mpsc::Sender<SyncEvent>, cancel: CancellationToken) {
        let prefix = String::from_utf8_lossy(&self.prefix).into_owned();
        let mut pos = Position {
            last: None,
            outage: false,
            backoff: self.backoff.clone(),
        };
        loop {
            let end = tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = events.closed() => return,
                end = self.session(&mut pos, &events) => end,
            };
            let reason = match end {
                End::Stop => return,
                End::Failed(reason) => reason,
            };
            let delay = pos.backoff.next_jittered();
            if pos.outage {
                tracing::debug!(%prefix, error = %reason, ?delay, "etcd still unavailable");
            } else {
                tracing::warn!(%prefix, error = %reason, ?delay, "etcd sync interrupted");
                pos.outage = true;
                tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    sent = events.send(SyncEvent::Disconnected { reason }) => {
                        if sent.is_err() {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                _ = events.closed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection: connect, list or resume, then watch until something fails.
    async fn session(&self, pos: &mut Position, events: &mpsc::Sender<SyncEvent>) -> End {
        let client = match EtcdClient::connect(&self.config).await {
            Ok(client) => client,
            Err(e) => return End::Failed(e),
        };
        tracing::debug!(endpoint = client.endpoint(), "connected to etcd");
        // Lists that failed because etcd compacted their revision between pages.
        let mut compacted_lists = 0;
        loop {
            let start = match pos.last {
                Some(last) => match client.count_prefix(&self.prefix, Some(last)).await {
                    Ok(_) => last + 1,
                    Err(e) if e.needs_relist() => {
                        tracing::info!(
                            revision = last,
                            "etcd compacted the resume revision; listing again"
                        );
                        pos.last = None;
                        continue;
                    }
                    Err(e) => return End::Failed(e),
                },
                None => match client.range_prefix(&self.prefix).await {
                    Ok((kvs, revision)) => {
                        tracing::debug!(keys = kvs.len(), revision, "etcd snapshot");
                        compacted_lists = 0;
                        pos.last = Some(revision);
                        pos.outage = false;
                        pos.backoff.reset();
                        if events
                            .send(SyncEvent::Snapshot { kvs, revision })
                            .await
                            .is_err()
                        {
                            return End::Stop;
                        }
                        revision + 1
                    }
                    Err(e) if e.needs_relist() && compacted_lists < 3 => {
                        compacted_lists += 1;
                        continue;
                    }
                    Err(e) => return End::Failed(e),
                },
            };
            let mut stream = match client.watch_prefix(&self.prefix, start).await {
                Ok(stream) => stream,
                Err(e) if e.needs_relist() => {
                    pos.last = None;
                    continue;
                }
                Err(e) => return End::Failed(e),
            };
            pos.backoff.reset();
            if pos.outage {
                pos.outage = false;
                tracing::info!(revision = start - 1, "etcd sync resumed");
                if events
                    .send(SyncEvent::Resumed {
                        revision: start - 1,
                    })
                    .await
                    .is_err()
                {
                    return End::Stop;
                }
            }
            while let Some(item) = stream.next().await {
                match item {
                    Ok(WatchUpdate::Changes(changes)) => {
                        if let Some(max) = changes.iter().map(Change::mod_revision).max() {
                            pos.last = Some(pos.last.map_or(max, |l| l.max(max)));
                        }
                        if events.send(SyncEvent::Changes(changes)).await.is_err() {
                            return End::Stop;
                        }
                    }
                    Ok(WatchUpdate::Compacted { compact_revision }) => {
                        tracing::info!(
                            compact_revision,
                            "etcd compacted past the watch position; listing again"
                        );
                        pos.last = None;
                    }
                    Err(e) => return End::Failed(e),
                }
            }
            // The stream ended after `Compacted`: list again on the same connection.
        }
    }
}
