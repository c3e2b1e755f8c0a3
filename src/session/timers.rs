//! Session timers as data (RFC 4271 §10): a deadline per [`TimerKind`], no tasks, no callbacks.
//!
//! The driver sleeps until [`TimerTable::next`] and then feeds the expiry back as an input; the
//! session decides what each expiry means in its current state.

use std::time::{Duration, Instant};

/// The timers of one session. Per-connection timers (hold, keepalive) belong to the
/// connection that is currently driving the session; a colliding second connection only
/// has its own open-sent hold deadline (kept on the connection itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimerKind {
    /// ConnectRetryTimer: retry an outgoing connection (Connect/Active states).
    ConnectRetry,
    /// IdleHoldTimer (RFC 4271 §8.1.1 DampPeerOscillations): automatic restart from Idle.
    IdleHold,
}

const KINDS: usize = 2;

fn index(kind: TimerKind) -> usize {
    match kind {
        TimerKind::ConnectRetry => 0,
        TimerKind::IdleHold => 1,
    }
}

/// A deadline per timer kind.
#[derive(Clone, Debug, Default)]
pub struct TimerTable {
    deadlines: [Option<Instant>; KINDS],
}

impl TimerTable {
    pub fn set(&mut self, kind: TimerKind, at: Instant) {
        self.deadlines[index(kind)] = Some(at);
    }

    pub fn stop(&mut self, kind: TimerKind) {
        self.deadlines[index(kind)] = None;
    }

    pub fn get(&self, kind: TimerKind) -> Option<Instant> {
        self.deadlines[index(kind)]
    }

    /// True (and cleared) when `kind` is due at `now`.
    pub fn take_expired(&mut self, kind: TimerKind, now: Instant) -> bool {
        match self.deadlines[index(kind)] {
            Some(at) if at <= now => {
                self.deadlines[index(kind)] = None;
                true
            }
            _ => false,
        }
    }

    /// The earliest deadline of all running timers.
    pub fn next(&self) -> Option<Instant> {
        self.deadlines.iter().flatten().min().copied()
    }
}

/// Exponential backoff of the idle-hold time (RFC 4271 §8.1.1 DampPeerOscillations), like
/// BIRD's `error wait time min,max` that Calico sets to 5,60.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            current: min,
        }
    }

    /// The delay to use now; the next one doubles, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        d
    }

    /// Back to the minimum (the session was stable).
    pub fn reset(&mut self) {
        self.current = self.min;
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}
