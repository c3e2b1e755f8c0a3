//! Polling with a deadline: the harness's only way to wait (FRR topotest `run_and_expect`).
//!
//! A check returns `Ok(value)` when the condition holds and `Err(why_not)` otherwise; the
//! last `why_not` is what a timeout reports, so make it specific ("r2: 198.18.0.1 is Active,
//! want Established" rather than "not ready").

use std::time::{Duration, Instant};

/// Interval between two checks.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Ok`, and returns that value.
///
/// `timeout` is measured from the call (the deadline is `now + timeout`); the check runs at
/// least once, and once more at the deadline. On timeout it panics with `what`, the elapsed
/// time, the number of attempts and the last error.
#[track_caller]
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let err = match check() {
            Ok(value) => return value,
            Err(err) => err,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!(
                "timed out after {:.1?} ({attempts} attempts) waiting for: {what}\nlast error: {err}",
                now - start
            );
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
}
