//! One peer's BGP finite state machine (RFC 4271 §8), sans-IO.
//!
//! A [`Session`] owns everything about one configured neighbour's transport connections: up to
//! two at a time (one we initiated, one the peer initiated) while a connection collision
//! (RFC 4271 §6.8) is unresolved. It decodes every message itself with the negotiated
//! [`SessionCodec`], so malformed input becomes a NOTIFICATION inside the pure core.
//!
//! Inputs are [`SessionEvent`]s plus [`Session::handle_timeout`]; outputs are
//! [`SessionAction`]s pushed to a caller-provided vector. `now` is always passed in; the
//! session never reads a clock, never touches a socket.
//!
//! States (RFC 4271 §8.2.2) are derived from the connections rather than stored:
//! * Idle: not started, or waiting for the idle-hold (backoff) timer after an error;
//! * Connect: our outgoing TCP connection is in progress;
//! * Active: waiting for the peer to connect (passive peers live here) or for ConnectRetry;
//! * OpenSent / OpenConfirm / Established: the most advanced connection's state.
//!
//! Invariants: at most one connection is Established; once one is, every other connection and
//! connection attempt is closed (collision with an Established connection, §6.8).

mod negotiate;
mod timers;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

pub use negotiate::{Negotiated, PeerGracefulRestart, local_open, negotiate};
pub use timers::{Backoff, TimerKind, TimerTable};

use crate::wire::{
    self, DecodeError, Family, Message, Notification, RouteRefresh, SessionCodec, Update,
};

/// Hold time used while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// NOTIFICATION codes and Cease subcodes (RFC 4271 §4.5, RFC 4486, RFC 8538), shared with the codec.
pub use crate::wire::{cease_subcode as cease, code};

/// Per-session parameters (derived from the speaker configuration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time in seconds: 0 or >= 3.
    pub hold_time: u16,
    /// Smallest hold time we accept from the peer (RFC 4271 allows a floor).
    pub min_hold_time: u16,
    pub connect_retry: Duration,
    pub idle_hold_min: Duration,
    pub idle_hold_max: Duration,
    /// Never initiate connections; only accept them.
    pub passive: bool,
    pub families: Vec<Family>,
    pub extended_message: bool,
    /// Advertise graceful restart (RFC 4724) with this restart time: we act as helper for
    /// peers that advertise it too, and list our families so peers keep our routes when our
    /// session drops.
    pub graceful_restart_time: Option<u16>,
    /// The F bit for every family we list: our forwarding state survives a restart (podbgp
    /// leaves its kernel routes in place when it stops).
    pub gr_forwarding: bool,
}

/// An opaque identifier of one transport connection, unique within the speaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// RFC 4271 §8.2.2 session states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        })
    }
}

/// Why a state changed; carried in `StateChange` actions, logged and shown by the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// ManualStart / AutomaticStart (Events 1, 3).
    Start,
    /// ManualStop (Event 2) with the Cease subcode sent.
    Stop(u8),
    /// IdleHoldTimer expired: automatic restart after backoff.
    IdleHoldExpired,
    /// ConnectRetryTimer_Expires (Event 9).
    ConnectRetryExpired,
    /// Tcp_CR_Acked / TcpConnectionConfirmed (Events 16, 17).
    TcpConnected,
    /// TcpConnectionFails (Event 18) for an outgoing attempt.
    TcpConnectFailed,
    /// The transport closed (Event 18 on an open connection).
    TcpClosed,
    /// BGPOpen (Event 19).
    OpenReceived,
    /// KeepAliveMsg (Event 26) in OpenConfirm.
    KeepaliveReceived,
    /// HoldTimer_Expires (Event 10).
    HoldTimerExpired,
    /// NotifMsg (Event 25).
    NotificationReceived { code: u8, subcode: u8 },
    /// We detected an error and sent this NOTIFICATION.
    NotificationSent { code: u8, subcode: u8 },
    /// OpenCollisionDump (Event 23): this connection lost collision resolution.
    CollisionLost,
    /// The peer connected again while its session was Established, with graceful restart
    /// negotiated: it restarted (RFC 4724 §4.2).
    PeerRestarted,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Start => f.write_str("start"),
            Cause::Stop(s) => write!(f, "stop (cease/{s})"),
            Cause::IdleHoldExpired => f.write_str("idle-hold timer expired"),
            Cause::ConnectRetryExpired => f.write_str("connect-retry timer expired"),
            Cause::TcpConnected => f.write_str("tcp connected"),
            Cause::TcpConnectFailed => f.write_str("tcp connect failed"),
            Cause::TcpClosed => f.write_str("tcp connection closed"),
            Cause::OpenReceived => f.write_str("open received"),
            Cause::KeepaliveReceived => f.write_str("keepalive received"),
            Cause::HoldTimerExpired => f.write_str("hold timer expired"),
            Cause::NotificationReceived { code, subcode } => {
                write!(
                    f,
                    "notification received {code}/{subcode} ({})",
                    notification_name(*code, *subcode)
                )
            }
            Cause::NotificationSent { code, subcode } => {
                write!(
                    f,
                    "notification sent {code}/{subcode} ({})",
                    notification_name(*code, *subcode)
                )
            }
            Cause::CollisionLost => f.write_str("connection collision resolution"),
            Cause::PeerRestarted => f.write_str("peer restarted (new connection)"),
        }
    }
}

