//! FSM table tests (RFC 4271 §8): (state, event) → (state, actions), no sockets, virtual clock.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use podbgp::session::{Cause, ConnId, Session, SessionAction, SessionConfig, SessionEvent, State};
use podbgp::wire::{self, Capability, Family, Message, Notification, Open, SessionCodec, Update};

const PEER_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn cfg(passive: bool, router_id: Ipv4Addr) -> SessionConfig {
    SessionConfig {
        local_as: 65001,
        remote_as: 65002,
        router_id,
        hold_time: 9,
        min_hold_time: 3,
        connect_retry: Duration::from_secs(3),
        idle_hold_min: Duration::from_secs(1),
        idle_hold_max: Duration::from_secs(8),
        passive,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        extended_message: false,
        graceful_restart_time: None,
        gr_forwarding: true,
    }
}

fn peer_open(asn: u32, hold: u16, id: Ipv4Addr) -> Bytes {
    let open = Open {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(23456),
        hold_time: hold,
        bgp_id: id,
        capabilities: vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::FourOctetAs(asn),
            Capability::RouteRefresh,
        ],
    };
    enc(&Message::Open(open))
}

fn enc(m: &Message) -> Bytes {
    let mut b = BytesMut::new();
    wire::encode_message(m, &SessionCodec::default(), &mut b).unwrap();
    b.freeze()
}

fn keepalive() -> Bytes {
    enc(&Message::Keepalive)
}

/// Harness: a session, a virtual clock, and the actions of the last step.
struct H {
    s: Session,
    now: Instant,
    out: Vec<SessionAction>,
}

impl H {
    fn new(c: SessionConfig) -> H {
        H {
            s: Session::new(1, c),
            now: Instant::now(),
            out: Vec::new(),
        }
    }
    fn ev(&mut self, e: SessionEvent) -> &[SessionAction] {
        self.out.clear();
        self.s.handle(self.now, e, &mut self.out);
        &self.out
    }
    fn advance(&mut self, d: Duration) -> &[SessionAction] {
        self.now += d;
        self.out.clear();
        self.s.handle_timeout(self.now, &mut self.out);
        &self.out
    }
    fn msg(&mut self, conn: ConnId, frame: Bytes) -> &[SessionAction] {
        self.ev(SessionEvent::Message { conn, frame })
    }
    /// Drives a passive session to Established on `conn`.
    fn establish_passive(&mut self, conn: ConnId) {
        self.ev(SessionEvent::Start);
        self.ev(SessionEvent::Accepted { conn });
        self.msg(conn, peer_open(65002, 9, PEER_ID));
        self.msg(conn, keepalive());
        assert_eq!(self.s.state(), State::Established);
    }
}

fn sent(actions: &[SessionAction]) -> Vec<(ConnId, Message)> {
    actions
        .iter()
        .filter_map(|a| match a {
            SessionAction::Send { conn, bytes } => Some((
                *conn,
                wire::decode_message(bytes, &SessionCodec::default()).unwrap(),
            )),
            _ => None,
        })
        .collect()
}

fn notification(actions: &[SessionAction]) -> Option<(ConnId, Notification)> {
    sent(actions).into_iter().find_map(|(c, m)| match m {
        Message::Notification(n) => Some((c, n)),
        _ => None,
    })
}

fn closed(actions: &[SessionAction]) -> Vec<ConnId> {
    actions
        .iter()
        .filter_map(|a| match a {
            SessionAction::Close { conn } => Some(*conn),
            _ => None,
        })
        .collect()
}

const IN: ConnId = ConnId(1 << 63);

#[test]
fn passive_session_reaches_established() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    let a = h.ev(SessionEvent::Start).to_vec();
    assert!(
        !a.iter().any(|x| matches!(x, SessionAction::Connect { .. })),
        "passive never connects"
    );
    assert_eq!(h.s.state(), State::Active);

    let a = h.ev(SessionEvent::Accepted { conn: IN }).to_vec();
    assert!(matches!(sent(&a)[0].1, Message::Open(_)));
    assert_eq!(h.s.state(), State::OpenSent);

    let a = h.msg(IN, peer_open(65002, 30, PEER_ID)).to_vec();
    assert!(matches!(sent(&a)[0].1, Message::Keepalive));
    assert_eq!(h.s.state(), State::OpenConfirm);

    let a = h.msg(IN, keepalive()).to_vec();
    assert_eq!(h.s.state(), State::Established);
    let neg = a
        .iter()
        .find_map(|x| match x {
            SessionAction::Established { negotiated, .. } => Some(negotiated.clone()),
            _ => None,
        })
        .expect("Established action");
    // Hold time: the smaller of ours (9) and theirs (30); keepalive a third of it.
    assert_eq!((neg.hold_time, neg.keepalive), (9, 3));
    assert_eq!(neg.families, vec![Family::IPV4_UNICAST]);
    assert!(neg.codec.four_octet_as);
    assert!(a.iter().any(|x| matches!(
        x,
        SessionAction::StateChange {
            from: State::OpenConfirm,
            to: State::Established,
            ..
        }
    )));
}

