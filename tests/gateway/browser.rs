//! Issue 18: the web client `courier up` serves at `/`, driven in a real browser
//! (Debian's headless Chromium through the chromedriver this test starts) by two
//! users: a conversation, messages both ways, ticks turning read, search, and a
//! dropped live connection that resumes with exactly the messages it missed.
//! Beside it, what needs no browser: the assets' headers and `--dev`'s rules.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::*;

/// How long any one condition may take: generous, because in CI the browser
/// shares two cores with the rest of the suite.
const PATIENCE: Duration = Duration::from_secs(60);

/// Where a missing browser is explained, and what CI is told to install.
const INSTALL: &str = "apt-get install -y chromium chromium-driver (./dev test installs them)";

/// Debian's names first; the others are where other systems put them.
const CHROMIUMS: &[&str] = &["chromium", "chromium-browser", "google-chrome"];

fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or `None` after saying why the test does not run
/// (outside CI only: in CI a missing browser fails the test).
fn browser() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let chromium = CHROMIUMS.iter().find_map(|n| on_path(n));
    let driver = on_path("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ => {
            let msg = format!("the browser test needs chromium and chromedriver: {INSTALL}");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
            None
        }
    }
}

/// A chromedriver on a free port, killed with the test.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(path: &std::path::Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A group of its own, with the browsers it starts: a failing test
        // (which never closes its sessions) still takes them all down.
        let mut child = Command::new(path)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn chromedriver");
        // Ready once it says so; its later lines are drained so it never
        // blocks on a full pipe.
        let mut lines =
            std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("started successfully") => break,
                Some(Ok(_)) => {}
                other => panic!("chromedriver ended before it listened: {other:?}"),
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
        Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// A browser session of its own (its own profile, so its own sessionStorage).
async fn session(driver: &Driver, chromium: &std::path::Path, profile: &Path) -> Client {
    let args = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        // Without these Chromium keeps calling home, which on a closed network
        // is a flood of refused connections.
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,720",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!("--user-data-dir={}", profile.display())])
    .collect::<Vec<_>>();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({ "binary": chromium, "args": args }),
    );
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps);
    // `Driver::start` returned once chromedriver listened.
    let c = builder
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("no WebDriver session from {}: {e}", driver.url));
    // A page that navigates away under `NEXT_CHANGE` never answers it: the
    // script timeout ends that wait, so it stays a little over the script's own.
    let t = c.get_timeouts().await.unwrap();
    c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
        Some(CHANGE_WAIT + Duration::from_secs(1)),
        t.page_load(),
        t.implicit(),
    ))
    .await
    .unwrap();
    c
}

/// The longest one [`next_change`] waits in the page.
const CHANGE_WAIT: Duration = Duration::from_secs(5);

/// A browser that stops answering fails the test instead of hanging it (a
/// WebDriver call has no deadline of its own); dropping the test's future
/// kills its chromedriver, browsers and `courier up`.
async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(300), test)
        .await
        .expect("the browser test took over 5 minutes: a WebDriver call hung");
}

/// Runs in the page: evaluates the function body `arguments[0]` and answers
/// `[value, its JSON]` at once if that JSON differs from `arguments[1]`, else
/// at the next change of the DOM that changes it, or after `arguments[2]` ms.
/// `arguments[1]` null: at the next change of the DOM, whatever it is.
const NEXT_CHANGE: &str = r#"const [body, last, ms] = arguments;
const done = arguments[arguments.length - 1];
const read = () => { const v = new Function(body)(); return [v, JSON.stringify(v)]; };
if (last !== null) { const now = read(); if (now[1] !== last) { done(now); return; } }
const o = new MutationObserver(() => {
  const now = read();
  if (last === null || now[1] !== last) { o.disconnect(); clearTimeout(t); done(now); }
});
const t = setTimeout(() => { o.disconnect(); done(read()); }, ms);
o.observe(document, { subtree: true, childList: true, attributes: true, characterData: true });"#;