/// Human-readable name of a NOTIFICATION code/subcode (RFC 4271 §4.5, RFC 4486).
pub fn notification_name(code: u8, subcode: u8) -> &'static str {
    match (code, subcode) {
        (1, 1) => "connection not synchronized",
        (1, 2) => "bad message length",
        (1, 3) => "bad message type",
        (1, _) => "message header error",
        (2, 1) => "unsupported version number",
        (2, 2) => "bad peer AS",
        (2, 3) => "bad BGP identifier",
        (2, 4) => "unsupported optional parameter",
        (2, 6) => "unacceptable hold time",
        (2, 7) => "unsupported capability",
        (2, _) => "OPEN message error",
        (3, 1) => "malformed attribute list",
        (3, 2) => "unrecognized well-known attribute",
        (3, 3) => "missing well-known attribute",
        (3, 4) => "attribute flags error",
        (3, 5) => "attribute length error",
        (3, 6) => "invalid ORIGIN",
        (3, 8) => "invalid NEXT_HOP",
        (3, 9) => "optional attribute error",
        (3, 10) => "invalid network field",
        (3, 11) => "malformed AS_PATH",
        (3, _) => "UPDATE message error",
        (4, _) => "hold timer expired",
        (5, _) => "finite state machine error",
        (6, 1) => "maximum number of prefixes reached",
        (6, 2) => "administrative shutdown",
        (6, 3) => "peer de-configured",
        (6, 4) => "administrative reset",
        (6, 5) => "connection rejected",
        (6, 6) => "other configuration change",
        (6, 7) => "connection collision resolution",
        (6, 8) => "out of resources",
        (6, 9) => "hard reset",
        (6, _) => "cease",
        (7, _) => "route-refresh message error",
        (8, _) => "send hold timer expired",
        _ => "unknown error",
    }
}

/// What the session asks its owner to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAction {
    /// Open a TCP connection to the peer; report back with `Connected`/`ConnectFailed`.
    Connect { conn: ConnId },
    /// Write these bytes (one or more whole messages) on the connection.
    Send { conn: ConnId, bytes: Bytes },
    /// Flush what was sent, then close the connection (or abort the connection attempt).
    Close { conn: ConnId },
    /// The derived session state changed.
    StateChange {
        from: State,
        to: State,
        cause: Cause,
    },
    /// The session reached Established on `conn`; the owner sends its initial table.
    Established {
        conn: ConnId,
        negotiated: Box<Negotiated>,
    },
    /// The session left Established. Without `retain` the owner drops the peer's routes;
    /// with it (graceful restart, RFC 4724 §4.2 / RFC 8538) it keeps them, marked stale.
    Down {
        cause: Cause,
        retain: Option<GrRetain>,
    },
    /// A decoded UPDATE received in Established.
    Update(Box<Update>),
    /// A ROUTE-REFRESH for a negotiated family.
    RouteRefresh(RouteRefresh),
}

/// What the helper keeps of a peer whose session went down gracefully (RFC 4724 §4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrRetain {
    /// The peer's advertised Restart Time: how long to wait for the session to return.
    pub restart_time: Duration,
    /// The families the peer listed in its capability (the only ones retained).
    pub families: Vec<Family>,
}

