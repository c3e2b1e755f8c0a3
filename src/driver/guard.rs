//! Who may connect, how often, and with which socket options: the driver's view of each
//! peer's transport settings ([`TransportTable`], rebuilt from the configuration on every
//! reload) and the accept-side bounds.
//!
//! An inbound connection is handed to the speaker only when all of these hold, in the accept
//! task, before any session state or per-connection task exists:
//! 1. the source address is a configured peer (RFC 4271 §8.2.1.1); others are closed at once;
//! 2. the peer's password is readable (a peer whose Secret is missing stays down);
//! 3. the source has not opened more than [`ACCEPT_BURST`] connections recently: each source
//!    gets a token bucket of [`ACCEPT_BURST`] refilled at one per [`ACCEPT_REFILL`]. A legitimate
//!    peer opens about one connection per connect-retry interval (seconds), so only a flood is
//!    cut off; the excess is closed at once.
//!
//! Log lines about refused connections are bounded too: one per source per [`LOG_EVERY`],
//! with a count of what was suppressed.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU8;
use std::time::{Duration, Instant};

use rustc_hash::FxHashMap;

use crate::config::{Md5Key, SpeakerConfig, TcpAuth, UnavailableKey};
use crate::speaker::canonical;

/// Connections a source may open back to back.
pub(super) const ACCEPT_BURST: u32 = 8;
/// One more connection allowed per this interval once the burst is used.
pub(super) const ACCEPT_REFILL: Duration = Duration::from_millis(250);
/// At most one log line per source per this interval.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(60);
/// Sources remembered by the log limiter (forgotten all at once beyond this).
const LOG_SOURCES: usize = 1024;

/// One peer's transport settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct PeerTransport {
    pub md5: Option<Md5Key>,
    /// The password cannot be read: no connection in either direction.
    pub unavailable: Option<UnavailableKey>,
    /// GTSM hop count.
    pub hops: Option<NonZeroU8>,
}

/// Transport settings by (canonical) peer address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct TransportTable {
    peers: BTreeMap<IpAddr, PeerTransport>,
}

impl TransportTable {
    pub(super) fn from_config(cfg: &SpeakerConfig) -> TransportTable {
        let mut peers = BTreeMap::new();
        for n in &cfg.neighbors {
            let (md5, unavailable) = match &n.auth {
                TcpAuth::None => (None, None),
                TcpAuth::Md5(k) => (Some(k.clone()), None),
                TcpAuth::Unavailable(u) => (None, Some(u.clone())),
            };
            // The first neighbour with an address wins, as in the speaker.
            peers.entry(canonical(n.address)).or_insert(PeerTransport {
                md5,
                unavailable,
                hops: n.ttl_security,
            });
        }
        TransportTable { peers }
    }

    pub(super) fn get(&self, ip: IpAddr) -> Option<&PeerTransport> {
        self.peers.get(&canonical(ip))
    }

    /// The MD5 key of every peer that has one.
    pub(super) fn md5_keys(&self) -> BTreeMap<IpAddr, Md5Key> {
        self.peers
            .iter()
            .filter_map(|(a, p)| p.md5.clone().map(|k| (*a, k)))
            .collect()
    }

    /// `(source, minimum TTL)` of every GTSM peer.
    pub(super) fn gtsm_rules(&self) -> Vec<(IpAddr, u8)> {
        self.peers
            .iter()
            .filter_map(|(a, p)| p.hops.map(|h| (*a, super::sockopt::min_ttl(h.get()))))
            .collect()
    }
}

/// Why an inbound connection was closed without reaching the speaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    UnknownPeer,
    KeyUnavailable(UnavailableKey),
    RateLimited,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::UnknownPeer => f.write_str("not a configured peer"),
            Refusal::KeyUnavailable(u) => write!(f, "{u}"),
            Refusal::RateLimited => write!(
                f,
                "too many connections from this address (more than {ACCEPT_BURST} at once, then one per {} ms)",
                ACCEPT_REFILL.as_millis()
            ),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: u32,
    /// When the last token was added (or the bucket started).
    at: Instant,
}

/// The accept-side decision: [`AcceptGuard::admit`] per connection.
#[derive(Debug, Default)]
pub(super) struct AcceptGuard {
    buckets: FxHashMap<IpAddr, Bucket>,
    logged: FxHashMap<IpAddr, (Instant, u64)>,
}

