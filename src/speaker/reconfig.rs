//! Live reconfiguration: a new [`SpeakerConfig`] applied as a typed diff with the least
//! disturbance (ARCHITECTURE.md §11.8; what BIRD's `reconfigure` and openbgpd's `RECONF_DONE`
//! do, replacing Calico's "re-render bird.cfg and SIGHUP").
//!
//! [`Speaker::apply_config`] applies the whole [`ConfigDiff`] inside one call, so no input is
//! ever handled against a half-applied configuration:
//!
//! 1. de-configured peers get NOTIFICATION Cease / Peer De-configured (RFC 4486 subcode 3),
//!    their routes are withdrawn and their slot is freed (incoming connections from their
//!    address are refused from then on);
//! 2. sessions that must restart get Cease / Other Configuration Change (RFC 4486 subcode 6):
//!    peers with a `Reset` change, every peer on a speaker-wide reset, and peers with a
//!    `NextConnection` change that are not Established;
//! 3. the new configuration is stored (speaker, RIB settings, each peer's config and session
//!    parameters; in-place changes end here);
//! 4. the stopped sessions start again with the new parameters, and new peers get a session;
//! 5. only the originated prefixes that appear or disappear are announced or withdrawn.
//!
//! Untouched sessions see nothing at all: no NOTIFICATION, no state change, no UPDATE beyond
//! the originate difference. With graceful restart's N bit negotiated, the Cease travels
//! wrapped in Hard Reset (RFC 8538 §5.1, see `Session`), so the peer flushes our routes at once.

use std::net::IpAddr;
use std::time::Instant;

use bytes::Bytes;
use tracing::debug;

use super::{Output, Speaker, canonical, local_attrs, rib_cfg};
use crate::config::{Apply, ConfigDiff, SpeakerConfig, diff};
use crate::rib::PeerIdx;
use crate::session::{ConnId, SessionEvent, State, cease};

impl Speaker {
    /// Applies `new` (see the module documentation) and returns what changed.
    pub fn apply_config(&mut self, now: Instant, new: SpeakerConfig) -> ConfigDiff {
        let d = diff(&self.cfg, &new);
        if d.is_empty() {
            // Possibly reordered lists: keep the new order for `config()`.
            self.cfg = new;
            return d;
        }
        self.needs_flush = true;

        // 1. De-configured peers.
        for addr in &d.peers_removed {
            self.remove_peer(now, *addr);
        }

        // 2. Sessions that restart.
        let reset_all = d.resets_all();
        let restart: Vec<PeerIdx> = self
            .live_peers()
            .filter(|(_, p)| {
                let change = d
                    .peers_changed
                    .iter()
                    .find(|c| c.address == p.cfg.address)
                    .map(|c| c.apply());
                reset_all
                    || change == Some(Apply::Reset)
                    || (change == Some(Apply::NextConnection)
                        && p.session.state() != State::Established)
            })
            .map(|(i, _)| i)
            .collect();
        for &idx in &restart {
            let stop = SessionEvent::Stop {
                subcode: cease::OTHER_CONFIG_CHANGE,
                data: Bytes::new(),
            };
            self.session_event(now, idx, stop);
        }

        // 3. The new configuration takes effect.
        self.cfg = new;
        let rib_new = rib_cfg(&self.cfg);
        let rib_old = self.rib.cfg();
        if (
            rib_new.local_as,
            rib_new.router_id,
            rib_new.cluster_id,
            rib_new.selection,
        ) != (
            rib_old.local_as,
            rib_old.router_id,
            rib_old.cluster_id,
            rib_old.selection,
        ) {
            self.rib.set_cfg(rib_new);
        }
        let Speaker { cfg, peers, .. } = self;
        for peer in peers.iter_mut().flatten() {
            let Some(pc) = cfg.neighbor(peer.cfg.address) else {
                // Every peer left in a slot is in the new configuration (removed ones are gone).
                continue;
            };
            let session = pc.session(cfg);
            if *peer.session.config() != session {
                peer.session.set_config(session);
            }
            if peer.cfg != *pc {
                if peer.cfg.remote_as != pc.remote_as {
                    peer.span = super::peer_span(pc);
                }
                peer.cfg = pc.clone();
            }
        }

        // 4. Restarted and new sessions.
        for idx in restart {
            self.session_event(now, idx, SessionEvent::Start);
        }
        for addr in &d.peers_added {
            if let Some(pc) = self.cfg.neighbor(*addr).cloned() {
                self.add_peer(now, pc);
            }
        }

        // 5. Originated prefixes: only the difference.
        for p in &d.originate_removed {
            self.rib.withdraw_local(*p);
        }
        for p in &d.originate_added {
            self.rib.originate(*p, local_attrs());
        }
        d
    }