/// Inputs to a session (RFC 4271 §8.1 events, as the driver observes them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// ManualStart (Event 1).
    Start,
    /// ManualStop (Event 2): send Cease with `subcode` (and RFC 9003 `data`) and stay Idle.
    Stop { subcode: u8, data: Bytes },
    /// A stop for a restart of this speaker: where graceful restart was negotiated the peer
    /// is left to keep our routes (no NOTIFICATION, just the TCP close); otherwise like
    /// `Stop` with Administrative Shutdown.
    StopForRestart,
    /// Our outgoing connection `conn` completed (Event 16/17).
    Connected { conn: ConnId },
    /// Our outgoing connection `conn` failed (Event 18).
    ConnectFailed { conn: ConnId },
    /// The peer connected to us; the speaker matched the remote address to this session.
    Accepted { conn: ConnId },
    /// One whole framed message received on `conn`.
    Message { conn: ConnId, frame: Bytes },
    /// The driver's framing check failed on `conn` (header error, RFC 4271 §6.1).
    FramingError { conn: ConnId, error: DecodeError },
    /// The transport of `conn` closed or failed.
    Closed { conn: ConnId },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ConnState {
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug)]
struct Conn {
    id: ConnId,
    /// True when we initiated it.
    outgoing: bool,
    state: ConnState,
    codec: SessionCodec,
    negotiated: Option<Negotiated>,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
}

/// Counters of one session, kept across connections.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    pub messages_in: u64,
    pub messages_out: u64,
    pub updates_in: u64,
    pub updates_out: u64,
    pub established_transitions: u64,
    pub last_error: Option<Cause>,
}

/// One neighbour's FSM. See the module documentation.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    /// Unique per session within the speaker; the high half of our outgoing ConnIds.
    id: u32,
    next_conn: u32,
    enabled: bool,
    idle_holding: bool,
    connecting: Option<ConnId>,
    conns: Vec<Conn>,
    timers: TimerTable,
    backoff: Backoff,
    state: State,
    established_at: Option<Instant>,
    stats: SessionStats,
    /// The R bit of our OPENs: set while the speaker recovers from a restart (RFC 4724 §3).
    restarting: bool,
}

