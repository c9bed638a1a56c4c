//! What one seed means: the traffic's shape, the phases of a run and the faults
//! in each, drawn from the seed alone, so `--seed N` replays the same schedule.
//!
//! A fault's moment is drawn as a fraction (per mille) of what is pending when
//! the step starts (records a processor has to apply, sends the gateway has to
//! answer, pushes to deliver), and the driver turns it into a count: "SIGKILL
//! once it has applied 37 records". Counting, not sleeping, keeps a replay close
//! to the original and never waits on a moment that cannot come.
//!
//! On the embedded log one process owns the data directory, so the phases take
//! turns: traffic goes in (a file through `courier produce`, or HTTP clients
//! through `courier up`, which runs every processor inside), then each processor
//! runs to the end of the log, alone. On Kafka + Cassandra the same phases run
//! with more faults, drawn from a stream of their own so that a seed's embedded
//! schedule stays what it was: a second inbox instance in the group beside the
//! one that is killed, and the broker or Cassandra killed with SIGKILL and
//! restarted while a processor works (see [`Backend`]).

use std::fmt;

use crate::rng::Rng;

/// Where courier keeps its log and views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// RocksDB log and views under one data directory: process kills only.
    Embedded,
    /// Kafka log, Cassandra inbox views, both servers the harness's own: process
    /// kills, two inbox instances in a group, server kills and restarts.
    KafkaCassandra,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::KafkaCassandra => "kafka-cassandra",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A server the harness runs (Kafka + Cassandra only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    Kafka,
    Cassandra,
}

impl Server {
    pub fn name(self) -> &'static str {
        match self {
            Server::Kafka => "kafka",
            Server::Cassandra => "cassandra",
        }
    }
}

/// A server killed with SIGKILL once the run's last instance applied this
/// fraction (per mille) of what was pending, then started again while the
/// processor keeps working.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub server: Server,
    pub at: u32,
}

/// A processor `courier run` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Processor {
    Inbox,
    Presence,
    Search,
    Notify,
    Push,
}

impl Processor {
    pub const ALL: [Processor; 5] = [
        Processor::Inbox,
        Processor::Presence,
        Processor::Search,
        Processor::Notify,
        Processor::Push,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Processor::Inbox => "inbox",
            Processor::Presence => "presence",
            Processor::Search => "search",
            Processor::Notify => "notify",
            Processor::Push => "push",
        }
    }
}

impl fmt::Display for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// When a SIGKILL lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Once the process has applied (committed) this fraction, per mille, of
    /// the records pending when it started.
    Applied(u32),
    /// Push: right after the provider answered 2xx to this fraction of the
    /// pending jobs, before courier can record the job as sent: the window in
    /// which a kill costs one extra delivery.
    AfterAnswer(u32),
    /// Push: when the request for this fraction of the pending jobs arrives,
    /// before it is answered (the job is not delivered and must be again).
    BeforeAnswer(u32),
}

impl fmt::Display for Kill {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kill::Applied(p) => write!(f, "after {}.{}% applied", p / 10, p % 10),
            Kill::AfterAnswer(p) => write!(f, "after answering {}.{}% of pushes", p / 10, p % 10),
            Kill::BeforeAnswer(p) => {
                write!(
                    f,
                    "on receiving {}.{}% of pushes, unanswered",
                    p / 10,
                    p % 10
                )
            }
        }
    }
}

/// One processor brought to the end of the log: SIGKILLed at each kill in turn
/// (restarted after each), then run with `--until-caught-up`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub processor: Processor,
    pub kills: Vec<Kill>,
    /// A second instance in the group, from the start of the run to its end
    /// (Kafka + Cassandra, inbox: the killed one is one of two).
    pub pair: bool,
    /// A server killed and restarted during the last instance's work.
    pub outage: Option<Outage>,
}

/// A view kept in generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Inbox,
    Search,
}

impl View {
    pub fn name(self) -> &'static str {
        match self {
            View::Inbox => "inbox",
            View::Search => "search",
        }
    }
}

