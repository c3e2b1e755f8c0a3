//! The API translator end to end, in process: `api::serve` on a Unix socket in a temporary
//! directory, a fake driver that answers `ApiRequest`s with canned views (a test double of
//! the daemon's driver loop), and the CLI subcommands run against it with `--json`.

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use podbgp::api::{self, ApiHandle, ApiListen, ApiRequest, Clock};
use podbgp::cli::json::{
    ConfigJson, EventJson, EventKindJson, HealthJson, PeerJson, PeerRoleJson, PeerTypeJson,
    ResetJson, RouteJson, SessionStateJson, SpeakerJson, StatusJson,
};
use podbgp::cli::{
    self, ApiTarget, ClientCommand, EXIT_FAILURE, EXIT_OK, EXIT_UNREACHABLE, HealthArgs, JsonFlag,
    RoutesArgs, TableArg,
};
use podbgp::config::{PeerOrigin, PeerRole};
use podbgp::session::State;
use podbgp::speaker::{
    Command, FamilyCounters, FibCounters, KernelNextHop, KernelRouteKind, KernelRouteView,
    PeerView, Query, QueryError, RouteView, SpeakerEvent, SpeakerView, TableKind, View,
};
use podbgp::wire::{Family, Origin};
use tokio::sync::{broadcast, mpsc, oneshot, watch};

const CONFIG_YAML: &str = "local_as: 64512\nrouter_id: 10.0.0.1\n";
const DEADLINE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "podbgp-api-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ago(clock: &Clock, secs: u64) -> Instant {
    clock
        .instant
        .checked_sub(Duration::from_secs(secs))
        .unwrap()
}

fn peers(clock: &Clock) -> Vec<PeerView> {
    let base = PeerView {
        address: ip("10.0.0.2"),
        port: 179,
        remote_as: 64512,
        local_as: 64512,
        role: PeerRole::Mesh,
        origin: PeerOrigin::Mesh,
        state: State::Established,
        since: ago(clock, 60),
        info: "Established".into(),
        remote_id: Some("10.0.0.2".parse().unwrap()),
        hold_time: 90,
        keepalive: 30,
        families: vec![FamilyCounters {
            family: Family::IPV4_UNICAST,
            received: 3,
            accepted: 3,
            advertised: 2,
        }],
        updates_received: 4,
        updates_sent: 5,
        messages_received: 40,
        messages_sent: 50,
        last_error: None,
        passive: false,
        description: Some("node-b".into()),
        established_transitions: 1,
    };
    vec![
        // Deliberately out of address order: the CLI sorts.
        PeerView {
            address: ip("fd00::2"),
            role: PeerRole::RrClient,
            origin: PeerOrigin::Configured,
            remote_id: Some("10.0.0.9".parse().unwrap()),
            families: vec![FamilyCounters {
                family: Family::IPV6_UNICAST,
                received: 1,
                accepted: 1,
                advertised: 1,
            }],
            description: None,
            ..base.clone()
        },
        PeerView {
            address: ip("10.0.0.3"),
            remote_as: 65001,
            role: PeerRole::Ebgp,
            origin: PeerOrigin::Global,
            state: State::Active,
            since: ago(clock, 5),
            info: "Active Socket: Connection refused".into(),
            remote_id: None,
            families: vec![],
            last_error: Some("Socket: Connection refused".into()),
            passive: false,
            description: None,
            established_transitions: 0,
            ..base.clone()
        },
        base,
    ]
}

fn routes() -> Vec<RouteView> {
    vec![
        RouteView {
            prefix: "10.244.1.0/26".parse().unwrap(),
            next_hops: vec![ip("10.0.0.2")],
            peer: Some(ip("10.0.0.2")),
            as_path: vec![],
            origin: Some(Origin::Igp),
            med: None,
            local_pref: Some(100),
            communities: vec![(65000 << 16) | 100],
            originator_id: None,
            cluster_list: vec![],
            best: true,
            reason: "only-path".into(),
            stale: false,
            kernel: None,
        },
        RouteView {
            prefix: "10.244.2.0/26".parse().unwrap(),
            next_hops: vec![],
            peer: None,
            as_path: vec![],
            origin: Some(Origin::Igp),
            med: None,
            local_pref: None,
            communities: vec![],
            originator_id: None,
            cluster_list: vec![],
            best: true,
            reason: "local".into(),
            stale: false,
            kernel: None,
        },
    ]
}

