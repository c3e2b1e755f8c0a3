//! The gRPC API over TCP with TLS (issue 6): `podbgp run --api-listen tcp://… --api-tls-cert
//! --api-tls-key [--api-tls-client-ca]`, and the CLI with `--api https://… --api-ca
//! [--api-cert --api-key]`. Loopback only, no root; certificates from the `openssl` CLI.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs the CLI; (exit code, stdout, stderr).
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(podbgp_bin())
        .args(args)
        .env_remove("PODBGP_API")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn start(lab: &Lab, name: &str, port: u16, extra: &[&str]) -> Proc {
    let cfg = lab.dir().join(format!("{name}.yaml"));
    std::fs::write(
        &cfg,
        "local_as: 64512\nrouter_id: 198.18.0.1\nneighbors: []\n",
    )
    .unwrap();
    let listen = format!("tcp://127.0.0.1:{port}");
    let mut argv = vec![
        podbgp_bin().display().to_string(),
        "run".into(),
        "-c".into(),
        cfg.display().to_string(),
        "--api-listen".into(),
        listen,
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.spawn(name, &argv)
}

#[test]
fn tls_api_needs_the_ca_and_optionally_a_client_certificate() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("openssl is needed (apt-get install openssl, or bash .ci/test.sh)");
    }
    let lab = Lab::loopback("api_tls");
    let pki = make_pki(&lab.dir().join("pki"));
    let (cert, key, ca) = (
        pki.server_cert.display().to_string(),
        pki.server_key.display().to_string(),
        pki.ca.display().to_string(),
    );
    let (ccert, ckey) = (
        pki.client_cert.display().to_string(),
        pki.client_key.display().to_string(),
    );

    // Server TLS only.
    let port = free_port();
    let mut p = start(
        &lab,
        "tls",
        port,
        &["--api-tls-cert", &cert, "--api-tls-key", &key],
    );
    let url = format!("https://127.0.0.1:{port}");
    let speaker = poll_until(Duration::from_secs(15), "TLS API answers", || {
        if !p.is_running() {
            panic!("podbgp exited:\n{}", p.output());
        }
        match cli(&["--api", &url, "--api-ca", &ca, "speaker", "--json"]) {
            (0, out, _) => Ok(out),
            (c, _, err) => Err(format!("exit {c}: {err}")),
        }
    });
    let v: Value = serde_json::from_str(&speaker).unwrap();
    assert_eq!(v["local_as"], 64512, "{v}");
    // Without the CA: refused with a message naming the flag.
    let (code, _, err) = cli(&["--api", &url, "speaker", "--json"]);
    assert_ne!(code, 0);
    assert!(err.contains("--api-ca"), "{err}");
    // With the wrong CA (the server certificate is not a CA): the handshake fails.
    let (code, _, err) = cli(&["--api", &url, "--api-ca", &cert, "speaker"]);
    assert_ne!(code, 0, "{err}");
    // Plain HTTP/2 to a TLS port fails.
    let (code, _, _) = cli(&["--api", &format!("http://127.0.0.1:{port}"), "speaker"]);
    assert_ne!(code, 0);
    p.terminate(Duration::from_secs(10));

    // Mutual TLS: a client certificate signed by the CA is required.
    let port = free_port();
    let mut p = start(
        &lab,
        "mtls",
        port,
        &[
            "--api-tls-cert",
            &cert,
            "--api-tls-key",
            &key,
            "--api-tls-client-ca",
            &ca,
        ],
    );
    let url = format!("https://127.0.0.1:{port}");
    poll_until(
        Duration::from_secs(15),
        "mTLS API answers a client certificate",
        || {
            if !p.is_running() {
                panic!("podbgp exited:\n{}", p.output());
            }
            match cli(&[
                "--api",
                &url,
                "--api-ca",
                &ca,
                "--api-cert",
                &ccert,
                "--api-key",
                &ckey,
                "peers",
                "--json",
            ]) {
                (0, _, _) => Ok(()),
                (c, _, err) => Err(format!("exit {c}: {err}")),
            }
        },
    );
    let (code, _, err) = cli(&["--api", &url, "--api-ca", &ca, "peers", "--json"]);
    assert_ne!(code, 0, "no client certificate, yet answered: {err}");
    p.terminate(Duration::from_secs(10));

    // TLS on a Unix socket is refused at start with a clear message.
    let sock = lab.dir().join("x.sock").display().to_string();
    let out = Command::new(podbgp_bin())
        .args(["run", "-c"])
        .arg(lab.dir().join("tls.yaml"))
        .args([
            "--api-listen",
            &sock,
            "--api-tls-cert",
            &cert,
            "--api-tls-key",
            &key,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TLS needs a TCP API listener"), "{err}");
}
