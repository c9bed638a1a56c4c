//! Helpers shared by the end-to-end tests of the `courier` binary.
#![allow(dead_code)] // each test binary uses its own subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod gateway;
pub mod tls;
pub mod views;

/// The binary, pointed at `data`, with no configuration leaking in from the
/// environment of whoever runs the tests, and with what it takes to reach the
/// secured servers ([`client_env`]).
pub fn courier(data: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_courier"));
    c.arg("--data").arg(data);
    c.env_remove("COURIER_CONFIG")
        .env_remove("COURIER_DATA_DIR")
        .env_remove("COURIER_METRICS_LISTEN")
        .env_remove("COURIER_NAMESPACE")
        .env_remove("COURIER_LOG");
    c.envs(client_env());
    c
}

/// `COURIER_*` variables, as `courier.env` holds them.
pub type ClientEnv = Vec<(String, String)>;

/// A test's own server in place of compose/local's, by service (`kafka`,
/// `cassandra`): its `courier.env` (tests/faults.rs).
static OWN: std::sync::Mutex<Vec<(&'static str, ClientEnv)>> = std::sync::Mutex::new(Vec::new());

/// The `COURIER_*` variables that reach the secured servers: TLS, CA, user and
/// password file of compose/local's Kafka and Cassandra as up.sh wrote them
/// (`courier_pipeline::testing`), or of a test's own server ([`use_own`]). Every
/// `courier` a test runs gets them, and they are what in-process clients load
/// their config with; none for plaintext servers.
pub fn client_env() -> Vec<(String, String)> {
    let own = OWN.lock().unwrap_or_else(|e| e.into_inner());
    [
        courier_pipeline::testing::KAFKA,
        courier_pipeline::testing::CASSANDRA,
    ]
    .iter()
    .flat_map(
        |server| match own.iter().find(|(s, _)| *s == server.service) {
            Some((_, env)) => env.clone(),
            None => server.client_env(),
        },
    )
    .collect()
}

/// Client settings for the Kafka at `brokers`, logged in as [`client_env`] says.
pub fn kafka_settings(brokers: &str) -> courier_pipeline::KafkaSettings {
    let env: Vec<(String, String)> = client_env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("COURIER_KAFKA__"))
        .collect();
    courier_pipeline::testing::kafka_settings_by(&env, brokers)
}

/// `settings` with the TLS and login [`client_env`] gives Cassandra.
pub fn cassandra_secured(
    settings: courier_sinks::inbox::CassandraSettings,
) -> courier_sinks::inbox::CassandraSettings {
    let env: Vec<(String, String)> = client_env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("COURIER_CASSANDRA__"))
        .collect();
    courier_sinks::testing::secured_by(settings, &env)
}

/// From now on, [`client_env`] (and so every `courier` started) reaches
/// `service` as its own server's `courier.env` says, until [`forget_own`].
pub fn use_own(service: &'static str, env: Vec<(String, String)>) {
    let mut own = OWN.lock().unwrap_or_else(|e| e.into_inner());
    own.retain(|(s, _)| *s != service);
    own.push((service, env));
}

/// Back to compose/local's `service`.
pub fn forget_own(service: &str) {
    OWN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(s, _)| *s != service);
}

/// Stdout of a command that must succeed; on failure, everything it printed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "courier failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf8 stdout")
}

/// A namespace no other run on the shared Kafka and Cassandra uses:
/// `PREFIX_PID_NANOS`.
pub fn unique_namespace(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{nanos}", std::process::id())
}

/// `courier` pointed at `data` with the config file `config`.
pub fn configured(data: &Path, config: &Path) -> Command {
    let mut c = courier(data);
    c.arg("--config").arg(config);
    c
}

/// Writes `DIR/NAME.toml`: the Kafka log at `brokers` in the namespace
/// `namespace`, then `more` (other sections, e.g. `[runner]`), and returns its path.
pub fn kafka_config(dir: &Path, name: &str, namespace: &str, brokers: &str, more: &str) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "namespace = \"{namespace}\"\n[log]\nbackend = \"kafka\"\n[kafka]\nbrokers = \"{brokers}\"\n{more}"
        ),
    )
    .unwrap();
    path
}

/// The `[views]` and `[cassandra]` sections putting the views in the Cassandra
/// at `contact_points` (for [`kafka_config`]'s `more`).
pub fn cassandra_views(contact_points: &str) -> String {
    format!(
        "[views]\nbackend = \"cassandra\"\n[cassandra]\ncontact_points = \"{contact_points}\"\n"
    )
}

