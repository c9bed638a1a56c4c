//! Issue 18: a live client that reconnects with `?since=` the cursor of the last
//! frame it got receives what it missed, once each, in order, then live events;
//! a cursor that cannot be resumed from gets close code 4410 (re-read the inbox).

use super::*;

/// base64url of `v1:9999999999:9999999999`: a cursor of a log far longer than
/// any test's, with one partition per topic.
const AHEAD: &str = "djE6OTk5OTk5OTk5OTo5OTk5OTk5OTk5";

/// The `[gateway]` section of these tests: a small catch-up bound, and rate
/// limits out of the way.
const GATEWAY: &str = "[gateway]\nresume_max_events = 30\nuser_rate_per_sec = 100000.0\nuser_burst = 100000\nip_rate_per_sec = 100000.0\nip_burst = 100000\n";

fn resume(addr: &str, token: &str, since: &str) -> Ws {
    ws_at(&format!(
        "ws://{addr}/v1/stream?access_token={token}&since={since}"
    ))
}

/// Frames as (cursor, event), up to and including the first event satisfying `last`.
fn cursored_until(ws: &mut Ws, last: impl Fn(&Value) -> bool) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    loop {
        match ws.read().expect("a frame before the timeout") {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                let cursor = v["cursor"].as_str().unwrap_or_else(|| panic!("{v}"));
                if v["event"].is_null() {
                    continue; // `{"cursor"}` alone
                }
                let done = last(&v["event"]);
                seen.push((cursor.to_string(), v["event"].clone()));
                if done {
                    return seen;
                }
            }
            tungstenite::Message::Close(c) => panic!("closed early: {c:?}; saw {seen:?}"),
            _ => {}
        }
    }
}

/// The close code a connection ends with, and the error it was told before.
fn closed_with(ws: &mut Ws) -> (u16, String) {
    let mut told = String::new();
    loop {
        match ws.read().expect("a close frame before the timeout") {
            tungstenite::Message::Text(t) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_eq!(v["type"], "error", "an event before the close: {v}");
                told = v["error"].as_str().unwrap().to_string();
            }
            tungstenite::Message::Close(frame) => {
                let frame = frame.expect("a close frame with a code");
                return (u16::from(frame.code), told);
            }
            _ => {}
        }
    }
}

