//! The inbox and history views in Apache Cassandra / ScyllaDB, through the
//! `scylla` driver: the [`InboxStore`] port for a deployment on Kafka.
//!
//! Schema (migrations in `sinks/migrations/`, applied by [`migrate`]):
//!
//! | table                 | partition key              | clustering   | value                      |
//! | --------------------- | -------------------------- | ------------ | -------------------------- |
//! | `messages`            | (conversation_id, day)     | sent_offset  | version, `MessageRow` JSON |
//! | `message_days`        | conversation_id            | day          |                            |
//! | `participants`        | conversation_id            | user_id      | version, `ParticipantRow`  |
//! | `inbox`               | user_id                    | conversation_id | version, `InboxRow`     |
//! | `conversation_states` | conversation_id            |              | applied offset, state JSON |
//! | `checkpoints`         | log_partition              |              | next offset                |
//! | `schema_migrations`   | version                    |              | name, applied_at           |
//!
//! `day` is the UTC day of the message's `sent_at_ms`, so a conversation's history
//! is spread over one partition per day and none grows without bound;
//! `message_days` lists a conversation's days so a read finds them all.
//!
//! Writes (the port's contract for a store that cannot write a batch
//! atomically): every row of the batch, with bounded concurrency, then the
//! states, then the checkpoints, each step only once the previous one was
//! acknowledged. Every write is an upsert `USING TIMESTAMP` [`cql::write_timestamp`]
//! of the event that produced it (offset + 1; checkpoints: next offset + 1), so
//! rewriting a batch changes nothing and an older version never replaces a newer.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::secret::Secret;
use courier_processors::inbox::store::{ConversationRows, InboxBatch, InboxStore};
use courier_processors::inbox::{ConversationState, InboxRow, MessageRow, ParticipantRow};
use courier_processors::store::StoreError;
use futures::{StreamExt, TryStreamExt, stream};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::cql;

const STORE: &str = "inbox/cassandra";

/// Most statements of one batch in flight at once.
pub const WRITE_CONCURRENCY: usize = 64;

/// How to reach the cluster and which keyspace holds the views.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CassandraSettings {
    /// `host:port` of the nodes to contact first.
    pub contact_points: Vec<String>,
    /// The keyspace (already prefixed by the namespace: `Config::cassandra_keyspace`).
    pub keyspace: String,
    /// Replication factor of the keyspace [`migrate`] creates.
    pub replication_factor: u32,
    /// Datacenter to send requests to (and replicate in, with
    /// `NetworkTopologyStrategy`); `None`: any, `SimpleStrategy`.
    pub local_datacenter: Option<String>,
    /// Client-to-node TLS; `None`: plaintext.
    pub tls: Option<CassandraTls>,
    /// The role to log in as; `None`: no login.
    pub credentials: Option<Credentials>,
}

/// How the nodes' certificates are verified.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CassandraTls {
    /// PEM CA certificates; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
}

/// A role and its password (which never prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The role.
    pub username: String,
    /// Its password.
    pub password: Secret,
}

impl CassandraSettings {
    /// Settings for `contact_points` (comma-separated) and a keyspace.
    pub fn new(contact_points: &str, keyspace: impl Into<String>) -> Self {
        CassandraSettings {
            contact_points: contact_points
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            keyspace: keyspace.into(),
            replication_factor: 1,
            local_datacenter: None,
            tls: None,
            credentials: None,
        }
    }
}

fn retryable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::retryable(STORE, format!("{what}: {e}"))
}

