//! `courier bench --instances N`: the processors as a deployment scales them out,
//! N child processes (`courier run P`) per processor, each a member of its
//! processor's consumer group with a data directory of its own, killable with
//! SIGKILL mid-run.
//!
//! Children share the run's namespace (topics, groups, keyspace) through
//! `COURIER_NAMESPACE` and get the parent's config file, so they run exactly what
//! `courier run` would. Their logs go to files under the run's directory (kept
//! with `--keep`); a child that exits on its own fails the run with the end of
//! its log.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::config::{Backend, ViewsBackend};
use anyhow::Context;
use courier_sinks::inbox::Generations;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::registry::Processor;

/// One child process.
struct Member {
    processor: Processor,
    index: usize,
    child: Child,
    /// Its `data_dir`.
    config: Config,
    log: PathBuf,
    /// It logged a non-empty partition assignment.
    assigned: Arc<AtomicBool>,
    killed: bool,
}

/// Every child of a run.
pub struct Fleet {
    members: Vec<Member>,
}

impl Fleet {
    /// Starts `n` instances of each processor. `root` holds their data
    /// directories and logs; `config_path` is the config file this process read.
    pub fn spawn(
        config: &Config,
        config_path: Option<&Path>,
        processors: &[Processor],
        n: usize,
        root: &Path,
    ) -> anyhow::Result<Fleet> {
        if config.log.backend != Backend::Kafka {
            anyhow::bail!(
                "--instances runs processors as separate processes sharing consumer groups, \
                 which needs the Kafka log (log.backend = \"kafka\"); the embedded log belongs \
                 to one process"
            );
        }
        let exe = std::env::current_exe().context("finding the courier executable")?;
        let mut members = Vec::new();
        for &processor in processors {
            for index in 1..=n {
                let name = format!("{}-{index}", processor.name());
                let mut member_config = config.clone();
                member_config.data_dir = root.join(&name);
                std::fs::create_dir_all(&member_config.data_dir)
                    .with_context(|| format!("creating {}", member_config.data_dir.display()))?;
                let log = root.join(format!("{name}.log"));
                let mut cmd = Command::new(&exe);
                if let Some(p) = config_path {
                    cmd.arg("--config").arg(p);
                }
                cmd.args(["run", processor.name()])
                    .env("COURIER_NAMESPACE", &config.namespace)
                    .env("COURIER_DATA_DIR", &member_config.data_dir)
                    .env("COURIER_LOG_BACKEND", "kafka")
                    .env("COURIER_KAFKA_BROKERS", &config.kafka.brokers)
                    .env(
                        "COURIER_VIEWS_BACKEND",
                        match config.views.backend {
                            ViewsBackend::Cassandra => "cassandra",
                            ViewsBackend::Rocksdb => "rocksdb",
                        },
                    )
                    .env(
                        "COURIER_CASSANDRA_CONTACT_POINTS",
                        &config.cassandra.contact_points,
                    )
                    // A fixed metrics port in the config would collide between
                    // instances; the bench measures them itself.
                    .env("COURIER_METRICS_LISTEN", "")
                    .env("COURIER_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true);
                let mut child = cmd.spawn().with_context(|| {
                    format!("starting {} run {}", exe.display(), processor.name())
                })?;
                let assigned = Arc::new(AtomicBool::new(false));
                if let Some(stderr) = child.stderr.take() {
                    let file = std::fs::File::create(&log)
                        .with_context(|| format!("creating {}", log.display()))?;
                    tokio::spawn(copy_log(stderr, file, assigned.clone()));
                }
                members.push(Member {
                    processor,
                    index,
                    child,
                    config: member_config,
                    log,
                    assigned,
                    killed: false,
                });
            }
        }
        Ok(Fleet { members })
    }

    /// Every instance holds partitions: the groups are balanced, so load sent
    /// now is not moved between instances by a late join.
    pub fn all_assigned(&self) -> bool {
        self.members
            .iter()
            .all(|m| m.assigned.load(Ordering::Relaxed))
    }

    /// Fails if an instance that was not killed on purpose has exited.
    pub fn check(&mut self) -> anyhow::Result<()> {
        for m in &mut self.members {
            if m.killed {
                continue;
            }
            if let Some(status) = m.child.try_wait()? {
                let tail = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(10).collect();
                anyhow::bail!(
                    "instance {}-{} exited during the run ({status}); the end of {}:\n{}",
                    m.processor.name(),
                    m.index,
                    m.log.display(),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        Ok(())
    }

    /// SIGKILLs the last instance of every processor (no leave, no commit: the
    /// group notices when its session times out); returns their names.
    pub async fn kill_last(&mut self) -> anyhow::Result<Vec<String>> {
        let last = self.members.iter().map(|m| m.index).max().unwrap_or(0);
        let mut killed = Vec::new();
        for m in self.members.iter_mut().filter(|m| m.index == last) {
            m.child
                .kill()
                .await
                .with_context(|| format!("killing instance {}-{}", m.processor.name(), m.index))?;
            m.killed = true;
            killed.push(format!("{}-{}", m.processor.name(), m.index));
        }
        Ok(killed)
    }

    /// The current search view directory of every live search instance (each
    /// serves the shards of its partitions from there).
    pub fn search_roots(&self) -> Vec<PathBuf> {
        self.members
            .iter()
            .filter(|m| matches!(m.processor, Processor::Search) && !m.killed)
            .map(|m| {
                let g = Generations::new(m.config.view_dir("search"));
                // A CURRENT that cannot be read yet: the first generation.
                g.current_dir().unwrap_or_else(|_| g.dir(0))
            })
            .collect()
    }

    /// Stops every instance. The run's namespace is deleted next, so nothing
    /// they would commit on a graceful stop is worth waiting for.
    pub async fn stop(self) {
        for mut m in self.members {
            if !m.killed {
                let _ = m.child.kill().await;
            }
        }
    }
}

/// Copies a child's stderr to its log file, noting its first partition
/// assignment.
async fn copy_log(
    stderr: tokio::process::ChildStderr,
    mut file: std::fs::File,
    assigned: Arc<AtomicBool>,
) {
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.contains("partitions assigned") && !line.contains("partitions=[]") {
            assigned.store(true, Ordering::Relaxed);
        }
        let _ = writeln!(file, "{line}");
    }
}