/// A step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// The generator's next `messages` messages (with their receipts, edits,
    /// deletes and presence changes), plus `churn` membership changes,
    /// `duplicates` events published again and `invalid` events that break a
    /// rule or do not parse, produced from one file (`--skip-invalid`); then
    /// `runs`.
    File {
        messages: usize,
        churn: usize,
        duplicates: usize,
        invalid: usize,
        runs: Vec<Run>,
    },
    /// `courier up --processors INSIDE` (`none` when empty) while `clients`
    /// HTTP clients send the generator's next `messages` messages, edits and
    /// deletes under their own message ids, retrying through kills; SIGKILLed
    /// once each given fraction (per mille) of the requests was answered, and
    /// started again; stopped with SIGTERM when the clients are done; then
    /// `runs` (which find work where a processor was not inside).
    Gateway {
        clients: usize,
        messages: usize,
        inside: Vec<Processor>,
        kills: Vec<u32>,
        runs: Vec<Run>,
    },
    /// `courier rebuild VIEW`, SIGKILLed once it applied the fraction (per
    /// mille) of the log if `kill` is set; then run again to the end if
    /// `finish` (else the next rebuild or run finds what the killed one left).
    Rebuild {
        view: View,
        kill: Option<u32>,
        finish: bool,
    },
}

/// How the push provider answers the request with this number (counted over the
/// whole schedule, from 1) and the `count - 1` after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderFault {
    pub from_request: u64,
    pub count: u64,
    pub answer: Answer,
}

/// An answer of the push provider other than 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 500.
    Status500,
    /// 429 with `Retry-After: 1`.
    TooMany,
    /// No answer until courier gives up (`push.timeout_ms`).
    Timeout,
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Answer::Status500 => "500",
            Answer::TooMany => "429 + Retry-After: 1",
            Answer::Timeout => "no answer (timeout)",
        })
    }
}

/// Everything a seed decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub seed: u64,
    pub backend: Backend,
    /// The generator's population.
    pub users: usize,
    pub conversations: usize,
    /// `runner.max_batch`: small batches put kills between commits.
    pub max_batch: usize,
    pub phases: Vec<Phase>,
    pub provider: Vec<ProviderFault>,
}

/// Faults of a schedule by kind, for the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub processor_kills: u64,
    /// Of the processor kills, those of one of two instances in a group.
    pub paired_kills: u64,
    pub push_kills: u64,
    pub up_kills: u64,
    pub rebuild_kills: u64,
    pub kafka_kills: u64,
    pub cassandra_kills: u64,
    pub provider_500: u64,
    pub provider_429: u64,
    pub provider_timeouts: u64,
}

impl Faults {
    pub fn add(&mut self, o: &Faults) {
        self.processor_kills += o.processor_kills;
        self.paired_kills += o.paired_kills;
        self.kafka_kills += o.kafka_kills;
        self.cassandra_kills += o.cassandra_kills;
        self.push_kills += o.push_kills;
        self.up_kills += o.up_kills;
        self.rebuild_kills += o.rebuild_kills;
        self.provider_500 += o.provider_500;
        self.provider_429 += o.provider_429;
        self.provider_timeouts += o.provider_timeouts;
    }
}

impl Schedule {
    /// The schedule of `seed` on `backend`.
    pub fn generate(seed: u64, backend: Backend) -> Schedule {
        let mut rng = Rng::new(seed ^ 0xC4A0_5C4E_D01E_0000);
        let users = rng.range(10, 28) as usize;
        let conversations = rng.range(5, 14) as usize;
        let max_batch = *rng.pick(&[1, 4, 20, 100]);
        let mut phases = vec![file_phase(&mut rng)];
        for _ in 0..rng.range(2, 4) {
            phases.push(match rng.below(10) {
                0..=3 => file_phase(&mut rng),
                4..=7 => Phase::Gateway {
                    clients: rng.range(2, 4) as usize,
                    messages: rng.range(15, 45) as usize,
                    inside: Processor::ALL
                        .into_iter()
                        .filter(|_| rng.chance(0.5))
                        .collect(),
                    kills: (0..rng.below(3)).map(|_| permille(&mut rng)).collect(),
                    runs: runs(&mut rng),
                },
                _ => Phase::Rebuild {
                    view: if rng.chance(0.5) {
                        View::Inbox
                    } else {
                        View::Search
                    },
                    kill: rng.chance(0.8).then(|| permille(&mut rng)),
                    finish: rng.chance(0.5),
                },
            });
        }
        // Provider faults: short windows, so no job runs out of attempts (the
        // driver allows 30), spread over the requests a schedule makes.
        let mut provider = Vec::new();
        let mut at = 1;
        for _ in 0..rng.range(1, 4) {
            at += rng.range(1, 40);
            let answer = *rng.pick(&[Answer::Status500, Answer::TooMany, Answer::Timeout]);
            let count = rng.range(1, 4);
            provider.push(ProviderFault {
                from_request: at,
                count,
                answer,
            });
            at += count;
        }
        if backend == Backend::KafkaCassandra {
            distributed_faults(seed, &mut phases);
        }
        Schedule {
            seed,
            backend,
            users,
            conversations,
            max_batch,
            phases,
            provider,
        }
    }

