//! One schedule, run: its traffic into the log, its processors brought to the
//! end with their kills, `courier up` killed under HTTP clients, rebuilds
//! killed; then the checks: the log holds what was acknowledged and nothing
//! else, every view equals the reference fold of the log, every push job was
//! delivered (again only after a kill), and the dead letters are the rejected
//! events.
//!
//! Waiting is always for a condition with a deadline: a processor's applied
//! count on its `/metrics`, the provider's answers, the gateway's health, a
//! child's exit. A deadline that passes is a difference (the part stopped
//! making progress), never a hang of the harness.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use courier_chaos::check::{self, Job, JobKey, Sample, Views};
use courier_chaos::model::Model;
use courier_chaos::rng::Rng;
use courier_chaos::schedule::{
    Backend, Faults, Kill, Phase, Processor, Run, Schedule, Server, View, processors_arg,
};
use courier_schemas::Event;
use courier_schemas::json::parse_line;
use courier_schemas::proto::event::Body;
use serde_json::{Value, json};

use crate::courier::{Courier, Proc, free_port};
use crate::http;
use crate::provider::{Provider, Trigger};
use crate::servers::Servers;
use crate::traffic::{Expect, Request, Traffic};

/// How long any one step may take before it counts as stuck.
const STEP_LIMIT: Duration = Duration::from_secs(300);
/// Between two reads of a condition that has no signal (a child's metrics).
const POLL: Duration = Duration::from_millis(5);

/// What the harness was asked.
pub struct Options {
    pub bin: PathBuf,
    /// Keep every schedule's directory (failed ones are always kept).
    pub keep: bool,
    /// Where schedules' directories go.
    pub work: PathBuf,
    /// The Kafka broker and Cassandra node (Kafka + Cassandra schedules).
    pub servers: Option<Servers>,
}

/// What one schedule did and found.
#[derive(Debug, Default)]
pub struct Report {
    pub differences: Vec<String>,
    /// Faults injected (kills that happened; provider answers given).
    pub faults: Faults,
    /// Kills whose moment never came (the process finished first).
    pub skipped_kills: u64,
    pub extra_pushes: u64,
    pub pushes: usize,
    pub events: u64,
    pub duplicates: u64,
    pub invalid: u64,
    pub http_requests: u64,
    pub http_retried: u64,
    /// Gateway sends found in the log more than once (each still applied once).
    pub republished_sends: u64,
    /// View queries asked, and the rows (inbox rows, history entries, search
    /// hits) the answers had to hold.
    pub queries: u64,
    pub rows: u64,
    pub duration: Duration,
    /// The schedule's directory, when kept.
    pub dir: Option<PathBuf>,
}

/// One HTTP request of a gateway phase, and what happened to it.
struct HttpRecord {
    phase: usize,
    user: String,
    request: Request,
    expect: Expect,
    answer: Option<(u16, String)>,
    /// Connection failures or 5xx before the answer (kills it rode out).
    retries: u32,
    /// Which `courier up` of the phase answered (0 the first, 1 after a kill…).
    generation: u64,
}

struct Driver<'a> {
    s: &'a Schedule,
    servers: Option<&'a Servers>,
    courier: Courier,
    provider: Provider,
    traffic: Traffic,
    model: Model,
    rng: Rng,
    report: Report,
    /// Processes delivering pushes (by the provider's numbers) that were
    /// SIGKILLed.
    push_killed: BTreeSet<u64>,
    /// Valid events the harness produced: `event_id` → phase.
    file_events: BTreeMap<String, usize>,
    http: Vec<HttpRecord>,
    /// Who was online when each phase's messages were judged by notify.
    online: Vec<BTreeSet<String>>,
    /// Records on each topic the processors read, as of the last refresh.
    conversations: u64,
    presence: u64,
    /// Set when a step failed so that nothing after it can be trusted.
    aborted: bool,
    started: Instant,
}