/// Connects to the cluster (no keyspace selected). Reads and writes go at
/// `LOCAL_QUORUM`, so a read sees every acknowledged write.
pub async fn connect(settings: &CassandraSettings) -> Result<Session, StoreError> {
    let mut policy = DefaultPolicy::builder();
    if let Some(dc) = &settings.local_datacenter {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&settings.contact_points)
        .default_execution_profile_handle(profile.into_handle());
    if let Some(tls) = &settings.tls {
        // A CA file that cannot be read is a mistake to fix, not an outage.
        let config = crate::tls::client_config("cassandra.ca_file", tls.ca_file.as_deref(), None)
            .map_err(|e| StoreError::fatal(STORE, e))?;
        builder = builder.tls_context(Some(Arc::new(config)));
    }
    if let Some(c) = &settings.credentials {
        builder = builder.user(&c.username, c.password.expose());
    }
    builder.build().await.map_err(|e| {
        let how = match (&settings.tls, &settings.credentials) {
            (None, None) => String::new(),
            (Some(_), None) => " over TLS".to_string(),
            (None, Some(c)) => format!(" as {}", c.username),
            (Some(_), Some(c)) => format!(" over TLS as {}", c.username),
        };
        retryable(
            &format!(
                "connecting to Cassandra at {}{how}",
                settings.contact_points.join(",")
            ),
            e,
        )
    })
}

/// Creates the keyspace if needed, then applies, in order, every embedded
/// migration not yet recorded in its `schema_migrations`, recording each once all
/// its statements succeeded (they are all `IF NOT EXISTS`, so a migration cut off
/// half-way is applied again). Safe to rerun; returns the migrations it applied.
pub async fn migrate(
    settings: &CassandraSettings,
) -> Result<Vec<&'static cql::Migration>, StoreError> {
    let session = connect(settings).await?;
    let ks = &settings.keyspace;
    session
        .query_unpaged(
            cql::create_keyspace(
                ks,
                settings.replication_factor,
                settings.local_datacenter.as_deref(),
            ),
            (),
        )
        .await
        .map_err(|e| retryable(&format!("creating keyspace {ks}"), e))?;
    session
        .use_keyspace(ks.as_str(), false)
        .await
        .map_err(|e| retryable(&format!("using keyspace {ks}"), e))?;
    session
        .query_unpaged(cql::in_keyspace(cql::CREATE_SCHEMA_MIGRATIONS, ks), ())
        .await
        .map_err(|e| retryable("creating schema_migrations", e))?;
    let done = applied_versions(&session, ks).await?;
    let mut applied = Vec::new();
    for m in cql::MIGRATIONS {
        if done.contains(&m.version) {
            continue;
        }
        for statement in cql::statements(m.cql) {
            session
                .query_unpaged(statement, ())
                .await
                .map_err(|e| retryable(&format!("applying migration {}", m.name), e))?;
        }
        session
            .await_schema_agreement()
            .await
            .map_err(|e| retryable(&format!("schema agreement after {}", m.name), e))?;
        session
            .query_unpaged(
                cql::in_keyspace(cql::INSERT_MIGRATION, ks),
                (m.version, m.name),
            )
            .await
            .map_err(|e| retryable(&format!("recording migration {}", m.name), e))?;
        applied.push(m);
    }
    Ok(applied)
}

/// Drops the keyspace of `settings` and everything in it, if it exists (a
/// bench's or test's own keyspace, once done with it).
pub async fn drop_keyspace(settings: &CassandraSettings) -> Result<(), StoreError> {
    let ks = &settings.keyspace;
    connect(settings)
        .await?
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .map_err(|e| retryable(&format!("dropping keyspace {ks}"), e))?;
    Ok(())
}

/// The names of every keyspace on the cluster.
pub async fn keyspaces(session: &Session) -> Result<Vec<String>, StoreError> {
    let what = "listing keyspaces";
    session
        .query_iter(cql::SELECT_KEYSPACES, ())
        .await
        .map_err(|e| retryable(what, e))?
        .rows_stream::<(String,)>()
        .map_err(|e| retryable(what, e))?
        .map_ok(|(n,)| n)
        .try_collect()
        .await
        .map_err(|e| retryable(what, e))
}

async fn applied_versions(session: &Session, ks: &str) -> Result<Vec<i32>, StoreError> {
    session
        .query_iter(cql::in_keyspace(cql::SELECT_MIGRATIONS, ks), ())
        .await
        .map_err(|e| retryable("reading schema_migrations", e))?
        .rows_stream::<(i32,)>()
        .map_err(|e| retryable("reading schema_migrations", e))?
        .map_ok(|(v,)| v)
        .try_collect()
        .await
        .map_err(|e| retryable("reading schema_migrations", e))
}