/// The kernel table as the driver answers it: a route via a peer and a blackhole.
fn fib_routes() -> Vec<RouteView> {
    let kernel_route = |prefix: &str, kind, hops: Vec<KernelNextHop>| RouteView {
        prefix: prefix.parse().unwrap(),
        next_hops: hops.iter().map(|h| h.gateway).collect(),
        peer: None,
        as_path: vec![],
        origin: None,
        med: None,
        local_pref: None,
        communities: vec![],
        originator_id: None,
        cluster_list: vec![],
        best: true,
        reason: String::new(),
        stale: false,
        kernel: Some(KernelRouteView {
            kind,
            next_hops: hops,
        }),
    };
    vec![
        kernel_route(
            "10.244.1.0/26",
            KernelRouteKind::Unicast,
            vec![KernelNextHop {
                gateway: ip("10.0.0.2"),
                device: Some("tunl0".into()),
                onlink: true,
            }],
        ),
        kernel_route("10.244.2.0/26", KernelRouteKind::Blackhole, vec![]),
    ]
}

fn speaker_view(clock: &Clock) -> SpeakerView {
    SpeakerView {
        local_as: 64512,
        router_id: "10.0.0.1".parse().unwrap(),
        listen: Some((ip("0.0.0.0"), 179)),
        started: ago(clock, 100),
        peers_configured: 3,
        peers_established: 2,
        loc_rib_prefixes: 2,
        decision_runs: 7,
        updates_received: 8,
        updates_sent: 9,
        fib: Some(FibCounters {
            installed: 2,
            adds: 3,
            deletes: 1,
            repairs: 1,
            ..FibCounters::default()
        }),
    }
}

/// The fake driver: answers queries from the canned views, records commands.
async fn responder(
    clock: Clock,
    mut rx: mpsc::Receiver<ApiRequest>,
    commands: mpsc::UnboundedSender<Command>,
) {
    while let Some(req) = rx.recv().await {
        match req {
            ApiRequest::Query { query, reply } => {
                let answer = match query {
                    Query::Speaker => Ok(View::Speaker(speaker_view(&clock))),
                    Query::Peers => Ok(View::Peers(peers(&clock))),
                    Query::Peer(a) => peers(&clock)
                        .into_iter()
                        .find(|p| p.address == a)
                        .map(|p| View::Peer(Box::new(p)))
                        .ok_or(QueryError::NoSuchPeer(a)),
                    Query::Routes {
                        table: table @ (TableKind::AdjRibIn | TableKind::AdjRibOut),
                        peer: None,
                        ..
                    } => Err(QueryError::PeerRequired(table)),
                    Query::Routes {
                        table: TableKind::Fib,
                        prefix,
                        ..
                    } => Ok(View::Routes(
                        fib_routes()
                            .into_iter()
                            .filter(|r| prefix.is_none_or(|p| p == r.prefix))
                            .collect(),
                    )),
                    Query::Routes { prefix, .. } => Ok(View::Routes(
                        routes()
                            .into_iter()
                            .filter(|r| prefix.is_none_or(|p| p == r.prefix))
                            .collect(),
                    )),
                };
                let _ = reply.send(answer);
            }
            ApiRequest::Command { command, reply } => {
                let answer = match &command {
                    Command::ResetPeer { address, .. }
                        if !peers(&clock).iter().any(|p| p.address == *address) =>
                    {
                        Err(QueryError::NoSuchPeer(*address))
                    }
                    _ => Ok(()),
                };
                let _ = commands.send(command);
                let _ = reply.send(answer);
            }
        }
    }
}

struct Daemon {
    _dir: TempDir,
    socket: PathBuf,
    clock: Clock,
    events: broadcast::Sender<SpeakerEvent>,
    commands: mpsc::UnboundedReceiver<Command>,
    shutdown: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<Result<(), api::ApiError>>,
}