/// What `js` answers after the page changed it (or `last` is `None`: after
/// any change), within `left` (at most [`CHANGE_WAIT`]): (value, its JSON as
/// the page wrote it). `None`: the page navigated away meanwhile and answered
/// nothing.
async fn next_change(
    c: &Client,
    js: &str,
    last: Option<&str>,
    left: Duration,
) -> Option<(Value, String)> {
    let ms = left.min(CHANGE_WAIT).as_millis() as u64;
    let v = c
        .execute_async(NEXT_CHANGE, vec![json!(js), json!(last), json!(ms)])
        .await
        .ok()?;
    Some((v[0].clone(), v[1].as_str().unwrap_or_default().to_string()))
}

/// Awaits the page until `js` (a function body returning JSON) gives a value
/// `ok` accepts; the value. The page changes on its own (the live stream), so
/// each round waits in the browser for the DOM to change what `js` answers.
/// (`js` must not throw: a value that cannot be read is `null`.)
async fn until(c: &Client, what: &str, js: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    // No JSON is empty: the first round answers at once.
    let mut last = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A new page (None): read it at once, in the next round.
        let (v, key) = next_change(c, js, Some(&last), left)
            .await
            .unwrap_or((Value::Null, String::new()));
        if !key.is_empty() && ok(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last: {v}"
        );
        last = key;
    }
}

/// The open conversation's messages as `[text, ticks state (or null)]`.
const MESSAGES: &str = r#"return [...document.querySelectorAll('[data-testid="message"]')].map(m => [
    m.querySelector('[data-testid="message-text"]').textContent,
    m.querySelector('[data-testid="ticks"]')?.dataset.state ?? null]);"#;

fn texts(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|m| m[0].as_str().unwrap())
        .collect()
}

fn tick_of<'a>(v: &'a Value, text: &str) -> Option<&'a str> {
    v.as_array()?
        .iter()
        .find(|m| m[0] == text)
        .and_then(|m| m[1].as_str())
}

async fn testid(c: &Client, id: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(&format!("[data-testid=\"{id}\"]")))
        .await
        .unwrap_or_else(|e| panic!("no [data-testid={id}]: {e}"))
}

async fn type_into(c: &Client, id: &str, text: &str) {
    let e = testid(c, id).await;
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

async fn click(c: &Client, id: &str) {
    click_css(c, &format!("[data-testid=\"{id}\"]")).await;
}

/// Clicks the element `css` finds, again if the page replaced it in between
/// (rows and messages are rebuilt as live events arrive): a stale element is
/// not a failure, only running out of patience is.
async fn click_css(c: &Client, css: &str) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let clicked = match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await,
            Err(e) => Err(e),
        };
        match clicked {
            Ok(()) => return,
            Err(e) if Instant::now() >= deadline => panic!("could not click {css}: {e}"),
            // Gone or replaced: the page is changing; try once it has.
            Err(_) => {
                let left = deadline.saturating_duration_since(Instant::now());
                next_change(c, "return null", None, left).await;
            }
        }
    }
}

