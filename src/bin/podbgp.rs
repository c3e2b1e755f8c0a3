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

#[derive(Subcommand)]
enum Cmd {
    /// Run the BGP daemon.
    Run {
        /// Speaker configuration file (YAML; see README "Configuration").
        #[arg(long, short = 'c', value_name = "FILE")]
        config: PathBuf,
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
    },
    /// Run a three-node full mesh on loopback, print its status and routes, and tear it down.
    Demo,
    /// Check a configuration file and print the validated result.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
    /// Benchmark a speaker over loopback (see `podbgp bench rr-fanin --help`).
    Bench(podbgp::bench::BenchArgs),
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

async fn run(config: PathBuf, api_listen: Option<String>) -> anyhow::Result<()> {
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
            Some(tokio::spawn(podbgp::api::serve(listen, api, async {
                let _ = api_stop_rx.await;
            })))
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
    let h = handle.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        h.shutdown().await;
    });
    let result = driver.run().await;
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
            log_format,
            log,
            api_listen,
        } => init_logging(log_format, &log)
            .and_then(|_| runtime()?.block_on(run(config, api_listen))),
        Cmd::Demo => runtime().and_then(|rt| rt.block_on(podbgp::demo::run())),
        Cmd::Bench(args) => podbgp::bench::main(args),
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
