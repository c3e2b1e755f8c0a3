//! Liveness and readiness with calico/node's BIRD semantics (calico-bgp.md §5.3,
//! projectcalico/calico node/pkg/health/health.go), shared by the two ways of asking:
//! `podbgp health --live|--ready` (the CLI, over the gRPC API) and the daemon's HTTP probes
//! `/livez` and `/readyz` ([`crate::metrics`]).
//!
//! * **live**: the daemon answers a speaker query within [`PROBE_TIMEOUT`] (calico: `birdcl
//!   show status` answers).
//! * **ready**, per address family (calico runs the check for `bird` and `bird6` separately;
//!   here IPv4 and IPv6 peers are the two families):
//!   - no peers in the family → ready;
//!   - the daemon is younger than the threshold (default 30 s; calico measures the agent's
//!     start time) → ready only if **all** peers of the family are Established;
//!   - afterwards → ready if **at least one** peer of the family is Established.
//!
//!   The failure text mirrors calico's: `podbgp is not ready: BGP not established with
//!   10.0.0.2,10.0.0.3`.
//!
//! Not replicated: calico's extra "graceful restart in progress" check in the startup window
//! (the speaker view does not expose GR recovery yet).

use std::time::Duration;

/// Readiness grace period after start (calico's `--threshold-time` default).
pub const DEFAULT_READY_THRESHOLD: Duration = Duration::from_secs(30);

/// How long a probe waits for the daemon.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// One peer as the readiness rule sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerHealth {
    pub address: String,
    pub established: bool,
}

/// The readiness verdict: `Ok(reason)` when ready, `Err(reason)` when not. Reasons are
/// complete one-line messages.
pub fn readiness(
    uptime: Duration,
    threshold: Duration,
    peers: &[PeerHealth],
) -> Result<String, String> {
    if peers.is_empty() {
        return Ok("podbgp is ready: no BGP peers".to_string());
    }
    let starting = uptime < threshold;
    let mut not_established: Vec<&str> = Vec::new();
    let mut failed = false;
    for v6 in [false, true] {
        let family: Vec<&PeerHealth> = peers
            .iter()
            .filter(|p| p.address.contains(':') == v6)
            .collect();
        if family.is_empty() {
            continue;
        }
        let down: Vec<&str> = family
            .iter()
            .filter(|p| !p.established)
            .map(|p| p.address.as_str())
            .collect();
        let family_ready = if starting {
            down.is_empty()
        } else {
            down.len() < family.len()
        };
        if !family_ready {
            failed = true;
            not_established.extend(down);
        }
    }
    if failed {
        Err(format!(
            "podbgp is not ready: BGP not established with {}",
            not_established.join(",")
        ))
    } else {
        let up = peers.iter().filter(|p| p.established).count();
        Ok(format!(
            "podbgp is ready: {up} of {} BGP peers established",
            peers.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(address: &str, established: bool) -> PeerHealth {
        PeerHealth {
            address: address.into(),
            established,
        }
    }

    const T: Duration = DEFAULT_READY_THRESHOLD;
    const EARLY: Duration = Duration::from_secs(10);
    const LATE: Duration = Duration::from_secs(60);

    #[test]
    fn no_peers_is_ready() {
        assert_eq!(
            readiness(EARLY, T, &[]),
            Ok("podbgp is ready: no BGP peers".into())
        );
    }

    #[test]
    fn startup_needs_all_established() {
        let peers = [
            p("10.0.0.2", true),
            p("10.0.0.3", false),
            p("10.0.0.4", false),
        ];
        assert_eq!(
            readiness(EARLY, T, &peers),
            Err("podbgp is not ready: BGP not established with 10.0.0.3,10.0.0.4".into())
        );
        let all = [p("10.0.0.2", true), p("10.0.0.3", true)];
        assert_eq!(
            readiness(EARLY, T, &all),
            Ok("podbgp is ready: 2 of 2 BGP peers established".into())
        );
    }

    #[test]
    fn afterwards_one_established_is_enough() {
        let peers = [p("10.0.0.2", true), p("10.0.0.3", false)];
        assert!(readiness(LATE, T, &peers).is_ok());
        let none = [p("10.0.0.2", false), p("10.0.0.3", false)];
        assert_eq!(
            readiness(LATE, T, &none),
            Err("podbgp is not ready: BGP not established with 10.0.0.2,10.0.0.3".into())
        );
    }

    #[test]
    fn families_are_judged_separately() {
        let peers = [
            p("10.0.0.2", true),
            p("fd00::2", false),
            p("fd00::3", false),
        ];
        assert_eq!(
            readiness(LATE, T, &peers),
            Err("podbgp is not ready: BGP not established with fd00::2,fd00::3".into())
        );
        let peers = [p("10.0.0.2", true), p("fd00::2", true), p("fd00::3", false)];
        assert!(readiness(LATE, T, &peers).is_ok());
    }
}