impl Daemon {
    /// Starts the API on `<tmp>/run/podbgp/podbgp.sock` (the parent directories do not
    /// exist yet) with the fake driver behind it.
    async fn start() -> Daemon {
        Self::start_with(16, true).await
    }

    async fn start_with(event_capacity: usize, with_driver: bool) -> Daemon {
        let dir = TempDir::new();
        let socket = dir.0.join("run/podbgp/podbgp.sock");
        let clock = Clock::now();
        let (req_tx, req_rx) = mpsc::channel(8);
        let (events, _) = broadcast::channel(event_capacity);
        let (_config_tx, config_rx) = watch::channel(CONFIG_YAML.to_string());
        let (cmd_tx, commands) = mpsc::unbounded_channel();
        if with_driver {
            tokio::spawn(responder(clock, req_rx, cmd_tx));
        } else {
            drop(req_rx);
        }
        let handle = ApiHandle {
            requests: req_tx,
            events: events.clone(),
            config_yaml: config_rx,
            clock,
        };
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(api::serve(
            ApiListen::Unix(socket.clone()),
            handle,
            async move {
                let _ = stop_rx.await;
            },
        ));
        wait_for(|| socket.exists(), "the API socket to appear").await;
        Daemon {
            _dir: dir,
            socket,
            clock,
            events,
            commands,
            shutdown: Some(stop_tx),
            server,
        }
    }

    fn target(&self) -> ApiTarget {
        ApiTarget::Unix(self.socket.clone())
    }

    async fn stop(mut self) -> Result<(), api::ApiError> {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(DEADLINE, &mut self.server)
            .await
            .expect("serve did not return after shutdown")
            .unwrap()
    }
}

