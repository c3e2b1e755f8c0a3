//! `podbgp`: the daemon (`podbgp run`) and the operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use podbgp::api::{ApiHandle, ApiListen, Clock};
use podbgp::config;
use podbgp::driver::Driver;

#[derive(Parser)]
#[command(
    name = "podbgp",
    version,
    about = "BGP route distribution for Calico-style Kubernetes clusters"
)]
struct Cli {
    #[command(flatten)]
    api: podbgp::cli::ApiArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Kernel route installation (datastore mode; calico-bgp.md §4).
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Kernel routes (datastore mode)")]
struct FibArgs {
    /// Install best paths into the kernel routing table (`off`: BGP only).
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    fib: OnOff,
    /// rtm_protocol of our routes; routes with any other protocol are never touched
    /// (12 = "bird", what Calico's tooling expects).
    #[arg(long, default_value_t = podbgp::fib::RTPROT_BIRD, value_name = "N")]
    fib_protocol: u8,
    /// Routing table id (254 = main).
    #[arg(long, default_value_t = podbgp::fib::RT_TABLE_MAIN, value_name = "ID")]
    fib_table: u32,
    /// Route metric (default: the kernel's, 0 for IPv4 and 1024 for IPv6).
    #[arg(long, value_name = "N")]
    fib_metric: Option<u32>,
    /// The IPIP device for IPIP pools.
    #[arg(long, default_value = "tunl0", value_name = "NAME")]
    ipip_device: String,
    /// Install only prefixes inside an IP pool (a guard against hijacked prefixes).
    #[arg(long, value_enum, default_value = "on", value_name = "on|off")]
    fib_pool_guard: OnOff,
    /// Delete stale routes found at start once every peer sent End-of-RIB, or after this
    /// many seconds at the latest.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    fib_sweep_timeout: u64,
    /// On stop, delete our routes instead of leaving them in place (the default leaves them,
    /// so forwarding continues across a restart).
    #[arg(long)]
    fib_remove_on_stop: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum OnOff {
    On,
    Off,
}

impl FibArgs {
    fn options(&self) -> Option<podbgp::node::FibOptions> {
        (self.fib == OnOff::On).then(|| podbgp::node::FibOptions {
            config: podbgp::fib::FibConfig {
                protocol: self.fib_protocol,
                table: self.fib_table,
                metric: self.fib_metric,
            },
            ipip_device: self.ipip_device.clone(),
            pool_guard: self.fib_pool_guard == OnOff::On,
            sweep_after: std::time::Duration::from_secs(self.fib_sweep_timeout),
            keep_on_stop: !self.fib_remove_on_stop,
        })
    }
}

// Parsed once per process; boxing the big `Run` variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the BGP daemon.
    Run {
        /// Speaker configuration file (YAML; see README "Configuration"). Alternative to
        /// --datastore.
        #[arg(
            long,
            short = 'c',
            value_name = "FILE",
            conflicts_with = "datastore",
            required_unless_present = "datastore"
        )]
        config: Option<PathBuf>,
        /// Follow a Calico datastore: `file:PATH` (multi-document YAML of Calico v3
        /// resources, reloaded when it changes) or `etcdv3` (endpoints and TLS from
        /// ETCD_ENDPOINTS, ETCD_CA_CERT_FILE, ETCD_CERT_FILE, ETCD_KEY_FILE).
        #[arg(long, value_name = "file:PATH|etcdv3", requires = "node")]
        datastore: Option<podbgp::datastore::DatastoreSpec>,
        /// This node's name in the datastore (calico/node's NODENAME).
        #[arg(long, env = "NODENAME", value_name = "NAME")]
        node: Option<String>,
        /// Router id: an IPv4 address, `hash` (derived from the node name), or unset for the
        /// node's IPv4 address (calico/node's CALICO_ROUTER_ID).
        #[arg(long, env = "CALICO_ROUTER_ID", value_name = "IP|hash")]
        router_id: Option<String>,
        /// Hold time offered on every session in datastore mode (Calico/BIRD use 240).
        #[arg(long, value_name = "SECONDS", default_value_t = 240)]
        hold_time: u16,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Log filter (tracing EnvFilter syntax), e.g. `info` or `podbgp=debug`.
        #[arg(long, env = "PODBGP_LOG", default_value = "info")]
        log: String,
        /// Where the gRPC API listens: a Unix socket path (default /run/podbgp/podbgp.sock,
        /// mode 0600) or `tcp://ADDR:PORT`; `none` disables it.
        #[arg(long, value_name = "PATH|tcp://ADDR:PORT")]
        api_listen: Option<String>,
        /// TLS certificate chain (PEM) for a TCP API listener; clients use https:// and
        /// --api-ca.
        #[arg(long, value_name = "FILE", requires = "api_tls_key")]
        api_tls_cert: Option<PathBuf>,
        /// The key of --api-tls-cert (PEM).
        #[arg(long, value_name = "FILE", requires = "api_tls_cert")]
        api_tls_key: Option<PathBuf>,
        /// Require client certificates signed by this CA (PEM) on the TLS API.
        #[arg(long, value_name = "FILE", requires = "api_tls_cert")]
        api_tls_client_ca: Option<PathBuf>,
        /// Serve Prometheus metrics (/metrics) and the Kubernetes HTTP probes (/livez,
        /// /readyz[?threshold=SECONDS], the verdicts of `podbgp health`) on this TCP address;
        /// off by default. No authentication: use a node or loopback address.
        #[arg(long, value_name = "ADDR:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
        #[command(flatten)]
        fib: FibArgs,
        /// Datastore mode: close a session whose peer sends more than N prefixes (Cease /
        /// Maximum Number of Prefixes Reached, RFC 4486); unlimited by default.
        #[arg(long, value_name = "N")]
        max_prefixes: Option<u32>,
        /// Start such a session again after this many seconds (default: only an operator
        /// `podbgp reset` does).
        #[arg(long, value_name = "SECONDS", requires = "max_prefixes")]
        max_prefixes_restart: Option<u64>,
    },
    /// Run a three-node full mesh on loopback, print its status and routes, and tear it down.
    Demo,
    /// Check a configuration file and print the validated result.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Show the configuration a node derives from a Calico datastore file (peers, roles,
    /// blocks, blackholes), without starting anything.
    Derive {
        /// `file:PATH` of Calico v3 resources.
        #[arg(long, value_name = "file:PATH")]
        datastore: podbgp::datastore::DatastoreSpec,
        /// The node's name.
        #[arg(long, env = "NODENAME", value_name = "NAME")]
        node: String,
        #[arg(long, env = "CALICO_ROUTER_ID", value_name = "IP|hash")]
        router_id: Option<String>,
    },
    /// Benchmark a speaker over loopback (see `podbgp bench rr-fanin --help`).
    Bench(podbgp::bench::BenchArgs),
    /// Run a containerlab topology in network namespaces (see `podbgp lab --help`).
    Lab(podbgp::lab::LabArgs),
    #[command(flatten)]
    Client(podbgp::cli::ClientCommand),
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    use std::io::IsTerminal;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
    Ok(())
}

