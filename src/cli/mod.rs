//! The operator CLI: `podbgp status|peers|peer|routes|reset|watch|speaker|config|health`,
//! each a gRPC call on the daemon's API (ARCHITECTURE §11.9), printing a table/text or, with
//! `--json`, the stable JSON documented in [`json`].
//!
//! Exit codes: [`EXIT_OK`] 0; [`EXIT_FAILURE`] 1 (the daemon refused: no such peer, bad
//! argument, …; for `health`: not live / not ready); 2 is clap's usage error;
//! [`EXIT_UNREACHABLE`] 3 (no daemon at the API target, or it did not answer in time).
//!
//! The binary wires this up as:
//! ```ignore
//! #[derive(clap::Parser)]
//! struct Cli {
//!     #[command(flatten)] api: podbgp::cli::ApiArgs,
//!     #[command(subcommand)] cmd: Cmd,
//! }
//! #[derive(clap::Subcommand)]
//! enum Cmd { Run(RunArgs), #[command(flatten)] Client(podbgp::cli::ClientCommand) }
//! // …
//! Cmd::Client(c) => std::process::exit(podbgp::cli::run_client(c, cli.api.target()).await?),
//! ```

mod connect;
pub mod json;
mod render;
pub mod table;
pub mod time;

use std::future::Future;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use tonic::{Code, Status};

pub use crate::health::{DEFAULT_READY_THRESHOLD, PROBE_TIMEOUT, PeerHealth, readiness};
pub use render::{build_status, render_status};

use crate::api::proto;
use crate::api::{DEFAULT_SOCKET, unix_seconds};
use crate::speaker::TableKind;
use connect::Client;
use json::{ConfigJson, EventJson, HealthJson, PeerJson, ResetJson, RouteJson, SpeakerJson};

/// Success.
pub const EXIT_OK: i32 = 0;
/// The daemon answered with an error, or a health check failed.
pub const EXIT_FAILURE: i32 = 1;
/// The daemon could not be reached (or did not answer in time).
pub const EXIT_UNREACHABLE: i32 = 3;

/// How long a unary call (or a whole listing) may take before the CLI gives up.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that overrides the default API target.
pub const API_ENV: &str = "PODBGP_API";

/// Where the CLI finds the daemon's API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiTarget {
    /// A Unix socket path (default [`DEFAULT_SOCKET`]).
    Unix(PathBuf),
    /// An `http://host:port` URL.
    Http(String),
    /// An `https://host:port` URL and the TLS material to reach it.
    Https { url: String, tls: ClientTls },
}

/// Client TLS for an `https://` API: the CA that signed the daemon's certificate, and a client
/// certificate and key when the daemon requires one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl ApiTarget {
    /// `http://` and `https://` URLs are TCP targets; anything else is a socket path (an
    /// optional `unix:` prefix is stripped).
    pub fn parse(s: &str) -> ApiTarget {
        if s.starts_with("https://") {
            ApiTarget::Https {
                url: s.to_string(),
                tls: ClientTls::default(),
            }
        } else if s.starts_with("http://") {
            ApiTarget::Http(s.to_string())
        } else {
            ApiTarget::Unix(PathBuf::from(s.strip_prefix("unix:").unwrap_or(s)))
        }
    }

    /// The `--api` flag if given, else `$PODBGP_API` if set and non-empty, else the default.
    pub fn resolve(flag: Option<&str>) -> ApiTarget {
        match flag {
            Some(s) => ApiTarget::parse(s),
            None => match std::env::var(API_ENV) {
                Ok(s) if !s.is_empty() => ApiTarget::parse(&s),
                _ => ApiTarget::default(),
            },
        }
    }
}

impl Default for ApiTarget {
    fn default() -> Self {
        ApiTarget::Unix(PathBuf::from(DEFAULT_SOCKET))
    }
}

impl std::str::FromStr for ApiTarget {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiTarget::parse(s))
    }
}

impl std::fmt::Display for ApiTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiTarget::Unix(p) => write!(f, "{}", p.display()),
            ApiTarget::Http(u) | ApiTarget::Https { url: u, .. } => f.write_str(u),
        }
    }
}