/// Polls `cond` until it holds, failing after [`DEADLINE`].
async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn run(cmd: ClientCommand, target: &ApiTarget) -> (i32, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = tokio::time::timeout(
        DEADLINE,
        cli::run_client_with(cmd, target, &mut out, &mut err),
    )
    .await
    .expect("client timed out")
    .unwrap();
    (
        code,
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

async fn run_json<T: serde::de::DeserializeOwned>(cmd: ClientCommand, target: &ApiTarget) -> T {
    let (code, out, err) = run(cmd, target).await;
    assert_eq!(code, EXIT_OK, "stderr: {err}");
    assert_eq!(err, "");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad JSON ({e}): {out}"))
}

const JSON: JsonFlag = JsonFlag { json: true };

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn status_json_and_table() {
    let d = Daemon::start().await;
    let s: StatusJson = run_json(ClientCommand::Status(JSON), &d.target()).await;
    assert!(s.process_running);
    let v4: Vec<&str> = s.ipv4.iter().map(|r| r.peer_address.as_str()).collect();
    assert_eq!(v4, ["10.0.0.2", "10.0.0.3"]);
    assert_eq!(s.ipv6.len(), 1);

    let mesh = &s.ipv4[0];
    assert_eq!(mesh.peer_type, "node-to-node mesh");
    assert_eq!(mesh.state, "up");
    assert_eq!(mesh.info, "Established");
    assert_eq!(mesh.session_state, SessionStateJson::Established);
    assert_eq!(mesh.since_unix, d.clock.to_unix(ago(&d.clock, 60)));
    assert_eq!(mesh.since.len(), "HH:MM:SS".len());

    let global = &s.ipv4[1];
    assert_eq!(global.peer_type, "global");
    assert_eq!(global.state, "start");
    assert_eq!(global.info, "Active Socket: Connection refused");
    assert_eq!(s.ipv6[0].peer_type, "route reflector");

    // The raw key names are the documented contract.
    let (_, out, _) = run(ClientCommand::Status(JSON), &d.target()).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["ipv4"][0]["peer_address"], "10.0.0.2");
    assert_eq!(v["ipv4"][1]["session_state"], "active");

    let (code, text, _) = run(ClientCommand::Status(JsonFlag::default()), &d.target()).await;
    assert_eq!(code, EXIT_OK);
    assert!(
        text.starts_with("podbgp process is running.\n\nIPv4 BGP status\n+"),
        "{text}"
    );
    assert!(text.contains("| PEER ADDRESS |     PEER TYPE     | STATE |  SINCE   |"));
    assert!(
        text.contains("| 10.0.0.3     | global            | start |"),
        "{text}"
    );
    assert!(text.contains("\nIPv6 BGP status\n"));
    d.stop().await.unwrap();
}

#[tokio::test]
async fn peers_and_peer_json() {
    let d = Daemon::start().await;
    let peers: Vec<PeerJson> = run_json(ClientCommand::Peers(JSON), &d.target()).await;
    let addrs: Vec<&str> = peers.iter().map(|p| p.address.as_str()).collect();
    assert_eq!(addrs, ["10.0.0.2", "10.0.0.3", "fd00::2"]);
    let b = &peers[0];
    assert_eq!(b.peer_type, PeerTypeJson::Mesh);
    assert_eq!(b.role, PeerRoleJson::Mesh);
    assert_eq!(b.state, SessionStateJson::Established);
    assert_eq!(b.remote_router_id.as_deref(), Some("10.0.0.2"));
    assert_eq!(b.description.as_deref(), Some("node-b"));
    assert_eq!(b.families[0].family, "ipv4-unicast");
    assert_eq!((b.families[0].received, b.families[0].advertised), (3, 2));
    assert_eq!((b.messages_received, b.messages_sent), (40, 50));
    let c = &peers[1];
    assert_eq!(c.peer_type, PeerTypeJson::Global);
    assert_eq!(c.role, PeerRoleJson::Ebgp);
    assert_eq!(c.remote_as, 65001);
    assert_eq!(c.remote_router_id, None);
    assert_eq!(c.last_error.as_deref(), Some("Socket: Connection refused"));
    assert_eq!(peers[2].peer_type, PeerTypeJson::RouteReflector);
    assert_eq!(peers[2].role, PeerRoleJson::RrClient);

    let (_, out, _) = run(ClientCommand::Peers(JSON), &d.target()).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[1]["state"], "active");
    assert_eq!(v[1]["remote_router_id"], serde_json::Value::Null);
    assert_eq!(v[2]["peer_type"], "route_reflector");
    assert_eq!(v[2]["role"], "rr_client");

    let p: PeerJson = run_json(
        ClientCommand::Peer {
            address: ip("10.0.0.3"),
            output: JSON,
        },
        &d.target(),
    )
    .await;
    assert_eq!(p, peers[1]);

    let (code, text, _) = run(
        ClientCommand::Peer {
            address: ip("10.0.0.2"),
            output: JsonFlag::default(),
        },
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_OK);
    assert!(text.starts_with("Peer 10.0.0.2 port 179\n"), "{text}");

    let (code, out, err) = run(
        ClientCommand::Peer {
            address: ip("10.9.9.9"),
            output: JSON,
        },
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_FAILURE);
    assert_eq!(out, "");
    assert_eq!(err, "podbgp: no such peer 10.9.9.9\n");
    d.stop().await.unwrap();
}

fn routes_cmd(table: TableArg, peer: Option<&str>, prefix: Option<&str>) -> ClientCommand {
    ClientCommand::Routes(RoutesArgs {
        table,
        peer: peer.map(ip),
        prefix: prefix.map(str::to_string),
        output: JSON,
    })
}