fn load(path: &PathBuf) -> anyhow::Result<config::SpeakerConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    config::parse_yaml(&text).with_context(|| format!("invalid configuration {}", path.display()))
}

async fn run(
    config: PathBuf,
    api_listen: Option<String>,
    api_tls: Option<podbgp::api::ApiTls>,
    metrics_listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let metrics = match metrics_listen {
        Some(addr) => Some(podbgp::metrics::MetricsServer::bind(addr).await?),
        None => None,
    };
    let cfg = load(&config)?;
    let yaml = std::fs::read_to_string(&config).unwrap_or_default();
    let (driver, handle) = Driver::new(cfg);
    let (yaml_tx, yaml_rx) = tokio::sync::watch::channel(yaml);
    let api_listen = match api_listen.as_deref() {
        Some("none") => None,
        Some(s) => Some(
            s.parse::<ApiListen>()
                .map_err(|e| anyhow::anyhow!("invalid --api-listen {s:?}: {e}"))?,
        ),
        None => Some(ApiListen::default()),
    };
    let (api_stop_tx, api_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let api_task = match api_listen {
        Some(listen) => {
            let api = ApiHandle {
                requests: handle.api.clone(),
                events: handle.events.clone(),
                config_yaml: yaml_rx,
                clock: Clock::now(),
            };
            tracing::info!(%listen, "API listening");
            Some(tokio::spawn(podbgp::api::serve_with_tls(
                listen,
                api_tls,
                api,
                async {
                    let _ = api_stop_rx.await;
                },
            )))
        }
        None => None,
    };
    let h = handle.clone();
    let path = config.clone();
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("SIGHUP handler");
        while hup.recv().await.is_some() {
            match load(&path) {
                Ok(cfg) => {
                    let _ = yaml_tx.send(std::fs::read_to_string(&path).unwrap_or_default());
                    // The driver logs what changed (one INFO line).
                    let _ = h.reload(cfg).await;
                }
                Err(e) => {
                    tracing::error!("reload failed, keeping the running configuration: {e:#}")
                }
            }
        }
    });
    let (metrics_stop_tx, metrics_stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics_task = metrics.map(|server| {
        let m = podbgp::metrics::MetricsHandle {
            requests: handle.api.clone(),
            datastore: None,
            clock: Clock::now(),
        };
        tokio::spawn(server.serve(m, async {
            let _ = metrics_stop_rx.await;
        }))
    });
    shutdown_on_signals(handle.clone());
    let result = driver.run().await;
    let _ = metrics_stop_tx.send(());
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    let _ = api_stop_tx.send(());
    if let Some(t) = api_task {
        match t.await {
            Ok(Err(e)) => tracing::warn!("API server: {e}"),
            Err(e) => tracing::warn!("API task: {e}"),
            Ok(Ok(())) => {}
        }
    }
    result?;
    Ok(())
}

