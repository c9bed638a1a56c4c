//! End-to-end tests of `courier up`: the gateway and the processors in one child
//! process on 127.0.0.1:0, driven through HTTP and WebSocket like a client would.

#[path = "gateway/browser.rs"]
mod browser;
mod common;
#[path = "gateway/resume.rs"]
mod resume;

use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use common::gateway::{Up, eventually, http, published, token};
use serde_json::{Value, json};

const NONE: &[(&str, &str)] = &[];
const PLAIN: &[(&str, &str)] = &[("Content-Type", "text/plain")];

/// A request that must be refused: what, path, method, token, extra headers,
/// expected status, and what the error must mention.
type BadRequest = (
    &'static str,
    String,
    &'static str,
    Option<String>,
    &'static [(&'static str, &'static str)],
    u16,
    &'static str,
);

type Ws = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn ws(addr: &str, token: &str) -> Ws {
    ws_at(&format!("ws://{addr}/v1/stream?access_token={token}"))
}

/// A live connection to `url`, its reads timing out after 20 s.
fn ws_at(url: &str) -> Ws {
    let (mut socket, resp) = tungstenite::connect(url).unwrap();
    assert_eq!(resp.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_mut() {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    }
    socket
}

/// A text frame's event (`{"cursor", "event"}`; a notice, `{"type": "error", …}`,
/// as it is).
fn event_of(text: &str) -> Value {
    let v: Value = serde_json::from_str(text).unwrap();
    if v["type"] == "error" {
        return v;
    }
    assert!(
        v["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "a frame without its cursor: {v}"
    );
    v["event"].clone()
}

/// The next live event whose `type` is `ty`.
fn next_event(ws: &mut Ws, ty: &str) -> Value {
    loop {
        match ws.read().expect("a live event before the timeout") {
            tungstenite::Message::Text(t) => {
                let v = event_of(t.as_str());
                if v["type"] == ty {
                    return v;
                }
            }
            tungstenite::Message::Close(c) => panic!("closed while waiting for {ty}: {c:?}"),
            _ => {}
        }
    }
}

/// Every text frame up to and including the first that satisfies `last`.
fn frames_until(ws: &mut Ws, last: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        match ws.read().expect("a live event before the timeout") {
            tungstenite::Message::Text(t) => {
                let v = event_of(t.as_str());
                // `{"cursor"}` alone: the stream moved on, nothing for us.
                if v.is_null() {
                    continue;
                }
                let done = last(&v);
                seen.push(v);
                if done {
                    return seen;
                }
            }
            tungstenite::Message::Close(c) => panic!("closed early: {c:?}; saw {seen:?}"),
            _ => {}
        }
    }
}

/// POSTs (or PATCHes, DELETEs) JSON and asserts the status; the answer.
fn call(addr: &str, method: &str, path: &str, token: &str, body: Value, status: u16) -> Value {
    let text = body.to_string();
    let r = http(
        addr,
        method,
        path,
        Some(token),
        (!body.is_null()).then_some(text.as_str()),
        NONE,
    );
    assert_eq!(r.status, status, "{method} {path} {body}: {}", r.body);
    if r.body.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

#[test]
fn two_users_talk_through_the_gateway_and_bad_requests_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let a = &up.addr;
    let alice = token(&data, None, "alice");
    let bob = token(&data, None, "bob");
    let carol = token(&data, None, "carol");

    let health = http(a, "GET", "/healthz", None, None, &[]);
    assert_eq!(health.status, 200, "{}", health.body);
    // Each dependency on its own: the log, the views, the processors here.
    let h = health.json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["log"], json!({"backend": "embedded", "ok": true}), "{h}");
    assert_eq!(h["views"], json!({"ok": true}), "{h}");
    assert!(h["processors"].is_object(), "{h}");

    // alice opens a direct conversation with bob.
    let r = http(
        a,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(r#"{"kind":"direct","member_ids":["bob"]}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json()["conversation_id"].as_str().unwrap().to_string();

    let mut bob_live = ws(a, &bob);
    let mut alice_live = ws(a, &alice);

    // Right after creating it, alice can send (the gateway knows its own writes).
    let r = http(
        a,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&json!({"conversation_id": c, "text": "hi bob"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let m = r.json()["message_id"].as_str().unwrap().to_string();

    let live = next_event(&mut bob_live, "message_sent");
    assert_eq!(
        (live["message_id"].as_str(), live["text"].as_str()),
        (Some(m.as_str()), Some("hi bob"))
    );

    // bob's inbox shows it, exactly as `courier inbox bob --json` prints it.
    let inbox = eventually("bob's inbox row", || {
        let r = http(a, "GET", "/v1/inbox", Some(&bob), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        (r.json()[0]["last_message_id"] == m.as_str()).then_some(r)
    });
    assert_eq!(inbox.json()[0]["unread_count"], 1);
    assert_eq!(inbox.json()[0]["last_message_preview"], "hi bob");
    // The inbox processor has applied a batch: /healthz shows its lag.
    let h = http(a, "GET", "/healthz", None, None, &[]).json();
    assert_eq!(
        (
            h["processors"]["inbox"]["lag"].is_i64(),
            &h["processors"]["inbox"]["stalled"]
        ),
        (true, &json!(false)),
        "{h}"
    );
    let cli = common::ok(
        common::courier(&data)
            .args(["inbox", "bob", "--json"])
            .output()
            .unwrap(),
    );
    // Each row is `courier inbox`'s, with whom it is with (issue 18).
    let mut rows = inbox.json();
    for row in rows.as_array_mut().unwrap() {
        let row = row.as_object_mut().unwrap();
        assert_eq!(
            (
                row.remove("kind"),
                row.remove("title"),
                row.remove("member_ids")
            ),
            (
                Some(json!("direct")),
                Some(Value::Null),
                Some(json!(["alice", "bob"]))
            ),
        );
    }
    assert_eq!(rows, serde_json::from_str::<Value>(&cli).unwrap());

    // The conversation's details: to its members, and to nobody else, who gets
    // the 404 of a conversation that does not exist.
    let details = http(
        a,
        "GET",
        &format!("/v1/conversations/{c}"),
        Some(&bob),
        None,
        &[],
    );
    assert_eq!(details.status, 200, "{}", details.body);
    let d = details.json();
    let joined = d["members"][0]["joined_at_ms"].as_i64().unwrap();
    assert_eq!(
        d,
        json!({"conversation_id": c, "kind": "direct", "title": null, "created_by": "alice",
               "created_at_ms": joined,
               "members": [{"user_id": "alice", "joined_at_ms": joined},
                           {"user_id": "bob", "joined_at_ms": joined}]})
    );
    let stranger = http(
        a,
        "GET",
        &format!("/v1/conversations/{c}"),
        Some(&carol),
        None,
        &[],
    );
    let missing = http(a, "GET", "/v1/conversations/nope", Some(&carol), None, &[]);
    assert_eq!(
        (stranger.status, stranger.body.replace(&c, "ID")),
        (404, missing.body.replace("nope", "ID"))
    );

    // Presence, to oneself and one's contacts: exactly `courier presence --json`
    // (read beside the running processor); a stranger gets the 404 of a user
    // who does not exist.
    call(
        a,
        "PUT",
        "/v1/presence",
        &alice,
        json!({"status": "online"}),
        200,
    );
    let online = eventually("alice online to bob", || {
        let r = http(a, "GET", "/v1/presence/alice", Some(&bob), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        (r.json()["status"] == "online").then_some(r.json())
    });
    assert!(online["last_seen_ms"].is_i64(), "{online}");
    let cli = common::ok(
        common::courier(&data)
            .args(["presence", "alice", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(online, serde_json::from_str::<Value>(&cli).unwrap());
    assert_eq!(
        call(a, "GET", "/v1/presence/alice", &alice, Value::Null, 200),
        online
    );
    assert_eq!(
        call(a, "GET", "/v1/presence/carol", &carol, Value::Null, 200),
        json!({"user_id": "carol", "status": "offline", "last_seen_ms": null})
    );
    let stranger = http(a, "GET", "/v1/presence/alice", Some(&carol), None, &[]);
    let nobody = http(a, "GET", "/v1/presence/nobody", Some(&carol), None, &[]);
    assert_eq!(
        (stranger.status, stranger.body.replace("alice", "U")),
        (404, nobody.body.replace("nobody", "U"))
    );

    // bob reads it; alice sees the receipt live and the tick in history.
    let r = http(
        a,
        "POST",
        "/v1/receipts",
        Some(&bob),
        Some(&json!({"conversation_id": c, "message_id": m, "status": "read"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let receipt = next_event(&mut alice_live, "receipt");
    assert_eq!(
        (receipt["user_id"].as_str(), receipt["status"].as_str()),
        (Some("bob"), Some("read"))
    );
    let path = format!("/v1/conversations/{c}/messages");
    let history = eventually("the read tick", || {
        let r = http(a, "GET", &path, Some(&alice), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        (r.json()[0]["read_by"] == json!(["bob"])).then_some(r)
    });
    assert_eq!(history.json()[0]["delivered_to"], json!(["bob"]));
    let cli = common::ok(
        common::courier(&data)
            .args(["messages", &c, "--as", "alice", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(history.body, cli.trim_end());

    // Edit and delete reach bob live.
    let r = http(
        a,
        "PATCH",
        &format!("/v1/messages/{m}"),
        Some(&alice),
        Some(&json!({"conversation_id": c, "text": "hi bob!"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        next_event(&mut bob_live, "message_edited")["text"],
        "hi bob!"
    );

    // Nothing below publishes anything.
    let before = published(a);
    let bad: Vec<BadRequest> = vec![
        (
            "no token",
            "/v1/messages".into(),
            "POST",
            None,
            NONE,
            401,
            "Authorization",
        ),
        (
            "forged token",
            "/v1/messages".into(),
            "POST",
            Some(format!("{alice}x")),
            NONE,
            401,
            "signature",
        ),
        (
            "malformed JSON",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            400,
            "malformed JSON",
        ),
        (
            "unknown field",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            422,
            "unknown field `sender_id`",
        ),
        (
            "missing field",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            422,
            "missing field `text`",
        ),
        (
            "oversize text",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            413,
            "limit",
        ),
        (
            "unknown conversation",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            404,
            "not found among yours",
        ),
        (
            "non-member sends",
            "/v1/messages".into(),
            "POST",
            Some(carol.clone()),
            NONE,
            404,
            "not found among yours",
        ),
        (
            "bad id",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            422,
            "conversation_id",
        ),
        (
            "not JSON content",
            "/v1/messages".into(),
            "POST",
            Some(alice.clone()),
            PLAIN,
            415,
            "Content-Type",
        ),
        (
            "edit someone else's",
            format!("/v1/messages/{m}"),
            "PATCH",
            Some(bob.clone()),
            NONE,
            422,
            "not its sender",
        ),
        (
            "delete unknown message",
            "/v1/messages/nope?conversation_id=".to_string() + &c,
            "DELETE",
            Some(alice.clone()),
            NONE,
            404,
            "nope",
        ),
        (
            "bad receipt status",
            "/v1/receipts".into(),
            "POST",
            Some(bob.clone()),
            NONE,
            422,
            "status",
        ),
        (
            "direct with three",
            "/v1/conversations".into(),
            "POST",
            Some(alice.clone()),
            NONE,
            422,
            "exactly two",
        ),
        (
            "membership of a direct",
            format!("/v1/conversations/{c}/members"),
            "POST",
            Some(alice.clone()),
            NONE,
            422,
            "direct",
        ),
        (
            "bad presence",
            "/v1/presence".into(),
            "PUT",
            Some(alice.clone()),
            NONE,
            422,
            "online",
        ),
    ];
    let bodies = [
        json!({"conversation_id": c, "text": "x"}).to_string(),
        json!({"conversation_id": c, "text": "x"}).to_string(),
        r#"{"conversation_id": "#.to_string(),
        json!({"conversation_id": c, "text": "x", "sender_id": "bob"}).to_string(),
        json!({"conversation_id": c}).to_string(),
        json!({"conversation_id": c, "text": "x".repeat(16 * 1024 + 1)}).to_string(),
        json!({"conversation_id": "nope", "text": "x"}).to_string(),
        json!({"conversation_id": c, "text": "x"}).to_string(),
        json!({"conversation_id": "a b", "text": "x"}).to_string(),
        json!({"conversation_id": c, "text": "x"}).to_string(),
        json!({"conversation_id": c, "text": "mine now"}).to_string(),
        String::new(),
        json!({"conversation_id": c, "message_id": m, "status": "seen"}).to_string(),
        json!({"kind": "direct", "member_ids": ["bob", "carol"]}).to_string(),
        json!({"add": ["carol"]}).to_string(),
        json!({"status": "away"}).to_string(),
    ];
    for ((what, path, method, tok, extra, status, says), body) in bad.into_iter().zip(bodies) {
        let r = http(a, method, &path, tok.as_deref(), Some(&body), extra);
        assert_eq!(r.status, status, "{what}: {}", r.body);
        let err = r.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            err.contains(says),
            "{what}: error {err:?} should mention {says:?}"
        );
    }
    // Reads of other people's data.
    let r = http(a, "GET", &path, Some(&carol), None, &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(
        http(a, "GET", "/v1/inbox", Some(&carol), None, &[]).body,
        "[]"
    );
    assert_eq!(
        published(a),
        before,
        "a refused request published something"
    );

    // Idempotent retries: by key, and by client message id.
    let body = json!({"conversation_id": c, "text": "once"}).to_string();
    let key = [("Idempotency-Key", "k-1")];
    let first = http(a, "POST", "/v1/messages", Some(&alice), Some(&body), &key);
    let second = http(a, "POST", "/v1/messages", Some(&alice), Some(&body), &key);
    assert_eq!((first.status, &first.body), (second.status, &second.body));
    let reuse = http(
        a,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&json!({"conversation_id": c, "text": "other"}).to_string()),
        &key,
    );
    assert_eq!(reuse.status, 422, "{}", reuse.body);
    let body =
        json!({"conversation_id": c, "text": "twice?", "message_id": "client-1"}).to_string();
    let first = http(a, "POST", "/v1/messages", Some(&alice), Some(&body), &[]);
    let second = http(a, "POST", "/v1/messages", Some(&alice), Some(&body), &[]);
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!((first.status, &first.body), (second.status, &second.body));
    assert_eq!(
        published(a),
        before + 2,
        "each retried request published exactly once"
    );

    // Delete reaches bob live; his history shows the tombstone.
    let r = http(
        a,
        "DELETE",
        &format!("/v1/messages/{m}?conversation_id={c}"),
        Some(&alice),
        None,
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        next_event(&mut bob_live, "message_deleted")["message_id"],
        m.as_str()
    );
    let r = http(a, "GET", &format!("{path}?limit=1"), Some(&bob), None, &[]);
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(r.json()[0]["message_id"], "client-1");
    // Search: bob finds alice's "once" (once indexed), exactly as `courier search
    // bob once --json` prints it; the deleted "hi bob!" is gone; a stranger finds
    // nothing; a malformed query is a 400 that says so.
    let found = eventually("\"once\" searchable", || {
        let r = http(a, "GET", "/v1/search?q=once", Some(&bob), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        (r.json().as_array().unwrap().len() == 1).then_some(r)
    });
    assert_eq!(found.json()[0]["text"], "once");
    assert_eq!(found.json()[0]["sender_id"], "alice");
    let cli = common::ok(
        common::courier(&data)
            .args(["search", "bob", "once", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(found.body, cli.trim_end());
    let deleted = http(a, "GET", "/v1/search?q=bob", Some(&bob), None, &[]);
    assert_eq!(
        deleted.json().as_array().unwrap().len(),
        0,
        "{}",
        deleted.body
    );
    let stranger = http(a, "GET", "/v1/search?q=once", Some(&carol), None, &[]);
    assert_eq!(
        stranger.json().as_array().unwrap().len(),
        0,
        "{}",
        stranger.body
    );
    let bad = http(a, "GET", "/v1/search?q=%22unclosed", Some(&bob), None, &[]);
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("malformed query"), "{}", bad.body);

    let openapi = http(a, "GET", "/openapi.json", None, None, &[]).json();
    assert!(openapi["paths"]["/v1/messages"]["post"].is_object());

    drop((bob_live, alice_live));
    let status = up.stop();
    assert!(status.success(), "courier up exited with {status}");
}

#[test]
fn rate_limits_answer_429_with_retry_after_per_user_then_per_ip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[gateway]\nuser_rate_per_sec = 0.01\nuser_burst = 3\nip_rate_per_sec = 0.01\nip_burst = 5\n";
    let up = Up::start(&data, Some(config));
    let a = &up.addr;
    let alice = token(&data, Some(config), "alice");
    let bob = token(&data, Some(config), "bob");
    for _ in 0..3 {
        assert_eq!(
            http(a, "GET", "/v1/inbox", Some(&alice), None, &[]).status,
            200
        );
    }
    let r = http(a, "GET", "/v1/inbox", Some(&alice), None, &[]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("user alice"),
        "{}",
        r.body
    );
    let retry: u64 = r.headers["retry-after"].parse().unwrap();
    assert!(retry >= 1, "{retry}");
    // bob has his own bucket, but this IP has one token left.
    assert_eq!(
        http(a, "GET", "/v1/inbox", Some(&bob), None, &[]).status,
        200
    );
    let r = http(a, "GET", "/v1/inbox", Some(&bob), None, &[]);
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(
        r.json()["error"].as_str().unwrap().contains("IP"),
        "{}",
        r.body
    );
    assert!(r.headers.contains_key("retry-after"));
    // Operations endpoints are not rate limited.
    assert_eq!(http(a, "GET", "/healthz", None, None, &[]).status, 200);
    assert!(up.stop().success());
}

#[test]
fn a_live_client_too_slow_to_keep_up_is_told_and_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[gateway]\nws_queue = 4\nuser_rate_per_sec = 100000.0\nuser_burst = 100000\nip_rate_per_sec = 100000.0\nip_burst = 100000\n";
    let up = Up::start(&data, Some(config));
    let a = &up.addr;
    let alice = token(&data, Some(config), "alice");
    let bob = token(&data, Some(config), "bob");
    let r = http(
        a,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(r#"{"kind":"group","member_ids":["bob"]}"#),
        NONE,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json()["conversation_id"].as_str().unwrap().to_string();
    // bob connects and does not read: the kernel's socket buffers fill, then his
    // queue of 4, then the gateway cuts him off.
    let mut slow = ws(a, &bob);
    let text = "x".repeat(16 * 1024);
    let body = json!({"conversation_id": c, "text": text}).to_string();
    let slow_disconnects = |addr: &str| {
        http(addr, "GET", "/metrics", None, None, NONE)
            .body
            .lines()
            .find(|l| l.starts_with("courier_gateway_ws_slow_disconnects_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let mut sent = 0;
    while slow_disconnects(a) < 1.0 {
        assert!(
            sent < 5000,
            "sent {sent} messages of 16 KiB and bob was never cut off"
        );
        let r = http(a, "POST", "/v1/messages", Some(&alice), Some(&body), NONE);
        assert_eq!(r.status, 201, "{}", r.body);
        sent += 1;
    }
    // He gets what was queued, then the reason, then close 1008.
    let mut told = false;
    loop {
        match slow.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "error" {
                    assert!(v["error"].as_str().unwrap().contains("too slow"), "{v}");
                    told = true;
                }
            }
            Ok(tungstenite::Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a code");
                assert_eq!(u16::from(frame.code), 1008);
                break;
            }
            Ok(_) => {}
            Err(e) => panic!("bob's socket failed before the close frame: {e}"),
        }
    }
    assert!(told, "bob was disconnected without being told why");
    assert!(up.stop().success());
}

/// The distributed shape of compose/docker-compose.yml on real Kafka: the gateway
/// alone (`up --processors none`) answers searches through a separate `run search
/// --serve` instance, found by a `dns+` peer address.
#[test]
fn a_gateway_alone_searches_through_a_distributed_search_instance() {
    let Some(brokers) = courier_pipeline::testing::KAFKA.reachable() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "namespace = \"{}\"\n[log]\nbackend = \"kafka\"\n[kafka]\nbrokers = \"{brokers}\"\n",
        common::unique_namespace("gw")
    );
    let searcher = dir.path().join("searcher");
    std::fs::create_dir_all(&searcher).unwrap();
    let searcher_config = dir.path().join("searcher.toml");
    std::fs::write(&searcher_config, &config).unwrap();
    common::ok(
        common::courier(&searcher)
            .arg("--config")
            .arg(&searcher_config)
            .args(["topics", "apply"])
            .output()
            .unwrap(),
    );
    let common::Live { child, rest, .. } = common::spawn_live(
        common::courier(&searcher)
            .arg("--config")
            .arg(&searcher_config)
            .env("COURIER_SEARCH_SERVE", "127.0.0.1:0"),
        "search",
        None,
    );
    let searcher_child = common::KillOnDrop(child);
    let serves = common::search_serves(&rest);

    let data = dir.path().join("gateway");
    let peers = format!("dns+http://{serves}");
    let up = Up::start_with(
        &data,
        Some(&config),
        &["--processors", "none", "--search-peers", &peers],
    );
    let a = &up.addr;
    let alice = token(&data, Some(&config), "alice");
    let bob = token(&data, Some(&config), "bob");
    let r = http(
        a,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(r#"{"kind":"direct","member_ids":["bob"]}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json()["conversation_id"].as_str().unwrap().to_string();
    let r = http(
        a,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&json!({"conversation_id": c, "text": "meet at the lighthouse"}).to_string()),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let m = r.json()["message_id"].as_str().unwrap().to_string();

    // Indexed by the other process, found through the gateway.
    let hits = eventually("the message searchable through the peer", || {
        let r = http(a, "GET", "/v1/search?q=lighthouse", Some(&bob), None, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        let hits = r.json();
        (hits.as_array().unwrap().len() == 1).then_some(hits)
    });
    assert_eq!(hits[0]["message_id"], m.as_str());
    assert_eq!(hits[0]["conversation_id"], c.as_str());
    // Visibility is the search instance's: carol is no member.
    let carol = token(&data, Some(&config), "carol");
    let r = http(a, "GET", "/v1/search?q=lighthouse", Some(&carol), None, &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "[]"));
    // No presence processor beside this gateway: presence reads are unavailable.
    let r = http(a, "GET", "/v1/presence/alice", Some(&bob), None, &[]);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("presence view not available"), "{}", r.body);
    // The peer's 400 for a malformed query stays a 400.
    let bad = http(a, "GET", "/v1/search?q=%22unclosed", Some(&bob), None, &[]);
    assert_eq!(bad.status, 400, "{}", bad.body);
    // With the search instance gone, searching is unavailable, not empty.
    drop(searcher_child);
    let gone = http(a, "GET", "/v1/search?q=lighthouse", Some(&bob), None, &[]);
    assert_eq!(gone.status, 503, "{}", gone.body);
    assert!(gone.body.contains(&serves), "names the peer: {}", gone.body);
    assert!(up.stop().success());
}

/// Kafka and Cassandra of compose/local, if both answer: the config text of a
/// namespace of its own (views in Cassandra), and what to clean up after.
fn distributed(prefix: &str) -> Option<(String, String, String, String)> {
    let brokers = courier_pipeline::testing::KAFKA.reachable()?;
    let cassandra = courier_pipeline::testing::CASSANDRA.reachable()?;
    let namespace = common::unique_namespace(prefix);
    let config = format!(
        "namespace = \"{namespace}\"\n[log]\nbackend = \"kafka\"\n[kafka]\nbrokers = \"{brokers}\"\n{}",
        common::cassandra_views(&cassandra)
    );
    Some((config, brokers, cassandra, namespace))
}

/// Applies the topics and the Cassandra schema of `config` for `data`.
fn migrate(data: &Path, config: &str) {
    let p = data.with_extension("toml");
    std::fs::write(&p, config).unwrap();
    for args in [&["topics", "apply"][..], &["migrate"][..]] {
        common::ok(
            common::courier(data)
                .arg("--config")
                .arg(&p)
                .args(args)
                .output()
                .unwrap(),
        );
    }
}

/// A client sends with its own `message_id`; `courier up` is killed before the
/// answer reaches it (here: right after); the client retries against the
/// restarted process and must get the first answer again, not a 409.
fn a_send_retried_after_a_kill_gets_its_first_answer(data: &Path, config: Option<&str>) {
    let up = Up::start(data, config);
    let alice = token(data, config, "alice");
    let bob = token(data, config, "bob");
    let r = http(
        &up.addr,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(r#"{"kind":"direct","member_ids":["bob"]}"#),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let c = r.json()["conversation_id"].as_str().unwrap().to_string();
    let send = json!({"conversation_id": c, "message_id": "m-retry", "text": "are you there?"})
        .to_string();
    let r = http(
        &up.addr,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&send),
        &[],
    );
    assert_eq!(r.status, 201, "{}", r.body);
    // The same with an Idempotency-Key instead of a client's id: a group, and a
    // message in it.
    let create = r#"{"kind":"group","member_ids":["bob"],"title":"retried"}"#;
    let keyed = |k: &'static str| [("Idempotency-Key", k)];
    let r = http(
        &up.addr,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(create),
        &keyed("create-1"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first_create = r.json();
    let g = first_create["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let keyed_send = json!({"conversation_id": g, "text": "keyed"}).to_string();
    let r = http(
        &up.addr,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&keyed_send),
        &keyed("send-1"),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let first_send = r.json();
    drop(up); // SIGKILL

    let up = Up::start(data, config);
    let a = &up.addr;
    let r = http(a, "POST", "/v1/messages", Some(&alice), Some(&send), &[]);
    assert_eq!(
        (r.status, r.json()),
        (201, json!({"message_id": "m-retry"})),
        "the retry"
    );
    // After the restart the key store is empty: the same key with another creation
    // is a conflict with what the log holds (not a second conversation); the
    // retry of the first creation still gets its answer.
    let other = r#"{"kind":"group","member_ids":["carol"],"title":"retried"}"#;
    let r = http(
        a,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(other),
        &keyed("create-1"),
    );
    assert_eq!(r.status, 409, "{}", r.body);
    let r = http(
        a,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(create),
        &keyed("create-1"),
    );
    assert_eq!(
        (r.status, r.json()),
        (201, first_create),
        "the keyed creation's retry"
    );
    let r = http(
        a,
        "POST",
        "/v1/messages",
        Some(&alice),
        Some(&keyed_send),
        &keyed("send-1"),
    );
    assert_eq!(
        (r.status, r.json()),
        (201, first_send),
        "the keyed send's retry"
    );
    // Nothing was published again.
    assert_eq!(published(a), 0);
    // Other content under the id, or another sender: a reuse, refused.
    let other = json!({"conversation_id": c, "message_id": "m-retry", "text": "something else"})
        .to_string();
    let r = http(a, "POST", "/v1/messages", Some(&alice), Some(&other), &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("other content"), "{}", r.body);
    let r = http(a, "POST", "/v1/messages", Some(&bob), Some(&send), &[]);
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(published(a), 0);
    // The message is in the history once.
    let history = eventually("the message in bob's history", || {
        let r = http(
            a,
            "GET",
            &format!("/v1/conversations/{c}/messages"),
            Some(&bob),
            None,
            &[],
        );
        (r.status == 200 && r.json().as_array().is_some_and(|m| !m.is_empty())).then(|| r.json())
    });
    let list = history.as_array().unwrap();
    assert_eq!(list.len(), 1, "{history}");
    assert_eq!(list[0]["message_id"], "m-retry");
    assert_eq!(list[0]["text"], "are you there?");
    // After the restart, the details and the inbox's names come from the states
    // the views stored (JSON in Cassandra, binary in RocksDB) and the log.
    let details = call(
        a,
        "GET",
        &format!("/v1/conversations/{g}"),
        &bob,
        Value::Null,
        200,
    );
    assert_eq!(
        (&details["kind"], &details["title"], &details["created_by"]),
        (&json!("group"), &json!("retried"), &json!("alice")),
        "{details}"
    );
    eventually("bob's inbox names both conversations", || {
        let rows = call(a, "GET", "/v1/inbox", &bob, Value::Null, 200);
        let named: Vec<(Value, Value, Value)> = [&c, &g]
            .iter()
            .filter_map(|id| {
                let r = rows
                    .as_array()?
                    .iter()
                    .find(|r| r["conversation_id"] == id.as_str())?;
                Some((
                    r["kind"].clone(),
                    r["title"].clone(),
                    r["member_ids"].clone(),
                ))
            })
            .collect();
        (named
            == [
                (json!("direct"), Value::Null, json!(["alice", "bob"])),
                (json!("group"), json!("retried"), json!(["alice", "bob"])),
            ])
        .then_some(())
    });
    assert!(up.stop().success());
}

#[test]
fn a_send_retried_after_a_kill_gets_its_first_answer_embedded() {
    let dir = tempfile::tempdir().unwrap();
    a_send_retried_after_a_kill_gets_its_first_answer(&dir.path().join("data"), None);
}

#[test]
fn on_kafka_and_cassandra_a_send_retried_after_a_kill_gets_its_first_answer() {
    let Some((config, brokers, cassandra, namespace)) = distributed("retry") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    migrate(&data, &config);
    a_send_retried_after_a_kill_gets_its_first_answer(&data, Some(&config));
    common::drop_distributed(
        &data.with_extension("toml"),
        &brokers,
        &cassandra,
        &namespace,
    );
}

/// Issue: `GET /v1/search` with 10,000 nested parentheses overflowed a worker's
/// stack and aborted `courier up`, gateway and processors with it.
#[test]
fn on_kafka_and_cassandra_a_deeply_nested_search_is_a_400_and_the_process_lives() {
    let Some((config, brokers, cassandra, namespace)) = distributed("deep") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    migrate(&data, &config);
    let up = Up::start(&data, Some(&config));
    let a = &up.addr;
    let bob = token(&data, Some(&config), "bob");
    let nested = format!("{}hello{}", "%28".repeat(10_000), "%29".repeat(10_000));
    let r = http(
        a,
        "GET",
        &format!("/v1/search?q={nested}"),
        Some(&bob),
        None,
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("nest"), "{}", r.body);
    let long = "hello+".repeat(400);
    let r = http(
        a,
        "GET",
        &format!("/v1/search?q={long}"),
        Some(&bob),
        None,
        &[],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("bytes"), "{}", r.body);
    // Still serving, and the same bound on the command line.
    assert_eq!(http(a, "GET", "/healthz", None, None, &[]).status, 200);
    let r = http(a, "GET", "/v1/search?q=hello", Some(&bob), None, &[]);
    assert_eq!(r.status, 200, "{}", r.body);
    let out = common::courier(&data)
        .arg("--config")
        .arg(data.with_extension("toml"))
        .args(["search", "bob"])
        .arg(format!("{}hello{}", "(".repeat(10_000), ")".repeat(10_000)))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nest"),
        "{out:?}"
    );
    assert!(up.stop().success());
    common::drop_distributed(
        &data.with_extension("toml"),
        &brokers,
        &cassandra,
        &namespace,
    );
}

/// Issue 16: `GET /v1/search?q=visible:*` answered 503 with the index's
/// "Schema error: 'Field visible is not a fast field.'", inviting retries, and
/// `visible:USER` could be asked. Every field-qualified query is now a 400 that
/// names only what the client typed, without Retry-After.
#[test]
fn a_search_naming_an_internal_field_is_a_400_that_exposes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let a = &up.addr;
    let bob = token(&data, None, "bob");
    for q in [
        "visible:*",
        "conversation_id:*",
        "visible:bob",
        "hello+AND+sent_at_ms:%5B0+TO+9%5D",
        "key:x",
    ] {
        let r = http(
            a,
            "GET",
            &format!("/v1/search?q={q}"),
            Some(&bob),
            None,
            &[],
        );
        assert_eq!(r.status, 400, "{q}: {}", r.body);
        assert!(!r.headers.contains_key("retry-after"), "{q}: {r:?}");
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            err.contains("only the message text is searched"),
            "{q}: {err}"
        );
        for internal in ["Schema", "fast field", "tantivy", "index"] {
            assert!(!err.contains(internal), "{q} exposes {internal:?}: {err}");
        }
    }
    assert!(up.stop().success());
}

/// Issue 16: a message's edit and delete went out on the stream to every current
/// member, including carol (added after it was sent) and dave (out of the group
/// when it was sent, back since), whose history and search rightly show nothing
/// of it. Now its edit, delete and receipts reach only members who see it.
#[test]
fn edits_deletes_and_receipts_reach_only_the_live_users_who_see_the_message() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let a = &up.addr;
    let [alice, bob, carol, dave] =
        ["alice", "bob", "carol", "dave"].map(|u| token(&data, None, u));
    let c = call(
        a,
        "POST",
        "/v1/conversations",
        &alice,
        json!({"kind": "group", "member_ids": ["bob", "dave"]}),
        201,
    )["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let members = format!("/v1/conversations/{c}/members");
    call(
        a,
        "POST",
        &members,
        &alice,
        json!({"remove": ["dave"]}),
        200,
    );
    let m1 = call(
        a,
        "POST",
        "/v1/messages",
        &alice,
        json!({"conversation_id": c, "text": "before carol and without dave"}),
        201,
    )["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    call(
        a,
        "POST",
        &members,
        &alice,
        json!({"add": ["carol", "dave"]}),
        200,
    );
    let mut live: Vec<Ws> = [&bob, &carol, &dave].iter().map(|t| ws(a, t)).collect();

    let edit = format!("/v1/messages/{m1}");
    call(
        a,
        "PATCH",
        &edit,
        &alice,
        json!({"conversation_id": c, "text": "edited"}),
        200,
    );
    let receipt = json!({"conversation_id": c, "message_id": m1, "status": "read"});
    call(a, "POST", "/v1/receipts", &bob, receipt, 200);
    call(
        a,
        "DELETE",
        &format!("{edit}?conversation_id={c}"),
        &alice,
        Value::Null,
        200,
    );
    let marker = call(
        a,
        "POST",
        "/v1/messages",
        &alice,
        json!({"conversation_id": c, "text": "for everyone"}),
        201,
    )["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let upto_marker = |v: &Value| v["message_id"] == marker.as_str();
    // bob saw m1 sent: he gets its edit and delete.
    let bob_frames = frames_until(&mut live[0], upto_marker);
    let types: Vec<&str> = bob_frames
        .iter()
        .filter_map(|f| f["type"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "message_edited",
            "receipt",
            "message_deleted",
            "message_sent"
        ],
        "{bob_frames:?}"
    );
    // carol and dave get the marker and nothing about m1.
    for (who, socket) in ["carol", "dave"].into_iter().zip(live.iter_mut().skip(1)) {
        let frames = frames_until(socket, upto_marker);
        assert!(
            frames
                .iter()
                .all(|f| f["message_id"] != m1.as_str() && !f.to_string().contains("edited")),
            "{who} got frames of a message they cannot see: {frames:?}"
        );
        assert_eq!(frames.len(), 1, "{who}: {frames:?}");
    }
    // Their history agrees: nothing of m1.
    let history = http(
        a,
        "GET",
        &format!("/v1/conversations/{c}/messages"),
        Some(&carol),
        None,
        NONE,
    );
    assert!(!history.body.contains(&m1), "{}", history.body);
    drop(live);
    assert!(up.stop().success());
}

/// Issue 16: the write endpoints answered 404 "does not exist" for an unknown
/// conversation and 403 "not a member" for one the writer is not in, and a
/// receipt for a message sent while its writer was out of the group said so.
/// Reads hide both; now writes do too: one 404, one body.
#[test]
fn writes_answer_the_same_for_a_missing_conversation_and_one_the_writer_is_not_in() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let a = &up.addr;
    let [alice, bob, carol, eve] = ["alice", "bob", "carol", "eve"].map(|u| token(&data, None, u));
    let c = call(
        a,
        "POST",
        "/v1/conversations",
        &alice,
        json!({"kind": "group", "member_ids": ["bob"]}),
        201,
    )["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    let m1 = call(
        a,
        "POST",
        "/v1/messages",
        &alice,
        json!({"conversation_id": c, "text": "before carol"}),
        201,
    )["message_id"]
        .as_str()
        .unwrap()
        .to_string();
    let members = format!("/v1/conversations/{c}/members");
    call(a, "POST", &members, &alice, json!({"add": ["carol"]}), 200);
    call(a, "POST", &members, &alice, json!({"remove": ["bob"]}), 200);
    let before = published(a);
    // Each write, against `c` and against a conversation that does not exist.
    let writes = |conv: &str| -> Vec<(&'static str, String, Value)> {
        vec![
            (
                "POST",
                "/v1/messages".into(),
                json!({"conversation_id": conv, "text": "x"}),
            ),
            (
                "PATCH",
                format!("/v1/messages/{m1}"),
                json!({"conversation_id": conv, "text": "x"}),
            ),
            (
                "DELETE",
                format!("/v1/messages/{m1}?conversation_id={conv}"),
                Value::Null,
            ),
            (
                "POST",
                "/v1/receipts".into(),
                json!({"conversation_id": conv, "message_id": m1, "status": "read"}),
            ),
            (
                "POST",
                format!("/v1/conversations/{conv}/members"),
                json!({"add": ["mallory"]}),
            ),
        ]
    };
    let answer = |tok: &str, method: &str, path: &str, body: &Value, conv: &str| {
        let text = body.to_string();
        let r = http(
            a,
            method,
            path,
            Some(tok),
            (!body.is_null()).then_some(text.as_str()),
            NONE,
        );
        (r.status, r.body.replace(conv, "CONV"))
    };
    for (who, tok) in [("never a member", &eve), ("removed member", &bob)] {
        for ((method, path, body), (_, missing_path, missing_body)) in
            writes(&c).into_iter().zip(writes("no-such-conversation"))
        {
            let got = answer(tok, method, &path, &body, &c);
            let missing = answer(
                tok,
                method,
                &missing_path,
                &missing_body,
                "no-such-conversation",
            );
            assert_eq!(missing.0, 404, "{method} {missing_path}: {}", missing.1);
            assert_eq!(got, missing, "{who}: {method} {path}");
        }
    }
    // carol, a member since after m1: a receipt for it is answered as one for a
    // message that does not exist.
    let receipt = |m: &str| {
        let body = json!({"conversation_id": c, "message_id": m, "status": "read"}).to_string();
        let r = http(a, "POST", "/v1/receipts", Some(&carol), Some(&body), NONE);
        (r.status, r.body.replace(m, "MSG"))
    };
    let unseen = receipt(&m1);
    assert_eq!(unseen.0, 404, "{}", unseen.1);
    assert_eq!(unseen, receipt("no-such-message"));
    assert_eq!(published(a), before, "a refused write published something");
    assert!(up.stop().success());
}

/// Issue 16: a WebSocket opened with a token that expired 3 s later kept
/// receiving events, while REST calls with the same token got 401. Now it is
/// told and closed (4401) when its token expires.
#[test]
fn a_live_socket_is_closed_when_its_token_expires() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // No leeway for clocks that differ, so the test need not wait for it.
    let up = Up::start(&data, Some("[gateway]\njwt_leeway_secs = 0\n"));
    let a = &up.addr;
    let short = common::ok(
        common::courier(&data)
            .arg("--config")
            .arg(data.with_extension("toml"))
            .args(["token", "bob", "--ttl", "3"])
            .output()
            .unwrap(),
    )
    .trim()
    .to_string();
    let opened = std::time::Instant::now();
    let mut live = ws(a, &short);
    let mut told = false;
    let frame = loop {
        match live.read().expect("the close before the read timeout") {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                told |= v["type"] == "error" && v["error"].as_str().unwrap().contains("expired");
            }
            tungstenite::Message::Close(frame) => break frame.expect("a close frame with a code"),
            _ => {}
        }
    };
    assert_eq!(u16::from(frame.code), 4401, "{frame:?}");
    assert_eq!(frame.reason.as_str(), "token expired");
    assert!(told, "closed without being told why");
    let lived = opened.elapsed();
    assert!(
        lived < Duration::from_secs(10),
        "closed only after {lived:?}"
    );
    // And REST agrees from then on.
    let r = http(a, "GET", "/v1/inbox", Some(&short), None, NONE);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(up.stop().success());
}

/// Issue 16, deliver 4: the development secret stays in the data dir, so a
/// token survives a restart of `courier up`; with `gateway.jwt_keys` a token
/// keeps working while its key is listed and gets 401 once it is removed.
#[test]
fn tokens_survive_a_restart_and_a_rotated_out_key_s_tokens_get_401() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let dev = token(&data, None, "alice");
    assert_eq!(
        http(&up.addr, "GET", "/v1/inbox", Some(&dev), None, NONE).status,
        200
    );
    assert!(up.stop().success());
    let up = Up::start(&data, None);
    let r = http(&up.addr, "GET", "/v1/inbox", Some(&dev), None, NONE);
    assert_eq!(r.status, 200, "after a restart: {}", r.body);
    assert!(up.stop().success());

    // Two keys in files: an HS256 secret and an Ed25519 private key (made for
    // this test only).
    let k1 = dir.path().join("k1.secret");
    std::fs::write(&k1, "a-secret-of-at-least-32-bytes-for-k1").unwrap();
    let k2 = dir.path().join("k2.pem");
    std::fs::write(
        &k2,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIM+K3B+1uz4DKcOthH1fvONFdAX4I54Cx/VOX8/gZ0h7\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let keys = |list: &[(&str, &Path)]| {
        let entries: Vec<String> = list
            .iter()
            .map(|(kid, p)| format!("\"{kid}={}\"", p.display()))
            .collect();
        format!("[gateway]\njwt_keys = [{}]\n", entries.join(", "))
    };
    let inbox = |up: &Up, t: &str| http(&up.addr, "GET", "/v1/inbox", Some(t), None, NONE);
    let config = keys(&[("k1", &k1)]);
    let up = Up::start(&data, Some(&config));
    let t1 = token(&data, Some(&config), "alice");
    assert_eq!(inbox(&up, &t1).status, 200);
    // The development secret is no longer accepted once keys are configured.
    assert_eq!(inbox(&up, &dev).status, 401);
    assert!(up.stop().success());
    // k2 becomes current (EdDSA); k1's token still works.
    let config = keys(&[("k2", &k2), ("k1", &k1)]);
    let up = Up::start(&data, Some(&config));
    let t2 = token(&data, Some(&config), "alice");
    assert_eq!(inbox(&up, &t1).status, 200);
    assert_eq!(inbox(&up, &t2).status, 200);
    assert!(up.stop().success());
    // k1 removed: its token gets 401 naming the key; k2's still works. The keys
    // can come from the environment too, as one comma-separated text.
    let mut cmd = common::courier(&data);
    cmd.env("COURIER_GATEWAY__JWT_KEYS", format!("k2={}", k2.display()));
    let up = start_command(cmd);
    let r = inbox(&up, &t1);
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("`k1`"), "{}", r.body);
    assert_eq!(inbox(&up, &t2).status, 200);
    assert!(up.stop().success());
}

/// `courier up` from a prepared command (environment variables, say).
fn start_command(mut cmd: std::process::Command) -> Up {
    use std::io::BufRead;
    let mut child = cmd
        .args(["up", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("spawn courier up");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = common::wait_for_line(&mut lines, "the URL", |l| l.contains("http://"));
    let addr = line.split("http://").nth(1).unwrap().trim().to_string();
    std::thread::spawn(move || for _ in lines {});
    Up { child, addr }
}

/// The base64url of `{"alg":"none","typ":"JWT"}`: an unsigned token's header.
const ALG_NONE_HEADER: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";

/// Issue 16, deliver 6: every endpoint and the stream against each kind of
/// caller — a member, a member acting on another user's message, a removed
/// member, a user who was never a member, no token, an expired token, a token
/// signed with another key, `alg: none`, a tampered payload — each with its
/// status, and no body or frame telling anyone what they may not see.
#[test]
fn authorization_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[gateway]\njwt_leeway_secs = 0\nuser_rate_per_sec = 100000.0\nuser_burst = 100000\nip_rate_per_sec = 100000.0\nip_burst = 100000\n";
    let up = Up::start(&data, Some(config));
    let a = &up.addr;
    let tok = |u: &str| token(&data, Some(config), u);
    let [alice, bob, rita, nora, dana] = ["alice", "bob", "rita", "nora", "dana"].map(tok);
    let expired = common::ok(
        common::courier(&data)
            .arg("--config")
            .arg(data.with_extension("toml"))
            .args(["token", "alice", "--ttl", "1"])
            .output()
            .unwrap(),
    )
    .trim()
    .to_string();
    // Signed by another key: the development secret of another data dir.
    let other_key = token(&dir.path().join("elsewhere"), None, "alice");
    let part = |t: &str, i: usize| t.split('.').nth(i).unwrap().to_string();
    let alg_none = format!("{ALG_NONE_HEADER}.{}.", part(&alice, 1));
    // alice's header and signature around bob's claims.
    let tampered = format!("{}.{}.{}", part(&alice, 0), part(&bob, 1), part(&alice, 2));

    // g: alice, bob, rita; "secret-before" while rita is in; rita removed;
    // dana added; "secret-after".
    let id = |v: Value, field: &str| v[field].as_str().unwrap().to_string();
    let g = id(
        call(
            a,
            "POST",
            "/v1/conversations",
            &alice,
            json!({"kind": "group", "member_ids": ["bob", "rita"], "title": "the-g"}),
            201,
        ),
        "conversation_id",
    );
    let send = |text: &str| {
        id(
            call(
                a,
                "POST",
                "/v1/messages",
                &alice,
                json!({"conversation_id": g, "text": text}),
                201,
            ),
            "message_id",
        )
    };
    let before = send("secret-before");
    let doomed = send("secret-doomed");
    let members = format!("/v1/conversations/{g}/members");
    call(
        a,
        "POST",
        &members,
        &alice,
        json!({"remove": ["rita"]}),
        200,
    );
    call(a, "POST", &members, &alice, json!({"add": ["dana"]}), 200);
    let after = send("secret-after");
    let mut live: Vec<(&str, Ws)> = [
        ("bob", &bob),
        ("rita", &rita),
        ("nora", &nora),
        ("dana", &dana),
    ]
    .into_iter()
    .map(|(u, t)| (u, ws(a, t)))
    .collect();

    // Every authenticated endpoint: method, path, body, and the status for
    // nora (never a member), rita (removed), bob (a member, acting on alice's
    // message), alice (a member, on her own) — in that order, so alice's
    // edit and delete come last.
    type Row = (&'static str, String, Value, [u16; 4]);
    let rows: Vec<Row> = vec![
        (
            "POST",
            "/v1/conversations".into(),
            json!({"kind": "group", "member_ids": ["erin"]}),
            [201, 201, 201, 201],
        ),
        (
            "POST",
            members.clone(),
            json!({"add": ["erin"]}),
            [404, 404, 200, 200],
        ),
        (
            "GET",
            format!("/v1/conversations/{g}/messages"),
            Value::Null,
            [404, 200, 200, 200],
        ),
        (
            "GET",
            format!("/v1/conversations/{g}"),
            Value::Null,
            [404, 200, 200, 200],
        ),
        (
            "POST",
            "/v1/messages".into(),
            json!({"conversation_id": g, "text": "hello"}),
            [404, 404, 201, 201],
        ),
        (
            "PATCH",
            format!("/v1/messages/{before}"),
            json!({"conversation_id": g, "text": "secret-edited"}),
            [404, 404, 422, 200],
        ),
        (
            "DELETE",
            format!("/v1/messages/{doomed}?conversation_id={g}"),
            Value::Null,
            [404, 404, 422, 200],
        ),
        (
            "POST",
            "/v1/receipts".into(),
            json!({"conversation_id": g, "message_id": before, "status": "read"}),
            [404, 404, 200, 200],
        ),
        (
            "PUT",
            "/v1/presence".into(),
            json!({"status": "online"}),
            [200, 200, 200, 200],
        ),
        // alice's presence: to bob (in g with her) and herself; not to rita,
        // since removed, nor to nora.
        (
            "GET",
            "/v1/presence/alice".into(),
            Value::Null,
            [404, 404, 200, 200],
        ),
        ("GET", "/v1/inbox".into(), Value::Null, [200, 200, 200, 200]),
        (
            "GET",
            "/v1/search?q=secret".into(),
            Value::Null,
            [200, 200, 200, 200],
        ),
    ];
    // What each caller may never read: nora nothing of g, rita nothing sent
    // after her removal (not even who joined since). An edit of a message she
    // saw is not something new: it changes that message for all who see it
    // (docs/DESIGN.md, "Edits and deletes"), checked below.
    let forbidden: [&[&str]; 4] = [
        &[
            "secret-before",
            "secret-after",
            "secret-doomed",
            "secret-edited",
            "the-g",
            &before,
            &after,
        ],
        &["secret-after", "dana", &after],
        &[],
        &[],
    ];
    // Contacts are read from the views, which lag the log: await them up to
    // dana's joining (after rita's removal, in the same partition).
    eventually("dana a contact of alice", || {
        let r = http(a, "GET", "/v1/presence/alice", Some(&dana), None, NONE);
        (r.status == 200).then_some(())
    });
    // The short-lived token is refused once it has expired: await exactly that.
    eventually("the short-lived token to expire", || {
        (http(a, "GET", "/v1/inbox", Some(&expired), None, NONE).status == 401).then_some(())
    });
    let bad: [(&str, Option<&str>); 5] = [
        ("no token", None),
        ("expired", Some(&expired)),
        ("another key", Some(&other_key)),
        ("alg none", Some(&alg_none)),
        ("tampered", Some(&tampered)),
    ];
    let users = [
        ("nora", &nora),
        ("rita", &rita),
        ("bob", &bob),
        ("alice", &alice),
    ];
    let published_before = published(a);
    for (method, path, body, expect) in &rows {
        let text = body.to_string();
        let body = (!body.is_null()).then_some(text.as_str());
        for (who, t) in bad {
            let r = http(a, method, path, t, body, NONE);
            assert_eq!(r.status, 401, "{who}: {method} {path}: {}", r.body);
            assert!(
                !r.body.contains("secret"),
                "{who}: {method} {path}: {}",
                r.body
            );
        }
        for (i, (who, t)) in users.iter().enumerate() {
            let r = http(a, method, path, Some(t), body, NONE);
            assert_eq!(r.status, expect[i], "{who}: {method} {path}: {}", r.body);
            for f in forbidden[i] {
                assert!(
                    !r.body.contains(f),
                    "{who}: {method} {path} shows {f}: {}",
                    r.body
                );
            }
            assert!(
                !r.headers.contains_key("retry-after"),
                "{who}: {method} {path}"
            );
        }
    }
    assert!(
        published(a) > published_before,
        "the members' writes were published"
    );
    // rita sees g as it was when she left; the members see it as it is, and
    // their inboxes name it.
    let seen = |t: &str| {
        let d = call(
            a,
            "GET",
            &format!("/v1/conversations/{g}"),
            t,
            Value::Null,
            200,
        );
        assert_eq!(
            (&d["kind"], &d["title"], &d["created_by"]),
            (&json!("group"), &json!("the-g"), &json!("alice")),
            "{d}"
        );
        let members: Vec<&str> = d["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["user_id"].as_str().unwrap())
            .collect();
        members.join(",")
    };
    assert_eq!(seen(&rita), "alice,bob,rita");
    assert_eq!(seen(&bob), "alice,bob,dana,erin");
    for (t, members) in [
        (&rita, json!(["alice", "bob", "rita"])),
        (&dana, json!(["alice", "bob", "dana", "erin"])),
    ] {
        eventually("g in the inbox with its members", || {
            let rows = call(a, "GET", "/v1/inbox", t, Value::Null, 200);
            rows.as_array()
                .unwrap()
                .iter()
                .find(|r| r["conversation_id"] == g.as_str() && r["member_ids"] == members)
                .map(|r| {
                    assert_eq!(
                        (&r["kind"], &r["title"]),
                        (&json!("group"), &json!("the-g"))
                    )
                })
        });
    }
    // rita keeps what she saw; search agrees once the index has caught up.
    let history = http(
        a,
        "GET",
        &format!("/v1/conversations/{g}/messages"),
        Some(&rita),
        None,
        NONE,
    );
    assert!(history.body.contains(&before), "{}", history.body);
    eventually("alice finds secret-after", || {
        let r = http(a, "GET", "/v1/search?q=after", Some(&alice), None, NONE);
        r.body.contains(&after).then_some(())
    });
    for (i, (who, t)) in users.iter().enumerate().take(2) {
        let r = http(
            a,
            "GET",
            "/v1/search?q=secret+OR+after+OR+edited",
            Some(t),
            None,
            NONE,
        );
        for f in forbidden[i] {
            assert!(!r.body.contains(f), "{who} finds {f}: {}", r.body);
        }
    }
    // alice's edit of a message rita saw reaches rita's search and history
    // alike, each once its view has applied it.
    eventually("rita finds the edited message", || {
        let r = http(a, "GET", "/v1/search?q=edited", Some(&rita), None, NONE);
        r.body.contains(&before).then_some(())
    });
    eventually("rita's history shows the edit", || {
        let r = http(
            a,
            "GET",
            &format!("/v1/conversations/{g}/messages"),
            Some(&rita),
            None,
            NONE,
        );
        r.body.contains("secret-edited").then_some(())
    });
    // The stream: refused without a valid token.
    for (who, t) in bad {
        let url = match t {
            Some(t) => format!("ws://{a}/v1/stream?access_token={t}"),
            None => format!("ws://{a}/v1/stream"),
        };
        match tungstenite::connect(url) {
            Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 401, "{who}"),
            other => panic!(
                "{who}: the stream answered {:?}",
                other.map(|(_, r)| r.status())
            ),
        }
    }
    // And the frames: a marker conversation with everyone ends each stream;
    // before it, rita and nora got nothing of g, dana nothing of the messages
    // sent before she joined (their edit, delete, receipt), bob all of it.
    // alice's presence (set in the table above) goes to her contacts at once,
    // in one delivery: once bob has it, the marker comes after it for all.
    let alice_presence = |f: &Value| f["type"] == "presence" && f["user_id"] == "alice";
    let bob_before = frames_until(&mut live[0].1, alice_presence);
    let marker = id(
        call(
            a,
            "POST",
            "/v1/conversations",
            &alice,
            json!({"kind": "group", "member_ids": ["bob", "rita", "nora", "dana"]}),
            201,
        ),
        "conversation_id",
    );
    assert_eq!(live[0].0, "bob");
    for (who, socket) in live.iter_mut() {
        let mut frames = frames_until(socket, |f| f["conversation_id"] == marker.as_str());
        if *who == "bob" {
            frames.splice(0..0, bob_before.iter().cloned());
        }
        let text = serde_json::to_string(&frames).unwrap();
        let presence = frames.iter().filter(|f| alice_presence(f)).count();
        match *who {
            "rita" | "nora" => {
                assert!(
                    frames.iter().all(|f| f["conversation_id"] != g.as_str()),
                    "{who} got frames of g: {text}"
                );
                assert_eq!(presence, 0, "{who} got alice's presence: {text}");
            }
            "dana" => {
                for f in [&before, &doomed, "secret-edited"] {
                    assert!(!text.contains(f), "dana got {f}: {text}");
                }
                assert!(text.contains("hello"), "dana got g's new messages: {text}");
                assert_eq!(presence, 1, "dana, in g with alice: {text}");
            }
            _ => {
                for f in ["message_edited", "message_deleted", "receipt"] {
                    assert!(text.contains(f), "bob missed a {f}: {text}");
                }
                assert_eq!(presence, 1, "bob, in g with alice: {text}");
            }
        }
    }
    // The operations endpoints are public, to anyone, and name nobody's data.
    for path in ["/healthz", "/metrics", "/openapi.json"] {
        for (who, t) in bad {
            let r = http(a, "GET", path, t, None, NONE);
            assert_eq!(r.status, 200, "{who}: {path}");
            assert!(
                !r.body.contains("secret-") && !r.body.contains(&g),
                "{path}"
            );
        }
    }
    drop(live);
    assert!(up.stop().success());
}

/// What schemathesis (scripts/api-fuzz.sh) found answered outside the document:
/// a body not declared JSON got 415 from every write that reads one, and an id
/// with a control character got 422 from `GET /v1/conversations/{id}`; both
/// are refusals saying what is wrong, and both are now in `/openapi.json`. And
/// `?before=` of the messages was refused in words that did not say what was
/// wrong with it.
#[test]
fn refusals_schemathesis_found_are_documented_where_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let up = Up::start(&data, None);
    let a = &up.addr;
    let alice = token(&data, None, "alice");
    let doc = http(a, "GET", "/openapi.json", None, None, NONE).json();
    let documented = |template: &str, method: &str, status: u16| {
        let answer =
            &doc["paths"][template][method.to_lowercase()]["responses"][status.to_string()];
        assert_eq!(
            answer["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/Error",
            "{method} {template}: {status} is not documented as an error"
        );
    };

    let writes = [
        ("/v1/conversations", "/v1/conversations", "POST"),
        (
            "/v1/conversations/{id}/members",
            "/v1/conversations/c/members",
            "POST",
        ),
        ("/v1/messages", "/v1/messages", "POST"),
        ("/v1/messages/{id}", "/v1/messages/m", "PATCH"),
        ("/v1/receipts", "/v1/receipts", "POST"),
        ("/v1/presence", "/v1/presence", "PUT"),
    ];
    for (template, path, method) in writes {
        // No Content-Type at all, as schemathesis sent it, and a wrong one.
        for extra in [NONE, PLAIN] {
            let r = http(a, method, path, Some(&alice), None, extra);
            assert_eq!(r.status, 415, "{method} {path}: {}", r.body);
            assert!(r.json()["error"].as_str().unwrap().contains("Content-Type"));
        }
        documented(template, method, 415);
    }

    // U+008A, as schemathesis sent it (percent-encoded UTF-8).
    let r = http(
        a,
        "GET",
        "/v1/conversations/a%C2%8Ab",
        Some(&alice),
        None,
        NONE,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    let err = r.json()["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("conversation_id") && err.contains("U+008A"),
        "{err}"
    );
    documented("/v1/conversations/{id}", "GET", 422);

    // An empty `before` was looked up as a message id and named in a sentence
    // that did not read ("`before` names , which is not a message of …").
    let c = http(
        a,
        "POST",
        "/v1/conversations",
        Some(&alice),
        Some(r#"{"kind":"direct","member_ids":["bob"]}"#),
        NONE,
    )
    .json()["conversation_id"]
        .as_str()
        .unwrap()
        .to_string();
    for (before, says) in [
        ("", "`before` must not be empty"),
        ("%1B", "`before` contains"),
    ] {
        let path = format!("/v1/conversations/{c}/messages?before={before}");
        let r = http(a, "GET", &path, Some(&alice), None, NONE);
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        let err = r.json()["error"].as_str().unwrap().to_string();
        assert!(err.contains(says), "{path}: {err}");
    }
    documented("/v1/conversations/{id}/messages", "GET", 422);

    assert!(up.stop().success());
}