/// Runs `s`; its report.
pub fn run(s: &Schedule, opts: &Options) -> Report {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.work).expect("the work directory");
    let dir = tempfile::Builder::new()
        .prefix(&format!("seed-{}-", s.seed))
        .tempdir_in(&opts.work)
        .expect("a schedule directory");
    let provider = Provider::start(s);
    let env = vec![
        ("COURIER_RUNNER__MAX_BATCH".into(), s.max_batch.to_string()),
        ("COURIER_PUSH__ENDPOINT".into(), provider.url.clone()),
        // A timeout of 1.5 s keeps a schedule short yet far above an answer's
        // time on a loaded machine (an answer courier gave up on would be
        // delivered twice by design); enough attempts that no job of a short
        // fault window is dead-lettered.
        ("COURIER_PUSH__TIMEOUT_MS".into(), "1500".into()),
        ("COURIER_PUSH__MAX_ATTEMPTS".into(), "30".into()),
        // The clients are few and fast; rate limits are not what is tested.
        ("COURIER_GATEWAY__USER_RATE_PER_SEC".into(), "100000".into()),
        ("COURIER_GATEWAY__USER_BURST".into(), "100000".into()),
        ("COURIER_GATEWAY__IP_RATE_PER_SEC".into(), "100000".into()),
        ("COURIER_GATEWAY__IP_BURST".into(), "100000".into()),
    ];
    let mut env = env;
    let servers = match (s.backend, &opts.servers) {
        (Backend::Embedded, _) => None,
        (Backend::KafkaCassandra, Some(servers)) => {
            // Topics, groups and the keyspace of this schedule alone.
            env.extend(servers.client_env(&format!("chaos{}", s.seed)));
            Some(servers)
        }
        (Backend::KafkaCassandra, None) => panic!("Kafka + Cassandra schedules need servers"),
    };
    let mut d = Driver {
        s,
        servers,
        courier: Courier::new(opts.bin.clone(), dir.path(), env),
        provider,
        traffic: Traffic::new(s),
        model: Model::new(),
        rng: Rng::new(s.seed ^ 0x5EED_C4EC),
        report: Report::default(),
        push_killed: BTreeSet::new(),
        file_events: BTreeMap::new(),
        http: Vec::new(),
        online: Vec::new(),
        conversations: 0,
        presence: 0,
        aborted: false,
        started,
    };
    if d.servers.is_some() {
        for args in [&["topics", "apply"][..], &["migrate"]] {
            if let Err(e) = d.courier.ok(args) {
                d.abort(format!("{}: {e}", args.join(" ")));
            }
        }
    }
    for (i, phase) in s.phases.iter().enumerate() {
        if d.aborted {
            break;
        }
        match phase {
            Phase::File {
                messages,
                churn,
                duplicates,
                invalid,
                runs,
            } => {
                d.file_phase(i, *messages, *churn, *duplicates, *invalid);
                d.runs(runs);
                d.quick_check(i);
            }
            Phase::Gateway {
                clients,
                messages,
                inside,
                kills,
                runs,
            } => {
                d.gateway_phase(i, *clients, *messages, inside, kills);
                d.runs(runs);
                d.quick_check(i);
            }
            Phase::Rebuild { view, kill, finish } => {
                d.online.push(d.model.online());
                d.rebuild_phase(*view, *kill, *finish);
            }
        }
        if d.aborted {
            break;
        }
    }
    if !d.aborted {
        d.final_checks();
    }
    d.report.faults.add(&d.provider.faults());
    d.report.duration = started.elapsed();
    let mut report = d.report;
    if opts.keep || !report.differences.is_empty() {
        report.dir = Some(dir.keep());
    }
    report
}