impl Session {
    /// A new session in Idle. `id` must be unique within the speaker and < 2^31.
    pub fn new(id: u32, cfg: SessionConfig) -> Self {
        let backoff = Backoff::new(cfg.idle_hold_min, cfg.idle_hold_max);
        Session {
            cfg,
            id,
            next_conn: 0,
            enabled: false,
            idle_holding: false,
            connecting: None,
            conns: Vec::with_capacity(2),
            timers: TimerTable::default(),
            backoff,
            state: State::Idle,
            established_at: None,
            stats: SessionStats::default(),
            restarting: false,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// The id given to [`Session::new`] (the high half of our outgoing `ConnId`s).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Replaces parameters that take effect on the next connection (no reset).
    pub fn set_config(&mut self, cfg: SessionConfig) {
        self.backoff = Backoff::new(cfg.idle_hold_min, cfg.idle_hold_max);
        self.cfg = cfg;
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Sets the Restart State (R) bit of the OPENs sent from now on.
    pub fn set_restarting(&mut self, restarting: bool) {
        self.restarting = restarting;
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// True when `conn` is one of this session's connections or connection attempts.
    pub fn owns(&self, conn: ConnId) -> bool {
        self.connecting == Some(conn) || self.conns.iter().any(|c| c.id == conn)
    }

    /// The Established connection, its codec and negotiated parameters.
    pub fn established(&self) -> Option<(ConnId, &Negotiated)> {
        self.conns
            .iter()
            .find(|c| c.state == ConnState::Established)
            .and_then(|c| c.negotiated.as_ref().map(|n| (c.id, n)))
    }

    /// Since when the session is Established.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    /// Records UPDATEs the owner sent on the established connection.
    pub fn note_sent(&mut self, messages: u64, updates: u64) {
        self.stats.messages_out += messages;
        self.stats.updates_out += updates;
    }

    /// The earliest deadline of this session.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let conn_deadlines = self
            .conns
            .iter()
            .flat_map(|c| [c.hold_deadline, c.keepalive_deadline])
            .flatten();
        conn_deadlines.chain(self.timers.next()).min()
    }

    /// Handles one event.
    pub fn handle(&mut self, now: Instant, event: SessionEvent, out: &mut Vec<SessionAction>) {
        let cause = match event {
            SessionEvent::Start => self.on_start(now, out),
            SessionEvent::Stop { subcode, data } => self.on_stop(subcode, data, false, out),
            SessionEvent::StopForRestart => {
                self.on_stop(cease::ADMIN_SHUTDOWN, Bytes::new(), true, out)
            }
            SessionEvent::Connected { conn } => self.on_connected(now, conn, out),
            SessionEvent::ConnectFailed { conn } => {
                if self.connecting == Some(conn) {
                    self.connecting = None;
                    Some(Cause::TcpConnectFailed)
                } else {
                    None
                }
            }
            SessionEvent::Accepted { conn } => self.on_accepted(now, conn, out),
            SessionEvent::Message { conn, frame } => self.on_message(now, conn, frame, out),
            SessionEvent::FramingError { conn, error } => {
                if self.conns.iter().any(|c| c.id == conn) {
                    Some(self.fail_conn(now, conn, error.notification(), out))
                } else {
                    None
                }
            }
            SessionEvent::Closed { conn } => self.on_closed(now, conn, out),
        };
        if let Some(cause) = cause {
            self.update_state(cause, out);
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut Vec<SessionAction>) {
        if self.timers.take_expired(TimerKind::IdleHold, now) && self.enabled {
            self.idle_holding = false;
            self.begin_connecting(now, out);
            self.update_state(Cause::IdleHoldExpired, out);
        }
        if self.timers.take_expired(TimerKind::ConnectRetry, now)
            && self.enabled
            && !self.idle_holding
        {
            if let Some(old) = self.connecting.take() {
                out.push(SessionAction::Close { conn: old });
            }
            if self.conns.is_empty() {
                self.begin_connecting(now, out);
            }
            self.update_state(Cause::ConnectRetryExpired, out);
        }
        // Per-connection timers. Collect first: failing a connection mutates `conns`.
        let mut expired = Vec::new();
        for c in &mut self.conns {
            if c.hold_deadline.is_some_and(|d| d <= now) {
                expired.push(c.id);
                continue;
            }
            if let Some(d) = c.keepalive_deadline
                && d <= now
            {
                let ka = c.negotiated.as_ref().map_or(0, |n| n.keepalive);
                c.keepalive_deadline = (ka > 0).then(|| now + Duration::from_secs(u64::from(ka)));
                out.push(SessionAction::Send {
                    conn: c.id,
                    bytes: keepalive_bytes(),
                });
                self.stats.messages_out += 1;
            }
        }
        for conn in expired {
            let n = Notification {
                code: code::HOLD_TIMER_EXPIRED,
                subcode: 0,
                data: Bytes::new(),
            };
            self.fail_conn(now, conn, n, out);
            self.update_state(Cause::HoldTimerExpired, out);
        }
    }

    fn on_start(&mut self, now: Instant, out: &mut Vec<SessionAction>) -> Option<Cause> {
        if self.enabled {
            return None;
        }
        self.enabled = true;
        self.idle_holding = false;
        self.backoff.reset();
        self.begin_connecting(now, out);
        Some(Cause::Start)
    }

    fn on_stop(
        &mut self,
        subcode: u8,
        data: Bytes,
        for_restart: bool,
        out: &mut Vec<SessionAction>,
    ) -> Option<Cause> {
        self.enabled = false;
        self.idle_holding = false;
        self.timers = TimerTable::default();
        if let Some(c) = self.connecting.take() {
            out.push(SessionAction::Close { conn: c });
        }
        let was_established = self.established_at.take().is_some();
        let n = Notification {
            code: code::CEASE,
            subcode,
            data,
        };
        let mut retain = None;
        for c in std::mem::take(&mut self.conns) {
            // RFC 8538 §5.1: with the N bit on both sides, any Cease but Hard Reset is taken
            // as graceful; a deliberate stop is wrapped in Hard Reset (6/9) carrying the
            // original subcode and data, so the peer flushes our routes at once.
            let n_bit = self.n_bit(&c);
            if for_restart && self.gr_negotiated(&c) {
                // The peer keeps our routes while we restart (RFC 4724 §4.2): a bare close is
                // graceful to every helper. A Cease would not be, even under the N bit: FRR,
                // after RFC 8538 §5.1, takes Administrative Shutdown as a Hard Reset.
                if c.state == ConnState::Established {
                    retain = self.gr_retain(&c);
                }
            } else if n_bit && subcode != cease::HARD_RESET {
                // RFC 8538 §3: Data = ErrCode, Subcode and Data of the wrapped NOTIFICATION.
                let mut data = Vec::with_capacity(2 + n.data.len());
                data.push(code::CEASE);
                data.push(subcode);
                data.extend_from_slice(&n.data);
                let hard = Notification {
                    code: code::CEASE,
                    subcode: cease::HARD_RESET,
                    data: Bytes::from(data),
                };
                self.send_notification(c.id, &hard, &c.codec, out);
            } else {
                self.send_notification(c.id, &n, &c.codec, out);
            }
            out.push(SessionAction::Close { conn: c.id });
        }
        let cause = Cause::Stop(subcode);
        if was_established {
            out.push(SessionAction::Down {
                cause: cause.clone(),
                retain,
            });
        }
        Some(cause)
    }

    fn on_connected(
        &mut self,
        now: Instant,
        conn: ConnId,
        out: &mut Vec<SessionAction>,
    ) -> Option<Cause> {
        if self.connecting != Some(conn) {
            // A stale attempt we already gave up on.
            out.push(SessionAction::Close { conn });
            return None;
        }
        self.connecting = None;
        self.timers.stop(TimerKind::ConnectRetry);
        if self.conns.iter().any(|c| c.state == ConnState::Established) {
            out.push(SessionAction::Close { conn });
            return None;
        }
        self.open_conn(now, conn, true, out);
        Some(Cause::TcpConnected)
    }

    fn on_accepted(
        &mut self,
        now: Instant,
        conn: ConnId,
        out: &mut Vec<SessionAction>,
    ) -> Option<Cause> {
        let reject = |s: &mut Self, subcode: u8, out: &mut Vec<SessionAction>| {
            let n = Notification {
                code: code::CEASE,
                subcode,
                data: Bytes::new(),
            };
            s.send_notification(conn, &n, &SessionCodec::default(), out);
            out.push(SessionAction::Close { conn });
        };
        if !self.enabled || self.idle_holding {
            // RFC 4271 §8.2.2 Idle: refuse incoming connections (no OPEN was exchanged).
            reject(self, cease::CONNECTION_REJECTED, out);
            return None;
        }
        if let Some(old) = self
            .conns
            .iter()
            .find(|c| c.state == ConnState::Established)
        {
            if !self.gr_negotiated(old) {
                // RFC 4271 §6.8: a collision with an Established connection closes the new one.
                reject(self, cease::CONNECTION_COLLISION, out);
                return None;
            }
            // RFC 4724 §4.2: with graceful restart negotiated, a new connection from a peer we
            // still consider Established means it restarted: the old connection is dead; its
            // routes are kept as stale and the new connection proceeds.
            let retain = self.gr_retain(old);
            let old = old.id;
            self.conns.retain(|c| c.id != old);
            self.established_at = None;
            out.push(SessionAction::Close { conn: old });
            out.push(SessionAction::Down {
                cause: Cause::PeerRestarted,
                retain,
            });
            self.stats.last_error = Some(Cause::PeerRestarted);
        }
        if self.conns.iter().any(|c| !c.outgoing) {
            // The peer already has a connection to us; a second one from the same side is a
            // duplicate, not a collision.
            reject(self, cease::CONNECTION_REJECTED, out);
            return None;
        }
        self.open_conn(now, conn, false, out);
        Some(Cause::TcpConnected)
    }

    fn open_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        outgoing: bool,
        out: &mut Vec<SessionAction>,
    ) {
        let codec = SessionCodec::default();
        let open = Message::Open(local_open(&self.cfg, self.restarting));
        out.push(SessionAction::Send {
            conn,
            bytes: encode(&open, &codec),
        });
        self.stats.messages_out += 1;
        self.conns.push(Conn {
            id: conn,
            outgoing,
            state: ConnState::OpenSent,
            codec,
            negotiated: None,
            hold_deadline: Some(now + OPEN_HOLD_TIME),
            keepalive_deadline: None,
        });
    }

    fn on_message(
        &mut self,
        now: Instant,
        conn: ConnId,
        frame: Bytes,
        out: &mut Vec<SessionAction>,
    ) -> Option<Cause> {
        let idx = self.conns.iter().position(|c| c.id == conn)?;
        self.stats.messages_in += 1;
        let max = self.conns[idx].codec.max_message_len();
        if frame.len() > max {
            // RFC 8654 §4: longer than negotiated → Bad Message Length with the length.
            let len = u16::try_from(frame.len()).unwrap_or(u16::MAX);
            let n = Notification {
                code: code::MESSAGE_HEADER,
                subcode: 2,
                data: Bytes::copy_from_slice(&len.to_be_bytes()),
            };
            return Some(self.fail_conn(now, conn, n, out));
        }
        let msg = match wire::decode_message(&frame, &self.conns[idx].codec) {
            Ok(m) => m,
            Err(e) => return Some(self.fail_conn(now, conn, e.notification(), out)),
        };
        let state = self.conns[idx].state;
        if let Message::Notification(n) = &msg {
            let cause = Cause::NotificationReceived {
                code: n.code,
                subcode: n.subcode,
            };
            self.drop_conn(now, conn, cause.clone(), out);
            return Some(cause);
        }
        // Any valid message from the peer restarts the hold timer (RFC 4271 §8.2.2).
        let conn_ref = &mut self.conns[idx];
        if let Some(neg) = &conn_ref.negotiated {
            conn_ref.hold_deadline =
                (neg.hold_time > 0).then(|| now + Duration::from_secs(u64::from(neg.hold_time)));
        }
        match (state, msg) {
            (ConnState::OpenSent, Message::Open(open)) => self.on_open(now, idx, &open, out),
            (ConnState::OpenSent, _) => Some(self.fsm_error(now, conn, 1, out)),
            (ConnState::OpenConfirm, Message::Keepalive) => {
                Some(self.on_established(now, idx, out))
            }
            (ConnState::OpenConfirm, _) => Some(self.fsm_error(now, conn, 2, out)),
            (ConnState::Established, Message::Keepalive) => None,
            (ConnState::Established, Message::Update(u)) => {
                self.stats.updates_in += 1;
                out.push(SessionAction::Update(Box::new(u)));
                None
            }
            (ConnState::Established, Message::RouteRefresh(rr)) => {
                let negotiated = self.conns[idx]
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.families.contains(&rr.family));
                // RFC 7313 §5: unknown subtypes and unnegotiated families are ignored.
                if negotiated && rr.subtype == 0 {
                    out.push(SessionAction::RouteRefresh(rr));
                }
                None
            }
            (ConnState::Established, _) => Some(self.fsm_error(now, conn, 3, out)),
        }
    }

    fn on_open(
        &mut self,
        now: Instant,
        idx: usize,
        open: &wire::Open,
        out: &mut Vec<SessionAction>,
    ) -> Option<Cause> {
        let conn = self.conns[idx].id;
        let negotiated = match negotiate(&self.cfg, open) {
            Ok(n) => n,
            Err(n) => return Some(self.fail_conn(now, conn, n, out)),
        };
        // RFC 4271 §6.8 collision detection: the OPEN tells us the peer's identifier, which
        // decides every other connection still in OpenSent or OpenConfirm.
        if let Some(other) = self
            .conns
            .iter()
            .find(|c| c.id != conn)
            .map(|c| (c.id, c.outgoing))
        {
            let local = u32::from(self.cfg.router_id);
            let remote = u32::from(negotiated.remote_id);
            // The connection initiated by the higher identifier survives.
            let keep_outgoing = local > remote;
            let this_outgoing = self.conns[idx].outgoing;
            let n = Notification {
                code: code::CEASE,
                subcode: cease::CONNECTION_COLLISION,
                data: Bytes::new(),
            };
            if this_outgoing == keep_outgoing {
                self.close_with(other.0, &n, out);
            } else {
                self.close_with(conn, &n, out);
                return Some(Cause::CollisionLost);
            }
        }
        let idx = self.conns.iter().position(|c| c.id == conn)?;
        let c = &mut self.conns[idx];
        c.codec = negotiated.codec.clone();
        c.hold_deadline = Some(if negotiated.hold_time > 0 {
            now + Duration::from_secs(u64::from(negotiated.hold_time))
        } else {
            // RFC 4271 §4.4 hold time 0: no hold timer once established; keep a bound on
            // OpenConfirm so a silent peer cannot park the connection forever.
            now + OPEN_HOLD_TIME
        });
        c.keepalive_deadline = (negotiated.keepalive > 0)
            .then(|| now + Duration::from_secs(u64::from(negotiated.keepalive)));
        c.negotiated = Some(negotiated);
        c.state = ConnState::OpenConfirm;
        out.push(SessionAction::Send {
            conn,
            bytes: keepalive_bytes(),
        });
        self.stats.messages_out += 1;
        Some(Cause::OpenReceived)
    }

    fn on_established(&mut self, now: Instant, idx: usize, out: &mut Vec<SessionAction>) -> Cause {
        let conn = self.conns[idx].id;
        let c = &mut self.conns[idx];
        c.state = ConnState::Established;
        let negotiated = c.negotiated.clone().unwrap_or_else(|| {
            // OpenConfirm is only entered with negotiated parameters (on_open); this branch
            // exists so a logic error degrades to a closed connection rather than a panic.
            Negotiated {
                codec: c.codec.clone(),
                families: Vec::new(),
                hold_time: 0,
                keepalive: 0,
                remote_id: Ipv4Addr::UNSPECIFIED,
                remote_as: 0,
                route_refresh: false,
                peer_graceful_restart: None,
            }
        });
        if negotiated.hold_time == 0 {
            c.hold_deadline = None;
        }
        // Every other connection and attempt loses to the Established one (§6.8).
        let n = Notification {
            code: code::CEASE,
            subcode: cease::CONNECTION_COLLISION,
            data: Bytes::new(),
        };
        let others: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|c| c.id != conn)
            .map(|c| c.id)
            .collect();
        for o in others {
            self.close_with(o, &n, out);
        }
        if let Some(c) = self.connecting.take() {
            out.push(SessionAction::Close { conn: c });
        }
        self.timers.stop(TimerKind::ConnectRetry);
        self.established_at = Some(now);
        self.stats.established_transitions += 1;
        out.push(SessionAction::Established {
            conn,
            negotiated: Box::new(negotiated),
        });
        Cause::KeepaliveReceived
    }

    fn on_closed(
        &mut self,
        now: Instant,
        conn: ConnId,
        out: &mut Vec<SessionAction>,
    ) -> Option<Cause> {
        if self.connecting == Some(conn) {
            self.connecting = None;
            return Some(Cause::TcpConnectFailed);
        }
        if !self.conns.iter().any(|c| c.id == conn) {
            return None;
        }
        self.drop_conn(now, conn, Cause::TcpClosed, out);
        Some(Cause::TcpClosed)
    }

    /// RFC 6608 FSM error: unexpected message in OpenSent (1), OpenConfirm (2), Established (3).
    fn fsm_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        subcode: u8,
        out: &mut Vec<SessionAction>,
    ) -> Cause {
        let n = Notification {
            code: code::FSM,
            subcode,
            data: Bytes::new(),
        };
        self.fail_conn(now, conn, n, out)
    }