fn send(a: &str, token: &str, c: &str, text: &str) -> String {
    call(
        a,
        "POST",
        "/v1/messages",
        token,
        json!({"conversation_id": c, "text": text}),
        201,
    )["message_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn create(a: &str, token: &str, kind: &str, members: &[&str]) -> String {
    call(
        a,
        "POST",
        "/v1/conversations",
        token,
        json!({"kind": kind, "member_ids": members}),
        201,
    )["conversation_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// What identifies an event in the assertions: its type and the message or
/// user it is about.
fn what(e: &Value) -> String {
    let about = ["message_id", "user_id"]
        .iter()
        .find_map(|k| e[k].as_str())
        .unwrap_or("");
    format!("{} {about}", e["type"].as_str().unwrap_or("?"))
}

fn resume_delivers_every_missed_event_exactly_once_in_order(data: &Path, config: &str) {
    let up = Up::start(data, Some(config));
    let a = up.addr.clone();
    let [alice, bob, carol] = ["alice", "bob", "carol"].map(|u| token(data, Some(config), u));
    let c1 = create(&a, &alice, "direct", &["bob"]);
    let c2 = create(&a, &alice, "group", &["bob", "carol"]);
    let c3 = create(&a, &alice, "direct", &["carol"]);
    // Presence goes to contacts, read from the views: let them know c1 and c2.
    eventually("bob's inbox lists c1 and c2", || {
        let rows = call(&a, "GET", "/v1/inbox", &bob, Value::Null, 200);
        let ids: Vec<&str> = rows
            .as_array()?
            .iter()
            .filter_map(|r| r["conversation_id"].as_str())
            .collect();
        (ids.contains(&c1.as_str()) && ids.contains(&c2.as_str())).then_some(())
    });

    let mut live = ws(&a, &bob);
    let first = send(&a, &alice, &c1, "before the drop");
    let frames = cursored_until(&mut live, |e| e["message_id"] == first.as_str());
    let cursor = frames.last().unwrap().0.clone();
    drop(live);

    // Missed while away: in two conversations, of every kind, and around them
    // what bob must not get (another conversation; a receipt between others).
    let m2 = send(&a, &alice, &c1, "missed 1");
    let m3 = send(&a, &alice, &c2, "missed 2");
    send(&a, &alice, &c3, "not bob's");
    let m4 = send(&a, &carol, &c2, "missed 3");
    call(
        &a,
        "PATCH",
        &format!("/v1/messages/{m3}"),
        &alice,
        json!({"conversation_id": c2, "text": "missed 2, edited"}),
        200,
    );
    let receipt = |m: &str| json!({"conversation_id": c2, "message_id": m, "status": "read"});
    call(&a, "POST", "/v1/receipts", &alice, receipt(&m4), 200); // alice and carol's
    call(&a, "POST", "/v1/receipts", &bob, receipt(&m4), 200); // bob's own
    call(
        &a,
        "PUT",
        "/v1/presence",
        &alice,
        json!({"status": "online"}),
        200,
    );
    call(
        &a,
        "POST",
        &format!("/v1/conversations/{c2}/members"),
        &alice,
        json!({"remove": ["carol"]}),
        200,
    );
    let m5 = send(&a, &alice, &c1, "missed 4");

    // Positions are the log's: the cursor outlives the process that gave it.
    assert!(up.stop().success());
    let up = Up::start(data, Some(config));
    let a = up.addr.clone();

    // Messages keep coming while bob reconnects: some land before the seam
    // between catch-up and live, some after.
    let during = {
        let (a, alice, c1) = (a.clone(), alice.clone(), c1.clone());
        std::thread::spawn(move || {
            (0..8)
                .map(|i| send(&a, &alice, &c1, &format!("during {i}")))
                .collect::<Vec<_>>()
        })
    };
    let mut live = resume(&a, &bob, &cursor);
    let during = during.join().unwrap();
    let marker = send(&a, &alice, &c2, "live after the resume");
    let frames = cursored_until(&mut live, |e| e["message_id"] == marker.as_str());
    let events: Vec<&Value> = frames.iter().map(|(_, e)| e).collect();

    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "a duplicate: {events:?}");
    let of = |c: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["conversation_id"] == c)
            .map(|e| what(e))
            .collect()
    };
    let sent = |m: &str| format!("message_sent {m}");
    let mut in_c1 = vec![sent(&m2), sent(&m5)];
    in_c1.extend(during.iter().map(|m| sent(m)));
    assert_eq!(of(&c1), in_c1, "c1: {events:?}");
    assert_eq!(
        of(&c2),
        [
            sent(&m3),
            sent(&m4),
            format!("message_edited {m3}"),
            format!("receipt {m4}"),
            "members_removed ".to_string(),
            sent(&marker),
        ],
        "c2: {events:?}"
    );
    let receipt = events.iter().find(|e| e["type"] == "receipt").unwrap();
    assert_eq!(
        receipt["user_id"], "bob",
        "only bob's own receipt: {receipt}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "presence")
            .map(|e| (e["user_id"].clone(), e["status"].clone()))
            .collect::<Vec<_>>(),
        [(json!("alice"), json!("online"))],
        "{events:?}"
    );
    assert_eq!(of(&c3), Vec::<String>::new());
    assert_eq!(events.len(), in_c1.len() + 6 + 1, "{events:?}");

    // Live events go on after the catch-up.
    let after = send(&a, &alice, &c1, "still live");
    let more = cursored_until(&mut live, |e| e["message_id"] == after.as_str());
    assert_eq!(more.len(), 1, "{more:?}");
    drop(live);

    // From the last cursor there is nothing to catch up: the first frame is
    // the next event.
    let last = more.last().unwrap().0.clone();
    let mut live = resume(&a, &bob, &last);
    let next = send(&a, &alice, &c2, "next");
    let frames = cursored_until(&mut live, |e| e["message_id"] == next.as_str());
    assert_eq!(frames.len(), 1, "{frames:?}");
    drop(live);

    // More missed than a reconnect catches up (30): re-read the inbox.
    for i in 0..31 {
        send(&a, &alice, &c1, &format!("flood {i}"));
    }
    let mut live = resume(&a, &bob, &last);
    let (code, told) = closed_with(&mut live);
    assert_eq!(code, 4410, "{told}");
    assert!(
        told.contains("more than 30 events were missed") && told.contains("GET /v1/inbox"),
        "{told}"
    );
    // A cursor of some other log, longer than this one: the same.
    let mut live = resume(&a, &bob, AHEAD);
    let (code, told) = closed_with(&mut live);
    assert_eq!(code, 4410, "{told}");
    assert!(told.contains("cannot resume"), "{told}");
    // Garbage is a 400 before the handshake, saying what is wrong.
    for garbage in ["not-a-cursor", "%25%25"] {
        match tungstenite::connect(format!(
            "ws://{a}/v1/stream?access_token={bob}&since={garbage}"
        )) {
            Err(tungstenite::Error::Http(r)) => {
                assert_eq!(r.status(), 400, "{garbage}");
                let body = String::from_utf8_lossy(r.body().as_deref().unwrap_or_default());
                assert!(
                    body.contains("`since` is not a cursor"),
                    "{garbage}: {body}"
                );
            }
            other => panic!("{garbage}: {:?}", other.map(|(_, r)| r.status())),
        }
    }
    assert!(up.stop().success());
}