fn derive_options(
    router_id: Option<&str>,
    hold_time: u16,
) -> anyhow::Result<podbgp::calico::DeriveOptions> {
    use podbgp::calico::RouterIdMode;
    let router_id = match router_id.map(str::trim) {
        None | Some("") => RouterIdMode::NodeIp,
        Some("hash") => RouterIdMode::Hash,
        Some(ip) => RouterIdMode::Fixed(ip.parse().map_err(|_| {
            anyhow::anyhow!(
                "invalid --router-id / CALICO_ROUTER_ID {ip:?}: expected an IPv4 address or `hash`"
            )
        })?),
    };
    if hold_time != 0 && hold_time < 3 {
        anyhow::bail!(
            "invalid --hold-time {hold_time}: must be 0 or at least 3 seconds (RFC 4271 §4.2)"
        );
    }
    Ok(podbgp::calico::DeriveOptions {
        router_id,
        hold_time,
        ..Default::default()
    })
}

fn derive_cmd(
    ds: podbgp::datastore::DatastoreSpec,
    node: &str,
    router_id: Option<&str>,
) -> anyhow::Result<()> {
    use std::io::Write;
    let podbgp::datastore::DatastoreSpec::File(path) = ds else {
        anyhow::bail!("`podbgp derive` reads file datastores only (file:PATH)");
    };
    let view = podbgp::datastore::file::load(&path)
        .with_context(|| format!("invalid datastore file {}", path.display()))?;
    let opts = derive_options(router_id, 240)?;
    let d = podbgp::calico::derive(&view, node, &opts)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "# node {node}, derived from {}", path.display())?;
    for n in &d.notes {
        writeln!(out, "# note: {n}")?;
    }
    let bh: Vec<String> = d.blackholes.iter().map(|b| format!("\"{b}\"")).collect();
    writeln!(out, "# blackholes: [{}]", bh.join(", "))?;
    write!(out, "{}", config::render_yaml(&d.config))?;
    Ok(())
}

