//! The pure parts of the Cassandra inbox store: the embedded
//! migrations and how they split into statements, the CQL text of every statement,
//! the time bucket of a message and the write timestamp of a version.

use courier_processors::inbox::Position;

/// A versioned CQL migration embedded in the binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Applied in ascending order; recorded in `schema_migrations`.
    pub version: i32,
    /// File name, for people.
    pub name: &'static str,
    /// The CQL, statements separated by `;`.
    pub cql: &'static str,
}

/// Every migration, ascending. Append only: an applied migration never changes.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_inbox.cql",
        cql: include_str!("../../migrations/0001_inbox.cql"),
    },
    Migration {
        version: 2,
        name: "0002_view_generations.cql",
        cql: include_str!("../../migrations/0002_view_generations.cql"),
    },
];

/// The statements of a migration: `--` comments dropped, split on `;`.
pub fn statements(cql: &str) -> Vec<String> {
    let text: String = cql
        .lines()
        .map(|l| match l.find("--") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `CREATE KEYSPACE IF NOT EXISTS`: `NetworkTopologyStrategy` in the local
/// datacenter when one is named, `SimpleStrategy` otherwise.
pub fn create_keyspace(keyspace: &str, replication_factor: u32, dc: Option<&str>) -> String {
    let replication = match dc {
        Some(dc) => format!(
            "{{'class': 'NetworkTopologyStrategy', '{}': {replication_factor}}}",
            dc.replace('\'', "''")
        ),
        None => {
            format!("{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}")
        }
    };
    format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}")
}

/// A statement below with its `{ks}` replaced by the keyspace. Statements name
/// their keyspace instead of relying on `USE` (which Cassandra 5 warns about for
/// prepared statements).
pub fn in_keyspace(statement: &str, keyspace: &str) -> String {
    statement.replace("{ks}", keyspace)
}

/// The table of applied migrations.
pub const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations \
     (version int PRIMARY KEY, name text, applied_at timestamp)";
pub const SELECT_MIGRATIONS: &str = "SELECT version FROM {ks}.schema_migrations";
pub const INSERT_MIGRATION: &str = "INSERT INTO {ks}.schema_migrations (version, name, applied_at) VALUES (?, ?, toTimestamp(now()))";

pub const INSERT_MESSAGE: &str = "INSERT INTO {ks}.messages \
     (conversation_id, day, sent_offset, message_id, version_partition, version_offset, body) \
     VALUES (?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?";
pub const INSERT_MESSAGE_DAY: &str =
    "INSERT INTO {ks}.message_days (conversation_id, day) VALUES (?, ?) USING TIMESTAMP ?";
pub const INSERT_PARTICIPANT: &str = "INSERT INTO {ks}.participants \
     (conversation_id, user_id, version_partition, version_offset, body) \
     VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?";
pub const INSERT_INBOX: &str = "INSERT INTO {ks}.inbox \
     (user_id, conversation_id, version_partition, version_offset, body) \
     VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?";
pub const INSERT_STATE: &str = "INSERT INTO {ks}.conversation_states \
     (conversation_id, applied_offset, state) VALUES (?, ?, ?) USING TIMESTAMP ?";
pub const INSERT_CHECKPOINT: &str =
    "INSERT INTO {ks}.checkpoints (log_partition, next_offset) VALUES (?, ?) USING TIMESTAMP ?";

pub const SELECT_CHECKPOINT: &str =
    "SELECT next_offset FROM {ks}.checkpoints WHERE log_partition = ?";
pub const SELECT_STATE: &str =
    "SELECT state FROM {ks}.conversation_states WHERE conversation_id = ?";
pub const SELECT_INBOX: &str = "SELECT body FROM {ks}.inbox WHERE user_id = ?";
pub const SELECT_PARTICIPANTS: &str =
    "SELECT body FROM {ks}.participants WHERE conversation_id = ?";
pub const SELECT_DAYS: &str = "SELECT day FROM {ks}.message_days WHERE conversation_id = ?";
pub const SELECT_MESSAGES: &str =
    "SELECT body FROM {ks}.messages WHERE conversation_id = ? AND day = ?";

/// The generation serving reads, in the base keyspace. Written `USING TIMESTAMP`
/// the generation number, so a later switch always wins and rewriting one is a
/// no-op.
pub const SELECT_GENERATION: &str =
    "SELECT generation FROM {ks}.view_generations WHERE view_name = ?";
pub const INSERT_GENERATION: &str =
    "INSERT INTO {ks}.view_generations (view_name, generation) VALUES (?, ?) USING TIMESTAMP ?";
/// Every keyspace of the cluster (to find generation keyspaces).
pub const SELECT_KEYSPACES: &str = "SELECT keyspace_name FROM system_schema.keyspaces";
/// The view tables of migration 0001: what dropping generation 0 (which shares
/// the base keyspace with the pointer) truncates.
pub const VIEW_TABLES: &[&str] = &[
    "messages",
    "message_days",
    "participants",
    "inbox",
    "conversation_states",
    "checkpoints",
];

/// Length of a message-history bucket: one UTC day of `sent_at_ms`.
pub const DAY_MS: i64 = 86_400_000;

/// The bucket (UTC day number) of a message sent at `sent_at_ms`. `sent_at_ms`
/// is that of the `message_sent` and never changes, so a message stays in one
/// bucket for life.
pub fn day(sent_at_ms: i64) -> i64 {
    sent_at_ms.div_euclid(DAY_MS)
}

/// The `USING TIMESTAMP` of a write versioned by the event at `version`:
/// `offset + 1`.
///
/// Why it never goes backwards between two writes of the same row: every row
/// (message, participant, inbox row, message day, state) belongs to one
/// conversation, and all events of a conversation are in one partition of
/// `courier.conversations.v1` (keyed by `conversation_id`), where offsets only
/// grow. A later event therefore always writes with a larger timestamp, and a
/// redelivered event rewrites the same value with the same timestamp (equal
/// timestamps with equal values are a no-op). An older write arriving after a
/// newer one (a stale owner, a replay) loses. `+ 1` keeps offset 0 off the
/// timestamp 0 some tools treat as unset. Nothing is ever written with the
/// server's clock, so nothing else competes with these timestamps.
pub fn write_timestamp(version: Position) -> i64 {
    offset_timestamp(version.offset)
}

/// [`write_timestamp`] of an offset; checkpoints use their next offset, which is
/// monotone per partition for the same reason.
pub fn offset_timestamp(offset: u64) -> i64 {
    i64::try_from(offset)
        .unwrap_or(i64::MAX - 1)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_split_into_statements_without_comments() {
        let s = statements(
            "-- a; comment\nCREATE TABLE a (x int PRIMARY KEY); -- b\n\nCREATE TABLE b (y int PRIMARY KEY);\n",
        );
        assert_eq!(
            s,
            [
                "CREATE TABLE a (x int PRIMARY KEY)",
                "CREATE TABLE b (y int PRIMARY KEY)"
            ]
        );
        let first = statements(MIGRATIONS[0].cql);
        assert_eq!(first.len(), 6, "{first:#?}");
        assert!(first.iter().all(|s| s.contains("IF NOT EXISTS")));
        let versions: Vec<i32> = MIGRATIONS.iter().map(|m| m.version).collect();
        assert!(versions.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn statements_name_their_keyspace() {
        assert_eq!(
            in_keyspace(SELECT_CHECKPOINT, "k1"),
            "SELECT next_offset FROM k1.checkpoints WHERE log_partition = ?"
        );
        for s in [
            INSERT_MESSAGE,
            INSERT_MESSAGE_DAY,
            INSERT_PARTICIPANT,
            INSERT_INBOX,
            INSERT_STATE,
            INSERT_CHECKPOINT,
            SELECT_STATE,
            SELECT_INBOX,
            SELECT_PARTICIPANTS,
            SELECT_DAYS,
            SELECT_MESSAGES,
            SELECT_MIGRATIONS,
            INSERT_MIGRATION,
            SELECT_GENERATION,
            INSERT_GENERATION,
            CREATE_SCHEMA_MIGRATIONS,
        ] {
            assert!(s.contains("{ks}."), "{s}");
        }
    }

    #[test]
    fn buckets_and_timestamps() {
        assert_eq!(day(0), 0);
        assert_eq!(day(DAY_MS - 1), 0);
        assert_eq!(day(DAY_MS), 1);
        assert_eq!(day(-1), -1);
        assert_eq!(write_timestamp(Position::new(3, 0)), 1);
        assert!(write_timestamp(Position::new(0, 9)) < write_timestamp(Position::new(0, 10)));
        assert_eq!(offset_timestamp(u64::MAX), i64::MAX);
    }

    #[test]
    fn replication_follows_the_datacenter() {
        assert_eq!(
            create_keyspace("k", 1, None),
            "CREATE KEYSPACE IF NOT EXISTS k WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        assert_eq!(
            create_keyspace("k", 3, Some("dc1")),
            "CREATE KEYSPACE IF NOT EXISTS k WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}"
        );
    }
}