/// The global `--api` flag, for the binary's top-level parser.
#[derive(Clone, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct ApiArgs {
    /// The daemon's API: a Unix socket path, http://HOST:PORT or https://HOST:PORT
    /// [env: PODBGP_API] [default: /run/podbgp/podbgp.sock]
    #[arg(long = "api", global = true, value_name = "SOCKET|URL")]
    pub api: Option<String>,
    /// For https:// APIs: the CA certificate (PEM) that signed the daemon's certificate.
    #[arg(
        long = "api-ca",
        global = true,
        env = "PODBGP_API_CA",
        value_name = "FILE"
    )]
    pub api_ca: Option<PathBuf>,
    /// For https:// APIs that require a client certificate: ours (PEM).
    #[arg(
        long = "api-cert",
        global = true,
        env = "PODBGP_API_CERT",
        value_name = "FILE",
        requires = "api_key"
    )]
    pub api_cert: Option<PathBuf>,
    /// The key of --api-cert (PEM).
    #[arg(
        long = "api-key",
        global = true,
        env = "PODBGP_API_KEY",
        value_name = "FILE",
        requires = "api_cert"
    )]
    pub api_key: Option<PathBuf>,
}

impl ApiArgs {
    /// See [`ApiTarget::resolve`]; an `https://` target gets the TLS flags.
    pub fn target(&self) -> ApiTarget {
        match ApiTarget::resolve(self.api.as_deref()) {
            ApiTarget::Https { url, .. } => ApiTarget::Https {
                url,
                tls: ClientTls {
                    ca: self.api_ca.clone(),
                    cert: self.api_cert.clone(),
                    key: self.api_key.clone(),
                },
            },
            t => t,
        }
    }
}

/// `--json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct JsonFlag {
    /// Print stable, machine-readable JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--table` values of `routes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TableArg {
    AdjRibIn,
    LocRib,
    AdjRibOut,
    /// The kernel routes the daemon installed.
    Fib,
}

impl From<TableArg> for TableKind {
    fn from(t: TableArg) -> Self {
        match t {
            TableArg::AdjRibIn => TableKind::AdjRibIn,
            TableArg::LocRib => TableKind::LocRib,
            TableArg::AdjRibOut => TableKind::AdjRibOut,
            TableArg::Fib => TableKind::Fib,
        }
    }
}

/// Arguments of `routes`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct RoutesArgs {
    /// Which table to list.
    #[arg(long, value_enum, default_value_t = TableArg::LocRib)]
    pub table: TableArg,
    /// Only routes from (adj-rib-in, loc-rib) / to (adj-rib-out) this peer, or (fib) with a
    /// next hop via this address; required for the adj-rib tables.
    #[arg(long, value_name = "ADDRESS")]
    pub peer: Option<IpAddr>,
    /// Only this exact prefix, e.g. 10.244.1.0/26.
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// Arguments of `health`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
#[command(group(clap::ArgGroup::new("probe").required(true).args(["ready", "live"])))]
pub struct HealthArgs {
    /// Readiness: BGP sessions are up (calico/node --bird-ready semantics).
    #[arg(long)]
    pub ready: bool,
    /// Liveness: the daemon answers its API.
    #[arg(long)]
    pub live: bool,
    /// Readiness grace period after the daemon starts, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_READY_THRESHOLD.as_secs())]
    pub threshold: u64,
    #[command(flatten)]
    pub output: JsonFlag,
}

