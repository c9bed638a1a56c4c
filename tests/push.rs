//! End-to-end tests of notify and push delivery through the `courier` binary:
//! presence first, then a conversation stream with duplicates and rule breaks →
//! `run notify` → exactly one push job per (offline recipient, visible message),
//! checked against an independent model, embedded and on Kafka; producing the
//! stream again adds none. Then `run push` against a real HTTP provider started by
//! the test on 127.0.0.1:0 that answers in scripted ways (success, 500 then
//! success, a timeout, 429 with Retry-After, 410): every job ends accepted exactly
//! once or dead-lettered with the provider's answer, also across a SIGKILL; and
//! over HTTPS to a provider that demands a client certificate, the TLS files set
//! from the environment.

mod common;

use common::{
    Rng, await_progress, configured, courier, kafka_config, ok, spawn_live, unique_namespace,
    write_lines,
};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Users u0..u9: u0, u3, u6 end online; u1, u4, u7 end offline; u2, u5 flip and
/// end offline; u8, u9 are never seen (so offline).
fn presence_stream(at: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut event = |i: usize, u: usize, status: &str| {
        out.push(format!(
            r#"{{"type":"presence","event_id":"p{i}","user_id":"u{u}","status":"{status}","at_ms":{}}}"#,
            at + i as i64
        ))
    };
    for (i, u) in [0, 3, 6, 2, 5].into_iter().enumerate() {
        event(i, u, "online");
    }
    for (i, u) in [1, 4, 7, 2, 5].into_iter().enumerate() {
        event(10 + i, u, "offline");
    }
    out
}

fn online(u: &str) -> bool {
    matches!(u, "u0" | "u3" | "u6")
}

/// Conversations of the ten users with sends (text and ciphertext), membership
/// churn, rule breaks (non-members sending, removed actors) and producer retries.
fn conversation_stream(conversations: usize, per: usize, at: i64) -> Vec<String> {
    let mut rng = Rng(11);
    let mut history: Vec<Vec<String>> = vec![Vec::new(); conversations];
    let mut out = Vec::new();
    for c in 0..conversations {
        let (a, b, d) = (c % 10, (c + 1) % 10, (c + 4) % 10);
        out.push(if c % 5 == 0 {
            format!(
                r#"{{"type":"conversation_created","event_id":"cc{c}","conversation_id":"c{c}","kind":"direct","creator_id":"u{a}","member_ids":["u{a}","u{b}"],"title":"","at_ms":{at}}}"#
            )
        } else {
            format!(
                r#"{{"type":"conversation_created","event_id":"cc{c}","conversation_id":"c{c}","kind":"group","creator_id":"u{a}","member_ids":["u{a}","u{b}","u{d}"],"title":"","at_ms":{at}}}"#
            )
        });
    }
    for i in 0..per {
        for c in 0..conversations {
            let at = at + 1 + (i * conversations + c) as i64;
            let id = format!("g{c}-{i}");
            let u = rng.below(10);
            let line = match rng.below(12) {
                0..=5 => {
                    // Some message ids repeat on purpose: the first send wins.
                    let m = if rng.below(8) == 0 { i / 2 } else { i };
                    if rng.below(4) == 0 {
                        format!(
                            r#"{{"type":"message_sent","event_id":"{id}","conversation_id":"c{c}","message_id":"m{m}","sender_id":"u{u}","ciphertext":"AAEC","at_ms":{at}}}"#
                        )
                    } else {
                        format!(
                            r#"{{"type":"message_sent","event_id":"{id}","conversation_id":"c{c}","message_id":"m{m}","sender_id":"u{u}","text":"text {i} of c{c}","at_ms":{at}}}"#
                        )
                    }
                }
                6 | 7 => {
                    let v = rng.below(10);
                    format!(
                        r#"{{"type":"members_added","event_id":"{id}","conversation_id":"c{c}","actor_id":"u{u}","user_ids":["u{v}"],"at_ms":{at}}}"#
                    )
                }
                8 => {
                    let v = rng.below(10);
                    format!(
                        r#"{{"type":"members_removed","event_id":"{id}","conversation_id":"c{c}","actor_id":"u{u}","user_ids":["u{v}"],"at_ms":{at}}}"#
                    )
                }
                _ if !history[c].is_empty() => {
                    // A producer retry: the same event again.
                    history[c][rng.below(history[c].len())].clone()
                }
                _ => continue,
            };
            history[c].push(line.clone());
            out.push(line);
        }
    }
    out
}

