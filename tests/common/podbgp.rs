//! A podbgp daemon started in a namespace, and its operator CLI with `--json` parsed.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::{Duration, Lab, Netns, Proc, podbgp_bin, poll_until};

/// One podbgp daemon and its operator CLI.
pub struct Podbgp {
    pub name: &'static str,
    pub proc: Proc,
    pub api: PathBuf,
    /// The configuration file `podbgp run -c` reads (again on SIGHUP).
    pub config: PathBuf,
}

impl Podbgp {
    /// Writes `config` to `<ns dir>/podbgp.yaml`, starts `podbgp run` in `ns` and waits until
    /// its API answers.
    pub fn start(ns: &Netns, name: &'static str, config: &str) -> Podbgp {
        let config_path = ns.dir().join("podbgp.yaml");
        let api = ns.dir().join("api.sock");
        Podbgp::start_with(name, config, config_path, api, |argv| {
            ns.spawn("podbgp", argv)
        })
    }

    /// Like [`Podbgp::start`], in the test's own network namespace (loopback addresses only):
    /// files are `<lab dir>/<name>.yaml`, `<name>.sock` and `<name>.out`.
    pub fn start_loopback(lab: &Lab, name: &'static str, config: &str) -> Podbgp {
        let config_path = lab.dir().join(format!("{name}.yaml"));
        let api = lab.dir().join(format!("{name}.sock"));
        Podbgp::start_with(name, config, config_path, api, |argv| lab.spawn(name, argv))
    }

    /// Starts `podbgp run --datastore DS --node NAME` in `ns` (Calico datastore mode), with
    /// extra environment variables (e.g. `ETCD_ENDPOINTS`), and waits until its API answers.
    /// Hold time 30 s, so a test sees a dead session within seconds.
    pub fn start_datastore(
        ns: &Netns,
        node: &'static str,
        datastore: &str,
        env: &[(String, String)],
    ) -> Podbgp {
        Podbgp::start_datastore_with(ns, node, datastore, env, &[])
    }

    /// [`Podbgp::start_datastore`] with extra `podbgp run` arguments (e.g. FIB options).
    pub fn start_datastore_with(
        ns: &Netns,
        node: &'static str,
        datastore: &str,
        env: &[(String, String)],
        extra: &[&str],
    ) -> Podbgp {
        let api = ns.dir().join("api.sock");
        let bin = podbgp_bin();
        let mut argv: Vec<String> = vec!["env".into()];
        argv.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
        argv.extend(
            [
                bin.to_str().unwrap(),
                "run",
                "--datastore",
                datastore,
                "--node",
                node,
                "--hold-time",
                "30",
                "--api-listen",
                api.to_str().unwrap(),
                "--log",
                "info,podbgp=debug",
            ]
            .map(String::from),
        );
        argv.extend(extra.iter().map(|a| a.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let mut pod = Podbgp {
            name: node,
            proc: ns.spawn("podbgp", &argv),
            api,
            config: PathBuf::new(),
        };
        poll_until(
            Duration::from_secs(30),
            &format!("{node}: podbgp API answering"),
            || {
                if !pod.proc.is_running() {
                    panic!(
                        "{node}: podbgp exited during start-up:\n{}",
                        pod.proc.output()
                    );
                }
                pod.peers()
            },
        );
        pod
    }

    fn start_with(
        name: &'static str,
        config: &str,
        config_path: PathBuf,
        api: PathBuf,
        spawn: impl FnOnce(&[&str]) -> Proc,
    ) -> Podbgp {
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let bin = podbgp_bin();
        let mut pod = Podbgp {
            name,
            proc: spawn(&[
                bin.to_str().unwrap(),
                "run",
                "-c",
                config_path.to_str().unwrap(),
                "--api-listen",
                api.to_str().unwrap(),
                "--log",
                "info,podbgp=debug",
            ]),
            api,
            config: config_path,
        };
        poll_until(
            Duration::from_secs(15),
            &format!("{name}: podbgp API answering"),
            || {
                if !pod.proc.is_running() {
                    panic!(
                        "{name}: podbgp exited during start-up:\n{}\n--- config ---\n{config}",
                        pod.proc.output()
                    );
                }
                pod.peers()
            },
        );
        pod
    }

    /// Rewrites the configuration file and sends SIGHUP (a live reload).
    pub fn reload(&mut self, config: &str) {
        std::fs::write(&self.config, config)
            .unwrap_or_else(|e| panic!("{}: writing {}: {e}", self.name, self.config.display()));
        self.proc.signal(libc::SIGHUP);
    }

    /// `podbgp --api SOCK <args> --json`, parsed.
    pub fn cli(&self, args: &[&str]) -> Result<Value, String> {
        let out = Command::new(podbgp_bin())
            .arg("--api")
            .arg(&self.api)
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: running podbgp {args:?}: {e}", self.name))?;
        if !out.status.success() {
            return Err(format!(
                "{}: podbgp {args:?} --json exited with {}: {}",
                self.name,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "{}: podbgp {args:?} --json: bad JSON ({e}): {}",
                self.name,
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    pub fn array(&self, args: &[&str]) -> Result<Vec<Value>, String> {
        match self.cli(args)? {
            Value::Array(items) => Ok(items),
            other => Err(format!(
                "{}: podbgp {args:?}: expected an array, got {other}",
                self.name
            )),
        }
    }

    /// `peers --json`.
    pub fn peers(&self) -> Result<Vec<Value>, String> {
        self.array(&["peers"])
    }

    /// `routes --json`: every path of the Loc-RIB, with its `best` flag.
    pub fn loc_rib(&self) -> Result<Vec<Value>, String> {
        self.array(&["routes"])
    }

    /// `routes --table adj-rib-out --peer ADDR --json`: what podbgp sends to `peer`.
    pub fn adj_rib_out(&self, peer: &str) -> Result<Vec<Value>, String> {
        self.array(&["routes", "--table", "adj-rib-out", "--peer", peer])
    }

    /// Panics unless the daemon is still running.
    #[track_caller]
    pub fn assert_running(&mut self) {
        if !self.proc.is_running() {
            panic!("{}: podbgp exited:\n{}", self.name, self.proc.output());
        }
    }
}