/// The operator subcommands (all talk to a running daemon).
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum ClientCommand {
    /// BGP session status in the style of `calicoctl node status`.
    Status(JsonFlag),
    /// All peers with their session state and counters.
    Peers(JsonFlag),
    /// One peer in detail.
    Peer {
        address: IpAddr,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Routes of one table (Loc-RIB by default).
    Routes(RoutesArgs),
    /// Reset a peer: hard (NOTIFICATION Cease/Administrative Reset) or --soft (route
    /// refresh in, full re-advertisement out).
    Reset {
        peer: IpAddr,
        #[arg(long)]
        soft: bool,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// Stream peer-state and best-path events until interrupted (exit 3 if the daemon
    /// ends the stream).
    Watch {
        /// Exit after this many events.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        #[command(flatten)]
        output: JsonFlag,
    },
    /// The speaker's identity and counters.
    Speaker(JsonFlag),
    /// The effective configuration (YAML).
    Config(JsonFlag),
    /// Kubernetes probe: exit 0 when live/ready, 1 when not, with a one-line reason.
    Health(HealthArgs),
}

/// Runs one subcommand against the daemon, printing to stdout/stderr. Returns the process
/// exit code.
pub async fn run_client(cmd: ClientCommand, target: ApiTarget) -> anyhow::Result<i32> {
    let mut out = std::io::BufWriter::new(std::io::stdout());
    let mut err = std::io::stderr();
    let res = run_client_with(cmd, &target, &mut out, &mut err)
        .await
        .and_then(|code| Ok(out.flush().map(|()| code)?));
    match res {
        // `podbgp watch | head`: the reader went away; that is a normal end.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(EXIT_OK)
        }
        other => other,
    }
}

/// `podbgp health --ready|--live` with calico's default threshold; prints the one-line
/// reason on stdout and returns the exit code (0 healthy, 1 not).
pub async fn health(target: &ApiTarget, ready: bool) -> i32 {
    let args = HealthArgs {
        ready,
        live: !ready,
        threshold: DEFAULT_READY_THRESHOLD.as_secs(),
        output: JsonFlag::default(),
    };
    let mut out = std::io::stdout();
    run_health(target, &args, &mut out)
        .await
        .unwrap_or(EXIT_FAILURE)
}

/// Like [`run_client`], writing to the given streams (for tests and embedding). `Err` only
/// for failures to write the output.
pub async fn run_client_with<W: Write + Send, E: Write + Send>(
    cmd: ClientCommand,
    target: &ApiTarget,
    out: &mut W,
    err: &mut E,
) -> anyhow::Result<i32> {
    if let ClientCommand::Health(args) = &cmd {
        return Ok(run_health(target, args, out).await?);
    }
    let mut client = match connect::connect(target).await {
        Ok(c) => c,
        Err(reason) => {
            writeln!(err, "{}", unreachable_message(target, &reason))?;
            return Ok(EXIT_UNREACHABLE);
        }
    };
    match run_command(cmd, &mut client, out).await {
        Ok(()) => Ok(EXIT_OK),
        Err(Failure::Io(e)) => Err(e.into()),
        Err(Failure::Timeout) => {
            writeln!(
                err,
                "{}",
                unreachable_message(
                    target,
                    &format!("no answer within {} s", RPC_TIMEOUT.as_secs())
                )
            )?;
            Ok(EXIT_UNREACHABLE)
        }
        Err(Failure::StreamEnded) => {
            writeln!(
                err,
                "{}",
                unreachable_message(target, "the daemon closed the event stream")
            )?;
            Ok(EXIT_UNREACHABLE)
        }
        Err(Failure::Rpc(status)) => {
            if status.code() == Code::Unavailable {
                writeln!(err, "{}", unreachable_message(target, status.message()))?;
                Ok(EXIT_UNREACHABLE)
            } else {
                writeln!(err, "podbgp: {}", status_text(&status))?;
                Ok(EXIT_FAILURE)
            }
        }
    }
}

/// The message printed when the daemon cannot be reached.
pub fn unreachable_message(target: &ApiTarget, reason: &str) -> String {
    format!("podbgp: cannot reach the daemon at {target}: {reason} (is `podbgp run` running?)")
}

fn status_text(s: &Status) -> String {
    match s.code() {
        Code::InvalidArgument => format!("invalid argument: {}", s.message()),
        Code::NotFound | Code::FailedPrecondition => s.message().to_string(),
        code => format!("{code:?}: {}", s.message()),
    }
}

enum Failure {
    Rpc(Status),
    Timeout,
    /// The daemon ended the `watch` stream (it is shutting down).
    StreamEnded,
    Io(std::io::Error),
}

impl From<Status> for Failure {
    fn from(s: Status) -> Self {
        Failure::Rpc(s)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::Io(e.into())
    }
}

/// A unary call with the CLI timeout.
async fn unary<T>(
    call: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(RPC_TIMEOUT, call).await {
        Ok(r) => Ok(r?.into_inner()),
        Err(_) => Err(Failure::Timeout),
    }
}

/// A server-streaming listing, collected, with the CLI timeout over the whole listing.
async fn listing<T>(
    call: impl Future<Output = Result<tonic::Response<tonic::Streaming<T>>, Status>>,
) -> Result<Vec<T>, Failure> {
    let all = async {
        let mut stream = call.await?.into_inner();
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push(item?);
        }
        Ok::<_, Status>(items)
    };
    match tokio::time::timeout(RPC_TIMEOUT, all).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(Failure::Timeout),
    }
}

fn now_unix() -> i64 {
    unix_seconds(SystemTime::now())
}

fn print_json<W: Write, T: serde::Serialize>(out: &mut W, v: &T) -> Result<(), Failure> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

async fn list_peers(client: &mut Client) -> Result<Vec<PeerJson>, Failure> {
    let peers = listing(client.list_peers(proto::ListPeersRequest {})).await?;
    Ok(peers
        .iter()
        .filter_map(|r| r.peer.as_ref())
        .map(PeerJson::from)
        .collect())
}