fn parse_api_listen(api_listen: Option<&str>) -> anyhow::Result<Option<ApiListen>> {
    Ok(match api_listen {
        Some("none") => None,
        Some(s) => Some(
            s.parse::<ApiListen>()
                .map_err(|e| anyhow::anyhow!("invalid --api-listen {s:?}: {e}"))?,
        ),
        None => Some(ApiListen::default()),
    })
}

/// `podbgp run --datastore ... --node NAME`.
async fn run_node(
    datastore: podbgp::datastore::DatastoreSpec,
    node: String,
    derive: podbgp::calico::DeriveOptions,
    api_listen: Option<String>,
    api_tls: Option<podbgp::api::ApiTls>,
    fib: Option<podbgp::node::FibOptions>,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let api = parse_api_listen(api_listen.as_deref())?;
    let mut running = podbgp::node::start(podbgp::node::NodeOptions {
        datastore,
        node,
        derive,
        api,
        api_tls,
        adjust: None,
        finish: None,
        fib,
        metrics,
    })
    .await?;
    shutdown_on_signals(running.driver.clone());
    running.wait().await
}

/// SIGTERM or Ctrl-C: Cease/Administrative Shutdown to every peer, then exit.
fn shutdown_on_signals(h: podbgp::driver::DriverHandle) {
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        h.shutdown().await;
    });
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            config,
            datastore,
            node,
            router_id,
            hold_time,
            log_format,
            log,
            api_listen,
            api_tls_cert,
            api_tls_key,
            api_tls_client_ca,
            metrics_listen,
            fib,
            max_prefixes,
            max_prefixes_restart,
        } => init_logging(log_format, &log).and_then(|_| {
            let api_tls = match (api_tls_cert, api_tls_key) {
                (Some(cert), Some(key)) => Some(podbgp::api::ApiTls {
                    cert,
                    key,
                    client_ca: api_tls_client_ca,
                }),
                _ => None,
            };
            if let Some(tls) = &api_tls {
                let listen = parse_api_listen(api_listen.as_deref())?
                    .context("--api-tls-cert needs an API listener (not --api-listen none)")?;
                tls.check(&listen)?;
            }
            match (config, datastore) {
                (Some(config), _) => {
                    runtime()?.block_on(run(config, api_listen, api_tls, metrics_listen))
                }
                (None, Some(ds)) => {
                    let node = node.context("--node (or NODENAME) is required with --datastore")?;
                    let mut opts = derive_options(router_id.as_deref(), hold_time)?;
                    opts.max_prefixes = max_prefixes.map(|limit| podbgp::config::MaxPrefixes {
                        limit,
                        restart_after: max_prefixes_restart.map(std::time::Duration::from_secs),
                    });
                    let fib = fib.options();
                    runtime()?.block_on(run_node(
                        ds,
                        node,
                        opts,
                        api_listen,
                        api_tls,
                        fib,
                        metrics_listen,
                    ))
                }
                (None, None) => anyhow::bail!("give --config FILE or --datastore SPEC"),
            }
        }),
        Cmd::Demo => runtime().and_then(|rt| rt.block_on(podbgp::demo::run())),
        Cmd::Derive {
            datastore,
            node,
            router_id,
        } => derive_cmd(datastore, &node, router_id.as_deref()),
        Cmd::Bench(args) => podbgp::bench::main(args),
        Cmd::Lab(args) => {
            return match podbgp::lab::main(args) {
                Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                Err(e) => {
                    eprintln!("podbgp lab: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Cmd::Client(c) => {
            let code =
                runtime().and_then(|rt| rt.block_on(podbgp::cli::run_client(c, cli.api.target())));
            return match code {
                Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
                Err(e) => {
                    eprintln!("podbgp: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Cmd::CheckConfig { config } => load(&config).map(|c| {
            use std::io::Write;
            let _ = writeln!(std::io::stdout(), "{c:#?}");
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podbgp: {e:#}");
            ExitCode::from(2)
        }
    }
}
