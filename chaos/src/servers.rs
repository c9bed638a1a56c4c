//! The Kafka broker and the Cassandra node of the Kafka + Cassandra schedules:
//! the harness's own, started by compose/local's scripts on ports and under a
//! state directory of their own, so that killing them never touches the servers
//! other tests use. One pair serves a whole batch; each schedule keeps to its
//! own namespace (topics, groups and keyspace).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use courier_chaos::schedule::Server;

use crate::courier::free_port;

pub struct Servers {
    /// compose/local (up.sh, down.sh).
    scripts: PathBuf,
    state: PathBuf,
    kafka: [u16; 2],
    cassandra: [u16; 3],
}

impl Servers {
    /// Starts both under `state`, returning once both serve. Whatever an
    /// earlier batch left there (one killed before it could stop its servers)
    /// is stopped and wiped first.
    pub fn start(scripts: &Path, state: &Path) -> Result<Servers, String> {
        std::fs::create_dir_all(state).map_err(|e| format!("{}: {e}", state.display()))?;
        let s = Servers {
            scripts: scripts.to_path_buf(),
            state: state.to_path_buf(),
            kafka: [free_port(), free_port()],
            cassandra: [free_port(), free_port(), free_port()],
        };
        s.script("down.sh", &["--wipe", "kafka", "cassandra"])?;
        s.script("up.sh", &["kafka", "cassandra"])?;
        Ok(s)
    }

    fn script(&self, name: &str, args: &[&str]) -> Result<(), String> {
        let mut cmd = Command::new(self.scripts.join(name));
        cmd.args(args)
            .env("COURIER_LOCAL_STATE", &self.state)
            .env("COURIER_KAFKA_PORT", self.kafka[0].to_string())
            .env("COURIER_KAFKA_CONTROLLER_PORT", self.kafka[1].to_string())
            .env("COURIER_CASSANDRA_PORT", self.cassandra[0].to_string())
            .env(
                "COURIER_CASSANDRA_STORAGE_PORT",
                self.cassandra[1].to_string(),
            )
            .env("COURIER_CASSANDRA_JMX_PORT", self.cassandra[2].to_string())
            // Secured, like every server compose/local starts by default.
            .env_remove("COURIER_LOCAL_PLAINTEXT")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let out = cmd
            .output()
            .map_err(|e| format!("{}: {e}", self.scripts.join(name).display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{name} {}: {}",
                args.join(" "),
                crate::courier::tail(&String::from_utf8_lossy(&out.stderr), 8)
            ))
        }
    }

    /// The environment that points courier at them (its log, its inbox views,
    /// their TLS and logins) in `namespace`.
    pub fn client_env(&self, namespace: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("COURIER_LOG__BACKEND", "kafka".to_string()),
            (
                "COURIER_KAFKA__BROKERS",
                format!("127.0.0.1:{}", self.kafka[0]),
            ),
            ("COURIER_KAFKA__REPLICATION_FACTOR", "1".into()),
            // A member killed without leaving is replaced after this (the
            // broker's lowest); the killed inbox instance comes back sooner,
            // by its group.instance.id.
            (
                "COURIER_KAFKA__PROPERTIES__SESSION_TIMEOUT_MS",
                "6000".into(),
            ),
            ("COURIER_VIEWS__BACKEND", "cassandra".into()),
            (
                "COURIER_CASSANDRA__CONTACT_POINTS",
                format!("127.0.0.1:{}", self.cassandra[0]),
            ),
            ("COURIER_CASSANDRA__REPLICATION_FACTOR", "1".into()),
            ("COURIER_NAMESPACE", namespace.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for server in [Server::Kafka, Server::Cassandra] {
            env.extend(courier_pipeline::testing::client_env_in(
                &self.state.join(server.name()),
            ));
        }
        env
    }

    /// `kill -9`, and waits until the process is gone.
    pub fn kill_9(&self, server: Server) -> Result<(), String> {
        let dir = self.state.join(server.name());
        let pid_file = dir.join(format!("{}.pid", server.name()));
        let pid = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("{}: {e}", pid_file.display()))?
            .trim()
            .to_string();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .map_err(|e| format!("kill: {e}"))?;
        if !status.success() {
            return Err(format!("kill -9 {pid} ({}) failed", server.name()));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                return Err(format!("{} ({pid}) outlived kill -9", server.name()));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Starts a killed server again, returning once it serves clients.
    pub fn restart(&self, server: Server) -> Result<(), String> {
        self.script("up.sh", &[server.name()])
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        let _ = self.script("down.sh", &["--wipe", "kafka", "cassandra"]);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}
