//! `courier groups list|describe|reset`: consumer groups as the log knows them
//! (members with client id, host and partitions; per partition the committed
//! offset, the end and the lag), and moving a stopped group's offsets together
//! with the positions its processor keeps in its view.
//!
//! What a reset does to each processor is in
//! docs/decisions/2026-12-07-group-reset.md: presence folds the range again,
//! push delivers again only with `--resend-notifications`, inbox, search and
//! notify move only forward (their states say what they applied; going back is
//! `courier rebuild`), other groups move only their offsets.
//!
//! On the embedded log, `list` and `describe` open the log read-only when
//! another process (`courier up`, `courier run`) holds it, and read the members
//! that process publishes; a reset needs the log to itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use courier_pipeline::config::Backend;
use courier_pipeline::embedded::EmbeddedOptions;
use courier_pipeline::{
    EmbeddedLog, EventLog, GroupDescription, LogError, Position, TopicPartition,
};
use courier_processors::inbox::store::{InboxBatch, InboxStore};
use courier_processors::notify::NotifyStore;
use courier_processors::presence::PresenceStore;
use courier_processors::search::{LatestStates, SearchBatch, SearchIndex, ShardWrite};
use courier_sinks::inbox::{
    CassandraGenerations, CassandraInboxStore, Generations, RocksInboxStore,
};
use courier_sinks::notify::RocksNotifyStore;
use courier_sinks::presence::RocksPresenceStore;
use courier_sinks::search::{TantivySearchIndex, committed_offsets};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::{Config, ViewsBackend};
use crate::registry::Processor;

/// `courier groups` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Every consumer group the log knows: state, members and total lag.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// A group's members (client id, host, partitions) and, per partition, its
    /// committed offset, the end and the lag.
    Describe {
        /// The group (logical name, e.g. courier.inbox).
        group: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Moves a stopped group's committed offsets, and the positions its
    /// processor keeps in its view; refused while the group has live members.
    Reset(ResetArgs),
}

/// Arguments of `groups reset`.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("to")
        .required(true)
        .args(["to_earliest", "to_latest", "to_datetime", "to_offset", "shift_by"])
))]
#[command(group(
    clap::ArgGroup::new("mode")
        .required(true)
        .args(["dry_run", "execute"])
))]
pub struct ResetArgs {
    /// The group (logical name, e.g. courier.presence).
    group: String,
    /// To the first record still in the log.
    #[arg(long)]
    to_earliest: bool,
    /// To the end: only records appended from now on.
    #[arg(long)]
    to_latest: bool,
    /// To the first record at or after this RFC 3339 time (2026-12-07T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// To this offset (clamped to what the log holds).
    #[arg(long, value_name = "N")]
    to_offset: Option<u64>,
    /// By N records from where the processor stands (negative: back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Only this topic (default: every topic the group reads).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// Only this partition of --topic.
    #[arg(long, value_name = "P", requires = "topic")]
    partition: Option<u32>,
    /// Print what would move, move nothing.
    #[arg(long)]
    dry_run: bool,
    /// Move the offsets (and the view's positions).
    #[arg(long)]
    execute: bool,
    /// push: allow moving back, which delivers again the jobs of the range
    /// that push does not remember as sent.
    #[arg(long)]
    resend_notifications: bool,
}

pub async fn run(config: &Config, command: Command) -> anyhow::Result<ExitCode> {
    let log = open_for_inspection(config).context("opening the log")?;
    match command {
        Command::List { json } => list(&*log.log, json).await,
        Command::Describe { group, json } => describe(&*log.log, &group, json).await,
        Command::Reset(args) => reset(config, &log, args).await,
    }
}

/// The log, opened to look at it.
pub(crate) struct Inspected {
    pub(crate) log: Arc<dyn EventLog>,
    /// Embedded, held by another process: opened read-only.
    pub(crate) read_only: bool,
}