#[tokio::test]
async fn routes_json_and_errors() {
    let d = Daemon::start().await;
    let all: Vec<RouteJson> = run_json(routes_cmd(TableArg::LocRib, None, None), &d.target()).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].prefix, "10.244.1.0/26");
    assert_eq!(all[0].next_hops, ["10.0.0.2"]);
    assert_eq!(all[0].peer.as_deref(), Some("10.0.0.2"));
    assert_eq!(all[0].communities, ["65000:100"]);
    assert_eq!(all[0].local_pref, Some(100));
    assert_eq!(all[0].med, None);
    assert!(all[0].best);
    assert_eq!(all[1].peer, None);

    let (_, out, _) = run(routes_cmd(TableArg::LocRib, None, None), &d.target()).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["origin"], "igp");
    assert_eq!(v[1]["peer"], serde_json::Value::Null);

    let one: Vec<RouteJson> = run_json(
        routes_cmd(TableArg::Fib, None, Some("10.244.2.0/26")),
        &d.target(),
    )
    .await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].prefix, "10.244.2.0/26");
    let k = one[0]
        .kernel
        .as_ref()
        .expect("a FIB entry carries its kernel route");
    assert_eq!(k.route_type, "blackhole");
    assert!(k.next_hops.is_empty());
    assert_eq!(all[0].kernel, None);

    let (_, out, _) = run(routes_cmd(TableArg::Fib, None, None), &d.target()).await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v[0]["kernel"],
        serde_json::json!({"type": "unicast", "rtm_type": null,
            "next_hops": [{"gateway": "10.0.0.2", "device": "tunl0", "onlink": true}]})
    );
    assert_eq!(v[0]["next_hops"], serde_json::json!(["10.0.0.2"]));
    assert_eq!(v[0]["origin"], serde_json::Value::Null);
    let fib_text = RoutesArgs {
        table: TableArg::Fib,
        peer: None,
        prefix: None,
        output: JsonFlag::default(),
    };
    let (code, text, _) = run(ClientCommand::Routes(fib_text), &d.target()).await;
    assert_eq!(code, EXIT_OK);
    assert!(
        text.contains("10.244.1.0/26") && text.contains("via 10.0.0.2 dev tunl0 onlink"),
        "{text}"
    );
    assert!(text.contains("blackhole"), "{text}");

    // A bad prefix is rejected by the API with the field named.
    let (code, _, err) = run(
        routes_cmd(TableArg::LocRib, None, Some("10.244.2.1/26")),
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_FAILURE);
    assert_eq!(
        err,
        "podbgp: invalid argument: prefix: \"10.244.2.1/26\" has host bits set (did you mean 10.244.2.0/26?)\n"
    );
    let (code, _, err) = run(
        routes_cmd(TableArg::LocRib, None, Some("nope")),
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_FAILURE);
    assert!(
        err.starts_with("podbgp: invalid argument: prefix: not a prefix"),
        "{err}"
    );

    // Adj-RIB tables need a peer (the driver's QueryError, mapped to INVALID_ARGUMENT).
    let (code, _, err) = run(routes_cmd(TableArg::AdjRibIn, None, None), &d.target()).await;
    assert_eq!(code, EXIT_FAILURE);
    assert_eq!(
        err,
        "podbgp: invalid argument: table AdjRibIn needs a peer address\n"
    );
    let r: Vec<RouteJson> = run_json(
        routes_cmd(TableArg::AdjRibIn, Some("10.0.0.2"), None),
        &d.target(),
    )
    .await;
    assert_eq!(r.len(), 2);

    let (code, text, _) = run(
        ClientCommand::Routes(RoutesArgs {
            table: TableArg::LocRib,
            peer: None,
            prefix: None,
            output: JsonFlag::default(),
        }),
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_OK);
    assert!(text.contains("| 10.244.1.0/26 | 10.0.0.2 "), "{text}");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn reset_sends_the_command() {
    let mut d = Daemon::start().await;
    let r: ResetJson = run_json(
        ClientCommand::Reset {
            peer: ip("10.0.0.2"),
            soft: true,
            output: JSON,
        },
        &d.target(),
    )
    .await;
    assert_eq!(
        r,
        ResetJson {
            address: "10.0.0.2".into(),
            soft: true
        }
    );
    assert_eq!(
        d.commands.recv().await.unwrap(),
        Command::ResetPeer {
            address: ip("10.0.0.2"),
            soft: true
        }
    );

    let (code, out, _) = run(
        ClientCommand::Reset {
            peer: ip("fd00::2"),
            soft: false,
            output: JsonFlag::default(),
        },
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_OK);
    assert_eq!(out, "Hard reset of peer fd00::2 requested.\n");
    assert_eq!(
        d.commands.recv().await.unwrap(),
        Command::ResetPeer {
            address: ip("fd00::2"),
            soft: false
        }
    );

    let (code, _, err) = run(
        ClientCommand::Reset {
            peer: ip("10.9.9.9"),
            soft: false,
            output: JSON,
        },
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_FAILURE);
    assert_eq!(err, "podbgp: no such peer 10.9.9.9\n");
    d.stop().await.unwrap();
}

