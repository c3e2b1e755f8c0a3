//! Capped exponential backoff with jitter, for reconnecting to etcd.
//!
//! Attempt `n` (from 0) waits a delay drawn uniformly from `[d/2, d]` where
//! `d = min(max, min · 2ⁿ)` ("equal jitter"): it never waits less than half the nominal delay,
//! and many clients that lost the same etcd member do not come back in lockstep. Pure: the
//! randomness is passed in, so the schedule is testable.

use std::time::Duration;

/// Reconnect delays: `min`, doubling per failed attempt, capped at `max`, with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Nominal delay of the next attempt.
    next: Duration,
}

impl Backoff {
    /// The syncer's default first delay.
    pub const DEFAULT_MIN: Duration = Duration::from_millis(100);
    /// The syncer's default cap.
    pub const DEFAULT_MAX: Duration = Duration::from_secs(5);

    /// A schedule starting at `min` (at least 1 ms) and capped at `max` (at least `min`).
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next attempt, given a uniform random `unit` in `[0, 1]`
    /// (clamped), and doubles the nominal delay for the attempt after.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let nominal = self.next;
        self.next = nominal.saturating_mul(2).min(self.max);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        nominal / 2 + (nominal / 2).mul_f64(unit)
    }

    /// [`next_delay`](Self::next_delay) with a random jitter.
    pub fn next_jittered(&mut self) -> Duration {
        self.next_delay(fastrand::f64())
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff::new(Self::DEFAULT_MIN, Self::DEFAULT_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::default();
        let nominal: Vec<u64> = (0..9)
            .map(|_| b.next_delay(1.0).as_millis() as u64)
            .collect();
        assert_eq!(nominal, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(1.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_half_and_full_delay() {
        let mut b = Backoff::default();
        assert_eq!(b.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(b.next_delay(0.5), Duration::from_millis(150));
        assert_eq!(b.next_delay(f64::NAN), Duration::from_millis(200));
        assert_eq!(b.next_delay(7.0), Duration::from_millis(800));
        for _ in 0..100 {
            let d = b.next_jittered();
            assert!(
                d >= Duration::from_millis(800) && d <= Duration::from_secs(5),
                "{d:?}"
            );
        }
    }
}