/// Opens the configured log; the embedded log read-only when another process
/// holds it (reads work, writes are refused).
pub(crate) fn open_for_inspection(config: &Config) -> anyhow::Result<Inspected> {
    if config.log.backend == Backend::Embedded {
        let log = EmbeddedLog::open_for_inspection(
            &config.log_dir(),
            courier_topics::Catalog::builtin(),
            EmbeddedOptions {
                fsync: config.log.fsync,
            },
        )?;
        let read_only = log.is_read_only();
        return Ok(Inspected {
            log: Arc::new(log),
            read_only,
        });
    }
    Ok(Inspected {
        log: config.open_log()?,
        read_only: false,
    })
}

/// The processor (and view generation) whose consumer group `group` is.
pub(crate) fn processor_of(group: &str) -> Option<(Processor, u64)> {
    let rest = group.strip_prefix("courier.")?;
    for p in Processor::all() {
        if rest == p.name() {
            return Some((p, 0));
        }
        if p.entry().generations
            && let Some(g) = rest
                .strip_prefix(p.name())
                .and_then(|r| r.strip_prefix(".g"))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|g| *g > 0)
        {
            return Some((p, g));
        }
    }
    None
}

/// One partition of a group, as `describe` shows it.
#[derive(Debug, serde::Serialize)]
struct PartitionRow {
    topic: String,
    partition: u32,
    committed: Option<u64>,
    end: u64,
    lag: u64,
    member: Option<String>,
}

/// The topics a group's rows cover: those it committed on, those its members
/// own, and those its processor reads.
fn topics_of(desc: &GroupDescription) -> BTreeSet<String> {
    let mut topics: BTreeSet<String> = desc
        .committed
        .iter()
        .map(|(tp, _)| tp.topic.clone())
        .collect();
    for m in &desc.members {
        topics.extend(m.assignment.iter().map(|tp| tp.topic.clone()));
    }
    if let Some((p, _)) = processor_of(&desc.group) {
        topics.extend(p.topics());
    }
    topics
}

async fn partition_rows(
    log: &dyn EventLog,
    desc: &GroupDescription,
) -> anyhow::Result<Vec<PartitionRow>> {
    let committed: HashMap<&TopicPartition, u64> =
        desc.committed.iter().map(|(tp, o)| (tp, *o)).collect();
    let owner: HashMap<&TopicPartition, &str> = desc
        .members
        .iter()
        .flat_map(|m| m.assignment.iter().map(|tp| (tp, m.member_id.as_str())))
        .collect();
    let mut rows = Vec::new();
    for topic in topics_of(desc) {
        for partition in 0..log.partitions(&topic)? {
            let tp = TopicPartition::new(topic.clone(), partition);
            let (low, high) = log.watermarks(&topic, partition).await?;
            let c = committed.get(&tp).copied();
            rows.push(PartitionRow {
                // A group that never committed starts at the earliest record.
                lag: high.saturating_sub(c.unwrap_or(low)),
                committed: c,
                end: high,
                member: owner.get(&tp).map(|m| m.to_string()),
                topic: topic.clone(),
                partition,
            });
        }
    }
    Ok(rows)
}