struct Prepared {
    insert_message: PreparedStatement,
    insert_message_day: PreparedStatement,
    insert_participant: PreparedStatement,
    insert_inbox: PreparedStatement,
    insert_state: PreparedStatement,
    insert_checkpoint: PreparedStatement,
    select_checkpoint: PreparedStatement,
    select_state: PreparedStatement,
    select_inbox: PreparedStatement,
    select_participants: PreparedStatement,
    select_days: PreparedStatement,
    select_messages: PreparedStatement,
}

/// The inbox views in one keyspace.
pub struct CassandraInboxStore {
    session: Arc<Session>,
    ps: Prepared,
}

impl CassandraInboxStore {
    /// Connects and prepares every statement. The keyspace must be migrated to
    /// this build's latest version (`courier migrate`); otherwise a fatal error
    /// says so.
    pub async fn open(settings: &CassandraSettings) -> Result<Self, StoreError> {
        let session = connect(settings).await?;
        let ks = &settings.keyspace;
        let not_migrated = || {
            StoreError::fatal(
                STORE,
                format!(
                    "keyspace {ks} is not migrated to this build's schema: run `courier migrate`"
                ),
            )
        };
        let done = applied_versions(&session, ks)
            .await
            .map_err(|_| not_migrated())?;
        if cql::MIGRATIONS.iter().any(|m| !done.contains(&m.version)) {
            return Err(not_migrated());
        }
        let prepare = |text: &'static str| {
            let session = &session;
            async move {
                session
                    .prepare(cql::in_keyspace(text, ks))
                    .await
                    .map_err(|e| retryable(&format!("preparing `{text}`"), e))
            }
        };
        let ps = Prepared {
            insert_message: prepare(cql::INSERT_MESSAGE).await?,
            insert_message_day: prepare(cql::INSERT_MESSAGE_DAY).await?,
            insert_participant: prepare(cql::INSERT_PARTICIPANT).await?,
            insert_inbox: prepare(cql::INSERT_INBOX).await?,
            insert_state: prepare(cql::INSERT_STATE).await?,
            insert_checkpoint: prepare(cql::INSERT_CHECKPOINT).await?,
            select_checkpoint: prepare(cql::SELECT_CHECKPOINT).await?,
            select_state: prepare(cql::SELECT_STATE).await?,
            select_inbox: prepare(cql::SELECT_INBOX).await?,
            select_participants: prepare(cql::SELECT_PARTICIPANTS).await?,
            select_days: prepare(cql::SELECT_DAYS).await?,
            select_messages: prepare(cql::SELECT_MESSAGES).await?,
        };
        Ok(CassandraInboxStore {
            session: Arc::new(session),
            ps,
        })
    }

    /// The driver session (tests drop their keyspace through it).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Every row of one text column of a (paged) query, decoded from JSON.
    async fn json_rows<T: DeserializeOwned>(
        &self,
        ps: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        let texts: Vec<(String,)> = self
            .session
            .execute_iter(ps.clone(), values)
            .await
            .map_err(|e| retryable(what, e))?
            .rows_stream::<(String,)>()
            .map_err(|e| retryable(what, e))?
            .try_collect()
            .await
            .map_err(|e| retryable(what, e))?;
        texts
            .into_iter()
            .map(|(t,)| {
                serde_json::from_str(&t)
                    .map_err(|e| StoreError::fatal(STORE, format!("{what}: corrupt row: {e}")))
            })
            .collect()
    }

    /// One write.
    async fn execute(&self, w: Write<'_>) -> Result<(), StoreError> {
        let session = &self.session;
        let r = match &w.values {
            Values::Message(v) => session.execute_unpaged(w.ps, v).await,
            Values::Day(v) => session.execute_unpaged(w.ps, v).await,
            Values::Row(v) => session.execute_unpaged(w.ps, v).await,
            Values::State(v) => session.execute_unpaged(w.ps, v).await,
            Values::Checkpoint(v) => session.execute_unpaged(w.ps, v).await,
        };
        r.map(|_| ()).map_err(|e| retryable(w.what, e))
    }

    /// Runs writes with at most [`WRITE_CONCURRENCY`] in flight; all must succeed.
    async fn run_all(&self, writes: Vec<Write<'_>>) -> Result<(), StoreError> {
        // The futures are built before the stream (no closure inside it), so the
        // whole is `Send` for `async_trait`.
        let futures: Vec<_> = writes.into_iter().map(|w| self.execute(w)).collect();
        stream::iter(futures)
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await
            .map(|_| ())
    }

    /// The stored state of one conversation.
    async fn load_state(&self, c: &str) -> Result<Option<ConversationState>, StoreError> {
        let what = "reading conversation states";
        let row = self
            .session
            .execute_unpaged(&self.ps.select_state, (c,))
            .await
            .map_err(|e| retryable(what, e))?
            .into_rows_result()
            .map_err(|e| retryable(what, e))?
            .maybe_first_row::<(Option<String>,)>()
            .map_err(|e| retryable(what, e))?;
        match row.and_then(|(s,)| s) {
            None => Ok(None),
            Some(s) => serde_json::from_str(&s).map(Some).map_err(|e| {
                StoreError::fatal(STORE, format!("state of conversation {c} is corrupt: {e}"))
            }),
        }
    }
}

