//! `podbgp`: the daemon (`podbgp run`) and the operator CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use podbgp::config;
use podbgp::driver::Driver;

#[derive(Parser)]
#[command(
    name = "podbgp",
    version,
    about = "BGP route distribution for Calico-style Kubernetes clusters"
)]
struct Cli {
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
    },
    /// Check a configuration file and print the validated result.
    CheckConfig {
        #[arg(value_name = "FILE")]
        config: PathBuf,
    },
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).context("invalid --log filter")?;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

async fn run(config: PathBuf) -> anyhow::Result<()> {
    let cfg = load(&config)?;
    let (driver, handle) = Driver::new(cfg);
    let h = handle.clone();
    let path = config.clone();
    tokio::spawn(async move {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .expect("SIGHUP handler");
        while hup.recv().await.is_some() {
            match load(&path) {
                Ok(cfg) => h.reload(cfg).await,
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
    driver.run().await?;
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Run {
            config,
            log_format,
            log,
        } => init_logging(log_format, &log).and_then(|_| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the tokio runtime")?
                .block_on(run(config))
        }),
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