async fn run_command<W: Write + Send>(
    cmd: ClientCommand,
    client: &mut Client,
    out: &mut W,
) -> Result<(), Failure> {
    match cmd {
        ClientCommand::Status(JsonFlag { json }) => {
            let peers = list_peers(client).await?;
            let status = build_status(&peers, now_unix(), time::local_utc_offset);
            if json {
                print_json(out, &status)?;
            } else {
                out.write_all(render_status(&status).as_bytes())?;
            }
        }
        ClientCommand::Peers(JsonFlag { json }) => {
            let mut peers = list_peers(client).await?;
            render::sort_peers(&mut peers);
            if json {
                print_json(out, &peers)?;
            } else {
                let text = render::peers_table(&peers, now_unix(), time::local_utc_offset);
                out.write_all(text.as_bytes())?;
            }
        }
        ClientCommand::Peer { address, output } => {
            let resp = unary(client.get_peer(proto::GetPeerRequest {
                address: address.to_string(),
            }))
            .await?;
            let Some(peer) = resp.peer.as_ref().map(PeerJson::from) else {
                return Err(Status::internal("the daemon sent an empty peer").into());
            };
            if output.json {
                print_json(out, &peer)?;
            } else {
                let text = render::peer_detail(&peer, now_unix(), time::local_utc_offset);
                out.write_all(text.as_bytes())?;
            }
        }
        ClientCommand::Routes(args) => {
            let req = proto::ListRoutesRequest {
                table: proto::Table::from(TableKind::from(args.table)) as i32,
                peer: args.peer.map(|p| p.to_string()).unwrap_or_default(),
                prefix: args.prefix.clone().unwrap_or_default(),
            };
            let routes: Vec<RouteJson> = listing(client.list_routes(req))
                .await?
                .iter()
                .filter_map(|r| r.route.as_ref())
                .map(RouteJson::from)
                .collect();
            if args.output.json {
                print_json(out, &routes)?;
            } else if args.table == TableArg::Fib {
                out.write_all(render::fib_table(&routes).as_bytes())?;
            } else {
                out.write_all(render::routes_table(&routes).as_bytes())?;
            }
        }
        ClientCommand::Reset { peer, soft, output } => {
            unary(client.reset_peer(proto::ResetPeerRequest {
                address: peer.to_string(),
                soft,
            }))
            .await?;
            if output.json {
                print_json(
                    out,
                    &ResetJson {
                        address: peer.to_string(),
                        soft,
                    },
                )?;
            } else if soft {
                writeln!(out, "Soft reset of peer {peer} requested.")?;
            } else {
                writeln!(out, "Hard reset of peer {peer} requested.")?;
            }
        }
        ClientCommand::Watch { count, output } => {
            let mut stream = unary(client.watch_events(proto::WatchEventsRequest {})).await?;
            let mut seen = 0u64;
            while count.is_none_or(|n| seen < n) {
                let Some(item) = stream.next().await else {
                    return Err(Failure::StreamEnded);
                };
                let event = EventJson::from(&item?);
                if output.json {
                    serde_json::to_writer(&mut *out, &event)?;
                    writeln!(out)?;
                } else {
                    writeln!(out, "{}", render::event_line(&event))?;
                }
                out.flush()?;
                seen += 1;
            }
        }
        ClientCommand::Speaker(JsonFlag { json }) => {
            let resp = unary(client.get_speaker(proto::GetSpeakerRequest {})).await?;
            let speaker = SpeakerJson::from(&resp);
            if json {
                print_json(out, &speaker)?;
            } else {
                out.write_all(render::speaker_detail(&speaker).as_bytes())?;
            }
        }
        ClientCommand::Config(JsonFlag { json }) => {
            let resp = unary(client.get_config(proto::GetConfigRequest {})).await?;
            if json {
                print_json(out, &ConfigJson { yaml: resp.yaml })?;
            } else {
                out.write_all(resp.yaml.as_bytes())?;
                if !resp.yaml.ends_with('\n') {
                    writeln!(out)?;
                }
            }
        }
        ClientCommand::Health(_) => unreachable!("health is dispatched before connecting"),
    }
    Ok(())
}