#[test]
fn active_session_connects_and_retries() {
    let mut h = H::new(cfg(false, Ipv4Addr::new(198, 18, 0, 1)));
    let a = h.ev(SessionEvent::Start).to_vec();
    let SessionAction::Connect { conn: c1 } = a[0] else {
        panic!("expected Connect, got {a:?}")
    };
    assert_eq!(h.s.state(), State::Connect);
    h.ev(SessionEvent::ConnectFailed { conn: c1 });
    assert_eq!(h.s.state(), State::Active);
    // Nothing before ConnectRetry (3 s) expires.
    assert!(h.advance(Duration::from_millis(2900)).is_empty());
    let a = h.advance(Duration::from_millis(100)).to_vec();
    let c2 = a
        .iter()
        .find_map(|x| match x {
            SessionAction::Connect { conn } => Some(*conn),
            _ => None,
        })
        .expect("retry connect");
    assert_ne!(c1, c2);
    assert_eq!(h.s.state(), State::Connect);
    h.ev(SessionEvent::Connected { conn: c2 });
    assert_eq!(h.s.state(), State::OpenSent);
}

#[test]
fn hold_timer_expiry_sends_4_0_and_keepalives_are_sent() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    // Keepalive every 3 s (hold 9 / 3).
    let a = h.advance(Duration::from_secs(3)).to_vec();
    assert!(matches!(sent(&a)[..], [(IN, Message::Keepalive)]));
    h.advance(Duration::from_secs(3));
    let a = h.advance(Duration::from_secs(3)).to_vec();
    let (c, n) = notification(&a).expect("hold timer NOTIFICATION");
    assert_eq!((c, n.code, n.subcode), (IN, 4, 0));
    assert!(a.iter().any(|x| matches!(
        x,
        SessionAction::Down {
            cause: Cause::NotificationSent { code: 4, .. },
            retain: None,
        }
    )));
    assert_eq!(h.s.state(), State::Idle);
}

#[test]
fn any_message_restarts_the_hold_timer() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    for _ in 0..5 {
        h.advance(Duration::from_secs(6));
        h.msg(IN, keepalive());
    }
    assert_eq!(h.s.state(), State::Established);
}

#[test]
fn idle_hold_backoff_doubles() {
    let mut h = H::new(cfg(false, Ipv4Addr::new(198, 18, 0, 1)));
    let a = h.ev(SessionEvent::Start).to_vec();
    let SessionAction::Connect { conn } = a[0] else {
        panic!()
    };
    let mut conn = conn;
    let mut delays = Vec::new();
    for _ in 0..5 {
        h.ev(SessionEvent::Connected { conn });
        // The peer closes right after our OPEN: session error → Idle with backoff.
        h.ev(SessionEvent::Closed { conn });
        assert_eq!(h.s.state(), State::Idle);
        let wait = h.s.poll_timeout().unwrap() - h.now;
        delays.push(wait.as_secs());
        let a = h.advance(wait).to_vec();
        conn = a
            .iter()
            .find_map(|x| match x {
                SessionAction::Connect { conn } => Some(*conn),
                _ => None,
            })
            .expect("reconnect after idle hold");
    }
    assert_eq!(delays, vec![1, 2, 4, 8, 8]);
}

#[test]
fn bad_peer_as_is_2_2() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    let a = h.msg(IN, peer_open(65099, 9, PEER_ID)).to_vec();
    let (_, n) = notification(&a).unwrap();
    assert_eq!((n.code, n.subcode), (2, 2));
    assert!(closed(&a).contains(&IN));
    assert_eq!(h.s.state(), State::Idle);
}