impl Driver<'_> {
    /// A line of the schedule's own log (`logs/driver.log`): what the driver
    /// did and when, beside each process's log.
    fn note(&self, what: &str) {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.courier.logs.join("driver.log"))
        {
            let _ = writeln!(f, "{:>8.3} s  {what}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Every inbox and presence once a traffic phase's processors are done.
    fn quick_check(&mut self, i: usize) {
        if !self.aborted {
            self.check_views(0, false, &format!("after phase {i}"));
        }
    }

    fn differ(&mut self, what: String) {
        self.note(&format!("DIFFERENCE: {what}"));
        self.report.differences.push(what);
    }

    /// A step failed in a way that leaves nothing to compare.
    fn abort(&mut self, what: String) {
        self.differ(what);
        self.aborted = true;
    }

    // ---- traffic ----

    fn file_phase(&mut self, i: usize, messages: usize, churn: usize, dups: usize, invalid: usize) {
        let before = self.conversations + self.presence;
        let t = self
            .traffic
            .file(&self.model, messages, churn, dups, invalid);
        for id in &t.valid {
            self.file_events.entry(id.clone()).or_insert(i);
        }
        self.report.events += t.valid.len() as u64;
        self.report.duplicates += dups as u64;
        self.report.invalid += invalid as u64;
        let path = self.courier.logs.join(format!("phase-{i}.jsonl"));
        std::fs::write(&path, t.lines.join("\n") + "\n").expect("writing the traffic");
        let file = path.to_string_lossy().into_owned();
        // All or nothing first: a file with a line that does not parse publishes
        // nothing (DESIGN, "Delivery guarantees").
        if t.malformed > 0 {
            let out = self.courier.output(&["produce", "--file", &file]);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() || !err.contains("nothing was published") {
                self.differ(format!(
                    "phase {i}: produce of a file with {} bad line(s) did not refuse it whole: {}",
                    t.malformed,
                    crate::courier::tail(&err, 3)
                ));
            }
        }
        match self
            .courier
            .ok(&["produce", "--file", &file, "--skip-invalid"])
        {
            Ok(out) => {
                let want = format!("published {} event(s)", t.valid.len());
                if !out.contains(&want) {
                    self.differ(format!("phase {i}: produce said {out:?}, want {want:?}"));
                }
            }
            Err(e) => return self.abort(format!("phase {i}: {e}")),
        }
        self.refresh();
        let after = self.conversations + self.presence;
        if after != before + t.valid.len() as u64 {
            self.differ(format!(
                "phase {i}: the log grew by {} records for {} valid lines",
                after - before,
                t.valid.len()
            ));
        }
        self.online.push(self.model.online());
    }

    /// The log again, folded from its start into a fresh model.
    fn refresh(&mut self) {
        let mut m = Model::new();
        let mut counts = [0u64; 2];
        for (n, topic) in ["courier.conversations.v1", "courier.presence.v1"]
            .iter()
            .enumerate()
        {
            for e in self.replay(topic) {
                m.apply(&e);
                counts[n] += 1;
            }
        }
        self.model = m;
        [self.conversations, self.presence] = counts;
    }

    fn replay(&mut self, topic: &str) -> Vec<Event> {
        match self.courier.ok(&["replay", topic, "--format", "json"]) {
            Ok(out) => out
                .lines()
                .filter_map(|l| match parse_line(l) {
                    Ok(e) => Some(e),
                    Err(e) => {
                        self.report.differences.push(format!(
                            "replay {topic}: a line that does not parse ({e}): {l}"
                        ));
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.abort(format!("replay {topic}: {e}"));
                Vec::new()
            }
        }
    }

    // ---- processors ----

    /// Records `p`'s group has left to apply: its lag, as `courier lag` reads
    /// the committed offsets (nothing else runs on the embedded log now). 0 if
    /// it cannot tell, which only makes a kill land at once.
    fn pending(&self, p: Processor) -> u64 {
        let Ok(out) = self.courier.ok(&["lag", "--json"]) else {
            return 0;
        };
        let name = format!("courier.{}", p.name());
        let generation = format!("{name}.g");
        serde_json::from_str::<Value>(&out)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter(|row| {
                row["group"]
                    .as_str()
                    .is_some_and(|g| g == name || g.starts_with(&generation))
            })
            .filter_map(|row| row["lag"].as_u64())
            .sum()
    }

    fn runs(&mut self, runs: &[Run]) {
        for r in runs {
            if self.aborted {
                return;
            }
            self.run(r);
        }
    }

    /// One processor to the end of the log: each kill in turn, each time in a
    /// fresh `run --until-caught-up`, then one more that must end by itself.
    /// With `pair`, a second instance works in the group from start to end.
    /// With an outage, a server is killed and restarted first, under the
    /// run's first instance, while the whole run's work is still pending; that
    /// instance then goes on to the first kill, or to the end.
    fn run(&mut self, r: &Run) {
        let p = r.processor;
        // On Kafka the killed instance comes back under the same
        // group.instance.id and takes its partitions back at once.
        let id = format!("chaos-{}-a", p.name());
        let plain = ["run", p.name(), "--until-caught-up"];
        let mut args = plain.to_vec();
        if self.servers.is_some() {
            args.splice(0..0, ["--instance-id", id.as_str()]);
        }
        // The second instance starts just after the first, so that the group
        // splits the work between them.
        let mut paired: Option<Proc> = None;
        let mut current: Option<Proc> = None;
        if let Some(o) = r.outage {
            let at = (self.pending(p) * o.at as u64 / 1000).max(1);
            let mut proc = self.courier.spawn(&args, true);
            self.pair(r, &plain, &mut paired);
            self.note(&format!(
                "{}: kill -9 {} once the group applied {at}",
                proc.what,
                o.server.name()
            ));
            match self.await_applied(&mut proc, paired.as_ref(), p.name(), at) {
                Ok(Some(_)) => {
                    if let Err(e) = self.outage(o.server) {
                        return self.abort(e);
                    }
                    current = Some(proc);
                }
                Ok(None) => {
                    self.note(&format!("{} ended before the outage", p.name()));
                    self.report.skipped_kills += 1;
                }
                Err(e) => return self.abort(e),
            }
        }
        for kill in &r.kills {
            let mut pending = self.pending(p);
            if r.pair {
                // Each instance applies about half.
                pending /= 2;
            }
            let (Kill::Applied(pm) | Kill::AfterAnswer(pm) | Kill::BeforeAnswer(pm)) = *kill;
            let mut at = (pending * pm as u64 / 1000).max(1);
            let number = (p == Processor::Push).then(|| self.provider.begin_process());
            let mut proc = match current.take() {
                // Outages are drawn for processors other than push, whose
                // kills count answers from the process's start.
                Some(proc) => {
                    at += proc.applied(p.name());
                    proc
                }
                None => self.courier.spawn(&args, true),
            };
            self.pair(r, &plain, &mut paired);
            self.note(&format!(
                "{}: {pending} pending; SIGKILL {kill} = at {at}",
                proc.what
            ));
            let killed = match kill {
                Kill::Applied(_) => self.kill_at_applied(&mut proc, p.name(), at),
                _ => self.kill_at_answer(&mut proc, at, matches!(kill, Kill::AfterAnswer(_))),
            };
            match killed {
                Ok(Some(_)) => {
                    self.note(&format!("SIGKILLed {}", p.name()));
                    if let Some(n) = number {
                        self.report.faults.push_kills += 1;
                        self.push_killed.insert(n);
                    } else {
                        self.report.faults.processor_kills += 1;
                    }
                    self.report.faults.paired_kills += r.pair as u64;
                }
                Ok(None) => {
                    self.note(&format!("{} ended before the kill", p.name()));
                    self.report.skipped_kills += 1;
                }
                Err(e) => return self.abort(e),
            }
        }
        if p == Processor::Push {
            self.provider.begin_process();
        }
        let mut proc = match current.take() {
            Some(proc) => proc,
            None => self.courier.spawn(&args, false),
        };
        self.pair(r, &plain, &mut paired);
        if let Err(e) = self.await_exit(&mut proc) {
            return self.abort(e);
        }
        if let Some(mut b) = paired
            && let Err(e) = self.await_exit(&mut b)
        {
            self.abort(e);
        }
    }

    /// Starts the run's second instance, if it has one and it is not running.
    fn pair(&mut self, r: &Run, args: &[&str], paired: &mut Option<Proc>) {
        if r.pair && paired.is_none() {
            let b = self.courier.spawn(args, true);
            self.note(&format!("{}: the second instance", b.what));
            *paired = Some(b);
        }
    }

    /// A server killed with SIGKILL, then started again (returns once it
    /// serves clients; whatever runs meanwhile must ride it out).
    fn outage(&mut self, server: Server) -> Result<(), String> {
        let servers = self.servers.expect("outages only on Kafka + Cassandra");
        servers.kill_9(server)?;
        match server {
            Server::Kafka => self.report.faults.kafka_kills += 1,
            Server::Cassandra => self.report.faults.cassandra_kills += 1,
        }
        self.note(&format!("kill -9 {}; restarting it", server.name()));
        let started = Instant::now();
        servers.restart(server)?;
        self.note(&format!(
            "{} serves again after {:.1} s",
            server.name(),
            started.elapsed().as_secs_f64()
        ));
        Ok(())
    }

    /// Waits for a process that must end by itself, successfully.
    fn await_exit(&mut self, proc: &mut Proc) -> Result<(), String> {
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            if let Some(status) = proc.exited() {
                return if status.success() {
                    Ok(())
                } else {
                    Err(format!(
                        "{} failed ({status}):\n{}",
                        proc.what,
                        proc.log_tail(12)
                    ))
                };
            }
            if Instant::now() > deadline {
                proc.kill();
                return Err(format!(
                    "{} did not end within {STEP_LIMIT:?}:\n{}",
                    proc.what,
                    proc.log_tail(12)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL once `proc` applied `at` records: when it happened, or `None`
    /// if the process ended (successfully) first.
    fn kill_at_applied(
        &mut self,
        proc: &mut Proc,
        label: &str,
        at: u64,
    ) -> Result<Option<Instant>, String> {
        let reached = self.await_applied(proc, None, label, at)?;
        if reached.is_some() {
            proc.kill();
        }
        Ok(reached)
    }

    /// Waits until `proc` (with `other`, the second instance of its group, if
    /// any) applied `at` records: when it did, or `None` if `proc` ended
    /// (successfully) first, reaped.
    fn await_applied(
        &mut self,
        proc: &mut Proc,
        other: Option<&Proc>,
        label: &str,
        at: u64,
    ) -> Result<Option<Instant>, String> {
        let mut others = 0;
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            if let Some(status) = proc.exited() {
                proc.wait();
                return if status.success() {
                    Ok(None)
                } else {
                    Err(format!(
                        "{} failed ({status}):\n{}",
                        proc.what,
                        proc.log_tail(12)
                    ))
                };
            }
            // The second instance's count vanishes with it: keep its last.
            others = other.map_or(0, |o| o.applied(label).max(others));
            if proc.applied(label) + others >= at {
                return Ok(Some(Instant::now()));
            }
            if Instant::now() > deadline {
                proc.kill();
                return Err(format!(
                    "{} applied {} of the {at} records awaited within {STEP_LIMIT:?}:\n{}",
                    proc.what,
                    proc.applied(label),
                    proc.log_tail(12)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL by the provider around its `at`-th 2xx to `proc`.
    fn kill_at_answer(
        &mut self,
        proc: &mut Proc,
        at: u64,
        after_answer: bool,
    ) -> Result<Option<Instant>, String> {
        self.provider.arm(Trigger {
            pid: proc.pid(),
            at,
            after_answer,
        });
        let deadline = Instant::now() + STEP_LIMIT;
        let outcome = loop {
            if let Some(when) = self.provider.await_fired(Duration::from_millis(50)) {
                proc.wait();
                break Ok(Some(when));
            }
            if let Some(status) = proc.exited() {
                proc.wait();
                break if status.success() {
                    Ok(None)
                } else {
                    Err(format!(
                        "{} failed ({status}):\n{}",
                        proc.what,
                        proc.log_tail(12)
                    ))
                };
            }
            if Instant::now() > deadline {
                proc.kill();
                break Err(format!(
                    "{} had {} of the {at} pushes awaited accepted within {STEP_LIMIT:?}:\n{}",
                    proc.what,
                    self.provider.accepted(),
                    proc.log_tail(12)
                ));
            }
        };
        // A trigger that fired between the last look and the exit still counts.
        match (self.provider.disarm(), outcome) {
            (Some(when), Ok(None)) => Ok(Some(when)),
            (_, o) => o,
        }
    }

    // ---- the gateway ----

    /// `courier up` on a port of its own, once it answers `/healthz`; with the
    /// provider's number of its push delivery.
    fn start_up(&mut self, inside: &[Processor]) -> Result<(Proc, String, u64), String> {
        let number = self.provider.begin_process();
        let addr = format!("127.0.0.1:{}", free_port());
        let list = processors_arg(inside);
        let mut up = self
            .courier
            .spawn(&["up", "--listen", &addr, "--processors", &list], false);
        let deadline = Instant::now() + STEP_LIMIT;
        loop {
            if let Some(status) = up.exited() {
                return Err(format!(
                    "courier up exited ({status}):\n{}",
                    up.log_tail(12)
                ));
            }
            if http::request(&addr, "GET", "/healthz", None, None, &[])
                .is_ok_and(|a| a.status == 200)
            {
                return Ok((up, addr, number));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "courier up not healthy within {STEP_LIMIT:?}:\n{}",
                    up.log_tail(12)
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn gateway_phase(
        &mut self,
        i: usize,
        clients: usize,
        messages: usize,
        inside: &[Processor],
        kills: &[u32],
    ) {
        let plan = self.traffic.http(&self.model, messages);
        let mut tokens = BTreeMap::new();
        for user in plan.keys() {
            match self.courier.ok(&["token", user]) {
                Ok(t) => {
                    tokens.insert(user.clone(), t.trim().to_string());
                }
                Err(e) => return self.abort(e),
            }
        }
        let total: usize = plan.values().map(Vec::len).sum();
        self.report.http_requests += total as u64;
        let (mut up, addr, mut number) = match self.start_up(inside) {
            Ok(x) => x,
            Err(e) => return self.abort(format!("phase {i}: {e}")),
        };
        let shared = Arc::new((
            Mutex::new(Gate {
                addr,
                generation: 0,
                answered: 0,
                closed: false,
            }),
            Condvar::new(),
        ));
        // Users spread over the clients; each client keeps each user's order.
        let mut lanes: Vec<Vec<Signed<Plan>>> = vec![Vec::new(); clients];
        for (n, (user, list)) in plan.into_iter().enumerate() {
            let token = tokens[&user].clone();
            lanes[n % clients].push((user, token, list));
        }
        let handles: Vec<_> = lanes
            .into_iter()
            .map(|lane| {
                let shared = shared.clone();
                std::thread::spawn(move || client(lane, &shared))
            })
            .collect();
        let mut points: Vec<usize> = kills
            .iter()
            .map(|k| (total * *k as usize / 1000).max(1))
            .collect();
        points.sort();
        points.reverse();
        let (lock, cv) = &*shared;
        let mut last = (0, Instant::now());
        loop {
            let g = lock.lock().unwrap();
            let next = points.last().copied().unwrap_or(usize::MAX);
            // Woken by every answer; the timeout only paces the liveness checks.
            let (g, _) = cv
                .wait_timeout_while(g, Duration::from_millis(100), |g| {
                    g.answered < next && g.answered < total
                })
                .unwrap();
            let answered = g.answered;
            drop(g);
            if answered >= total {
                self.report.skipped_kills += points.len() as u64;
                break;
            }
            if answered > last.0 {
                last = (answered, Instant::now());
            } else if last.1.elapsed() > STEP_LIMIT {
                self.abort(format!(
                    "phase {i}: the gateway answered no request for {STEP_LIMIT:?}:\n{}",
                    up.log_tail(12)
                ));
                break;
            }
            let kill = answered >= next;
            let died = up.exited();
            if !kill && died.is_none() {
                continue;
            }
            if let Some(status) = died {
                self.differ(format!(
                    "phase {i}: courier up exited by itself ({status}):\n{}",
                    up.log_tail(12)
                ));
                up.wait();
            } else {
                points.pop();
                up.kill();
                self.note(&format!("SIGKILLed courier up after {answered} answers"));
                self.push_killed.insert(number);
                self.report.faults.up_kills += 1;
            }
            match self.start_up(inside) {
                Ok((next, addr, n)) => {
                    up = next;
                    number = n;
                    let mut g = lock.lock().unwrap();
                    g.addr = addr;
                    g.generation += 1;
                    cv.notify_all();
                }
                Err(e) => {
                    self.abort(format!("phase {i}: restarting: {e}"));
                    break;
                }
            }
        }
        if self.aborted {
            // The clients wait for a gateway that will not come back: let them
            // give up now rather than at their deadline.
            let mut g = lock.lock().unwrap();
            g.closed = true;
            cv.notify_all();
        }
        for h in handles {
            match h.join() {
                Ok(records) => {
                    for (user, request, expect, answer, retries, generation) in records {
                        self.http.push(HttpRecord {
                            phase: i,
                            user,
                            request,
                            expect,
                            answer,
                            retries,
                            generation,
                        });
                    }
                }
                Err(_) => self.differ(format!("phase {i}: an HTTP client panicked")),
            }
        }
        if self.aborted {
            return;
        }
        match up.terminate(Duration::from_secs(60)) {
            Ok(s) if s.success() => {}
            Ok(s) => self.differ(format!(
                "phase {i}: courier up ended with {s} on SIGTERM:\n{}",
                up.log_tail(12)
            )),
            Err(e) => self.differ(format!("phase {i}: {e}")),
        }
        self.refresh();
        self.online.push(self.model.online());
        self.check_answers(i);
    }

    /// Every request of phase `i` got the answer it must.
    fn check_answers(&mut self, i: usize) {
        let mut out = Vec::new();
        for r in self.http.iter().filter(|r| r.phase == i) {
            self.report.http_retried += (r.retries > 0) as u64;
            let what = format!(
                "phase {i}: {} as {} ({} in {}; {} retries; answered by courier up #{} of the phase)",
                match r.request {
                    Request::Send { .. } => "send",
                    Request::Edit { .. } => "edit",
                    Request::Delete { .. } => "delete",
                },
                r.user,
                r.request.message(),
                r.request.conversation(),
                r.retries,
                r.generation
            );
            let Some((status, body)) = &r.answer else {
                out.push(format!("{what}: never answered"));
                continue;
            };
            let ok = match r.expect {
                Expect::Created => {
                    *status == 201
                        && serde_json::from_str::<Value>(body)
                            .is_ok_and(|v| v["message_id"] == r.request.message())
                }
                Expect::Ok => *status == 200,
                Expect::Refused => (400..500).contains(status) && *status != 409 && *status != 429,
            };
            if !ok {
                out.push(format!(
                    "{what}: answered {status} {body}, want {:?}",
                    r.expect
                ));
            }
        }
        self.report.differences.extend(out);
    }

    // ---- rebuilds ----

    fn rebuild_phase(&mut self, view: View, kill: Option<u32>, finish: bool) {
        let label = format!("{}-rebuild", view.name());
        let args = ["rebuild", view.name()];
        if let Some(pm) = kill {
            let at = (self.conversations * pm as u64 / 1000).max(1);
            let mut proc = self.courier.spawn(&args, true);
            match self.kill_at_applied(&mut proc, &label, at) {
                Ok(Some(_)) => {
                    self.report.faults.rebuild_kills += 1;
                    // The current generation keeps serving, whole.
                    self.check_views(3, view == View::Inbox, "after a rebuild killed midway");
                }
                Ok(None) => self.report.skipped_kills += 1,
                Err(e) => return self.abort(e),
            }
        }
        if finish || kill.is_none() {
            let mut proc = self.courier.spawn(&args, false);
            if let Err(e) = self.await_exit(&mut proc) {
                return self.abort(e);
            }
            self.check_views(3, view == View::Inbox, "after a rebuild");
        }
    }

    // ---- checks ----

    /// The views against the model: every user's inbox and presence; with
    /// `histories`, every conversation as each who belonged to it (and two who
    /// did not); searches for `words` words drawn from what was said.
    fn check_views(&mut self, words: usize, histories: bool, when: &str) {
        let mut users: Vec<String> = (0..self.s.users).map(|u| format!("u{u}")).collect();
        users.push("u-nobody".into());
        // Each conversation as everyone who ever belonged to it and as two who
        // never did (every outsider gets the same refusal).
        let conversations: Vec<(String, Vec<String>)> = self
            .model
            .conversation_ids()
            .filter(|_| histories)
            .map(|c| {
                let mut who = self.model.people(c);
                for outsider in ["u-nobody", "u0"] {
                    if !who.iter().any(|p| p == outsider) {
                        who.push(outsider.to_string());
                    }
                }
                (c.clone(), who)
            })
            .collect();
        let vocabulary: Vec<String> = self.model.vocabulary().into_iter().collect();
        let mut sample_words = Vec::new();
        if words > 0 {
            sample_words.push("zzzz".to_string());
        }
        for _ in 0..words.min(vocabulary.len()) {
            sample_words.push(self.rng.pick(&vocabulary).clone());
        }
        let model = self.model.clone();
        let mut cli = Cli {
            courier: &self.courier,
        };
        let compared = check::views(
            &model,
            &mut cli,
            &Sample {
                users: &users,
                conversations: &conversations,
                words: &sample_words,
            },
        );
        self.report.queries += compared.queries;
        self.report.rows += compared.rows;
        for d in compared.differences {
            self.differ(format!("{when}: {d}"));
        }
    }

    /// The jobs DESIGN's Notify calls for: for each applied send, each
    /// recipient not online when notify judged it (presence as the log held it
    /// when the send's phase was processed).
    fn expected_jobs(&self) -> BTreeMap<JobKey, Job> {
        let sent_by_http: BTreeMap<(&str, &str), usize> = self
            .http
            .iter()
            .filter(|r| matches!(r.request, Request::Send { .. }))
            .map(|r| ((r.request.conversation(), r.request.message()), r.phase))
            .collect();
        let mut out = BTreeMap::new();
        for s in self.model.sends() {
            let phase = self.file_events.get(&s.event_id).copied().or_else(|| {
                sent_by_http
                    .get(&(s.conversation_id.as_str(), s.message_id.as_str()))
                    .copied()
            });
            // A send the harness did not make is reported by the log check.
            let Some(online) = phase.and_then(|p| self.online.get(p)) else {
                continue;
            };
            for u in s.recipients.iter().filter(|u| !online.contains(*u)) {
                out.insert(
                    (u.clone(), s.conversation_id.clone(), s.message_id.clone()),
                    Job {
                        sender_id: s.sender_id.clone(),
                        preview: s.preview.clone(),
                    },
                );
            }
        }
        out
    }

    fn final_checks(&mut self) {
        self.refresh();
        if self.aborted {
            return;
        }
        self.check_log();
        self.check_views(6, true, "at the end");
        let expected = self.expected_jobs();
        let deliveries = self.provider.deliveries();
        let push = check::push(&expected, &deliveries, &self.push_killed);
        self.report.extra_pushes = push.extra;
        self.report.pushes = push.delivered;
        self.report.differences.extend(push.differences);
        self.check_jobs_topic(&expected);
        self.check_dead_letters();
    }

    /// The log holds every event acknowledged to the harness, and nothing it
    /// did not send.
    fn check_log(&mut self) {
        let events = self.replay("courier.conversations.v1");
        let presence = self.replay("courier.presence.v1");
        let ids: BTreeSet<&str> = events
            .iter()
            .chain(&presence)
            .map(|e| e.event_id.as_str())
            .collect();
        let mut out = Vec::new();
        let missing: Vec<&String> = self
            .file_events
            .keys()
            .filter(|id| !ids.contains(id.as_str()))
            .collect();
        if !missing.is_empty() {
            out.push(format!(
                "the log misses {} produced event(s): {:?}",
                missing.len(),
                &missing[..missing.len().min(10)]
            ));
        }
        // Gateway events: matched to the requests by content.
        let mut sends: BTreeMap<(String, String), u64> = BTreeMap::new();
        for e in events
            .iter()
            .filter(|e| !self.file_events.contains_key(&e.event_id))
        {
            let found = match &e.body {
                Some(Body::MessageSent(s)) => {
                    *sends
                        .entry((s.conversation_id.clone(), s.message_id.clone()))
                        .or_default() += 1;
                    self.http.iter().any(|r| {
                        r.user == s.sender_id
                            && matches!(&r.request, Request::Send { conversation, message, text }
                                if *conversation == s.conversation_id && *message == s.message_id
                                && s.content == Some(courier_schemas::proto::message_sent::Content::Text(text.clone())))
                    })
                }
                Some(Body::MessageEdited(x)) => self.http.iter().any(|r| {
                    r.user == x.editor_id
                        && matches!(&r.request, Request::Edit { conversation, message, text }
                            if *conversation == x.conversation_id && *message == x.message_id && *text == x.text)
                }),
                Some(Body::MessageDeleted(x)) => self.http.iter().any(|r| {
                    r.user == x.actor_id
                        && matches!(&r.request, Request::Delete { conversation, message }
                            if *conversation == x.conversation_id && *message == x.message_id)
                }),
                _ => false,
            };
            if !found {
                out.push(format!(
                    "the log holds an event the harness did not send: {}",
                    courier_schemas::json::to_line(e)
                ));
            }
        }
        self.report.republished_sends += sends.values().filter(|n| **n > 1).count() as u64;
        // What the gateway acknowledged is there; what it refused is not.
        for r in &self.http {
            let Request::Send {
                conversation,
                message,
                ..
            } = &r.request
            else {
                continue;
            };
            let in_log = sends.contains_key(&(conversation.clone(), message.clone()));
            let acknowledged = r.answer.as_ref().is_some_and(|(s, _)| *s == 201);
            if acknowledged && !in_log {
                out.push(format!("send {message} in {conversation} as {} was acknowledged (201) but is not in the log", r.user));
            }
            if r.expect == Expect::Refused && in_log {
                out.push(format!(
                    "send {message} in {conversation} as {} must be refused but is in the log",
                    r.user
                ));
            }
        }
        self.report.differences.extend(out);
    }

    /// The push-jobs topic holds one job id per expected job and no other job.
    fn check_jobs_topic(&mut self, expected: &BTreeMap<JobKey, Job>) {
        let mut ids: BTreeMap<JobKey, BTreeSet<String>> = BTreeMap::new();
        for e in self.replay("courier.push-jobs.v1") {
            if let Some(Body::PushJob(j)) = &e.body {
                ids.entry((
                    j.user_id.clone(),
                    j.conversation_id.clone(),
                    j.message_id.clone(),
                ))
                .or_default()
                .insert(j.job_id.clone());
            }
        }
        for (key, set) in &ids {
            if !expected.contains_key(key) {
                self.differ(format!(
                    "push-jobs topic: a job no message calls for: {key:?}"
                ));
            }
            if set.len() != 1 {
                self.differ(format!("push-jobs topic: {key:?} has job ids {set:?}"));
            }
        }
        for key in expected.keys().filter(|k| !ids.contains_key(*k)) {
            self.differ(format!("push-jobs topic: no job for {key:?}"));
        }
    }

    /// One dead letter per rejected event (DESIGN: "An event that breaks a rule
    /// … goes to the dead letters with its reason"; inbox and search write it
    /// under the same id).
    fn check_dead_letters(&mut self) {
        let mut ids = BTreeSet::new();
        for e in self.replay("courier.dead-letters.v1") {
            if let Some(Body::DeadLetter(d)) = &e.body
                && d.source_topic == "courier.conversations.v1"
            {
                ids.insert(e.event_id.clone());
            }
        }
        let rejected = self.model.rejected.len();
        if ids.len() != rejected {
            let reasons: Vec<String> = self
                .model
                .rejected
                .iter()
                .take(20)
                .map(|(id, why)| format!("{id}: {why}"))
                .collect();
            self.differ(format!(
                "dead letters: {} distinct for the conversations topic, want {rejected} (the rejected events: {})",
                ids.len(),
                reasons.join("; ")
            ));
        }
    }
}

/// The gateway as the clients see it.
struct Gate {
    addr: String,
    generation: u64,
    answered: usize,
    /// No gateway will come back (the phase was aborted).
    closed: bool,
}

/// A user, their token, and their requests.
type Signed<T> = (String, String, T);

/// Requests with the answers they must get.
type Plan = Vec<(Request, Expect)>;

type ClientRecord = (String, Request, Expect, Option<(u16, String)>, u32, u64);

/// One HTTP client: its users' requests, each user's in order, round robin
/// between users; each request retried until it gets an answer that is not a
/// connection failure or a 5xx, across restarts of the gateway.
fn client(lane: Vec<Signed<Plan>>, shared: &(Mutex<Gate>, Condvar)) -> Vec<ClientRecord> {
    let (lock, cv) = shared;
    let mut queues: Vec<Signed<std::collections::VecDeque<(Request, Expect)>>> =
        lane.into_iter().map(|(u, t, l)| (u, t, l.into())).collect();
    let mut out = Vec::new();
    while queues.iter().any(|q| !q.2.is_empty()) {
        for (user, token, queue) in &mut queues {
            let Some((request, expect)) = queue.pop_front() else {
                continue;
            };
            let mut retries = 0;
            let mut answered_by;
            let answer = loop {
                let (addr, generation) = {
                    let g = lock.lock().unwrap();
                    (g.addr.clone(), g.generation)
                };
                let got = send(&addr, token, &request);
                answered_by = generation;
                let wait = match &got {
                    Ok(a) if a.status < 500 => break Some((a.status, a.body.clone())),
                    // The server says when: wait that long, or for a restart.
                    Ok(a) if a.status == 503 => Duration::from_secs(a.retry_after.unwrap_or(1)),
                    // Gone (a kill) or failing: wait for the next gateway.
                    _ => STEP_LIMIT,
                };
                retries += 1;
                let g = lock.lock().unwrap();
                let (g, timeout) = cv
                    .wait_timeout_while(g, wait, |g| g.generation == generation && !g.closed)
                    .unwrap();
                if g.closed || (timeout.timed_out() && wait == STEP_LIMIT) {
                    break got.ok().map(|a| (a.status, a.body));
                }
            };
            let mut g = lock.lock().unwrap();
            g.answered += 1;
            cv.notify_all();
            drop(g);
            out.push((user.clone(), request, expect, answer, retries, answered_by));
        }
    }
    out
}

fn send(addr: &str, token: &str, r: &Request) -> Result<http::Answer, String> {
    match r {
        Request::Send {
            conversation,
            message,
            text,
        } => {
            let body =
                json!({"conversation_id": conversation, "message_id": message, "text": text});
            http::request(
                addr,
                "POST",
                "/v1/messages",
                Some(token),
                Some(&body.to_string()),
                &[],
            )
        }
        Request::Edit {
            conversation,
            message,
            text,
        } => {
            let body = json!({"conversation_id": conversation, "text": text});
            let key = format!("edit-{conversation}-{message}-{}", text.len());
            http::request(
                addr,
                "PATCH",
                &format!("/v1/messages/{message}"),
                Some(token),
                Some(&body.to_string()),
                &[("Idempotency-Key", &key)],
            )
        }
        Request::Delete {
            conversation,
            message,
        } => {
            let key = format!("delete-{conversation}-{message}");
            http::request(
                addr,
                "DELETE",
                &format!("/v1/messages/{message}?conversation_id={conversation}"),
                Some(token),
                None,
                &[("Idempotency-Key", &key)],
            )
        }
    }
}

/// The views through the `courier` commands.
struct Cli<'a> {
    courier: &'a Courier,
}

impl Cli<'_> {
    fn json(&self, args: &[&str]) -> Result<Value, String> {
        let out = self.courier.ok(args)?;
        serde_json::from_str(&out)
            .map_err(|e| format!("`courier {}`: not JSON ({e}): {out}", args.join(" ")))
    }
}

impl Views for Cli<'_> {
    fn inbox(&mut self, user: &str) -> Result<Value, String> {
        self.json(&["inbox", user, "--json"])
    }

    fn messages(&mut self, conversation: &str, user: &str) -> Result<Option<Value>, String> {
        let out = self
            .courier
            .output(&["messages", conversation, "--as", user, "--json"]);
        let err = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && err.contains("never was a member") {
            return Ok(None);
        }
        if !out.status.success() {
            return Err(format!(
                "failed ({}): {}",
                out.status,
                crate::courier::tail(&err, 4)
            ));
        }
        let s = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| format!("not JSON ({e}): {s}"))
    }

    fn search(&mut self, user: &str, word: &str) -> Result<Value, String> {
        self.json(&["search", user, word, "--json", "--limit", "100000"])
    }

    fn presence(&mut self, user: &str) -> Result<Value, String> {
        self.json(&["presence", user, "--json"])
    }
}

/// Where the harness finds `courier`: `--courier`, else next to itself.
pub fn default_bin(exe: &Path) -> PathBuf {
    exe.with_file_name("courier")
}