type MessageValues = (String, i64, i64, String, i32, i64, String, i64);
type DayValues = (String, i64, i64);
type RowValues = (String, String, i32, i64, String, i64);
type StateValues = (String, i64, String, i64);
type CheckpointValues = (i32, i64, i64);

enum Values {
    Message(MessageValues),
    Day(DayValues),
    Row(RowValues),
    State(StateValues),
    Checkpoint(CheckpointValues),
}

struct Write<'a> {
    ps: &'a PreparedStatement,
    values: Values,
    what: &'static str,
}

fn json<T: Serialize>(row: &T) -> Result<String, StoreError> {
    serde_json::to_string(row).map_err(|e| StoreError::fatal(STORE, format!("encoding a row: {e}")))
}

fn bigint(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::fatal(STORE, format!("{what} {v} exceeds bigint")))
}

fn int(v: u32, what: &str) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::fatal(STORE, format!("{what} {v} exceeds int")))
}

#[async_trait]
impl InboxStore for CassandraInboxStore {
    async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        let what = "reading a checkpoint";
        let row = self
            .session
            .execute_unpaged(&self.ps.select_checkpoint, (int(partition, "partition")?,))
            .await
            .map_err(|e| retryable(what, e))?
            .into_rows_result()
            .map_err(|e| retryable(what, e))?
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| retryable(what, e))?;
        Ok(row
            .and_then(|(v,)| v)
            .map(|v| u64::try_from(v).unwrap_or_default()))
    }

    async fn load_states(
        &self,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        let futures: Vec<_> = conversations.iter().map(|c| self.load_state(c)).collect();
        // `buffered` keeps the order of `conversations`.
        stream::iter(futures)
            .buffered(WRITE_CONCURRENCY)
            .try_collect()
            .await
    }

    async fn write(&mut self, batch: &InboxBatch) -> Result<(), StoreError> {
        // 1. Rows (and the days they live in), concurrently.
        let mut rows = Vec::new();
        // A day row only says "this conversation has messages on this day": one
        // write per (conversation, day) in a batch, at the highest timestamp any of
        // its messages would give it, ends the same as one write per message, for a
        // fraction of the writes (a busy conversation sends many per day).
        let mut days: HashMap<(&str, i64), i64> = HashMap::new();
        for m in &batch.messages {
            let r: &MessageRow = &m.row;
            let ts = cql::write_timestamp(m.version);
            let day = cql::day(r.sent_at_ms);
            let top = days.entry((&r.conversation_id, day)).or_insert(ts);
            *top = (*top).max(ts);
        }
        for ((conversation, day), ts) in days {
            rows.push(Write {
                ps: &self.ps.insert_message_day,
                values: Values::Day((conversation.to_string(), day, ts)),
                what: "writing a message day",
            });
        }
        for m in &batch.messages {
            let r: &MessageRow = &m.row;
            let ts = cql::write_timestamp(m.version);
            let day = cql::day(r.sent_at_ms);
            rows.push(Write {
                ps: &self.ps.insert_message,
                values: Values::Message((
                    r.conversation_id.clone(),
                    day,
                    bigint(r.position.offset, "offset")?,
                    r.message_id.clone(),
                    int(m.version.partition, "partition")?,
                    bigint(m.version.offset, "offset")?,
                    json(r)?,
                    ts,
                )),
                what: "writing a message",
            });
        }
        for p in &batch.participants {
            let r: &ParticipantRow = &p.row;
            rows.push(Write {
                ps: &self.ps.insert_participant,
                values: Values::Row((
                    r.conversation_id.clone(),
                    r.user_id.clone(),
                    int(p.version.partition, "partition")?,
                    bigint(p.version.offset, "offset")?,
                    json(r)?,
                    cql::write_timestamp(p.version),
                )),
                what: "writing a participant",
            });
        }
        for i in &batch.inbox {
            rows.push(Write {
                ps: &self.ps.insert_inbox,
                values: Values::Row((
                    i.row.user_id.clone(),
                    i.row.row.conversation_id.clone(),
                    int(i.version.partition, "partition")?,
                    bigint(i.version.offset, "offset")?,
                    json(&i.row.row)?,
                    cql::write_timestamp(i.version),
                )),
                what: "writing an inbox row",
            });
        }
        self.run_all(rows).await?;
        // 2. States, once every row is durable.
        let mut states = Vec::new();
        for s in &batch.states {
            let applied = s.applied_offset();
            states.push(Write {
                ps: &self.ps.insert_state,
                values: Values::State((
                    s.conversation_id().to_owned(),
                    match applied {
                        Some(o) => bigint(o, "offset")?,
                        None => -1,
                    },
                    json(s)?,
                    applied.map_or(0, cql::offset_timestamp),
                )),
                what: "writing a conversation state",
            });
        }
        self.run_all(states).await?;
        // 3. Checkpoints, last.
        let mut checkpoints = Vec::new();
        for (p, next) in &batch.checkpoints {
            checkpoints.push(Write {
                ps: &self.ps.insert_checkpoint,
                values: Values::Checkpoint((
                    int(*p, "partition")?,
                    bigint(*next, "offset")?,
                    cql::offset_timestamp(*next),
                )),
                what: "writing a checkpoint",
            });
        }
        self.run_all(checkpoints).await
    }

    async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError> {
        self.json_rows(&self.ps.select_inbox, (user,), "reading an inbox")
            .await
    }

    async fn conversation_rows(&self, conversation: &str) -> Result<ConversationRows, StoreError> {
        let what = "reading a conversation's days";
        let days: Vec<(i64,)> = self
            .session
            .execute_iter(self.ps.select_days.clone(), (conversation,))
            .await
            .map_err(|e| retryable(what, e))?
            .rows_stream::<(i64,)>()
            .map_err(|e| retryable(what, e))?
            .try_collect()
            .await
            .map_err(|e| retryable(what, e))?;
        let futures: Vec<_> = days
            .into_iter()
            .map(|(day,)| {
                self.json_rows(
                    &self.ps.select_messages,
                    (conversation, day),
                    "reading messages",
                )
            })
            .collect();
        let per_day: Vec<Vec<MessageRow>> = stream::iter(futures).buffered(8).try_collect().await?;
        Ok(ConversationRows {
            participants: self
                .json_rows(
                    &self.ps.select_participants,
                    (conversation,),
                    "reading participants",
                )
                .await?,
            messages: per_day.into_iter().flatten().collect(),
        })
    }
}
