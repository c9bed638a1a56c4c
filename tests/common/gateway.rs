//! `courier up` driven like a client would: start it on 127.0.0.1:0, HTTP/1.1
//! requests over plain sockets (no client library), tokens, and waiting for the
//! views, which lag the log by design.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `courier up`.
pub struct Up {
    pub child: Child,
    pub addr: String,
}

impl Up {
    pub fn start(data: &Path, config: Option<&str>) -> Up {
        Up::start_with(data, config, &[])
    }

    /// `courier up` with more arguments after `--listen`.
    pub fn start_with(data: &Path, config: Option<&str>, extra: &[&str]) -> Up {
        let mut cmd = super::courier(data);
        if let Some(c) = config {
            let p = data.with_extension("toml");
            std::fs::write(&p, c).unwrap();
            cmd.arg("--config").arg(p);
        }
        let mut child = cmd
            .args(["up", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn courier up");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        // http:// or, with --tls-cert, https://.
        let line = super::wait_for_line(&mut lines, "the URL", |l| l.contains("://"));
        let addr = line.split("://").nth(1).unwrap().trim().to_string();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Up { child, addr }
    }

    /// SIGTERM, and the exit status once it stopped.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        // Wait for the exit itself; a watchdog kills a child that ignores SIGTERM
        // for 30 s, which then shows as a signal death below.
        let (exited, watch) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if watch.recv_timeout(Duration::from_secs(30)).is_err() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid])
                    .status();
            }
        });
        let status = self.child.wait().unwrap();
        let _ = exited.send(());
        watchdog.join().unwrap();
        assert!(
            status.code().is_some(),
            "courier up did not stop on SIGTERM within 30 s ({status})"
        );
        status
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// A request over a fresh connection (`Connection: close`), so the test needs no
/// HTTP client library.
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let s = TcpStream::connect(addr).unwrap();
    http_on(s, addr, method, path, token, body, extra)
}

/// [`http`] over a connection of the caller's (a TLS stream, say) to `addr`.
pub fn http_on(
    mut s: impl Read + Write,
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty()
        && !extra
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").expect("a complete HTTP answer");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    let body = if headers
        .get("transfer-encoding")
        .is_some_and(|t| t == "chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Answer {
        status,
        headers,
        body,
    }
}

pub fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
}

pub fn token(data: &Path, config: Option<&str>, user: &str) -> String {
    let mut cmd = super::courier(data);
    if config.is_some() {
        cmd.arg("--config").arg(data.with_extension("toml"));
    }
    super::ok(cmd.args(["token", user]).output().unwrap())
        .trim()
        .to_string()
}

/// Events the gateway has published so far, from its /metrics.
pub fn published(addr: &str) -> u64 {
    http(addr, "GET", "/metrics", None, None, &[])
        .body
        .lines()
        .filter(|l| l.starts_with("courier_gateway_published_events_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Polls `f` until it returns `Some` (the views lag the log by design).
pub fn eventually<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_within(what, Duration::from_secs(20), f)
}

/// [`eventually`] with a deadline of its own. Each poll is an HTTP request; the
/// short pause between them keeps a poll loop under the gateway's per-user
/// rate limit (50/s), which would otherwise answer it 429.
pub fn eventually_within<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Creates a direct conversation of the token's user with `with`; its id.
pub fn direct_conversation(addr: &str, token: &str, with: &str) -> String {
    let body = serde_json::json!({"kind": "direct", "member_ids": [with]}).to_string();
    let r = http(
        addr,
        "POST",
        "/v1/conversations",
        Some(token),
        Some(&body),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["conversation_id"].as_str().unwrap().to_string()
}