#[test]
fn unacceptable_hold_time_below_floor() {
    let mut c = cfg(true, Ipv4Addr::new(198, 18, 0, 1));
    c.min_hold_time = 5;
    let mut h = H::new(c);
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    let a = h.msg(IN, peer_open(65002, 4, PEER_ID)).to_vec();
    let (_, n) = notification(&a).unwrap();
    assert_eq!((n.code, n.subcode), (2, 6));
}

#[test]
fn zero_hold_time_means_no_keepalives_and_no_hold_timer() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    h.msg(IN, peer_open(65002, 0, PEER_ID));
    h.msg(IN, keepalive());
    assert_eq!(h.s.state(), State::Established);
    assert_eq!(h.s.poll_timeout(), None);
    assert!(h.advance(Duration::from_secs(3600)).is_empty());
    assert_eq!(h.s.state(), State::Established);
}

#[test]
fn unexpected_messages_are_fsm_errors() {
    // UPDATE in OpenSent → 5/1 (RFC 6608).
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    let a = h.msg(IN, enc(&Message::Update(Update::default()))).to_vec();
    assert_eq!(
        notification(&a).map(|(_, n)| (n.code, n.subcode)),
        Some((5, 1))
    );

    // OPEN in OpenConfirm → 5/2.
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    h.msg(IN, peer_open(65002, 9, PEER_ID));
    let a = h.msg(IN, peer_open(65002, 9, PEER_ID)).to_vec();
    assert_eq!(
        notification(&a).map(|(_, n)| (n.code, n.subcode)),
        Some((5, 2))
    );

    // OPEN in Established → 5/3, and the session goes down.
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    let a = h.msg(IN, peer_open(65002, 9, PEER_ID)).to_vec();
    assert_eq!(
        notification(&a).map(|(_, n)| (n.code, n.subcode)),
        Some((5, 3))
    );
    assert!(a.iter().any(|x| matches!(x, SessionAction::Down { .. })));
}

#[test]
fn manual_stop_sends_cease_admin_shutdown() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    let a = h
        .ev(SessionEvent::Stop {
            subcode: 2,
            data: Bytes::new(),
        })
        .to_vec();
    assert_eq!(
        notification(&a).map(|(_, n)| (n.code, n.subcode)),
        Some((6, 2))
    );
    assert!(a.iter().any(|x| matches!(x, SessionAction::Down { .. })));
    assert_eq!(h.s.state(), State::Idle);
    // Stopped sessions refuse connections (Cease/Connection Rejected) and do not restart.
    let a = h
        .ev(SessionEvent::Accepted {
            conn: ConnId(IN.0 + 1),
        })
        .to_vec();
    assert_eq!(
        notification(&a).map(|(_, n)| (n.code, n.subcode)),
        Some((6, 5))
    );
    assert!(h.advance(Duration::from_secs(600)).is_empty());
}

#[test]
fn connection_to_an_established_session_is_rejected_with_cease_7() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    let second = ConnId(IN.0 + 1);
    let a = h.ev(SessionEvent::Accepted { conn: second }).to_vec();
    let (c, n) = notification(&a).unwrap();
    assert_eq!((c, n.code, n.subcode), (second, 6, 7));
    assert_eq!(closed(&a), vec![second]);
    assert_eq!(h.s.state(), State::Established);
}

/// RFC 4271 §6.8: both sides connected; the connection opened by the higher BGP identifier
/// survives.
fn collision(local_id: Ipv4Addr) -> (ConnId, ConnId, Vec<SessionAction>) {
    let mut h = H::new(cfg(false, local_id));
    let a = h.ev(SessionEvent::Start).to_vec();
    let SessionAction::Connect { conn: out } = a[0] else {
        panic!()
    };
    h.ev(SessionEvent::Connected { conn: out });
    h.ev(SessionEvent::Accepted { conn: IN });
    assert_eq!(h.s.state(), State::OpenSent);
    // The peer's OPEN arrives on the incoming connection first.
    let a = h.msg(IN, peer_open(65002, 9, PEER_ID)).to_vec();
    (out, IN, a)
}

#[test]
fn collision_lower_local_id_keeps_the_peers_connection() {
    let (out, inc, a) = collision(Ipv4Addr::new(198, 18, 0, 1)); // 198.18.0.1 < peer .2
    let (c, n) = notification(&a).unwrap();
    assert_eq!((c, n.code, n.subcode), (out, 6, 7));
    assert!(closed(&a).contains(&out));
    assert!(!closed(&a).contains(&inc));
}

