//! Sustained sends through the gateway's HTTP API against the producer library
//! publishing the same events directly, measured in the same run on the same
//! embedded log.
//!
//! `cargo bench -p courier-gateway --bench http -- --bench [--clients N --secs S]`
//! (without `--bench`: a tiny smoke run, as `cargo test --benches` does).
//!
//! - http: N clients, each with one keep-alive HTTP/1.1 connection on loopback,
//!   each sending `POST /v1/messages` into its own conversation as fast as
//!   answers come back (a closed loop: a send is answered after it is durable in
//!   the log and the gateway's tail has applied it);
//! - producer: N tasks calling `producer::publish` with one `message_sent` each,
//!   in the same closed loop: the floor any producer pays.
//!
//! Prints sends/s and p50/p99 latency of each and the ratio.

// The courier binary's allocator (see src/main.rs): measure what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use courier_gateway::GatewayConfig;
use courier_gateway::{Gateway, Keys, Parts};
use courier_pipeline::embedded::EmbeddedOptions;
use courier_pipeline::{EmbeddedLog, EventLog, shutdown};
use courier_sinks::inbox::RocksInboxStore;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, header};
use hyper_util::rt::TokioIo;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    sends: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Run {
    fn per_sec(&self) -> f64 {
        self.sends as f64 / self.elapsed.as_secs_f64()
    }

    fn pct(&mut self, p: f64) -> Duration {
        self.latencies.sort_unstable();
        let i = ((self.latencies.len() as f64 * p).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[i - 1]
    }

    fn line(&mut self, name: &str) -> String {
        let (p50, p99) = (self.pct(0.50), self.pct(0.99));
        format!(
            "{name:<9} {:>8} sends in {:>6.2} s = {:>8.0} sends/s   p50 {:>7.3} ms   p99 {:>7.3} ms",
            self.sends,
            self.elapsed.as_secs_f64(),
            self.per_sec(),
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3
        )
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn call(s: &mut Sender, method: &str, path: &str, token: &str, body: String) -> (u16, Bytes) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "bench")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = s.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn http_run(
    addr: std::net::SocketAddr,
    secret: &Keys,
    clients: u64,
    dur: Duration,
    max: u64,
) -> Run {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..clients {
        let token = secret.mint(&format!("user{c}"), 3600).unwrap();
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await;
            let body =
                format!(r#"{{"kind":"group","member_ids":["user{c}","peer{c}"],"title":"bench"}}"#);
            let (status, b) = call(&mut s, "POST", "/v1/conversations", &token, body).await;
            assert_eq!(status, 201, "{}", String::from_utf8_lossy(&b));
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let conv = v["conversation_id"].as_str().unwrap().to_string();
            let mut lat = Vec::new();
            let t0 = Instant::now();
            let mut i = 0;
            while t0.elapsed() < dur && i < max {
                let body = format!(
                    r#"{{"conversation_id":"{conv}","text":"message {i} from a load generator"}}"#
                );
                let t = Instant::now();
                let (status, b) = call(&mut s, "POST", "/v1/messages", &token, body).await;
                lat.push(t.elapsed());
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&b));
                i += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Run {
        sends: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

async fn producer_run(log: Arc<dyn EventLog>, clients: u64, dur: Duration, max: u64) -> Run {
    let mut tasks = Vec::new();
    let started = Instant::now();
    for c in 0..clients {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            let conv = format!("direct-{c}-{}", uuid_like());
            let mut lat = Vec::new();
            let t0 = Instant::now();
            let mut i = 0;
            while t0.elapsed() < dur && i < max {
                let line = format!(
                    r#"{{"type":"message_sent","conversation_id":"{conv}","message_id":"m{i}","sender_id":"user{c}","text":"message {i} from a load generator"}}"#
                );
                let t = Instant::now();
                let e = courier_schemas::json::parse_line(&line).unwrap();
                courier_pipeline::producer::publish(&*log, &[e]).await.unwrap();
                lat.push(t.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Run {
        sends: latencies.len(),
        elapsed: started.elapsed(),
        latencies,
    }
}

fn uuid_like() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn main() {
    courier_pipeline::alloc::tune();
    let full = std::env::args().any(|a| a == "--bench");
    let clients = arg("--clients", if full { 16 } else { 2 });
    let secs = arg("--secs", if full { 10 } else { 1 });
    let max = if full { u64::MAX } else { 20 };
    let dur = Duration::from_secs(secs);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(
                &dir.path().join("log"),
                courier_topics::Catalog::builtin(),
                EmbeddedOptions { fsync: false },
            )
            .unwrap(),
        );
        // The gateway reads views only on a cache miss (once per conversation
        // here); an empty store makes it fold those from the log.
        let views = Arc::new(RocksInboxStore::open(&dir.path().join("views")).unwrap());
        let secret = Keys::hs256(b"bench");
        let (trigger, stop) = shutdown::channel();
        let settings = GatewayConfig {
            user_rate_per_sec: 1e9,
            user_burst: 1_000_000_000,
            ip_rate_per_sec: 1e9,
            ip_burst: 1_000_000_000,
            ..GatewayConfig::default()
        };
        let gw = Gateway::start(
            Parts {
                settings,
                log: log.clone(),
                views,
                search: None,
                presence: None,
                keys: Keys::hs256(b"bench"),
            },
            stop,
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(gw.serve(listener));

        println!("{clients} closed-loop clients, {secs} s each, embedded log, loopback");
        // Producer first then HTTP, then again, so both see a log of similar size.
        let mut p1 = producer_run(log.clone(), clients, dur, max).await;
        let mut h1 = http_run(addr, &secret, clients, dur, max).await;
        println!("{}", p1.line("producer"));
        println!("{}", h1.line("http"));
        println!(
            "ratio http/producer: throughput {:.2}, p50 latency {:.2}x",
            h1.per_sec() / p1.per_sec(),
            h1.pct(0.5).as_secs_f64() / p1.pct(0.5).as_secs_f64()
        );
        trigger.trigger();
        server.await.unwrap().unwrap();
    });
}