/// The expected jobs, from the rules of docs/DESIGN.md written out plainly: per
/// conversation, members as of each event; a send applies iff the conversation
/// exists, its id is unused and the sender is a member; every other member who is
/// not online gets a job. A repeated `event_id` changes nothing.
fn expected_jobs(lines: &[String]) -> BTreeSet<(String, String, String)> {
    #[derive(Default)]
    struct Conv {
        created: bool,
        direct: bool,
        members: BTreeSet<String>,
        messages: BTreeSet<String>,
        seen: BTreeSet<String>,
    }
    let mut convs: BTreeMap<String, Conv> = BTreeMap::new();
    let mut jobs = BTreeSet::new();
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
    for l in lines {
        let v: Value = serde_json::from_str(l).unwrap();
        let c = convs.entry(s(&v, "conversation_id")).or_default();
        if !c.seen.insert(s(&v, "event_id")) {
            continue;
        }
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect()
        };
        match v["type"].as_str().unwrap() {
            "conversation_created" if !c.created => {
                c.created = true;
                c.direct = v["kind"] == "direct";
                c.members = list("member_ids").into_iter().collect();
            }
            "members_added" if c.created && !c.direct && c.members.contains(&s(&v, "actor_id")) => {
                c.members.extend(list("user_ids"));
            }
            "members_removed"
                if c.created && !c.direct && c.members.contains(&s(&v, "actor_id")) =>
            {
                for u in list("user_ids") {
                    c.members.remove(&u);
                }
            }
            "message_sent" => {
                let (m, sender) = (s(&v, "message_id"), s(&v, "sender_id"));
                if c.created && !c.messages.contains(&m) && c.members.contains(&sender) {
                    c.messages.insert(m.clone());
                    for u in &c.members {
                        if *u != sender && !online(u) {
                            jobs.insert((u.clone(), s(&v, "conversation_id"), m.clone()));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    jobs
}

/// Runs notify to the end of the log; returns how many records it applied.
fn run_notify(cmd: &mut Command) -> u64 {
    let out = cmd
        .args(["run", "notify", "--until-caught-up"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run notify: {err}");
    err.lines()
        .find_map(|l| l.strip_prefix("notify: applied "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no summary line: {err}"))
}

/// The push jobs on the topic, as (user, conversation, message) with their count,
/// after checking each job's fields.
fn replayed_jobs(cmd: &mut Command) -> Vec<(String, String, String)> {
    let out = ok(cmd
        .args(["replay", "courier.push-jobs.v1", "--format", "json"])
        .output()
        .unwrap());
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let f = |k: &str| v[k].as_str().unwrap().to_string();
            assert_eq!(v["type"], "push_job", "{l}");
            assert_eq!(f("event_id"), f("job_id"), "{l}");
            assert_eq!(f("collapse_key"), f("conversation_id"), "{l}");
            let p = f("preview");
            assert!(
                p.is_empty() || p.starts_with("text "),
                "text previews its text, ciphertext previews nothing: {l}"
            );
            (f("user_id"), f("conversation_id"), f("message_id"))
        })
        .collect()
}

/// Runs the whole scenario with `cmd` building a courier command for one setup.
fn exactly_one_job_per_offline_recipient(cmd: impl Fn() -> Command, dir: &Path) {
    let at = now_ms() - 60_000;
    let presence = write_lines(dir, "presence.jsonl", &presence_stream(at));
    let lines = conversation_stream(40, 40, at + 100);
    let stream = write_lines(dir, "stream.jsonl", &lines);
    let want = expected_jobs(&lines);
    assert!(want.len() > 100, "the stream makes jobs: {}", want.len());
    assert!(
        want.iter().any(|(u, ..)| u == "u8") && want.iter().any(|(u, ..)| u == "u2"),
        "never-seen and flipped-to-offline users get jobs"
    );

    // Presence first, then the conversations.
    ok(cmd()
        .args(["produce", "--file"])
        .arg(&presence)
        .output()
        .unwrap());
    ok(cmd()
        .args(["produce", "--file"])
        .arg(&stream)
        .output()
        .unwrap());
    run_notify(&mut cmd());
    let got = replayed_jobs(&mut cmd());
    let unique: BTreeSet<_> = got.iter().cloned().collect();
    assert_eq!(got.len(), unique.len(), "no job twice");
    assert!(
        !got.iter().any(|(u, ..)| online(u)),
        "nobody online gets a push"
    );
    assert_eq!(unique, want);

    // The same stream again: every event is a duplicate, so no new job.
    ok(cmd()
        .args(["produce", "--file"])
        .arg(&stream)
        .output()
        .unwrap());
    run_notify(&mut cmd());
    assert_eq!(
        replayed_jobs(&mut cmd()).len(),
        want.len(),
        "producing again adds none"
    );
}

#[test]
fn notify_makes_exactly_one_job_per_offline_recipient_and_visible_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    exactly_one_job_per_offline_recipient(|| courier(&data), dir.path());
    let jobs = replayed_jobs(&mut courier(&data)).len();

    // The notifier's state lost (a new disk): it rebuilds the state from the log
    // without publishing anything the group had already processed.
    std::fs::remove_dir_all(data.join("views/notify")).unwrap();
    run_notify(&mut courier(&data));
    assert_eq!(
        replayed_jobs(&mut courier(&data)).len(),
        jobs,
        "a rebuild sends nothing"
    );
    // And the rebuilt state is right: a new message to c1 yields its jobs again.
    let more = write_lines(
        dir.path(),
        "more.jsonl",
        &[format!(
            r#"{{"type":"message_sent","event_id":"late","conversation_id":"c1","message_id":"late","sender_id":"u1","text":"text late","at_ms":{}}}"#,
            now_ms()
        )],
    );
    ok(courier(&data)
        .args(["produce", "--file"])
        .arg(&more)
        .output()
        .unwrap());
    run_notify(&mut courier(&data));
    let mut late: Vec<_> = replayed_jobs(&mut courier(&data))
        .into_iter()
        .filter(|(_, c, m)| c == "c1" && m == "late")
        .collect();
    late.sort();
    let mut lines = conversation_stream(40, 40, 0);
    lines.push(std::fs::read_to_string(&more).unwrap().trim().to_string());
    let want: Vec<_> = expected_jobs(&lines)
        .into_iter()
        .filter(|(_, c, m)| c == "c1" && m == "late")
        .collect();
    assert!(!want.is_empty(), "someone in c1 is offline");
    assert_eq!(late, want);
}

#[test]
fn notify_on_kafka_makes_exactly_one_job_per_offline_recipient() {
    let Some(brokers) = courier_pipeline::testing::KAFKA.reachable() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let namespace = unique_namespace("notify");
    let config = kafka_config(dir.path(), "kafka", &namespace, &brokers, "");
    let data = dir.path().join("data");
    let result = std::panic::catch_unwind(|| {
        exactly_one_job_per_offline_recipient(|| configured(&data, &config), dir.path())
    });
    // Leave the shared broker as we found it, pass or fail.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = courier_pipeline::KafkaLog::new(
            common::kafka_settings(&brokers).with_namespace(namespace.clone()),
            courier_topics::Catalog::builtin(),
        )
        .unwrap();
        log.delete_namespace().await.unwrap();
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// What the scripted provider saw.
#[derive(Default)]
struct Seen {
    /// Attempts per job_id, and when each came.
    attempts: HashMap<String, Vec<Instant>>,
    /// Job ids answered 2xx, in order: a delivery.
    accepted: Vec<String>,
    /// Requests whose `Idempotency-Key` was not their job_id.
    bad_keys: u32,
    /// Once this many jobs are accepted, every further request hangs unanswered.
    stall_after: Option<usize>,
    /// Accept every job whatever its scenario.
    accept_all: bool,
}

/// How the provider treats a job: by the number in its user id (`u7` → 7 % 6).
fn scenario(user: &str) -> usize {
    user[1..].parse::<usize>().unwrap() % 6
}

/// Attempts a job takes under its scenario, and whether it ends accepted.
fn expected_attempts(user: &str) -> (usize, bool) {
    match scenario(user) {
        0 | 1 => (1, true),
        2..=4 => (2, true),
        _ => (1, false),
    }
}

/// A push provider on 127.0.0.1:0 answering by [`scenario`]: 0/1 accept; 2 answers
/// 500 once; 3 hangs past the client's deadline once; 4 answers 429 with
/// `Retry-After: 1` once; 5 answers 410 with a reason, always.
struct Provider {
    seen: Arc<Mutex<Seen>>,
    url: String,
    _rt: tokio::runtime::Runtime,
}

fn provider() -> Provider {
    provider_with(None)
}

/// [`provider`], over HTTPS when `tls` is given (its URL then names `localhost`,
/// which the test's server certificate is for).
fn provider_with(tls: Option<rustls::ServerConfig>) -> Provider {
    use axum::http::{HeaderMap, StatusCode};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let state = seen.clone();
    let app = axum::Router::new().route(
        "/push",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let seen = state.clone();
            async move {
                let v: Value = serde_json::from_str(&body).expect("a JSON body");
                let job = v["job_id"].as_str().unwrap().to_string();
                let user = v["user_id"].as_str().unwrap().to_string();
                let (n, accept_all) = {
                    let mut s = seen.lock().unwrap();
                    if headers.get("idempotency-key").and_then(|h| h.to_str().ok()) != Some(&job) {
                        s.bad_keys += 1;
                    }
                    let a = s.attempts.entry(job.clone()).or_default();
                    a.push(Instant::now());
                    let n = a.len();
                    (n, s.accept_all)
                };
                let scene = if accept_all { 0 } else { scenario(&user) };
                match (scene, n) {
                    (2, 1) => (StatusCode::INTERNAL_SERVER_ERROR, HeaderMap::new(), "busy"),
                    (3, 1) => {
                        // Never answers: only the client's timeout ends this
                        // attempt (its dropped connection cancels this handler).
                        std::future::pending::<()>().await;
                        unreachable!("a pending future never completes")
                    }
                    (4, 1) => {
                        let mut h = HeaderMap::new();
                        h.insert("retry-after", "1".parse().unwrap());
                        (StatusCode::TOO_MANY_REQUESTS, h, "slow down")
                    }
                    (5, _) => (StatusCode::GONE, HeaderMap::new(), "device unregistered"),
                    _ => {
                        // Decided under the lock, so no more than `stall_after`
                        // jobs are ever accepted while stalling.
                        let stalled = {
                            let mut s = seen.lock().unwrap();
                            let stalled = s.stall_after.is_some_and(|k| s.accepted.len() >= k);
                            if !stalled {
                                s.accepted.push(job);
                            }
                            stalled
                        };
                        if stalled {
                            std::future::pending::<()>().await;
                        }
                        (StatusCode::ACCEPTED, HeaderMap::new(), "")
                    }
                }
            }
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let url = match tls {
        None => {
            rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("http://{addr}/push")
        }
        Some(config) => {
            let listener = common::tls::TlsListener {
                tcp: listener,
                acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            };
            rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
            format!("https://localhost:{}/push", addr.port())
        }
    };
    Provider { seen, url, _rt: rt }
}

/// `n` push jobs for users u0..u(n-1), as canonical JSON lines.
fn push_jobs(n: usize) -> Vec<String> {
    let at = now_ms();
    (0..n)
        .map(|k| {
            format!(
                r#"{{"type":"push_job","event_id":"job-{k}","job_id":"job-{k}","user_id":"u{k}","conversation_id":"c{}","message_id":"m{k}","sender_id":"s","preview":"hi","collapse_key":"c{}","at_ms":{at}}}"#,
                k % 7,
                k % 7
            )
        })
        .collect()
}

fn push_config(dir: &Path, url: &str, extra: &str) -> std::path::PathBuf {
    let config = dir.join("push.toml");
    std::fs::write(
        &config,
        format!(
            "[push]\nendpoint = \"{url}\"\ntimeout_ms = 300\nbreaker_cooldown_ms = 100\nmax_attempts = 5\n{extra}"
        ),
    )
    .unwrap();
    config
}

fn dead_letters(cmd: &mut Command) -> Vec<Value> {
    ok(cmd
        .args(["replay", "courier.dead-letters.v1", "--format", "json"])
        .output()
        .unwrap())
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

#[test]
fn push_delivers_every_job_once_or_dead_letters_it_with_the_providers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = provider();
    let config = push_config(dir.path(), &p.url, "");
    let on = || configured(&data, &config);
    let mut lines = push_jobs(60);
    // A job published twice (a notifier that crashed before its state write).
    lines.push(lines[7].clone());
    ok(on()
        .args(["produce", "--file"])
        .arg(write_lines(dir.path(), "jobs.jsonl", &lines))
        .output()
        .unwrap());
    let out = on()
        .args(["run", "push", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let users: Vec<String> = (0..60).map(|k| format!("u{k}")).collect();
    {
        let s = p.seen.lock().unwrap();
        assert_eq!(
            s.bad_keys, 0,
            "every request carries its job_id as Idempotency-Key"
        );
        let accepted: BTreeSet<&String> = s.accepted.iter().collect();
        assert_eq!(accepted.len(), s.accepted.len(), "no job accepted twice");
        for (k, u) in users.iter().enumerate() {
            let job = format!("job-{k}");
            let (attempts, delivered) = expected_attempts(u);
            assert_eq!(s.attempts[&job].len(), attempts, "attempts of {job} ({u})");
            assert_eq!(accepted.contains(&job), delivered, "{job} ({u})");
            if scenario(u) == 4 {
                let a = &s.attempts[&job];
                assert!(
                    a[1] - a[0] >= Duration::from_millis(950),
                    "Retry-After honoured for {job}: {:?}",
                    a[1] - a[0]
                );
            }
        }
    }
    let dead = dead_letters(&mut on());
    let mut dead_users: Vec<String> = dead
        .iter()
        .map(|d| {
            let reason = d["reason"].as_str().unwrap();
            assert_eq!(d["source_topic"], "courier.push-jobs.v1");
            assert!(
                reason.contains("answered 410: device unregistered"),
                "the provider's answer is in the reason: {reason}"
            );
            d["source_key"].as_str().unwrap().to_string()
        })
        .collect();
    dead_users.sort();
    let mut want: Vec<String> = users.iter().filter(|u| scenario(u) == 5).cloned().collect();
    want.sort();
    assert_eq!(dead_users, want);

    // A second run has nothing left; nothing is sent again.
    let before = p
        .seen
        .lock()
        .unwrap()
        .attempts
        .values()
        .map(Vec::len)
        .sum::<usize>();
    let out = on()
        .args(["run", "push", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = p
        .seen
        .lock()
        .unwrap()
        .attempts
        .values()
        .map(Vec::len)
        .sum::<usize>();
    assert_eq!(after, before);
}

#[test]
fn push_delivers_over_https_to_a_provider_that_demands_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ca = common::tls::Ca::new(dir.path(), "provider-ca");
    let clients = common::tls::Ca::new(dir.path(), "clients-ca");
    let (cert, key) = ca.leaf("provider", &["localhost"], false);
    let (mine, mine_key) = clients.leaf("courier-push", &["courier-push"], true);
    let p = provider_with(Some(common::tls::server_config(
        &cert,
        &key,
        Some(&clients.cert),
    )));
    p.seen.lock().unwrap().accept_all = true;
    let config = push_config(dir.path(), &p.url, "");
    let on = || configured(&data, &config);
    ok(on()
        .args(["produce", "--file"])
        .arg(write_lines(dir.path(), "jobs.jsonl", &push_jobs(12)))
        .output()
        .unwrap());

    // The TLS files from the environment, as a container would get them.
    let tls_env = [
        ("COURIER_PUSH__CA_FILE", ca.cert.clone()),
        ("COURIER_PUSH__CLIENT_CERT_FILE", mine),
        ("COURIER_PUSH__CLIENT_KEY_FILE", mine_key),
    ];
    // Half a client identity is a configuration mistake, named before any work.
    let out = on()
        .envs(tls_env[..2].iter().cloned())
        .args(["run", "push", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set both or neither"), "{err}");

    let out = on()
        .envs(tls_env.iter().cloned())
        .args(["run", "push", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = p.seen.lock().unwrap();
    let accepted: BTreeSet<&String> = s.accepted.iter().collect();
    assert_eq!(accepted.len(), 12, "every job delivered: {:?}", s.accepted);
    assert_eq!(s.accepted.len(), 12, "none twice");
    assert_eq!(s.bad_keys, 0);
    drop(s);
    assert!(dead_letters(&mut on()).is_empty());
}

/// `courier_push_sent_total` of a live process (0 while its endpoint is not up).
fn pushed_so_far(addr: &str) -> u64 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body.lines()
        .find(|l| l.starts_with("courier_push_sent_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn push_killed_mid_batch_and_restarted_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = provider();
    // Only users whose scenario is "accept": every job must end accepted.
    let lines: Vec<String> = push_jobs(600)
        .into_iter()
        .enumerate()
        .filter(|(k, _)| k % 6 < 2)
        .map(|(_, l)| l)
        .collect();
    let total = lines.len();
    let config = push_config(dir.path(), &p.url, "[runner]\nmax_batch = 1000\n");
    let on = || configured(&data, &config);
    ok(on()
        .args(["produce", "--file"])
        .arg(write_lines(dir.path(), "jobs.jsonl", &lines))
        .output()
        .unwrap());

    // The provider accepts 50 jobs, then hangs: the kill lands with the batch half
    // done and requests in flight that the provider never accepted.
    p.seen.lock().unwrap().stall_after = Some(50);
    let live = spawn_live(&mut on(), "push", None);
    let mut child = live.child;
    let deadline = Instant::now() + Duration::from_secs(120);
    while pushed_so_far(&live.addr) < 50 {
        assert!(Instant::now() < deadline, "push made no progress");
        std::thread::yield_now();
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    {
        let mut s = p.seen.lock().unwrap();
        assert_eq!(s.accepted.len(), 50, "the kill landed mid-batch");
        s.stall_after = None;
    }

    let out = on()
        .args(["run", "push", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = p.seen.lock().unwrap();
    let accepted: BTreeSet<&String> = s.accepted.iter().collect();
    assert_eq!(accepted.len(), s.accepted.len(), "no job accepted twice");
    assert_eq!(accepted.len(), total, "every job accepted");
    assert!(
        s.attempts.values().filter(|a| a.len() > 1).count() > 0,
        "some request was in flight at the kill"
    );
}

#[test]
fn notify_killed_mid_run_then_push_delivers_every_expected_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = provider();
    p.seen.lock().unwrap().accept_all = true;
    let config = push_config(dir.path(), &p.url, "[runner]\nmax_batch = 10\n");
    let on = || configured(&data, &config);
    let at = now_ms() - 60_000;
    let lines = conversation_stream(100, 30, at + 100);
    let want: BTreeSet<String> = expected_jobs(&lines)
        .into_iter()
        .map(|(u, c, m)| courier_processors::notify::job_id(&u, &c, &m))
        .collect();
    let presence = write_lines(dir.path(), "presence.jsonl", &presence_stream(at));
    ok(on()
        .args(["produce", "--file"])
        .arg(&presence)
        .output()
        .unwrap());
    let stream = write_lines(dir.path(), "stream.jsonl", &lines);
    ok(on()
        .args(["produce", "--file"])
        .arg(&stream)
        .output()
        .unwrap());

    // Small batches, SIGKILL a quarter of the way through, then a clean restart.
    let live = spawn_live(&mut on(), "notify", None);
    let mut child = live.child;
    await_progress(&live.addr, "notify", lines.len() as u64 / 4);
    child.kill().unwrap();
    child.wait().unwrap();
    let rest = run_notify(&mut on());
    assert!(
        rest > 0 && rest < lines.len() as u64,
        "the kill landed mid-run: {rest} of {} applied after the restart",
        lines.len()
    );

    // The topic holds every expected job and nothing else (a batch the kill
    // interrupted may have published some twice, under the same ids).
    let on_topic = replayed_jobs(&mut on());
    let ids: BTreeSet<String> = on_topic
        .iter()
        .map(|(u, c, m)| courier_processors::notify::job_id(u, c, m))
        .collect();
    assert_eq!(ids, want);
    eprintln!(
        "notify kill test: {} jobs, {} records on the topic",
        want.len(),
        on_topic.len()
    );

    let out = on()
        .args(["run", "push", "--until-caught-up"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = p.seen.lock().unwrap();
    let accepted: BTreeSet<String> = s.accepted.iter().cloned().collect();
    assert_eq!(accepted.len(), s.accepted.len(), "no job accepted twice");
    assert_eq!(accepted, want, "every expected job delivered");
}