    /// Sends Cease / Peer De-configured, withdraws the peer's routes and frees its slot.
    fn remove_peer(&mut self, now: Instant, addr: IpAddr) {
        let Some(idx) = self
            .live_peers()
            .find(|(_, p)| p.cfg.address == addr)
            .map(|(i, _)| i)
        else {
            return;
        };
        let stop = SessionEvent::Stop {
            subcode: cease::PEER_DECONFIGURED,
            data: Bytes::new(),
        };
        self.session_event(now, idx, stop);
        // Stop closed every connection and attempt of the session; anything still attributed
        // to the slot is closed as well, so no ConnInfo outlives its peer.
        let stale: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.peer == Some(idx))
            .map(|(&id, _)| id)
            .collect();
        for conn in stale {
            self.conns.remove(&conn);
            self.outputs.push_back(Output::Close { conn });
        }
        self.rib.peer_down(idx);
        let key = canonical(addr);
        if self.by_addr.get(&key) == Some(&idx) {
            self.by_addr.remove(&key);
        }
        self.peers[idx as usize] = None;
        self.free.push(idx);
        debug!(peer = %addr, slot = idx, "peer de-configured");
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::config::parse_yaml;
    use crate::speaker::Input;

    fn cfg(neighbors: &[u8]) -> SpeakerConfig {
        let mut y = String::from(
            "local_as: 64512\nrouter_id: 198.18.0.1\nlisten: false\noriginate: []\nneighbors:\n",
        );
        for n in neighbors {
            y.push_str(&format!(
                "  - {{ address: 198.18.0.{n}, remote_as: 64512 }}\n"
            ));
        }
        parse_yaml(&y).unwrap()
    }

    fn drain(s: &mut Speaker) -> Vec<Output> {
        std::iter::from_fn(|| s.poll_output()).collect()
    }

    fn connects(out: &[Output]) -> Vec<(ConnId, SocketAddr)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Connect { conn, remote, .. } => Some((*conn, *remote)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn churn_reuses_slots_and_never_reuses_session_ids() {
        let now = Instant::now();
        let mut s = Speaker::new(cfg(&[2, 3]), now);
        let first = connects(&drain(&mut s));
        assert_eq!(first.len(), 2);
        let mut seen: Vec<ConnId> = first.iter().map(|c| c.0).collect();
        for round in 0..200u32 {
            // Replace 198.18.0.3 by 198.18.0.(4 + round % 200) and back, over and over.
            let other = 4 + (round % 200) as u8;
            let d = s.apply_config(now, cfg(&[2, other]));
            assert_eq!(d.peers_added.len(), 1, "{d}");
            assert_eq!(d.peers_removed.len(), 1, "{d}");
            let out = drain(&mut s);
            let c = connects(&out);
            assert_eq!(c.len(), 1, "exactly one new session: {out:?}");
            assert!(!seen.contains(&c[0].0), "ConnId {:?} reused", c[0].0);
            seen.push(c[0].0);
            s.apply_config(now, cfg(&[2, 3]));
            seen.extend(connects(&drain(&mut s)).iter().map(|c| c.0));
        }
        assert_eq!(s.peers.len(), 2, "slots are reused, not appended");
        assert_eq!(s.by_addr.len(), 2);
        assert!(s.free.is_empty());
    }

    #[test]
    fn next_connection_change_restarts_a_session_that_is_not_established() {
        let now = Instant::now();
        let mut s = Speaker::new(cfg(&[2]), now);
        let (attempt, _) = connects(&drain(&mut s))[0];
        let mut passive = cfg(&[2]);
        passive.neighbors[0].passive = true;
        let d = s.apply_config(now, passive);
        assert_eq!(d.peers_changed[0].apply(), Apply::NextConnection);
        let out = drain(&mut s);
        assert!(out.contains(&Output::Close { conn: attempt }), "{out:?}");
        assert!(
            connects(&out).is_empty(),
            "a passive session does not connect"
        );
        assert_eq!(s.peer(0).map(|p| p.session.state()), Some(State::Active));
        s.apply_config(now, cfg(&[2]));
        assert_eq!(
            connects(&drain(&mut s)).len(),
            1,
            "active again: one new attempt"
        );
    }

    #[test]
    fn late_events_of_a_removed_peer_are_not_taken_for_its_successor() {
        let now = Instant::now();
        let mut s = Speaker::new(cfg(&[2]), now);
        let (old_conn, _) = connects(&drain(&mut s))[0];
        s.apply_config(now, cfg(&[5]));
        let out = drain(&mut s);
        assert!(
            out.contains(&Output::Close { conn: old_conn }),
            "the pending attempt is aborted: {out:?}"
        );
        let (new_conn, remote) = connects(&out)[0];
        assert_eq!(remote.ip(), "198.18.0.5".parse::<IpAddr>().unwrap());
        assert_ne!(new_conn, old_conn);
        // The driver reports the old attempt as connected after all: it is closed, and the
        // new peer (same slot) is not disturbed.
        let local: SocketAddr = "198.18.0.1:40000".parse().unwrap();
        s.handle(
            now,
            Input::Connected {
                conn: old_conn,
                local,
            },
        );
        let out = drain(&mut s);
        assert_eq!(out, vec![Output::Close { conn: old_conn }]);
        assert_eq!(s.peer(0).map(|p| p.session.state()), Some(State::Connect));
        // Incoming connections from the removed address are refused.
        s.handle(
            now,
            Input::Accepted {
                conn: ConnId(1 << 63),
                remote: "198.18.0.2:50000".parse().unwrap(),
                local: "198.18.0.1:179".parse().unwrap(),
            },
        );
        assert_eq!(
            drain(&mut s),
            vec![Output::Close {
                conn: ConnId(1 << 63)
            }]
        );
    }
}