#[test]
fn collision_higher_local_id_keeps_our_connection() {
    let (out, inc, a) = collision(Ipv4Addr::new(198, 18, 0, 9)); // .9 > peer .2
    let (c, n) = notification(&a).unwrap();
    assert_eq!((c, n.code, n.subcode), (inc, 6, 7));
    assert!(closed(&a).contains(&inc));
    assert!(!closed(&a).contains(&out));
}

#[test]
fn header_error_from_framing_is_sent_as_notification() {
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    let mut bad = vec![0xffu8; 16];
    bad.extend_from_slice(&[0, 10, 4]); // length 10 < 19
    let error = wire::frame_len(&bad, 4096).unwrap_err();
    let a = h
        .ev(SessionEvent::FramingError { conn: IN, error })
        .to_vec();
    let (_, n) = notification(&a).unwrap();
    assert_eq!((n.code, n.subcode), (1, 2));
    assert_eq!(n.data.as_ref(), &[0, 10]);
    assert_eq!(h.s.state(), State::Idle);
}

#[test]
fn stop_with_the_n_bit_on_both_sides_sends_hard_reset_wrapping_the_cease() {
    let mut c = cfg(true, Ipv4Addr::new(198, 18, 0, 1));
    c.graceful_restart_time = Some(120);
    let mut h = H::new(c);
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    let open = Open {
        version: 4,
        my_as: 65002,
        hold_time: 9,
        bgp_id: PEER_ID,
        capabilities: vec![
            Capability::FourOctetAs(65002),
            Capability::GracefulRestart {
                restart_state: false,
                notification: true,
                restart_time: 120,
                families: vec![],
            },
        ],
    };
    h.msg(IN, enc(&Message::Open(open)));
    h.msg(IN, keepalive());
    assert_eq!(h.s.state(), State::Established);
    let a = h
        .ev(SessionEvent::Stop {
            subcode: 2,
            data: Bytes::new(),
        })
        .to_vec();
    let (_, n) = notification(&a).unwrap();
    // RFC 8538 §3: Cease/Hard Reset, data = ErrCode, Subcode (and data) of the wrapped error.
    assert_eq!((n.code, n.subcode, n.data.as_ref()), (6, 9, &[6u8, 2][..]));
}

/// A passive session with graceful restart on our side, Established on `IN` with a peer whose
/// capability lists IPv4 unicast (restart time 90 s) and has the N bit as given.
fn gr_established(n_bit: bool) -> H {
    let mut c = cfg(true, Ipv4Addr::new(198, 18, 0, 1));
    c.graceful_restart_time = Some(120);
    let mut h = H::new(c);
    h.ev(SessionEvent::Start);
    h.ev(SessionEvent::Accepted { conn: IN });
    h.msg(IN, gr_open(n_bit));
    h.msg(IN, keepalive());
    assert_eq!(h.s.state(), State::Established);
    h
}

fn gr_open(n_bit: bool) -> Bytes {
    let open = Open {
        version: 4,
        my_as: 65002,
        hold_time: 9,
        bgp_id: PEER_ID,
        capabilities: vec![
            Capability::FourOctetAs(65002),
            Capability::GracefulRestart {
                restart_state: false,
                notification: n_bit,
                restart_time: 90,
                families: vec![wire::GrFamily {
                    family: Family::IPV4_UNICAST,
                    forwarding_preserved: true,
                }],
            },
        ],
    };
    enc(&Message::Open(open))
}

/// The `retain` of the Down action in `actions` (panics when there is none).
fn down_retain(actions: &[SessionAction]) -> Option<podbgp::session::GrRetain> {
    actions
        .iter()
        .find_map(|a| match a {
            SessionAction::Down { retain, .. } => Some(retain.clone()),
            _ => None,
        })
        .expect("a Down action")
}

#[test]
fn our_open_lists_every_family_with_the_f_bit_and_the_n_bit() {
    let mut c = cfg(true, Ipv4Addr::new(198, 18, 0, 1));
    c.graceful_restart_time = Some(120);
    let mut h = H::new(c);
    h.s.set_restarting(true);
    h.ev(SessionEvent::Start);
    let a = h.ev(SessionEvent::Accepted { conn: IN }).to_vec();
    let Some((_, Message::Open(open))) = sent(&a).into_iter().next() else {
        panic!("no OPEN: {a:?}");
    };
    let gr = open
        .capabilities
        .iter()
        .find_map(|c| match c {
            Capability::GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families,
            } => Some((
                *restart_state,
                *notification,
                *restart_time,
                families.clone(),
            )),
            _ => None,
        })
        .expect("a graceful-restart capability");
    assert_eq!((gr.0, gr.1, gr.2), (true, true, 120));
    let fams: Vec<(Family, bool)> =
        gr.3.iter()
            .map(|f| (f.family, f.forwarding_preserved))
            .collect();
    assert_eq!(
        fams,
        [(Family::IPV4_UNICAST, true), (Family::IPV6_UNICAST, true)]
    );
}

