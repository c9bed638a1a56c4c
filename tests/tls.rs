//! `courier up` serving HTTPS and wss (`--tls-cert`, `--tls-key`, or the
//! `[gateway]` keys): real clients that trust a CA made here, a plaintext client
//! turned away without harm, and bad certificate files refused at start.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::gateway::{Answer, Up, http_on, token};
use common::tls::Ca;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A client configuration that trusts only the certificates in `ca`.
fn trusting(ca: &Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A TLS connection to `addr` (127.0.0.1:PORT), the certificate checked
/// against the IP address; the handshake completed, or its error.
fn connect(addr: &str, client: &Arc<rustls::ClientConfig>) -> Result<Tls, std::io::Error> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))?;
    let ip = addr.rsplit_once(':').unwrap().0.to_string();
    let conn = rustls::ClientConnection::new(client.clone(), ServerName::try_from(ip).unwrap())
        .map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One HTTPS request on a fresh connection.
fn https(
    addr: &str,
    client: &Arc<rustls::ClientConfig>,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let body = body.map(Value::to_string);
    let tls = connect(addr, client).expect("a TLS handshake with courier up");
    http_on(tls, addr, method, path, token, body.as_deref(), &[])
}

#[test]
fn courier_up_serves_https_and_wss_with_the_certificate_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("gateway", &["127.0.0.1"], false);
    // Per-user limits out of reach, so the only 429 at the end is per IP.
    let config = "[gateway]\nuser_rate_per_sec = 1000.0\nuser_burst = 1000\n\
                  ip_rate_per_sec = 1.0\nip_burst = 40\n";
    let up = Up::start_with(
        &data,
        Some(config),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let a = &up.addr;
    let client = trusting(&ca.cert);
    let alice = token(&data, Some(config), "alice");
    let bob = token(&data, Some(config), "bob");

    let health = https(a, &client, "GET", "/healthz", None, None);
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.json()["status"], "ok", "{}", health.body);
    let metrics = https(a, &client, "GET", "/metrics", None, None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("courier_gateway_"),
        "{}",
        metrics.body
    );

    // A plaintext request to the TLS port gets no HTTP answer, and the server
    // goes on serving.
    let mut plain = TcpStream::connect(a).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    plain
        .write_all(
            format!("GET /healthz HTTP/1.1\r\nHost: {a}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(
        !raw.starts_with(b"HTTP/"),
        "plain HTTP answered on the TLS port: {}",
        String::from_utf8_lossy(&raw)
    );
    // A client that does not trust the CA fails its handshake.
    let stranger = trusting(&Ca::new(dir.path(), "other-ca").cert);
    assert!(
        connect(a, &stranger).is_err(),
        "a certificate from another CA was accepted"
    );
    assert_eq!(https(a, &client, "GET", "/healthz", None, None).status, 200);

    // alice and bob talk over HTTPS; bob hears it live over wss.
    let r = https(
        a,
        &client,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(&json!({"kind": "direct", "member_ids": ["bob"]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json()["conversation_id"].as_str().unwrap().to_string();
    let (mut live, resp) = tungstenite::client(
        format!("wss://{a}/v1/stream?access_token={bob}"),
        connect(a, &client).unwrap(),
    )
    .expect("a WebSocket over TLS");
    assert_eq!(resp.status(), 101);
    let r = https(
        a,
        &client,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&json!({"conversation_id": c, "text": "over tls"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let m = r.json()["message_id"].as_str().unwrap().to_string();
    let event = loop {
        match live.read().expect("a live event before the timeout") {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                // The event itself, or wrapped with the cursor to resume from.
                let v = v.get("event").cloned().unwrap_or(v);
                if v["type"] == "message_sent" {
                    break v;
                }
            }
            tungstenite::Message::Close(c) => panic!("closed before the message: {c:?}"),
            _ => {}
        }
    };
    assert_eq!(
        (event["message_id"].as_str(), event["text"].as_str()),
        (Some(m.as_str()), Some("over tls"))
    );

    // The per-IP limit still knows the client's address behind TLS: it,
    // not the per-user one, answers 429 within its burst.
    let limited = (0..100).find_map(|_| {
        let r = https(a, &client, "GET", "/v1/inbox", Some(&bob), None);
        (r.status == 429).then_some(r)
    });
    let limited = limited.expect("the per-IP limit never answered over TLS");
    assert!(limited.body.contains("IP address"), "{}", limited.body);
    assert!(up.stop().success());
}

/// Runs `courier up` with `args` after `--listen` and `env`, which must fail at
/// start; its stderr.
fn refused(data: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let child = common::courier(data)
        .envs(env.iter().copied())
        .args(["up", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Its exit is awaited on a thread (stderr read to its end), so a server
    // that starts instead of refusing fails the deadline, not the test run.
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            panic!("courier up {args:?} did not stop at start");
        }
    };
    let (status, err) = (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(!status.success(), "courier up {args:?} succeeded: {err}");
    err
}

#[test]
fn courier_up_refuses_to_start_on_a_missing_or_mismatched_certificate_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("gateway", &["127.0.0.1"], false);
    let (_, other_key) = ca.leaf("other", &["127.0.0.1"], false);
    let (cert, key, other_key) = (
        cert.to_str().unwrap(),
        key.to_str().unwrap(),
        other_key.to_str().unwrap(),
    );
    let missing = dir.path().join("missing.key");
    let missing = missing.to_str().unwrap();

    let err = refused(&data, &[], &["--tls-cert", cert, "--tls-key", missing]);
    let said = |what: &[&str]| what.iter().all(|w| err.contains(w));
    assert!(said(&["--tls-key", missing, "cannot read"]), "{err}");

    let err = refused(&data, &[], &["--tls-cert", cert, "--tls-key", other_key]);
    let said = |what: &[&str]| what.iter().all(|w| err.contains(w));
    assert!(
        said(&["is not the private key of the certificate", other_key, cert]),
        "{err}"
    );

    // A key is not a certificate.
    let err = refused(&data, &[], &["--tls-cert", key, "--tls-key", key]);
    assert!(
        err.contains("--tls-cert") && err.contains("no PEM certificate"),
        "{err}"
    );

    // One without the other, from the environment: named as the config key.
    let err = refused(&data, &[("COURIER_GATEWAY__TLS_CERT_FILE", cert)], &[]);
    assert!(
        err.contains("gateway.tls_cert_file is given without a private key"),
        "{err}"
    );
}

#[test]
fn courier_up_serves_https_from_the_gateway_config_keys() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.leaf("gateway", &["127.0.0.1"], false);
    let config = format!(
        "[gateway]\ntls_cert_file = {:?}\ntls_key_file = {:?}\n",
        cert.to_str().unwrap(),
        key.to_str().unwrap()
    );
    let up = Up::start_with(&data, Some(&config), &["--processors", "none"]);
    let r = https(&up.addr, &trusting(&ca.cert), "GET", "/healthz", None, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(up.stop().success());
}

#[test]
fn plain_http_on_a_non_loopback_address_is_served_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = common::courier(&data)
        .args(["up", "--listen", "0.0.0.0:0", "--processors", "none"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = common::wait_for_line(&mut lines, "the warning", |l| {
        l.contains("WARN") && l.contains("plain HTTP on a non-loopback address")
    });
    assert!(line.contains("--tls-cert"), "{line}");
    std::thread::spawn(move || for _ in lines {});
    let _ = child.kill();
    let _ = child.wait();
}