impl AcceptGuard {
    /// Whether a connection from `remote` may go on, and the peer's settings when it may.
    pub(super) fn admit<'t>(
        &mut self,
        table: &'t TransportTable,
        remote: IpAddr,
        now: Instant,
    ) -> Result<&'t PeerTransport, Refusal> {
        let ip = canonical(remote);
        let Some(p) = table.get(ip) else {
            return Err(Refusal::UnknownPeer);
        };
        if let Some(u) = &p.unavailable {
            return Err(Refusal::KeyUnavailable(u.clone()));
        }
        // Only configured peers get a bucket, so the map is bounded by the configuration;
        // peers removed since are dropped now and then.
        if self.buckets.len() > 2 * table.peers.len() + 64 {
            self.buckets.retain(|a, _| table.peers.contains_key(a));
        }
        let b = self.buckets.entry(ip).or_insert(Bucket {
            tokens: ACCEPT_BURST,
            at: now,
        });
        let refill = ACCEPT_REFILL.as_nanos().max(1);
        let earned = now.saturating_duration_since(b.at).as_nanos() / refill;
        if earned > 0 {
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            b.tokens = b.tokens.saturating_add(earned).min(ACCEPT_BURST);
            b.at = if b.tokens == ACCEPT_BURST {
                now
            } else {
                b.at + ACCEPT_REFILL * earned
            };
        }
        if b.tokens == 0 {
            return Err(Refusal::RateLimited);
        }
        b.tokens -= 1;
        Ok(p)
    }

    /// Whether to log a refusal from `remote` now; `Some(n)` = yes, with `n` refusals
    /// suppressed since the last line.
    pub(super) fn should_log(&mut self, remote: IpAddr, now: Instant) -> Option<u64> {
        let ip = canonical(remote);
        if self.logged.len() >= LOG_SOURCES && !self.logged.contains_key(&ip) {
            self.logged.clear();
        }
        match self.logged.get_mut(&ip) {
            Some((at, n)) if now.saturating_duration_since(*at) < LOG_EVERY => {
                *n += 1;
                None
            }
            Some((at, n)) => {
                let suppressed = *n;
                *at = now;
                *n = 0;
                Some(suppressed)
            }
            None => {
                self.logged.insert(ip, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{KeyProblem, parse_yaml};

    fn table() -> TransportTable {
        let mut cfg = parse_yaml(
            "local_as: 1\nrouter_id: 198.18.0.1\nneighbors:\n\
             \x20 - {address: 198.18.0.2, remote_as: 2, password: pw, ttl_security: 2}\n\
             \x20 - {address: 198.18.0.3, remote_as: 3}\n\
             \x20 - {address: \"2001:db8::4\", remote_as: 4, ttl_security: 1}\n",
        )
        .unwrap();
        cfg.neighbors[1].auth = TcpAuth::Unavailable(UnavailableKey {
            secret: "s".into(),
            key: "k".into(),
            problem: KeyProblem::NoSecret,
        });
        TransportTable::from_config(&cfg)
    }

    #[test]
    fn table_from_config() {
        let t = table();
        let keys = t.md5_keys();
        assert_eq!(keys.len(), 1);
        assert_eq!(
            keys[&"198.18.0.2".parse::<IpAddr>().unwrap()].as_bytes(),
            b"pw"
        );
        assert_eq!(
            t.gtsm_rules(),
            vec![
                ("198.18.0.2".parse().unwrap(), 254),
                ("2001:db8::4".parse().unwrap(), 255)
            ]
        );
        // A v4-mapped source finds the IPv4 peer.
        assert!(t.get("::ffff:198.18.0.2".parse().unwrap()).is_some());
    }

    #[test]
    fn unknown_and_unavailable_are_refused() {
        let t = table();
        let mut g = AcceptGuard::default();
        let now = Instant::now();
        assert_eq!(
            g.admit(&t, "198.18.0.9".parse().unwrap(), now).err(),
            Some(Refusal::UnknownPeer)
        );
        assert!(matches!(
            g.admit(&t, "198.18.0.3".parse().unwrap(), now),
            Err(Refusal::KeyUnavailable(_))
        ));
        assert!(g.admit(&t, "198.18.0.2".parse().unwrap(), now).is_ok());
        // Nothing is remembered for addresses that are not peers.
        assert_eq!(g.buckets.len(), 1);
    }

    #[test]
    fn accept_rate_is_bounded_per_source() {
        let t = table();
        let mut g = AcceptGuard::default();
        let a: IpAddr = "198.18.0.2".parse().unwrap();
        let b: IpAddr = "2001:db8::4".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..ACCEPT_BURST {
            assert!(g.admit(&t, a, t0).is_ok());
        }
        assert_eq!(g.admit(&t, a, t0).err(), Some(Refusal::RateLimited));
        // Another source has its own budget.
        assert!(g.admit(&t, b, t0).is_ok());
        // One more per refill interval, never more than the burst.
        assert!(g.admit(&t, a, t0 + ACCEPT_REFILL).is_ok());
        assert!(g.admit(&t, a, t0 + ACCEPT_REFILL).is_err());
        let later = t0 + ACCEPT_REFILL * 100;
        for _ in 0..ACCEPT_BURST {
            assert!(g.admit(&t, a, later).is_ok());
        }
        assert!(g.admit(&t, a, later).is_err());
        // A peer reconnecting every refill interval is never refused.
        let mut g = AcceptGuard::default();
        for i in 0..100u32 {
            assert!(g.admit(&t, a, t0 + ACCEPT_REFILL * i).is_ok(), "{i}");
        }
    }

    #[test]
    fn refusal_logs_are_bounded() {
        let mut g = AcceptGuard::default();
        let a: IpAddr = "198.18.0.9".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(g.should_log(a, t0), Some(0));
        assert_eq!(g.should_log(a, t0 + Duration::from_secs(1)), None);
        assert_eq!(g.should_log(a, t0 + Duration::from_secs(2)), None);
        assert_eq!(
            g.should_log(a, t0 + LOG_EVERY + Duration::from_secs(1)),
            Some(2)
        );
        for i in 0..(LOG_SOURCES as u32 + 10) {
            let _ = g.should_log(IpAddr::from(i.to_be_bytes()), t0);
        }
        assert!(g.logged.len() <= LOG_SOURCES);
    }
}
