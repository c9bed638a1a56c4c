//! The `courier` binary as the harness drives it: one command builder per run
//! (its data directory and environment), children that are SIGKILLed and reaped
//! when dropped, and a processor's progress read from its `/metrics`.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How to run `courier` for one schedule.
pub struct Courier {
    pub bin: PathBuf,
    pub data: PathBuf,
    /// Where each child's stderr goes, one file per process.
    pub logs: PathBuf,
    pub env: Vec<(String, String)>,
    spawned: usize,
}

/// A port nothing listens on right now, for a child to serve on (its address is
/// then known without parsing its output).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Courier {
    pub fn new(bin: PathBuf, dir: &Path, env: Vec<(String, String)>) -> Courier {
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).expect("the logs directory");
        Courier {
            bin,
            data: dir.join("data"),
            logs,
            env,
            spawned: 0,
        }
    }

    /// `courier --data DATA` with the schedule's environment and nothing leaking
    /// in from the harness's own (a `COURIER_*` there would change every run).
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--data").arg(&self.data);
        for (k, _) in std::env::vars() {
            if k.starts_with("COURIER_") {
                c.env_remove(k);
            }
        }
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.stdin(Stdio::null());
        c
    }

    /// Runs to the end; its output.
    pub fn output(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.bin.display()))
    }

    /// Stdout of a command that must succeed; otherwise what it said.
    pub fn ok(&self, args: &[&str]) -> Result<String, String> {
        let out = self.output(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "`courier {}` failed ({}): {}",
                args.join(" "),
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr), 8)
            ))
        }
    }

    /// Starts `courier ARGS` in the background with its stderr in a log file
    /// of its own and, if `metrics`, `/metrics` on a port of its own.
    pub fn spawn(&mut self, args: &[&str], metrics: bool) -> Proc {
        self.spawned += 1;
        let name = format!(
            "{:03}-{}.log",
            self.spawned,
            args.join("-").replace('/', "_")
        );
        let log = self.logs.join(name);
        let mut cmd = self.command();
        let addr = metrics.then(|| format!("127.0.0.1:{}", free_port()));
        if let Some(a) = &addr {
            cmd.env("COURIER_METRICS_LISTEN", a);
        }
        let child = cmd
            .args(args)
            .env("COURIER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(File::create(&log).expect("a log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        Proc {
            child: Some(child),
            what: format!("courier {}", args.join(" ")),
            metrics: addr,
            log,
        }
    }
}

/// The last `n` lines of a text.
pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running child: SIGKILLed and reaped on drop, so nothing outlives a
/// failed schedule.
pub struct Proc {
    child: Option<Child>,
    pub what: String,
    metrics: Option<String>,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its exit status if it ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// SIGKILL (no-op if it already ended), then reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("a live child");
        let _ = c.kill();
        c.wait().expect("reaping a child")
    }

    /// Reaps it after someone else killed it or it ended.
    pub fn wait(&mut self) -> ExitStatus {
        self.child
            .take()
            .expect("a live child")
            .wait()
            .expect("reaping a child")
    }

    /// SIGTERM, then waits up to `limit` for it to end; SIGKILL after that
    /// (`Err` says so).
    pub fn terminate(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        // SAFETY: kill(2) on our own unreaped child's pid, which cannot have
        // been reused while we have not waited for it.
        unsafe {
            libc::kill(self.pid() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.exited() {
                self.child = None;
                return Ok(s);
            }
            if Instant::now() > deadline {
                let s = self.kill();
                return Err(format!(
                    "{} did not stop within {limit:?} of SIGTERM (then SIGKILLed: {s})",
                    self.what
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The last lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), n)
    }

    /// Records it has applied so far (`courier_processor_events_total` for the
    /// label `processor`), 0 while `/metrics` is not up yet.
    pub fn applied(&self, processor: &str) -> u64 {
        let Some(addr) = &self.metrics else { return 0 };
        let Ok(body) = get(addr, "/metrics") else {
            return 0;
        };
        let label = format!("processor=\"{processor}\"");
        body.lines()
            .filter(|l| l.starts_with("courier_processor_events_total{") && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A plain GET's body (HTTP/1.0, so the server closes; no client library).
fn get(addr: &str, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    // A wedged process must not hang the harness: the caller's deadline rules.
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}