#[test]
fn transport_failure_is_graceful_and_keeps_the_listed_families() {
    let mut h = gr_established(false);
    let a = h.ev(SessionEvent::Closed { conn: IN }).to_vec();
    let r = down_retain(&a).expect("routes retained");
    assert_eq!(r.families, [Family::IPV4_UNICAST]);
    assert_eq!(r.restart_time, Duration::from_secs(90));
}

#[test]
fn notifications_are_graceful_only_under_the_n_bit_and_never_as_hard_reset() {
    let cease = |sub: u8, data: &[u8]| {
        enc(&Message::Notification(Notification {
            code: 6,
            subcode: sub,
            data: Bytes::copy_from_slice(data),
        }))
    };
    // Without the N bit a NOTIFICATION ends GR: routes flushed.
    let mut h = gr_established(false);
    let a = h.msg(IN, cease(4, &[])).to_vec();
    assert_eq!(down_retain(&a), None);
    // With it, a Cease other than Hard Reset is graceful...
    let mut h = gr_established(true);
    let a = h.msg(IN, cease(4, &[])).to_vec();
    assert!(down_retain(&a).is_some());
    // ...a Hard Reset is not...
    let mut h = gr_established(true);
    let a = h.msg(IN, cease(9, &[6, 2])).to_vec();
    assert_eq!(down_retain(&a), None);
    // ...and an UPDATE error we detect is graceful too (RFC 8538 §4).
    let mut h = gr_established(true);
    let bad = Bytes::from_static(&[
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0, 24, 2, 0, 0, 0, 1, 0x40,
    ]);
    let a = h.msg(IN, bad).to_vec();
    let (_, n) = notification(&a).expect("a NOTIFICATION for the bad UPDATE");
    assert_eq!(n.code, 3);
    assert!(down_retain(&a).is_some());
    // Hold timer expiry: graceful under the N bit only.
    let mut h = gr_established(true);
    let a = h.advance(Duration::from_secs(10)).to_vec();
    assert!(down_retain(&a).is_some());
    let mut h = gr_established(false);
    let a = h.advance(Duration::from_secs(10)).to_vec();
    assert_eq!(down_retain(&a), None);
}

#[test]
fn stop_for_restart_closes_without_notification_and_stop_flushes() {
    let mut h = gr_established(true);
    let a = h.ev(SessionEvent::StopForRestart).to_vec();
    assert!(notification(&a).is_none(), "no NOTIFICATION: {a:?}");
    assert_eq!(closed(&a), [IN]);
    assert!(down_retain(&a).is_some());
    let mut h = gr_established(true);
    let a = h
        .ev(SessionEvent::Stop {
            subcode: 2,
            data: Bytes::new(),
        })
        .to_vec();
    assert_eq!(down_retain(&a), None);
}

#[test]
fn a_new_connection_while_established_is_a_restart_with_graceful_restart() {
    const IN2: ConnId = ConnId(1 << 63 | 7);
    let mut h = gr_established(false);
    let a = h.ev(SessionEvent::Accepted { conn: IN2 }).to_vec();
    assert!(
        closed(&a).contains(&IN),
        "the old connection is closed: {a:?}"
    );
    assert!(down_retain(&a).is_some());
    assert!(
        matches!(sent(&a)[..], [(IN2, Message::Open(_))]),
        "an OPEN on the new connection: {a:?}"
    );
    h.msg(IN2, gr_open(false));
    h.msg(IN2, keepalive());
    assert_eq!(h.s.state(), State::Established);
    // Without graceful restart the new connection is the one refused (RFC 4271 §6.8).
    let mut h = H::new(cfg(true, Ipv4Addr::new(198, 18, 0, 1)));
    h.establish_passive(IN);
    let a = h.ev(SessionEvent::Accepted { conn: IN2 }).to_vec();
    assert_eq!(closed(&a), [IN2]);
    assert_eq!(h.s.state(), State::Established);
}