#[tokio::test]
async fn speaker_and_config_json() {
    let d = Daemon::start().await;
    let s: SpeakerJson = run_json(ClientCommand::Speaker(JSON), &d.target()).await;
    assert_eq!(s.local_as, 64512);
    assert_eq!(s.router_id, "10.0.0.1");
    assert_eq!(s.listen_address.as_deref(), Some("0.0.0.0"));
    assert_eq!(s.listen_port, Some(179));
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(s.started_unix, d.clock.to_unix(ago(&d.clock, 100)));
    assert!(
        (100..200).contains(&s.uptime_seconds),
        "{}",
        s.uptime_seconds
    );
    assert_eq!((s.peers_configured, s.peers_established), (3, 2));
    assert_eq!(
        (s.decision_runs, s.updates_received, s.updates_sent),
        (7, 8, 9)
    );
    let fib = s.fib.expect("FIB counters");
    assert_eq!(
        (
            fib.installed,
            fib.adds,
            fib.deletes,
            fib.repairs,
            fib.failures
        ),
        (2, 3, 1, 1, 0)
    );
    let (code, text, _) = run(ClientCommand::Speaker(JsonFlag::default()), &d.target()).await;
    assert_eq!(code, EXIT_OK);
    assert!(text.contains("Kernel routes:    2 installed"), "{text}");

    let c: ConfigJson = run_json(ClientCommand::Config(JSON), &d.target()).await;
    assert_eq!(c.yaml, CONFIG_YAML);
    let (code, text, _) = run(ClientCommand::Config(JsonFlag::default()), &d.target()).await;
    assert_eq!(code, EXIT_OK);
    assert_eq!(text, CONFIG_YAML);
    d.stop().await.unwrap();
}

fn peer_event(n: u32) -> SpeakerEvent {
    SpeakerEvent::PeerState {
        address: ip("10.0.0.2"),
        from: State::OpenConfirm,
        to: State::Established,
        cause: format!("event {n}"),
    }
}

/// Starts `podbgp watch --json --count n` in a task and waits until it has subscribed.
async fn start_watch(d: &Daemon, count: u64) -> tokio::task::JoinHandle<(i32, String, String)> {
    let target = d.target();
    let before = d.events.receiver_count();
    let task = tokio::spawn(async move {
        run(
            ClientCommand::Watch {
                count: Some(count),
                output: JSON,
            },
            &target,
        )
        .await
    });
    let events = d.events.clone();
    wait_for(
        move || events.receiver_count() > before,
        "the watch subscription",
    )
    .await;
    task
}

#[tokio::test]
async fn watch_delivers_broadcast_events() {
    let d = Daemon::start().await;
    let task = start_watch(&d, 2).await;
    d.events.send(peer_event(1)).unwrap();
    d.events
        .send(SpeakerEvent::BestPath {
            prefix: "10.244.1.0/26".parse().unwrap(),
            next_hops: vec![ip("10.0.0.2")],
            peer: Some(ip("10.0.0.2")),
        })
        .unwrap();
    let (code, out, err) = task.await.unwrap();
    assert_eq!(code, EXIT_OK, "{err}");
    let lines: Vec<EventJson> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0].event,
        EventKindJson::PeerState {
            address: "10.0.0.2".into(),
            from: SessionStateJson::OpenConfirm,
            to: SessionStateJson::Established,
            cause: "event 1".into(),
        }
    );
    assert_eq!(
        lines[1].event,
        EventKindJson::BestPath {
            prefix: "10.244.1.0/26".into(),
            next_hops: vec!["10.0.0.2".into()],
            peer: Some("10.0.0.2".into()),
        }
    );
    let v: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(v["type"], "peer_state");
    assert!(v["time_unix_ms"].as_i64().unwrap() > 1_600_000_000_000);
    d.stop().await.unwrap();
}