#[test]
fn resume_delivers_every_missed_event_exactly_once_in_order_embedded() {
    let dir = tempfile::tempdir().unwrap();
    resume_delivers_every_missed_event_exactly_once_in_order(&dir.path().join("data"), GATEWAY);
}

#[test]
fn on_kafka_and_cassandra_resume_delivers_every_missed_event_exactly_once_in_order() {
    let Some((config, brokers, cassandra, namespace)) = distributed("resume") else {
        return;
    };
    // After the top-level keys of `config`, which a table header would capture.
    let config = format!("{config}\n{GATEWAY}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    migrate(&data, &config);
    resume_delivers_every_missed_event_exactly_once_in_order(&data, &config);
    common::drop_distributed(
        &data.with_extension("toml"),
        &brokers,
        &cassandra,
        &namespace,
    );
}

/// A connection that gets no events still gets its cursor moved past what the
/// others did, so its reconnect reads nothing even under a bound of 3 records
/// with 6 logged meanwhile.
#[test]
fn an_idle_connection_gets_its_cursor_and_resumes_from_it_reading_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = "[gateway]\nws_cursor_every_ms = 100\nresume_max_records = 3\n";
    let up = Up::start(&data, Some(config));
    let a = up.addr.clone();
    let [alice, bob] = ["alice", "bob"].map(|u| token(&data, Some(config), u));
    let mut live = ws(&a, &bob);
    let c = create(&a, &alice, "direct", &["carol"]);
    for i in 0..5 {
        send(&a, &alice, &c, &format!("not for bob {i}"));
    }
    // Every write answers once the gateway's tail applied it: the next cursor
    // frame covers all six records, and none after it changes anything.
    let mut last = None;
    loop {
        match live.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert!(v["event"].is_null(), "an event for bob: {v}");
                last = Some(v["cursor"].as_str().unwrap().to_string());
                // Give the cursor 2 s to settle before calling it final.
                if let tungstenite::stream::MaybeTlsStream::Plain(s) = live.get_mut() {
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                }
            }
            Ok(other) => panic!("{other:?}"),
            Err(tungstenite::Error::Io(e))
                if last.is_some() && e.kind() == std::io::ErrorKind::WouldBlock =>
            {
                break;
            }
            Err(e) => panic!("no cursor frame for the idle connection: {e}"),
        }
    }
    drop(live);
    let mut live = resume(&a, &bob, &last.unwrap());
    let d = create(&a, &alice, "direct", &["bob"]);
    let frames = cursored_until(&mut live, |e| e["type"] == "conversation_created");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0].1["conversation_id"], d.as_str());
    drop(live);
    assert!(up.stop().success());
}