    /// Sends `n` on `conn`, closes it, and takes the session down if it was the last one.
    fn fail_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        n: Notification,
        out: &mut Vec<SessionAction>,
    ) -> Cause {
        let codec = self
            .conns
            .iter()
            .find(|c| c.id == conn)
            .map(|c| c.codec.clone())
            .unwrap_or_default();
        self.send_notification(conn, &n, &codec, out);
        out.push(SessionAction::Close { conn });
        let cause = Cause::NotificationSent {
            code: n.code,
            subcode: n.subcode,
        };
        self.drop_conn(now, conn, cause.clone(), out);
        cause
    }

    /// Sends `n` and closes `conn` without touching the rest of the session (collision loser).
    fn close_with(&mut self, conn: ConnId, n: &Notification, out: &mut Vec<SessionAction>) {
        if let Some(i) = self.conns.iter().position(|c| c.id == conn) {
            let c = self.conns.remove(i);
            self.send_notification(conn, n, &c.codec, out);
            out.push(SessionAction::Close { conn });
        }
    }

    /// Forgets `conn` (already closed or being closed). If it was Established, the session goes
    /// down; if no connection is left, the session waits out the idle-hold backoff.
    fn drop_conn(
        &mut self,
        now: Instant,
        conn: ConnId,
        cause: Cause,
        out: &mut Vec<SessionAction>,
    ) {
        let Some(i) = self.conns.iter().position(|c| c.id == conn) else {
            return;
        };
        let c = self.conns.remove(i);
        if c.state == ConnState::Established {
            let retain = self
                .gr_retain(&c)
                .filter(|_| self.graceful_cause(&c, &cause));
            out.push(SessionAction::Close { conn });
            out.push(SessionAction::Down {
                cause: cause.clone(),
                retain,
            });
            if let Some(at) = self.established_at.take()
                && now.saturating_duration_since(at) >= self.backoff.max()
            {
                // A session that stayed up for a while is not flapping.
                self.backoff.reset();
            }
        }
        self.stats.last_error = Some(cause);
        if self.conns.is_empty() && self.enabled {
            if let Some(a) = self.connecting.take() {
                out.push(SessionAction::Close { conn: a });
            }
            self.timers.stop(TimerKind::ConnectRetry);
            self.idle_holding = true;
            let delay = self.backoff.next_delay();
            self.timers.set(TimerKind::IdleHold, now + delay);
        }
    }

    /// Graceful restart was negotiated on `c` (both sides advertised it) and the peer listed
    /// families with a non-zero restart time: what a helper keeps if `c` fails gracefully.
    fn gr_retain(&self, c: &Conn) -> Option<GrRetain> {
        self.cfg.graceful_restart_time?;
        let g = c.negotiated.as_ref()?.peer_graceful_restart.as_ref()?;
        if g.restart_time == 0 || g.families.is_empty() {
            return None;
        }
        Some(GrRetain {
            restart_time: Duration::from_secs(u64::from(g.restart_time)),
            families: g.families.iter().map(|f| f.family).collect(),
        })
    }

    /// Both sides advertised graceful restart on `c` (the peer possibly as a helper only,
    /// listing no family): it keeps our routes when the connection fails.
    fn gr_negotiated(&self, c: &Conn) -> bool {
        self.cfg.graceful_restart_time.is_some()
            && c.negotiated
                .as_ref()
                .is_some_and(|n| n.peer_graceful_restart.is_some())
    }

    /// Both sides advertised the N bit on `c` (RFC 8538).
    fn n_bit(&self, c: &Conn) -> bool {
        self.cfg.graceful_restart_time.is_some()
            && c.negotiated
                .as_ref()
                .and_then(|x| x.peer_graceful_restart.as_ref())
                .is_some_and(|g| g.notification)
    }

    /// Whether an Established connection that ended with `cause` ended gracefully: a transport
    /// failure always does (RFC 4724 §4.2); a NOTIFICATION, sent or received, or a hold timer
    /// expiry only under the N bit and when it is not a Hard Reset (RFC 8538 §4).
    fn graceful_cause(&self, c: &Conn, cause: &Cause) -> bool {
        match cause {
            Cause::TcpClosed | Cause::PeerRestarted => true,
            Cause::HoldTimerExpired => self.n_bit(c),
            Cause::NotificationReceived { code, subcode }
            | Cause::NotificationSent { code, subcode } => {
                self.n_bit(c) && !(*code == code::CEASE && *subcode == cease::HARD_RESET)
            }
            Cause::Stop(_)
            | Cause::Start
            | Cause::IdleHoldExpired
            | Cause::ConnectRetryExpired
            | Cause::TcpConnected
            | Cause::TcpConnectFailed
            | Cause::OpenReceived
            | Cause::KeepaliveReceived
            | Cause::CollisionLost => false,
        }
    }

    fn begin_connecting(&mut self, now: Instant, out: &mut Vec<SessionAction>) {
        if self.cfg.passive {
            return;
        }
        self.next_conn = self.next_conn.wrapping_add(1);
        let conn = ConnId((u64::from(self.id) << 32) | u64::from(self.next_conn));
        self.connecting = Some(conn);
        out.push(SessionAction::Connect { conn });
        self.timers
            .set(TimerKind::ConnectRetry, now + self.cfg.connect_retry);
    }

    fn send_notification(
        &mut self,
        conn: ConnId,
        n: &Notification,
        codec: &SessionCodec,
        out: &mut Vec<SessionAction>,
    ) {
        // The data field can carry a whole received attribute; cut it so the NOTIFICATION
        // always fits a 4096-octet message (RFC 4271 §4.5 header 21 octets).
        let mut n = n.clone();
        n.data.truncate(wire::MAX_MESSAGE_LEN - 21);
        out.push(SessionAction::Send {
            conn,
            bytes: encode(&Message::Notification(n.clone()), codec),
        });
        self.stats.messages_out += 1;
        self.stats.last_error = Some(Cause::NotificationSent {
            code: n.code,
            subcode: n.subcode,
        });
    }

    fn derive_state(&self) -> State {
        if let Some(best) = self.conns.iter().map(|c| c.state).max_by_key(|s| *s as u8) {
            return match best {
                ConnState::Established => State::Established,
                ConnState::OpenConfirm => State::OpenConfirm,
                ConnState::OpenSent => State::OpenSent,
            };
        }
        if !self.enabled || self.idle_holding {
            State::Idle
        } else if self.connecting.is_some() {
            State::Connect
        } else {
            State::Active
        }
    }

    fn update_state(&mut self, cause: Cause, out: &mut Vec<SessionAction>) {
        let new = self.derive_state();
        if new != self.state {
            out.push(SessionAction::StateChange {
                from: self.state,
                to: new,
                cause,
            });
            self.state = new;
        }
    }
}

/// The fixed 19-octet KEEPALIVE (RFC 4271 §4.4).
pub fn keepalive_bytes() -> Bytes {
    let mut b = [0xffu8; 19];
    b[16] = 0;
    b[17] = 19;
    b[18] = 4;
    Bytes::copy_from_slice(&b)
}

fn encode(msg: &Message, codec: &SessionCodec) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    // OPEN, NOTIFICATION and KEEPALIVE built here always fit: an OPEN with our handful of
    // capabilities is < 100 octets and NOTIFICATION data is truncated by the codec.
    match wire::encode_message(msg, codec, &mut buf) {
        Ok(()) => buf.freeze(),
        Err(_) => Bytes::new(),
    }
}