/// A watcher that falls behind the broadcast skips events but keeps its stream.
#[tokio::test]
async fn lagging_watch_skips_and_continues() {
    let d = Daemon::start_with(4, true).await;
    // Capacity 4: after 10 sends with no chance for the server task to run (this test runs
    // on a current-thread runtime and `send` does not yield), the first 6 are lost.
    let task = start_watch(&d, 5).await;
    for n in 0..10 {
        d.events.send(peer_event(n)).unwrap();
    }
    // The stream survived the lag: once the watcher has drained the buffer, a later event
    // still arrives.
    let events = d.events.clone();
    wait_for(move || events.is_empty(), "the watcher to drain the buffer").await;
    d.events.send(peer_event(99)).unwrap();
    let (code, out, err) = task.await.unwrap();
    assert_eq!(code, EXIT_OK, "{err}");
    let causes: Vec<String> = out
        .lines()
        .map(
            |l| match serde_json::from_str::<EventJson>(l).unwrap().event {
                EventKindJson::PeerState { cause, .. } => cause,
                other => panic!("{other:?}"),
            },
        )
        .collect();
    assert_eq!(
        causes,
        ["event 6", "event 7", "event 8", "event 9", "event 99"]
    );
    d.stop().await.unwrap();
}

#[tokio::test]
async fn socket_is_private_and_removed_on_shutdown() {
    let d = Daemon::start().await;
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let parent = d.socket.parent().unwrap();
    let mode = std::fs::metadata(parent).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "socket directory mode {mode:o}");

    // A second daemon must not steal a live socket.
    let (tx, _rx) = mpsc::channel(1);
    let (ev, _) = broadcast::channel(1);
    let handle = ApiHandle {
        requests: tx,
        events: ev,
        config_yaml: watch::channel(String::new()).1,
        clock: Clock::now(),
    };
    let err = api::serve(ApiListen::Unix(d.socket.clone()), handle, async {})
        .await
        .unwrap_err();
    assert!(matches!(err, api::ApiError::SocketInUse(_)), "{err}");
    assert!(d.socket.exists());

    // Shutdown ends open watch streams (else graceful shutdown would hang) and removes the
    // socket file.
    let watcher = start_watch(&d, 100).await;
    let socket = d.socket.clone();
    d.stop().await.unwrap();
    let (code, out, err) = tokio::time::timeout(DEADLINE, watcher)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((code, out.as_str()), (EXIT_UNREACHABLE, ""));
    assert!(err.contains("the daemon closed the event stream"), "{err}");
    assert!(!socket.exists());
}