/// The entries of `dir` (none if it does not exist): what a run left behind.
pub fn entries(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

/// A child process killed and reaped on drop, so a failed assertion leaves no
/// `courier` behind.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The address a live `run search --serve` instance says it serves on, from the
/// rest of its log lines (`Live::rest`).
pub fn search_serves(rest: &std::sync::mpsc::Receiver<String>) -> String {
    let line = loop {
        let l = rest
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the instance says where it serves search");
        if l.contains("serving search shards") {
            break l;
        }
    };
    line.rsplit("addr=")
        .next()
        .and_then(|a| a.split_whitespace().next())
        .expect("the line names its address")
        .to_string()
}

/// Writes lines to `dir/name`.
pub fn write_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    p
}

/// Reads a child's output lines until one satisfies `pred`; returns it.
pub fn wait_for_line(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    what: &str,
    pred: impl Fn(&str) -> bool,
) -> String {
    for line in lines.by_ref() {
        let line = line.expect("read child output");
        if pred(&line) {
            return line;
        }
    }
    panic!("the process ended before printing {what}");
}

/// GET /metrics over a plain socket: the whole answer, empty while the endpoint
/// is not up.
pub fn metrics_text(addr: &str) -> String {
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return String::new();
    };
    // A wedged process must fail the caller's deadline, not hang the test.
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let _ = s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes());
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

/// The sum of the samples of metric `name` whose labels include every one of
/// `labels` (`key="value"`), in a `/metrics` answer.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|want| l.contains(want))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// GET /metrics over a plain socket and sum a processor's event counter (0 while
/// the endpoint is not up).
pub fn processed_so_far(addr: &str, processor: &str) -> u64 {
    let body = metrics_text(addr);
    let label = format!("processor=\"{processor}\"");
    body.lines()
        .filter(|l| l.starts_with("courier_processor_events_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// A live `courier run PROCESSOR`: the child, its metrics address, and the rest of
/// its stderr (drained by a thread so the child never blocks on a full pipe).
pub struct Live {
    /// The process.
    pub child: std::process::Child,
    /// Where its `/metrics` answers.
    pub addr: String,
    /// Its stderr lines after the ones `spawn_live` waited for.
    pub rest: std::sync::mpsc::Receiver<String>,
}

/// Starts `cmd run PROCESSOR` with metrics on a free port and returns once it
/// serves them and, if given, has printed a line containing `until`.
pub fn spawn_live(cmd: &mut Command, processor: &str, until: Option<&str>) -> Live {
    use std::io::BufRead;
    let mut child = cmd
        .args(["run", processor])
        .env("COURIER_METRICS_LISTEN", "127.0.0.1:0")
        .env("COURIER_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let line = wait_for_line(&mut err, "the metrics address", |l| {
        l.contains("serving /metrics")
    });
    let addr = line
        .rsplit("addr=")
        .next()
        .and_then(|a| a.split_whitespace().next())
        .expect("the metrics line names its address")
        .to_string();
    if let Some(until) = until {
        wait_for_line(&mut err, until, |l| l.contains(until));
    }
    let (tx, rest) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in err.map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    Live { child, addr, rest }
}

/// Waits (up to two minutes, then fails) until `processor` at `addr` has applied at
/// least `at_least` records.
pub fn await_progress(addr: &str, processor: &str, at_least: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while processed_so_far(addr, processor) < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "{processor} made no progress"
        );
        std::thread::yield_now();
    }
}

/// A tiny deterministic generator for generated streams (no dependency): a 64-bit
/// LCG, so a failing seed reproduces everywhere.
pub struct Rng(pub u64);

impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// Deletes a test's Kafka namespace (its topics), leaving the shared broker as we
/// found it.
pub fn delete_namespace(brokers: &str, namespace: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        courier_pipeline::KafkaLog::new(
            kafka_settings(brokers).with_namespace(namespace.to_string()),
            courier_topics::Catalog::builtin(),
        )
        .unwrap()
        .delete_namespace()
        .await
        .unwrap();
    });
}

/// Drops a test's Kafka namespace and every keyspace of its views (base and
/// generations), leaving the shared servers as we found them.
pub fn drop_distributed(config: &Path, brokers: &str, cassandra: &str, namespace: &str) {
    delete_namespace(brokers, namespace);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let cfg = courier_app::config::Config::load(Some(config), Vec::new()).unwrap();
        let base = cfg.cassandra_keyspace().unwrap();
        let settings = cassandra_secured(courier_sinks::inbox::CassandraSettings::new(
            cassandra,
            base.clone(),
        ));
        let session = courier_sinks::inbox::cassandra::connect(&settings)
            .await
            .unwrap();
        let generations = courier_sinks::inbox::CassandraGenerations::connect(&settings)
            .await
            .unwrap();
        for g in generations.on_cluster().await.unwrap() {
            let ks = courier_sinks::inbox::cassandra_generations::keyspace_of(&base, g).unwrap();
            session
                .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
                .await
                .unwrap();
        }
        session
            .query_unpaged(format!("DROP KEYSPACE IF EXISTS {base}"), ())
            .await
            .unwrap();
    });
}