/// The selector of the open conversation's message whose text is `text`.
async fn message_css(c: &Client, text: &str) -> String {
    let id = c
        .execute(
            r#"const m = [...document.querySelectorAll('[data-testid="message"]')]
                 .find(m => m.querySelector('[data-testid="message-text"]').textContent === arguments[0]);
               return m ? m.dataset.messageId : null;"#,
            vec![json!(text)],
        )
        .await
        .unwrap();
    let id = id
        .as_str()
        .unwrap_or_else(|| panic!("no message {text:?} on the page"));
    format!(r#"[data-message-id="{id}"]"#)
}

async fn shot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// Signs in by name (development sign-in) and waits for the live stream.
async fn sign_in(c: &Client, addr: &str, user: &str, shots: Option<&Path>) {
    c.goto(&format!("http://{addr}/")).await.unwrap();
    until(
        c,
        "the dev sign-in form",
        "return !document.getElementById('dev-form').hidden",
        |v| v == &json!(true),
    )
    .await;
    type_into(c, "signin-name", user).await;
    if let Some(dir) = shots {
        shot(c, dir, "sign-in").await;
    }
    click(c, "signin-submit").await;
    live(c, user).await;
}

async fn live(c: &Client, who: &str) {
    until(c, &format!("{who}'s live stream"), CONN_STATUS, |v| {
        v == "live"
    })
    .await;
}

async fn send(c: &Client, text: &str) {
    type_into(c, "compose-input", text).await;
    click(c, "compose-send").await;
}

/// Starts a conversation from the form; waits until it is the open one.
async fn start_conversation(c: &Client, kind: &str, members: &str, title: &str) -> String {
    click_js(c, "document.getElementById('new-box').open = true").await;
    testid(c, "new-kind")
        .await
        .select_by_value(kind)
        .await
        .unwrap();
    type_into(c, "new-members", members).await;
    if !title.is_empty() {
        type_into(c, "new-title", title).await;
    }
    let before = open_conversation(c).await;
    click(c, "new-submit").await;
    until(c, "the new conversation to open", OPEN, |v| {
        v.is_string() && *v != before
    })
    .await
    .as_str()
    .unwrap()
    .to_string()
}

/// The live connection's state shown in the header.
const CONN_STATUS: &str =
    r#"return document.querySelector('[data-testid="conn-status"]').dataset.status"#;

/// The open conversation's title.
const CONV_TITLE: &str =
    r#"return document.querySelector('[data-testid="conv-title"]').textContent"#;

const OPEN: &str = r#"return document.querySelector('[data-testid="conversation"]').dataset.conversationId ?? null"#;

async fn open_conversation(c: &Client) -> Value {
    c.execute(OPEN, vec![]).await.unwrap()
}

async fn click_js(c: &Client, js: &str) {
    c.execute(js, vec![]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_in_chromium() {
    bounded(async {
        let Some((chromium, chromedriver)) = browser() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let up = Up::start_with(&dir.path().join("data"), Some(GATEWAY_LIMITS), &["--dev"]);
        let addr = up.addr.clone();
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        let driver = Driver::start(&chromedriver);
        let alice = session(&driver, &chromium, &dir.path().join("alice")).await;
        let bob = session(&driver, &chromium, &dir.path().join("bob")).await;

        sign_in(&alice, &addr, "alice", Some(&shots)).await;
        sign_in(&bob, &addr, "bob", None).await;

        // Alice starts a direct conversation with bob and writes first.
        let direct = start_conversation(&alice, "direct", "bob", "").await;
        until(
            &alice,
            "the conversation named after bob",
            CONV_TITLE,
            |v| v == "bob",
        )
        .await;
        send(&alice, "hello bob, lunch at noon?").await;
        // Sent, or already delivered: bob's page is live and acknowledges it.
        until(&alice, "alice's message sent", MESSAGES, |v| {
            tick_of(v, "hello bob, lunch at noon?").is_some_and(|t| t != "sending")
    })
    .await;

    // Bob's inbox shows it live: named after alice, unread, previewed.
    let row = format!(r#"[data-testid="inbox-item"][data-conversation-id="{direct}"]"#);
    let bob_row = until(
        &bob,
        "the conversation in bob's inbox, unread",
        &format!(
            r#"const r = document.querySelector('{row}'); return r && [r.querySelector('[data-testid="inbox-name"]').textContent, r.querySelector('[data-testid="unread"]')?.textContent ?? null, r.querySelector('.preview').textContent]"#
        ),
        |v| v[0].as_str().is_some_and(|n| n.ends_with("alice")) && v[1] == "1",
    )
    .await;
    assert_eq!(bob_row[2], "hello bob, lunch at noon?", "{bob_row}");
    // Bob's page got it without opening it: delivered, not read.
    until(&alice, "alice's ticks delivered", MESSAGES, |v| {
        tick_of(v, "hello bob, lunch at noon?") == Some("delivered")
    })
    .await;
    shot(&bob, &shots, "inbox").await;
    click_css(&bob, &row).await;
    until(&bob, "alice's message at bob's", MESSAGES, |v| {
        texts(v) == ["hello bob, lunch at noon?"]
    })
    .await;
    send(&bob, "noon works").await;

    // Alice gets the answer live, and her message's ticks turn read: bob opened it.
    until(
        &alice,
        "bob's answer and alice's ticks read",
        MESSAGES,
        |v| {
            texts(v) == ["hello bob, lunch at noon?", "noon works"]
                && tick_of(v, "hello bob, lunch at noon?") == Some("read")
        },
    )
    .await;

    // Presence: bob is online (he signed in), then sets himself offline, and
    // alice's dot for him follows over her stream.
    let bobs_dot = r#"return document.querySelector('[data-testid="inbox-item"] [data-testid="presence"][data-user="bob"]')?.dataset.status ?? null"#;
    until(&alice, "bob online at alice's", bobs_dot, |v| v == "online").await;
    testid(&bob, "presence-select")
        .await
        .select_by_value("offline")
        .await
        .unwrap();
    until(&alice, "bob offline at alice's", bobs_dot, |v| {
        v == "offline"
    })
    .await;
    testid(&bob, "presence-select")
        .await
        .select_by_value("online")
        .await
        .unwrap();
    until(&alice, "bob online again", bobs_dot, |v| v == "online").await;

    // A group, so that a search hit has another conversation to open.
    let group = start_conversation(&alice, "group", "bob", "Weekend plans").await;
    assert_ne!(group, direct);
    send(&alice, "who brings the tent?").await;
    until(&alice, "the group message sent", MESSAGES, |v| {
        tick_of(v, "who brings the tent?").is_some_and(|t| t != "sending")
    })
    .await;

    // Search lags the log (its own processor): asked again until it has the hit.
    type_into(&alice, "search-input", "lunch").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let hit = loop {
        click(&alice, "search-submit").await;
        let v = alice
            .execute(
                r#"const h = document.querySelector('[data-testid="search-hit"]');
                   return h && [h.dataset.conversationId, h.dataset.messageId, h.querySelector('mark')?.textContent ?? null];"#,
                vec![],
            )
            .await
            .unwrap();
        if !v.is_null() {
            break v;
        }
        assert!(Instant::now() < deadline, "search never found `lunch`");
        // The index lags the send: ask again once the page has shown this
        // answer (at most 2 s; an unchanged answer may not change the DOM).
        next_change(&alice, "return null", None, Duration::from_secs(2)).await;
    };
    assert_eq!(hit[0], direct.as_str(), "{hit}");
    assert_eq!(hit[2], "lunch", "the match is highlighted: {hit}");
    shot(&alice, &shots, "search").await;
    click(&alice, "search-hit").await;
    until(
        &alice,
        "the hit's conversation open at the hit",
        &format!(
            r#"return [{OPEN_EXPR}, document.querySelector('[data-found="true"]')?.dataset.messageId ?? null]"#
        ),
        |v| v[0] == direct.as_str() && v[1] == hit[1],
    )
    .await;

    // Bob's connection drops; alice writes meanwhile; bob's page resumes
    // from its last cursor and shows what it missed, once each, in order.
    click_js(&bob, "window.courier.drop()").await;
    until(
        &bob,
        "bob offline",
        CONN_STATUS,
        |v| v == "offline",
    )
    .await;
    for text in ["missed one", "missed two"] {
        send(&alice, text).await;
        until(&alice, "a message while bob is away", MESSAGES, |v| {
            tick_of(v, text).is_some_and(|t| t != "sending")
        })
        .await;
    }
    let away = bob.execute(MESSAGES, vec![]).await.unwrap();
    assert_eq!(
        texts(&away),
        ["hello bob, lunch at noon?", "noon works"],
        "a dropped connection shows nothing new"
    );
    click_js(&bob, "window.courier.restore()").await;
    live(&bob, "bob").await;
    send(&alice, "back live").await;
    let all = [
        "hello bob, lunch at noon?",
        "noon works",
        "missed one",
        "missed two",
        "back live",
    ];
    until(
        &bob,
        "the missed messages, then the live one",
        MESSAGES,
        |v| texts(v).last() == Some(&"back live"),
    )
    .await;
    let shown = bob.execute(MESSAGES, vec![]).await.unwrap();
    assert_eq!(texts(&shown), all, "each message exactly once, in order");
    // Bob reading them turns alice's ticks read too.
    until(&alice, "the missed messages read", MESSAGES, |v| {
        tick_of(v, "back live") == Some("read")
    })
    .await;

    // Edited and deleted at alice's, seen so at bob's, live.
    let back = message_css(&alice, "back live").await;
    click_css(&alice, &format!(r#"{back} [data-testid="message-edit"]"#)).await;
    type_into(&alice, "edit-input", "back, and live").await;
    click(&alice, "edit-save").await;
    let missed = message_css(&alice, "missed one").await;
    click_css(
        &alice,
        &format!(r#"{missed} [data-testid="message-delete"]"#),
    )
    .await;
    alice.accept_alert().await.unwrap();
    until(&bob, "the edit and the deletion", MESSAGES, |v| {
        texts(v)[2..] == ["(deleted)", "missed two", "back, and live"]
    })
    .await;
    shot(&alice, &shots, "conversation").await;

    // Members of the group: carol added, then removed.
    click_css(
        &alice,
        &format!(r#"[data-testid="inbox-item"][data-conversation-id="{group}"]"#),
    )
    .await;
    until(&alice, "the group open", OPEN, |v| v == group.as_str()).await;
    // Its header (and the form to add members) once its details are read.
    until(
        &alice,
        "the group's title",
        CONV_TITLE,
        |v| v == "Weekend plans",
    )
    .await;
    click_js(&alice, "document.getElementById('members-box').open = true").await;
    type_into(&alice, "member-input", "carol").await;
    click(&alice, "member-add").await;
    until(&alice, "carol among the members", MEMBERS, |v| {
        v == &json!(["alice", "bob", "carol"])
    })
    .await;
    click_css(
        &alice,
        r#"[data-testid="member"][data-user="carol"] [data-testid="member-remove"]"#,
    )
    .await;
    until(&alice, "carol removed", MEMBERS, |v| {
        v == &json!(["alice", "bob"])
    })
    .await;

    alice.close().await.unwrap();
    bob.close().await.unwrap();
    drop(driver);
    eprintln!("screenshots in {}", shots.display());
    assert!(up.stop().success());
    })
    .await
}

/// The open conversation's members, sorted.
const MEMBERS: &str = r#"return [...document.querySelectorAll('[data-testid="member"]')].map(m => m.dataset.user).sort()"#;

/// Signing in with a pasted token (no `--dev`), history paged back, and a
/// search hit in an older page: the app pages until the hit is loaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sign_in_and_paging() {
    bounded(async {
        let Some((chromium, chromedriver)) = browser() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let up = Up::start(&data, Some(GATEWAY_LIMITS));
        let addr = up.addr.clone();
        let dana = token(&data, Some(GATEWAY_LIMITS), "dana");
        let erin = token(&data, Some(GATEWAY_LIMITS), "erin");
        let conversation = common::gateway::direct_conversation(&addr, &dana, "erin");
        // 60 messages, more than the app's page of 50; the oldest has a word of its own.
        for i in 0..60 {
            let text = if i == 0 {
                "the very first, about aardvarks".to_string()
            } else {
                format!("message number {i}")
            };
            let body = json!({"conversation_id": conversation, "text": text}).to_string();
            let r = http(
                &addr,
                "POST",
                "/v1/messages",
                Some(&dana),
                Some(&body),
                NONE,
            );
            assert_eq!(r.status, 201, "{}", r.body);
        }
        let path = format!("/v1/conversations/{conversation}/messages");
        eventually("the views to hold all 60 messages", || {
            let r = http(&addr, "GET", &path, Some(&erin), None, NONE);
            (r.json().as_array().map(Vec::len) == Some(60)).then_some(())
        });
        eventually("the search view to index the first message", || {
            let r = http(
                &addr,
                "GET",
                "/v1/search?q=aardvarks",
                Some(&erin),
                None,
                NONE,
            );
            (r.json().as_array().is_some_and(|a| !a.is_empty())).then_some(())
        });

        let driver = Driver::start(&chromedriver);
        let c = session(&driver, &chromium, &dir.path().join("erin")).await;
        c.goto(&format!("http://{addr}/")).await.unwrap();
        until(&c, "the token form alone", r#"return [document.getElementById('dev-form').hidden, !document.getElementById('token-form').hidden]"#, |v| {
            v == &json!([true, true])
    })
    .await;
    type_into(&c, "signin-token", &erin).await;
    click(&c, "signin-token-submit").await;
    live(&c, "erin").await;
    let row = format!(r#"[data-testid="inbox-item"][data-conversation-id="{conversation}"]"#);
    let unread = until(
        &c,
        "the unread badge",
        &format!(
            r#"return document.querySelector('{row} [data-testid="unread"]')?.textContent ?? null"#
        ),
        |v| v.is_string(),
    )
    .await;
    assert_eq!(unread, "60");
    click_css(&c, &row).await;
    let first = until(&c, "the newest page", MESSAGES, |v| {
        v.as_array().is_some_and(|a| a.len() == 50)
    })
    .await;
    assert_eq!(texts(&first)[0], "message number 10");
    click(&c, "load-older").await;
    let all = until(&c, "the older page before it", MESSAGES, |v| {
        v.as_array().is_some_and(|a| a.len() == 60)
    })
    .await;
    assert_eq!(texts(&all)[0], "the very first, about aardvarks");
    assert_eq!(texts(&all)[59], "message number 59");
    let older_hidden = c
        .execute("return document.getElementById('older').hidden", vec![])
        .await
        .unwrap();
    assert_eq!(older_hidden, json!(true), "no page before the first");

    // A search hit in the older page, from a fresh open of the conversation.
    c.refresh().await.unwrap();
    live(&c, "erin").await;
    type_into(&c, "search-input", "aardvarks").await;
    click(&c, "search-submit").await;
    click(&c, "search-hit").await;
    until(
        &c,
        "the first message found, an older page loaded",
        &format!(
            r#"const f = document.querySelector('[data-found="true"] [data-testid="message-text"]'); return [{OPEN_EXPR}, f?.textContent ?? null]"#
        ),
        |v| v[0] == conversation.as_str() && v[1] == "the very first, about aardvarks",
    )
    .await;

    // A cursor the gateway cannot resume from (ahead of its log): close code
    // 4410, after which the app re-reads the inbox and goes live from now on.
    c.execute(
        "sessionStorage.setItem('courier.cursor.erin', arguments[0])",
        vec![json!(AHEAD_CURSOR)],
    )
    .await
    .unwrap();
    c.refresh().await.unwrap();
    // The handshake succeeds (the page shows "live" for a moment), then the
    // gateway closes with 4410 and the app drops the cursor.
    until(
        &c,
        "the app to give up the cursor",
        "return sessionStorage.getItem('courier.cursor.erin')",
        |v| v != AHEAD_CURSOR,
    )
    .await;
    live(&c, "erin").await;
    // A cursor the gateway cannot even read: its handshake is a 400, which a
    // browser cannot tell from a gateway that is down; the gateway answering
    // otherwise, the app gives that cursor up too after three tries.
    c.execute(
        "sessionStorage.setItem('courier.cursor.erin', 'not-a-cursor')",
        vec![],
    )
    .await
    .unwrap();
    c.refresh().await.unwrap();
    until(
        &c,
        "the app to give up the unreadable cursor",
        "return sessionStorage.getItem('courier.cursor.erin')",
        |v| v != "not-a-cursor",
    )
    .await;
    live(&c, "erin").await;
    click_css(&c, &row).await;
    until(&c, "the newest page again", MESSAGES, |v| {
        texts(v).last() == Some(&"message number 59")
    })
    .await;
    let body = json!({"conversation_id": conversation, "text": "after the resync"}).to_string();
    let r = http(
        &addr,
        "POST",
        "/v1/messages",
        Some(&dana),
        Some(&body),
        NONE,
    );
    assert_eq!(r.status, 201, "{}", r.body);
    until(&c, "a live message after the resync", MESSAGES, |v| {
        texts(v).last() == Some(&"after the resync")
    })
    .await;

    c.close().await.unwrap();
    drop(driver);
    assert!(up.stop().success());
    })
    .await
}

/// `courier up --dev` on a given address (`Up::start_with` listens on port 0,
/// and a restart must come back where the page is).
fn up_at(data: &Path, addr: &str) -> Up {
    let mut child = common::courier(data)
        .args(["up", "--dev", "--listen", addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn courier up");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    common::wait_for_line(&mut lines, "the URL", |l| l.contains("://"));
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Up {
        child,
        addr: addr.to_string(),
    }
}

/// The gateway itself goes away: the page backs off and retries until it is
/// back (same address, same data), then resumes from its cursor, so a message
/// sent before it reconnected arrives, and nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_reconnects_after_the_gateway_restarts() {
    bounded(async {
        let Some((chromium, chromedriver)) = browser() else {
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr = format!("127.0.0.1:{port}");
        let up = up_at(&data, &addr);
        let minted = http(
            &addr,
            "POST",
            "/dev/token",
            None,
            Some(r#"{"user_id":"alice"}"#),
            NONE,
        );
        let alice = minted.json()["token"].as_str().unwrap().to_string();
        let conversation = common::gateway::direct_conversation(&addr, &alice, "bob");
        let say = |text: &str| {
            let body = json!({"conversation_id": conversation, "text": text}).to_string();
            let r = http(
                &addr,
                "POST",
                "/v1/messages",
                Some(&alice),
                Some(&body),
                NONE,
            );
            assert_eq!(r.status, 201, "{}", r.body);
        };
        say("before the restart");

        let driver = Driver::start(&chromedriver);
        let bob = session(&driver, &chromium, &dir.path().join("bob")).await;
        sign_in(&bob, &addr, "bob", None).await;
        let row = format!(r#"[data-testid="inbox-item"][data-conversation-id="{conversation}"]"#);
        click_css(&bob, &row).await;
        until(&bob, "the first message", MESSAGES, |v| {
            texts(v) == ["before the restart"]
        })
        .await;

        assert!(up.stop().success());
        until(&bob, "bob's page to notice", CONN_STATUS, |v| {
            v == "reconnecting"
        })
        .await;
        // Bob writes while the gateway is down: not sent, kept, to retry.
        send(&bob, "written while it was down").await;
        until(&bob, "bob's message marked unsent", MESSAGES, |v| {
            tick_of(v, "written while it was down") == Some("failed")
        })
        .await;
        let up = up_at(&data, &addr);
        say("after the restart");
        live(&bob, "bob").await;
        until(&bob, "the message sent while bob was away", MESSAGES, |v| {
            texts(v).contains(&"after the restart")
        })
        .await;
        click(&bob, "message-retry").await;
        until(&bob, "bob's message sent on retry", MESSAGES, |v| {
            tick_of(v, "written while it was down").is_some_and(|t| t != "failed" && t != "sending")
        })
        .await;
        say("and live again");
        let all = until(&bob, "the live message", MESSAGES, |v| {
            texts(v).contains(&"and live again")
        })
        .await;
        assert_eq!(
            texts(&all),
            [
                "before the restart",
                "written while it was down",
                "after the restart",
                "and live again"
            ],
            "each once; bob's retried message where he wrote it"
        );
        // The retry published it once, under the id the page chose.
        let path = format!("/v1/conversations/{conversation}/messages");
        eventually("bob's message in the views", || {
            let r = http(&addr, "GET", &path, Some(&alice), None, NONE);
            let list = r.json();
            let n = list
                .as_array()?
                .iter()
                .filter(|m| m["text"] == "written while it was down")
                .count();
            (n == 1).then_some(())
        });

        bob.close().await.unwrap();
        drop(driver);
        assert!(up.stop().success());
    })
    .await
}

/// base64url of `v1:9999999999:9999999999`: far ahead of any test's log.
const AHEAD_CURSOR: &str = "djE6OTk5OTk5OTk5OTo5OTk5OTk5OTk5";

const OPEN_EXPR: &str =
    r#"document.querySelector('[data-testid="conversation"]').dataset.conversationId"#;

/// Rate limits out of the way: two browsers share 127.0.0.1.
const GATEWAY_LIMITS: &str = "[gateway]\nuser_rate_per_sec = 100000.0\nuser_burst = 100000\nip_rate_per_sec = 100000.0\nip_burst = 100000\n";

/// The assets and the sign-in rules, over plain HTTP (no browser needed).
#[test]
fn assets_and_dev_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let up = Up::start(&dir.path().join("data"), None);
    for (path, ty) in [
        ("/", "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let r = http(&up.addr, "GET", path, None, None, NONE);
        assert_eq!(r.status, 200, "{path}");
        assert!(r.headers["content-type"].starts_with(ty), "{path}");
        assert_eq!(r.headers["cache-control"], "no-cache", "{path}");
        let csp = &r.headers["content-security-policy"];
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
    }
    // No inline script for the policy to forbid.
    let page = http(&up.addr, "GET", "/", None, None, NONE).body;
    assert!(page.contains(r#"<script src="/app.js" defer></script>"#));
    assert_eq!(page.matches("<script").count(), 1);
    // Without --dev: no dev sign-in, the app asks for a token.
    let config = http(&up.addr, "GET", "/app-config.json", None, None, NONE);
    assert_eq!(config.json(), json!({"dev_sign_in": false}));
    let body = r#"{"user_id":"alice"}"#;
    let r = http(&up.addr, "POST", "/dev/token", None, Some(body), NONE);
    assert_eq!(r.status, 404, "{}", r.body);
    for method in ["GET", "PUT"] {
        let r = http(&up.addr, method, "/dev/token", None, None, NONE);
        assert_eq!(r.status, 404, "{method}: {}", r.body);
    }
    drop(up);

    let dev = Up::start_with(&dir.path().join("data"), None, &["--dev"]);
    let config = http(&dev.addr, "GET", "/app-config.json", None, None, NONE);
    assert_eq!(config.json(), json!({"dev_sign_in": true}));
    let r = http(&dev.addr, "POST", "/dev/token", None, Some(body), NONE);
    assert_eq!(r.status, 200, "{}", r.body);
    let minted = r.json();
    assert_eq!(minted["user_id"], "alice");
    let inbox = http(
        &dev.addr,
        "GET",
        "/v1/inbox",
        minted["token"].as_str(),
        None,
        NONE,
    );
    assert_eq!(inbox.status, 200, "the minted token works: {}", inbox.body);
    // User ids are validated as everywhere else.
    let r = http(
        &dev.addr,
        "POST",
        "/dev/token",
        None,
        Some(r#"{"user_id":"a/b"}"#),
        NONE,
    );
    assert_eq!(r.status, 422, "{}", r.body);
    drop(dev);

    // --dev on an address others can reach: refused before anything starts.
    let out = common::courier(&dir.path().join("data"))
        .args(["up", "--dev", "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dev") && err.contains("loopback"), "{err}");
}