#[tokio::test]
async fn stale_socket_is_replaced() {
    let dir = TempDir::new();
    let socket = dir.0.join("podbgp.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    assert!(socket.exists(), "a dead daemon's socket file");
    let (tx, _rx) = mpsc::channel(1);
    let handle = ApiHandle {
        requests: tx,
        events: broadcast::channel(1).0,
        config_yaml: watch::channel(CONFIG_YAML.to_string()).1,
        clock: Clock::now(),
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(api::serve(ApiListen::Unix(socket.clone()), handle, async {
        let _ = stopped.await;
    }));
    let target = ApiTarget::Unix(socket.clone());
    let mut answered = false;
    let start = Instant::now();
    while !answered {
        assert!(start.elapsed() < DEADLINE, "the new daemon never answered");
        let (code, out, _) = run(ClientCommand::Config(JSON), &target).await;
        answered = code == EXIT_OK && serde_json::from_str::<ConfigJson>(&out).is_ok();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();

    // Something that is not a socket is never removed.
    std::fs::write(&socket, "precious").unwrap();
    let handle = ApiHandle {
        requests: mpsc::channel(1).0,
        events: broadcast::channel(1).0,
        config_yaml: watch::channel(String::new()).1,
        clock: Clock::now(),
    };
    let err = api::serve(ApiListen::Unix(socket.clone()), handle, async {})
        .await
        .unwrap_err();
    assert!(matches!(err, api::ApiError::NotASocket { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&socket).unwrap(), "precious");
}

#[tokio::test]
async fn unreachable_daemon_exits_3() {
    let dir = TempDir::new();
    let path = dir.0.join("nothing-here.sock");
    let target = ApiTarget::Unix(path.clone());
    for cmd in [
        ClientCommand::Status(JsonFlag::default()),
        ClientCommand::Peers(JSON),
        ClientCommand::Watch {
            count: None,
            output: JSON,
        },
    ] {
        let (code, out, err) = run(cmd, &target).await;
        assert_eq!(code, EXIT_UNREACHABLE);
        assert_eq!(out, "");
        assert_eq!(
            err,
            format!(
                "podbgp: cannot reach the daemon at {}: No such file or directory (os error 2) (is `podbgp run` running?)\n",
                path.display()
            )
        );
    }

    // TCP: nothing listens on a port we just closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let target = ApiTarget::parse(&format!("http://127.0.0.1:{port}"));
    let (code, _, err) = run(ClientCommand::Speaker(JSON), &target).await;
    assert_eq!(code, EXIT_UNREACHABLE);
    assert!(
        err.starts_with(&format!(
            "podbgp: cannot reach the daemon at http://127.0.0.1:{port}: "
        )) && err.ends_with("(is `podbgp run` running?)\n")
            && err.contains("refused"),
        "{err}"
    );
}

/// The API answers but the driver is gone (daemon shutting down): UNAVAILABLE → exit 3.
#[tokio::test]
async fn stopped_driver_is_unavailable() {
    let d = Daemon::start_with(4, false).await;
    let (code, _, err) = run(ClientCommand::Speaker(JSON), &d.target()).await;
    assert_eq!(code, EXIT_UNREACHABLE);
    assert!(err.contains("the speaker is not running"), "{err}");
    // GetConfig does not need the driver.
    let c: ConfigJson = run_json(ClientCommand::Config(JSON), &d.target()).await;
    assert_eq!(c.yaml, CONFIG_YAML);
    d.stop().await.unwrap();
}

fn health_cmd(ready: bool, threshold: u64) -> ClientCommand {
    ClientCommand::Health(HealthArgs {
        ready,
        live: !ready,
        threshold,
        output: JSON,
    })
}

#[tokio::test]
async fn health_probes() {
    let d = Daemon::start().await;
    let h: HealthJson = run_json(health_cmd(false, 30), &d.target()).await;
    assert_eq!(h.check, "live");
    assert!(h.ok);
    assert!(h.reason.starts_with("podbgp is live"), "{}", h.reason);

    // Up for ~100 s > 30 s: one established peer per family is enough.
    let h: HealthJson = run_json(health_cmd(true, 30), &d.target()).await;
    assert!(h.ok, "{}", h.reason);
    assert_eq!(h.reason, "podbgp is ready: 2 of 3 BGP peers established");

    // Within the start-up window every peer must be established.
    let (code, out, _) = run(health_cmd(true, 3600), &d.target()).await;
    assert_eq!(code, EXIT_FAILURE);
    let h: HealthJson = serde_json::from_str(&out).unwrap();
    assert!(!h.ok);
    assert_eq!(
        h.reason,
        "podbgp is not ready: BGP not established with 10.0.0.3"
    );

    // Plain-text form.
    let (code, out, _) = run(
        ClientCommand::Health(HealthArgs {
            ready: true,
            live: false,
            threshold: 3600,
            output: JsonFlag::default(),
        }),
        &d.target(),
    )
    .await;
    assert_eq!(code, EXIT_FAILURE);
    assert_eq!(
        out,
        "podbgp is not ready: BGP not established with 10.0.0.3\n"
    );
    let target = d.target();
    d.stop().await.unwrap();

    // No daemon: not live, exit 1 (a probe failure, not exit 3).
    let (code, out, _) = run(health_cmd(false, 30), &target).await;
    assert_eq!(code, EXIT_FAILURE);
    let h: HealthJson = serde_json::from_str(&out).unwrap();
    assert!(!h.ok);
    assert!(
        h.reason.starts_with(&format!(
            "podbgp is not live: cannot reach the daemon at {target}:"
        )),
        "{}",
        h.reason
    );
    assert_eq!(cli::health(&target, false).await, EXIT_FAILURE);
}

#[test]
fn api_listen_parses() {
    assert_eq!(
        "127.0.0.1:50051".parse::<ApiListen>().unwrap(),
        ApiListen::Tcp("127.0.0.1:50051".parse().unwrap())
    );
    assert_eq!(
        "/run/podbgp/podbgp.sock".parse::<ApiListen>().unwrap(),
        ApiListen::Unix("/run/podbgp/podbgp.sock".into())
    );
    assert_eq!(
        ApiListen::default(),
        ApiListen::Unix(Path::new(api::DEFAULT_SOCKET).to_path_buf())
    );
}