    /// The faults the schedule asks for, by kind (what a run injects may be
    /// fewer: a kill whose moment never comes is skipped and reported).
    pub fn planned(&self) -> Faults {
        let mut f = Faults::default();
        let count_runs = |runs: &[Run], f: &mut Faults| {
            for r in runs {
                if r.processor == Processor::Push {
                    f.push_kills += r.kills.len() as u64;
                } else {
                    f.processor_kills += r.kills.len() as u64;
                }
                if r.pair {
                    f.paired_kills += r.kills.len() as u64;
                }
                match r.outage.map(|o| o.server) {
                    Some(Server::Kafka) => f.kafka_kills += 1,
                    Some(Server::Cassandra) => f.cassandra_kills += 1,
                    None => {}
                }
            }
        };
        for p in &self.phases {
            match p {
                Phase::File { runs, .. } => count_runs(runs, &mut f),
                Phase::Gateway { kills, runs, .. } => {
                    f.up_kills += kills.len() as u64;
                    count_runs(runs, &mut f);
                }
                Phase::Rebuild { kill, .. } => f.rebuild_kills += kill.is_some() as u64,
            }
        }
        for p in &self.provider {
            match p.answer {
                Answer::Status500 => f.provider_500 += p.count,
                Answer::TooMany => f.provider_429 += p.count,
                Answer::Timeout => f.provider_timeouts += p.count,
            }
        }
        f
    }

    /// How the provider answers request `n` (from 1).
    pub fn provider_answer(&self, n: u64) -> Option<Answer> {
        self.provider
            .iter()
            .find(|p| (p.from_request..p.from_request + p.count).contains(&n))
            .map(|p| p.answer)
    }
}

/// The Kafka + Cassandra faults, from their own stream: the inbox runs with a
/// second instance half the time (only inbox: the other processors keep local
/// stores in the one data directory the harness gives a schedule, which two
/// instances cannot share); one or two server outages, each during a run that
/// starts with work to do (Cassandra during an inbox run, the only processor
/// that writes to it).
fn distributed_faults(seed: u64, phases: &mut [Phase]) {
    let mut rng = Rng::new(seed ^ 0xD157_C4A0_5EED_0001);
    // Each run, and whether its processor has work when it starts (not when
    // `courier up` ran it inside, where an outage would find nothing to do).
    let mut runs: Vec<(&mut Run, bool)> = phases
        .iter_mut()
        .flat_map(|p| match p {
            Phase::File { runs, .. } => runs.iter_mut().map(|r| (r, true)).collect(),
            Phase::Gateway { runs, inside, .. } => runs
                .iter_mut()
                .map(|r| {
                    let busy = !inside.contains(&r.processor);
                    (r, busy)
                })
                .collect(),
            Phase::Rebuild { .. } => Vec::new(),
        })
        .collect();
    for (r, _) in runs.iter_mut() {
        r.pair = r.processor == Processor::Inbox && rng.chance(0.5);
    }
    for _ in 0..rng.range(1, 3) {
        let server = if rng.chance(0.5) {
            Server::Kafka
        } else {
            Server::Cassandra
        };
        let eligible: Vec<usize> = (0..runs.len())
            .filter(|i| runs[*i].1 && runs[*i].0.outage.is_none())
            .filter(|i| match runs[*i].0.processor {
                // Push's kills count the provider's answers from a process's
                // start: the instance an outage ran under cannot carry one.
                Processor::Push => false,
                Processor::Inbox => true,
                _ => server == Server::Kafka,
            })
            .collect();
        if eligible.is_empty() {
            continue;
        }
        let i = *rng.pick(&eligible);
        runs[i].0.outage = Some(Outage {
            server,
            at: permille(&mut rng),
        });
    }
}