/// Runs a health probe; writes the reason line (or [`HealthJson`]) to `out`.
async fn run_health<W: Write>(
    target: &ApiTarget,
    args: &HealthArgs,
    out: &mut W,
) -> std::io::Result<i32> {
    let threshold = Duration::from_secs(args.threshold);
    let verdict =
        match tokio::time::timeout(PROBE_TIMEOUT, probe(target, args.ready, threshold)).await {
            Ok(v) => v,
            Err(_) => Err(format!(
                "podbgp is not {}: the daemon at {target} did not answer within {} s",
                if args.ready { "ready" } else { "live" },
                PROBE_TIMEOUT.as_secs()
            )),
        };
    let (ok, reason) = match verdict {
        Ok(r) => (true, r),
        Err(r) => (false, r),
    };
    if args.output.json {
        let j = HealthJson {
            check: if args.ready { "ready" } else { "live" }.to_string(),
            ok,
            reason,
        };
        serde_json::to_writer(&mut *out, &j)?;
        writeln!(out)?;
    } else {
        writeln!(out, "{reason}")?;
    }
    Ok(if ok { EXIT_OK } else { EXIT_FAILURE })
}

async fn probe(target: &ApiTarget, ready: bool, threshold: Duration) -> Result<String, String> {
    let what = if ready { "ready" } else { "live" };
    let fail = |reason: String| format!("podbgp is not {what}: {reason}");
    let mut client = connect::connect(target)
        .await
        .map_err(|r| fail(format!("cannot reach the daemon at {target}: {r}")))?;
    let speaker = client
        .get_speaker(proto::GetSpeakerRequest {})
        .await
        .map_err(|s| fail(format!("the daemon at {target} failed: {}", s.message())))?
        .into_inner();
    if !ready {
        return Ok(format!("podbgp is live (up {} s)", speaker.uptime_seconds));
    }
    let mut stream = client
        .list_peers(proto::ListPeersRequest {})
        .await
        .map_err(|s| fail(format!("cannot list peers: {}", s.message())))?
        .into_inner();
    let mut peers = Vec::new();
    while let Some(item) = stream.next().await {
        let item = item.map_err(|s| fail(format!("cannot list peers: {}", s.message())))?;
        if let Some(p) = item.peer {
            peers.push(PeerJson::from(&p));
        }
    }
    render::sort_peers(&mut peers);
    let peers: Vec<PeerHealth> = peers
        .into_iter()
        .map(|p| PeerHealth {
            established: p.state == json::SessionStateJson::Established,
            address: p.address,
        })
        .collect();
    readiness(
        Duration::from_secs(speaker.uptime_seconds),
        threshold,
        &peers,
    )
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct TestCli {
        #[command(flatten)]
        api: ApiArgs,
        #[command(subcommand)]
        cmd: ClientCommand,
    }

    #[test]
    fn clap_definition_is_valid() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn parses_subcommands() {
        let c = TestCli::try_parse_from([
            "podbgp",
            "routes",
            "--table",
            "adj-rib-in",
            "--peer",
            "10.0.0.2",
            "--json",
            "--api",
            "/tmp/x.sock",
        ])
        .unwrap();
        assert_eq!(c.api.target(), ApiTarget::Unix("/tmp/x.sock".into()));
        assert_eq!(
            c.cmd,
            ClientCommand::Routes(RoutesArgs {
                table: TableArg::AdjRibIn,
                peer: Some("10.0.0.2".parse().unwrap()),
                prefix: None,
                output: JsonFlag { json: true },
            })
        );
        let c = TestCli::try_parse_from(["podbgp", "reset", "fd00::2", "--soft"]).unwrap();
        assert_eq!(
            c.cmd,
            ClientCommand::Reset {
                peer: "fd00::2".parse().unwrap(),
                soft: true,
                output: JsonFlag { json: false },
            }
        );
        assert!(TestCli::try_parse_from(["podbgp", "health"]).is_err());
        assert!(TestCli::try_parse_from(["podbgp", "health", "--ready", "--live"]).is_err());
        let c = TestCli::try_parse_from(["podbgp", "health", "--ready"]).unwrap();
        assert!(matches!(
            c.cmd,
            ClientCommand::Health(HealthArgs {
                ready: true,
                threshold: 30,
                ..
            })
        ));
    }

    #[test]
    fn targets() {
        assert_eq!(
            ApiTarget::parse("http://127.0.0.1:50051"),
            ApiTarget::Http("http://127.0.0.1:50051".into())
        );
        assert_eq!(
            ApiTarget::parse("unix:/run/x.sock"),
            ApiTarget::Unix("/run/x.sock".into())
        );
        assert_eq!(
            ApiTarget::resolve(Some("/a.sock")),
            ApiTarget::Unix("/a.sock".into())
        );
        assert_eq!(ApiTarget::default().to_string(), "/run/podbgp/podbgp.sock");
    }
}