async fn list(log: &dyn EventLog, json: bool) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    for group in log.groups().await? {
        let desc = log.describe_group(&group).await?;
        let rows = partition_rows(log, &desc).await?;
        out.push((desc, rows.iter().map(|r| r.lag).sum::<u64>()));
    }
    if json {
        let v: Vec<_> = out
            .iter()
            .map(|(d, lag)| {
                serde_json::json!({"group": d.group, "state": d.state, "members": d.members.len(), "lag": lag})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36} {:<20} {:>7} {:>10}",
        "GROUP", "STATE", "MEMBERS", "LAG"
    );
    for (d, lag) in out {
        println!(
            "{:<36} {:<20} {:>7} {:>10}",
            d.group,
            d.state,
            d.members.len(),
            lag
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `topic: 0,1,2; other: 4` for a member's partitions.
fn partitions_text(tps: &[TopicPartition]) -> String {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    if by_topic.is_empty() {
        return "-".to_string();
    }
    by_topic
        .into_iter()
        .map(|(t, ps)| {
            let ps: Vec<String> = ps.iter().map(u32::to_string).collect();
            format!("{t}: {}", ps.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

async fn describe(log: &dyn EventLog, group: &str, json: bool) -> anyhow::Result<ExitCode> {
    let desc = log.describe_group(group).await?;
    let rows = partition_rows(log, &desc).await?;
    if json {
        let members: Vec<_> = desc
            .members
            .iter()
            .map(|m| {
                let assignment: Vec<_> = m
                    .assignment
                    .iter()
                    .map(|tp| serde_json::json!({"topic": tp.topic, "partition": tp.partition}))
                    .collect();
                serde_json::json!({"member_id": m.member_id, "client_id": m.client_id, "host": m.host, "assignment": assignment})
            })
            .collect();
        let v = serde_json::json!({
            "group": desc.group,
            "state": desc.state,
            "members": members,
            "partitions": rows,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "group {} ({}, {} member(s))",
        desc.group,
        desc.state,
        desc.members.len()
    );
    if !desc.members.is_empty() {
        println!();
        println!(
            "{:<40} {:<24} {:<20} PARTITIONS",
            "MEMBER", "CLIENT-ID", "HOST"
        );
        for m in &desc.members {
            println!(
                "{:<40} {:<24} {:<20} {}",
                m.member_id,
                m.client_id,
                m.host,
                partitions_text(&m.assignment)
            );
        }
    }
    println!();
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>10}  MEMBER",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for r in rows {
        let c = r
            .committed
            .map_or_else(|| "-".to_string(), |c| c.to_string());
        println!(
            "{:<26} {:>9} {:>10} {:>10} {:>10}  {}",
            r.topic,
            r.partition,
            c,
            r.end,
            r.lag,
            r.member.as_deref().unwrap_or("-")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a reset moves each partition.
#[derive(Debug, Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Time(i64),
    Offset(u64),
    Shift(i64),
}

impl Target {
    fn of(args: &ResetArgs) -> anyhow::Result<Target> {
        Ok(if args.to_earliest {
            Target::Earliest
        } else if args.to_latest {
            Target::Latest
        } else if let Some(t) = &args.to_datetime {
            let at = OffsetDateTime::parse(t, &Rfc3339).with_context(|| {
                format!("--to-datetime {t:?}: expected an RFC 3339 time (2026-12-07T10:00:00Z)")
            })?;
            Target::Time((at.unix_timestamp_nanos() / 1_000_000) as i64)
        } else if let Some(o) = args.to_offset {
            Target::Offset(o)
        } else if let Some(n) = args.shift_by {
            Target::Shift(n)
        } else {
            bail!(
                "say where to: --to-earliest, --to-latest, --to-datetime, --to-offset or --shift-by"
            )
        })
    }
}

/// One partition of a reset.
#[derive(Debug)]
struct Move {
    tp: TopicPartition,
    low: u64,
    high: u64,
    committed: Option<u64>,
    /// The position the processor keeps in its view, if it keeps one.
    view: Option<u64>,
    /// Where the processor would resume now.
    current: u64,
    target: u64,
}

/// How a processor's own positions take a reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Only the group's offsets (push; groups of no processor).
    OffsetsOnly,
    /// A fold over conversation states with a checkpoint per partition in its
    /// view (inbox, search, notify): forward only.
    Fold,
    /// Rows with a checkpoint per partition, no state (presence): any way.
    Rows,
}

fn kind_of(processor: Option<Processor>) -> Kind {
    match processor {
        Some(Processor::Inbox | Processor::Search | Processor::Notify) => Kind::Fold,
        Some(Processor::Presence) => Kind::Rows,
        Some(Processor::Push) | None => Kind::OffsetsOnly,
    }
}

/// The positions a processor keeps in its view, per partition of its topic.
struct View<'a> {
    config: &'a Config,
    processor: Processor,
    generation: u64,
}

/// No states: a forward move of a shard writes none.
struct NoStates;

impl LatestStates for NoStates {
    fn latest(
        &self,
        _partition: u32,
        _conversation: &str,
    ) -> Option<&courier_processors::inbox::ConversationState> {
        None
    }
}

impl View<'_> {
    fn local_dir(&self) -> PathBuf {
        self.config.view_dir(self.processor.name())
    }

    async fn cassandra_inbox(&self) -> anyhow::Result<CassandraInboxStore> {
        let generations =
            CassandraGenerations::connect(&crate::views::cassandra_settings(self.config)?).await?;
        Ok(CassandraInboxStore::open(&generations.settings(self.generation)?).await?)
    }

    /// The stored position of each partition that has one.
    async fn positions(&self, partitions: &[u32]) -> anyhow::Result<HashMap<u32, u64>> {
        let mut out = HashMap::new();
        match self.processor {
            Processor::Inbox if self.config.views.backend == ViewsBackend::Cassandra => {
                let store = self.cassandra_inbox().await?;
                for p in partitions {
                    if let Some(o) = store.checkpoint(*p).await? {
                        out.insert(*p, o);
                    }
                }
            }
            Processor::Inbox => {
                let dir = Generations::new(self.local_dir()).dir(self.generation);
                if let Some(store) = RocksInboxStore::open_read_only(&dir)? {
                    for p in partitions {
                        if let Some(o) = store.checkpoint(*p).await? {
                            out.insert(*p, o);
                        }
                    }
                }
            }
            Processor::Search => {
                let root = Generations::new(self.local_dir()).dir(self.generation);
                let all = committed_offsets(&root)?;
                out.extend(partitions.iter().filter_map(|p| Some((*p, *all.get(p)?))));
            }
            Processor::Notify => {
                let dir = self.local_dir().join("states");
                if dir.exists() {
                    let store = RocksNotifyStore::open(&dir)?;
                    for p in partitions {
                        if let Some(o) = store.checkpoint(*p)? {
                            out.insert(*p, o);
                        }
                    }
                }
            }
            Processor::Presence => {
                let dir = self.local_dir();
                if dir.exists() {
                    let store = RocksPresenceStore::open(&dir)?;
                    for p in partitions {
                        if let Some(o) = store.checkpoint(*p)? {
                            out.insert(*p, o);
                        }
                    }
                }
            }
            Processor::Push => {}
        }
        Ok(out)
    }

    /// Sets the stored position of these partitions, through the view's own
    /// port (a checkpoint written alone, as a batch that changed nothing).
    async fn set(&self, moves: &[(u32, u64)]) -> anyhow::Result<()> {
        if moves.is_empty() {
            return Ok(());
        }
        match self.processor {
            Processor::Inbox if self.config.views.backend == ViewsBackend::Cassandra => {
                let mut store = self.cassandra_inbox().await?;
                store
                    .write(&InboxBatch {
                        checkpoints: moves.to_vec(),
                        ..InboxBatch::default()
                    })
                    .await?;
            }
            Processor::Inbox => {
                let dir = Generations::new(self.local_dir()).dir(self.generation);
                let mut store = RocksInboxStore::open(&dir)?;
                store
                    .write(&InboxBatch {
                        checkpoints: moves.to_vec(),
                        ..InboxBatch::default()
                    })
                    .await?;
            }
            Processor::Search => {
                let root = Generations::new(self.local_dir()).dir(self.generation);
                let mut index = TantivySearchIndex::new(root);
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                for (p, next) in moves {
                    index.open_shard(*p).await?;
                    index
                        .write(
                            &SearchBatch {
                                shards: vec![ShardWrite {
                                    partition: *p,
                                    ops: Vec::new(),
                                    changed: Vec::new(),
                                    next_offset: *next,
                                    newest_record_ms: now,
                                }],
                            },
                            &NoStates,
                        )
                        .await?;
                    // Closing commits the shard with its new offset.
                    index.close_shard(*p, &NoStates).await?;
                }
            }
            Processor::Notify => {
                let dir = self.local_dir().join("states");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                RocksNotifyStore::open(&dir)?.write(&[], moves)?;
            }
            Processor::Presence => {
                let dir = self.local_dir();
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                RocksPresenceStore::open(&dir)?.write(&[], moves)?;
            }
            Processor::Push => {}
        }
        Ok(())
    }
}

async fn reset(config: &Config, log: &Inspected, args: ResetArgs) -> anyhow::Result<ExitCode> {
    let group = args.group.as_str();
    let target = Target::of(&args)?;
    let desc = log.log.describe_group(group).await?;
    if !desc.members.is_empty() {
        return Err(LogError::GroupNotEmpty {
            group: group.to_string(),
            members: desc.members,
        }
        .into());
    }
    if log.read_only {
        // The holder is not running this group, but holds the log: the call
        // says which process to stop.
        log.log.reset_committed(group, &[]).await?;
        bail!("the log is held by another process: stop it first");
    }
    let processor = processor_of(group);
    if let Some((p, _)) = processor {
        let live = p.live_group(config).await?;
        if live != group {
            bail!(
                "{group} is not the group of the {} view's generation serving reads ({live}): \
                 no processor reads it; reset {live}, or drop the generation with `courier rebuild {}`",
                p.name(),
                p.name()
            );
        }
    }
    let kind = kind_of(processor.map(|(p, _)| p));

    // The partitions in scope.
    let topics: Vec<String> = match (&args.topic, processor) {
        (Some(t), Some((p, _))) if !p.topics().contains(t) => bail!(
            "{group} reads {}; it has no offsets on {t}",
            p.topics().join(", ")
        ),
        (Some(t), _) => vec![t.clone()],
        (None, Some((p, _))) => p.topics(),
        (None, None) => {
            let t: BTreeSet<String> = desc
                .committed
                .iter()
                .map(|(tp, _)| tp.topic.clone())
                .collect();
            if t.is_empty() {
                bail!("{group} has no committed offsets: name the topic to set them on (--topic)");
            }
            t.into_iter().collect()
        }
    };
    let committed: HashMap<&TopicPartition, u64> =
        desc.committed.iter().map(|(tp, o)| (tp, *o)).collect();
    let mut tps = Vec::new();
    for topic in &topics {
        let n = log.log.partitions(topic)?;
        match args.partition {
            Some(p) if p >= n => bail!("{topic} has {n} partitions; there is no partition {p}"),
            Some(p) => tps.push(TopicPartition::new(topic.clone(), p)),
            None => tps.extend((0..n).map(|p| TopicPartition::new(topic.clone(), p))),
        }
    }

    let view = processor.map(|(p, g)| View {
        config,
        processor: p,
        generation: g,
    });
    let stored = match (&view, kind) {
        (Some(v), Kind::Fold | Kind::Rows) => {
            let parts: Vec<u32> = tps.iter().map(|tp| tp.partition).collect();
            v.positions(&parts).await?
        }
        _ => HashMap::new(),
    };

    let mut moves = Vec::new();
    for tp in tps {
        let (low, high) = log.log.watermarks(&tp.topic, tp.partition).await?;
        let c = committed.get(&tp).copied();
        let v = stored.get(&tp.partition).copied();
        // Where the processor would resume: a fold view without a checkpoint
        // refolds from the start whatever the group committed.
        let current = match kind {
            Kind::Fold => v.unwrap_or(low),
            Kind::Rows => v.or(c).unwrap_or(low),
            Kind::OffsetsOnly => c.unwrap_or(low),
        };
        let wanted = match target {
            Target::Earliest => low,
            Target::Latest => high,
            Target::Offset(o) => o,
            Target::Time(ms) => {
                log.log
                    .resolve(&tp.topic, tp.partition, Position::Timestamp(ms))
                    .await?
            }
            Target::Shift(n) => current.saturating_add_signed(n),
        };
        moves.push(Move {
            target: wanted.clamp(low, high),
            tp,
            low,
            high,
            committed: c,
            view: v,
            current,
        });
    }

    let back: Vec<&Move> = moves.iter().filter(|m| m.target < m.current).collect();
    if let (Some((p, _)), false) = (processor, back.is_empty()) {
        let at: Vec<String> = back
            .iter()
            .map(|m| format!("{} from {} to {}", m.tp, m.current, m.target))
            .collect();
        match p {
            Processor::Inbox | Processor::Search => bail!(
                "{group} cannot move back ({}): the {} view's conversation states already \
                 hold those records, so they would be skipped as applied, not processed \
                 again. To process them again, build the view anew from the log: \
                 `courier rebuild {}`",
                at.join(", "),
                p.name(),
                p.name()
            ),
            Processor::Notify => bail!(
                "{group} cannot move back ({}): notify's conversation states already hold \
                 those records, so it would make no job again. To deliver push jobs \
                 again, move push back instead: `courier groups reset courier.push ... \
                 --resend-notifications`",
                at.join(", ")
            ),
            Processor::Push if !args.resend_notifications => bail!(
                "{group} would move back ({}): push would deliver again every job of that \
                 range it does not remember as sent (failed ones, and those older than \
                 push.sent_ttl_ms). Add --resend-notifications to do so",
                at.join(", ")
            ),
            Processor::Push | Processor::Presence => {}
        }
    }

    print_plan(group, &moves, kind, args.execute);
    if !args.execute {
        println!("dry run: nothing moved (--execute moves it)");
        return Ok(ExitCode::SUCCESS);
    }
    let offsets: Vec<(TopicPartition, u64)> = moves
        .iter()
        .filter(|m| m.committed != Some(m.target))
        .map(|m| (m.tp.clone(), m.target))
        .collect();
    if !offsets.is_empty() {
        log.log.reset_committed(group, &offsets).await?;
    }
    if let Some(v) = &view
        && kind != Kind::OffsetsOnly
    {
        let positions: Vec<(u32, u64)> = moves
            .iter()
            .filter(|m| m.view != Some(m.target))
            // A fold view without a checkpoint that stays at the start keeps
            // having none (it refolds from the start anyway).
            .filter(|m| !(kind == Kind::Fold && m.view.is_none() && m.target == m.current))
            .map(|m| (m.tp.partition, m.target))
            .collect();
        v.set(&positions).await.with_context(|| {
            format!(
                "the group's offsets moved, but not the {} view's positions: run the same reset again",
                v.processor.name()
            )
        })?;
        let local =
            !(v.processor == Processor::Inbox && config.views.backend == ViewsBackend::Cassandra);
        if local && config.log.backend == Backend::Kafka {
            println!(
                "note: the {} view's positions moved under {}; instances on other machines keep their own",
                v.processor.name(),
                config.data_dir.display()
            );
        }
    }
    println!(
        "reset {group}: {} partition(s) moved",
        moves.iter().filter(|m| m.target != m.current).count()
    );
    Ok(ExitCode::SUCCESS)
}

fn print_plan(group: &str, moves: &[Move], kind: Kind, execute: bool) {
    println!(
        "{} {group}",
        if execute { "resetting" } else { "would reset" }
    );
    println!(
        "{:<26} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "TOPIC", "PARTITION", "START", "COMMITTED", "VIEW", "END", "NEW"
    );
    let dash = |o: Option<u64>| o.map_or_else(|| "-".to_string(), |o| o.to_string());
    for m in moves {
        println!(
            "{:<26} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
            m.tp.topic,
            m.tp.partition,
            m.low,
            dash(m.committed),
            dash(m.view),
            m.high,
            m.target
        );
    }
    let skipped: u64 = moves
        .iter()
        .map(|m| m.target.saturating_sub(m.current))
        .sum();
    let again: u64 = moves
        .iter()
        .map(|m| m.current.saturating_sub(m.target))
        .sum();
    match kind {
        Kind::Fold if skipped > 0 => println!(
            "{skipped} record(s) will never be folded into the view: it differs from a clean \
             pass over the log until it is rebuilt"
        ),
        Kind::Rows if again > 0 => println!(
            "{again} record(s) will be folded again; each row ends as the latest event of the log"
        ),
        Kind::OffsetsOnly if again > 0 => println!("{again} record(s) will be processed again"),
        _ if skipped > 0 => println!("{skipped} record(s) will be skipped"),
        _ => {}
    }
}