fn permille(rng: &mut Rng) -> u32 {
    rng.below(1000) as u32
}

fn file_phase(rng: &mut Rng) -> Phase {
    Phase::File {
        messages: rng.range(25, 90) as usize,
        churn: rng.range(0, 6) as usize,
        duplicates: rng.range(2, 12) as usize,
        invalid: rng.range(1, 8) as usize,
        runs: runs(rng),
    }
}

/// Every processor to the end of the log, in a drawn order with notify before
/// push (push delivers what notify wrote), each killed 0 to 2 times.
fn runs(rng: &mut Rng) -> Vec<Run> {
    let mut order = Processor::ALL.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let n = order.iter().position(|p| *p == Processor::Notify).unwrap();
    let p = order.iter().position(|p| *p == Processor::Push).unwrap();
    if p < n {
        order.swap(n, p);
    }
    order
        .into_iter()
        .map(|processor| {
            let kills = match rng.below(10) {
                0..=4 => 0,
                5..=8 => 1,
                _ => 2,
            };
            let kills = (0..kills)
                .map(|_| match processor {
                    Processor::Push if rng.chance(0.5) => Kill::AfterAnswer(permille(rng)),
                    Processor::Push => Kill::BeforeAnswer(permille(rng)),
                    _ => Kill::Applied(permille(rng)),
                })
                .collect();
            Run {
                processor,
                kills,
                pair: false,
                outage: None,
            }
        })
        .collect()
}

/// `courier up --processors`'s value for these.
pub fn processors_arg(inside: &[Processor]) -> String {
    if inside.is_empty() {
        return "none".into();
    }
    let names: Vec<&str> = inside.iter().map(|p| p.name()).collect();
    names.join(",")
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.processor)?;
        if self.pair {
            write!(f, " (2 instances)")?;
        }
        for k in &self.kills {
            write!(f, " [SIGKILL {k}]")?;
        }
        if let Some(o) = self.outage {
            write!(
                f,
                " [kill -9 {} {}, restart]",
                o.server.name(),
                Kill::Applied(o.at)
            )?;
        }
        Ok(())
    }
}

fn write_runs(f: &mut fmt::Formatter<'_>, runs: &[Run]) -> fmt::Result {
    let list: Vec<String> = runs.iter().map(Run::to_string).collect();
    writeln!(f, "      then run: {}", list.join(", "))
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schedule seed {} on {}: {} users, {} conversations, runner.max_batch {}",
            self.seed, self.backend, self.users, self.conversations, self.max_batch
        )?;
        for (i, p) in self.phases.iter().enumerate() {
            match p {
                Phase::File {
                    messages,
                    churn,
                    duplicates,
                    invalid,
                    runs,
                } => {
                    writeln!(
                        f,
                        "  {i}. produce a file: {messages} messages, {churn} membership changes, {duplicates} duplicates, {invalid} invalid"
                    )?;
                    write_runs(f, runs)?;
                }
                Phase::Gateway {
                    clients,
                    messages,
                    inside,
                    kills,
                    runs,
                } => {
                    let kills: Vec<String> = kills
                        .iter()
                        .map(|k| format!("{}.{}%", k / 10, k % 10))
                        .collect();
                    writeln!(
                        f,
                        "  {i}. courier up --processors {}, {clients} HTTP clients, {messages} messages; SIGKILL up after answering [{}]",
                        processors_arg(inside),
                        kills.join(", ")
                    )?;
                    write_runs(f, runs)?;
                }
                Phase::Rebuild { view, kill, finish } => {
                    let kill = kill.map_or("no kill".to_string(), |k| {
                        format!("SIGKILL {}", Kill::Applied(k))
                    });
                    writeln!(
                        f,
                        "  {i}. rebuild {} ({kill}){}",
                        view.name(),
                        if *finish { ", then rebuild again" } else { "" }
                    )?;
                }
            }
        }
        let faults: Vec<String> = self
            .provider
            .iter()
            .map(|p| {
                format!(
                    "requests {}..{}: {}",
                    p.from_request,
                    p.from_request + p.count - 1,
                    p.answer
                )
            })
            .collect();
        writeln!(f, "  push provider: {}", faults.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_always_means_the_same_schedule() {
        for seed in 0..50 {
            assert_eq!(
                Schedule::generate(seed, Backend::Embedded),
                Schedule::generate(seed, Backend::Embedded)
            );
        }
        assert_ne!(
            Schedule::generate(1, Backend::Embedded),
            Schedule::generate(2, Backend::Embedded)
        );
    }

    #[test]
    fn schedules_start_with_a_file_and_run_notify_before_push() {
        for seed in 0..200 {
            let s = Schedule::generate(seed, Backend::Embedded);
            assert!(matches!(s.phases[0], Phase::File { .. }), "{s}");
            for p in &s.phases {
                if let Phase::File { runs, .. } | Phase::Gateway { runs, .. } = p {
                    let at = |x| runs.iter().position(|r| r.processor == x).unwrap();
                    assert!(at(Processor::Notify) < at(Processor::Push), "{s}");
                    assert_eq!(runs.len(), 5);
                }
            }
        }
    }

    #[test]
    fn over_many_seeds_every_fault_kind_is_drawn() {
        let mut all = Faults::default();
        for seed in 0..100 {
            all.add(&Schedule::generate(seed, Backend::Embedded).planned());
        }
        for (kind, n) in [
            ("processor", all.processor_kills),
            ("push", all.push_kills),
            ("up", all.up_kills),
            ("rebuild", all.rebuild_kills),
            ("500", all.provider_500),
            ("429", all.provider_429),
            ("timeout", all.provider_timeouts),
        ] {
            assert!(n > 10, "{kind}: {n} in 100 schedules");
        }
    }

    #[test]
    fn kafka_cassandra_adds_its_faults_and_keeps_the_embedded_draws() {
        let mut all = Faults::default();
        for seed in 0..100 {
            let e = Schedule::generate(seed, Backend::Embedded);
            let d = Schedule::generate(seed, Backend::KafkaCassandra);
            assert_eq!(e.phases.len(), d.phases.len());
            assert_eq!(e.provider, d.provider);
            let plain = |s: &Schedule| -> Vec<(Processor, Vec<Kill>)> {
                s.phases
                    .iter()
                    .flat_map(|p| match p {
                        Phase::File { runs, .. } | Phase::Gateway { runs, .. } => runs.clone(),
                        Phase::Rebuild { .. } => Vec::new(),
                    })
                    .map(|r| (r.processor, r.kills))
                    .collect()
            };
            assert_eq!(plain(&e), plain(&d), "seed {seed}");
            assert_eq!(e.planned().kafka_kills + e.planned().cassandra_kills, 0);
            all.add(&d.planned());
        }
        for (kind, n) in [
            ("paired", all.paired_kills),
            ("kafka", all.kafka_kills),
            ("cassandra", all.cassandra_kills),
        ] {
            assert!(n > 10, "{kind}: {n} in 100 schedules");
        }
    }

    #[test]
    fn provider_answers_follow_the_windows() {
        let s = Schedule {
            provider: vec![ProviderFault {
                from_request: 3,
                count: 2,
                answer: Answer::TooMany,
            }],
            ..Schedule::generate(0, Backend::Embedded)
        };
        let answers: Vec<Option<Answer>> = (1..=6).map(|n| s.provider_answer(n)).collect();
        assert_eq!(
            answers,
            [
                None,
                None,
                Some(Answer::TooMany),
                Some(Answer::TooMany),
                None,
                None
            ]
        );
    }
}
