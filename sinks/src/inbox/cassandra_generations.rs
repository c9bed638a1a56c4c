//! Generations of the inbox views in Cassandra: generation 0 lives in the
//! configured (base) keyspace, generation N ≥ 1 in its own keyspace
//! `<base>_gN`, each migrated like the base. The base keyspace's
//! `view_generations` table names the generation that serves reads and that
//! the live processor writes; `courier rebuild inbox` fills a new generation
//! beside it, switches that one row (a single-partition write: readers see the
//! old generation or the new one, never a mix) and drops the old generation.
//!
//! Generation 0 shares the base keyspace with the pointer, so dropping it
//! truncates its view tables instead of dropping the keyspace.

use courier_processors::store::StoreError;
use scylla::client::session::Session;

use super::cassandra::{self, CassandraSettings};
use super::cql;

const STORE: &str = "inbox/cassandra-generations";

/// The name of the inbox view in `view_generations`.
pub const VIEW: &str = "inbox";

/// Longest keyspace name Cassandra accepts.
const MAX_KEYSPACE_LEN: usize = 48;

fn retryable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::retryable(STORE, format!("{what}: {e}"))
}

/// The keyspace of generation `g` of the views whose base keyspace is `base`.
pub fn keyspace_of(base: &str, g: u64) -> Result<String, StoreError> {
    if g == 0 {
        return Ok(base.to_string());
    }
    let name = format!("{base}_g{g}");
    if name.len() > MAX_KEYSPACE_LEN {
        return Err(StoreError::fatal(
            STORE,
            format!(
                "generation keyspace `{name}` is longer than Cassandra's {MAX_KEYSPACE_LEN} \
                 characters: shorten cassandra.keyspace or the namespace"
            ),
        ));
    }
    Ok(name)
}

/// The generation a keyspace named `name` holds, if it is one of `base`'s
/// (generation keyspaces only; the base itself is generation 0).
pub fn generation_of(base: &str, name: &str) -> Option<u64> {
    let digits = name.strip_prefix(base)?.strip_prefix("_g")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|g| *g > 0)
}

/// The generations of the inbox views under one base keyspace.
pub struct CassandraGenerations {
    base: CassandraSettings,
    session: Session,
}

impl CassandraGenerations {
    /// Connects; `base` names the configured keyspace.
    pub async fn connect(base: &CassandraSettings) -> Result<Self, StoreError> {
        Ok(CassandraGenerations {
            base: base.clone(),
            session: cassandra::connect(base).await?,
        })
    }

    /// The settings of generation `g` (its keyspace in place of the base).
    pub fn settings(&self, g: u64) -> Result<CassandraSettings, StoreError> {
        Ok(CassandraSettings {
            keyspace: keyspace_of(&self.base.keyspace, g)?,
            ..self.base.clone()
        })
    }

    /// The generation serving reads; 0 until a rebuild switched. An unmigrated
    /// base keyspace is a fatal error that says to run `courier migrate`.
    pub async fn current(&self) -> Result<u64, StoreError> {
        let ks = &self.base.keyspace;
        let row = self
            .session
            .query_unpaged(cql::in_keyspace(cql::SELECT_GENERATION, ks), (VIEW,))
            .await
            .map_err(|e| {
                StoreError::fatal(
                    STORE,
                    format!(
                        "reading the current generation from {ks}.view_generations ({e}): \
                         run `courier migrate`"
                    ),
                )
            })?
            .into_rows_result()
            .map_err(|e| retryable("reading the current generation", e))?
            .maybe_first_row::<(Option<i64>,)>()
            .map_err(|e| retryable("reading the current generation", e))?;
        Ok(row
            .and_then(|(g,)| g)
            .map(|g| u64::try_from(g).unwrap_or_default())
            .unwrap_or(0))
    }

    /// Generation keyspaces that exist on the cluster (not counting 0), ascending.
    pub async fn on_cluster(&self) -> Result<Vec<u64>, StoreError> {
        let mut gs: Vec<u64> = cassandra::keyspaces(&self.session)
            .await?
            .iter()
            .filter_map(|n| generation_of(&self.base.keyspace, n))
            .collect();
        gs.sort_unstable();
        Ok(gs)
    }

    /// A generation above the current one and every generation keyspace, so a
    /// leftover keyspace is never reused.
    pub async fn next(&self) -> Result<u64, StoreError> {
        let highest = self.on_cluster().await?.into_iter().max().unwrap_or(0);
        Ok(highest.max(self.current().await?) + 1)
    }

    /// Creates and migrates generation `g`'s keyspace.
    pub async fn create(&self, g: u64) -> Result<CassandraSettings, StoreError> {
        let settings = self.settings(g)?;
        cassandra::migrate(&settings).await?;
        Ok(settings)
    }

    /// Makes `g` the generation serving reads: one row, written `USING TIMESTAMP`
    /// g + 1, so a higher generation always wins over a lower one.
    pub async fn switch_to(&self, g: u64) -> Result<(), StoreError> {
        let ts = i64::try_from(g + 1)
            .map_err(|_| StoreError::fatal(STORE, format!("generation {g} exceeds bigint")))?;
        self.session
            .query_unpaged(
                cql::in_keyspace(cql::INSERT_GENERATION, &self.base.keyspace),
                (VIEW, ts - 1, ts),
            )
            .await
            .map_err(|e| retryable(&format!("switching reads to generation g{g}"), e))?;
        Ok(())
    }

    /// Drops generation `g`: its keyspace, or for 0 the rows of its view tables.
    pub async fn remove(&self, g: u64) -> Result<(), StoreError> {
        let statements: Vec<String> = if g == 0 {
            cql::VIEW_TABLES
                .iter()
                .map(|t| format!("TRUNCATE TABLE {}.{t}", self.base.keyspace))
                .collect()
        } else {
            vec![format!(
                "DROP KEYSPACE IF EXISTS {}",
                self.settings(g)?.keyspace
            )]
        };
        for s in statements {
            self.session
                .query_unpaged(s.as_str(), ())
                .await
                .map_err(|e| retryable(&format!("dropping generation g{g} (`{s}`)"), e))?;
        }
        Ok(())
    }

    /// Drops every generation keyspace but the current one (an unfinished
    /// rebuild's, or an old one a crash kept before it was dropped); returns them.
    /// Generation 0's tables are left alone: it may be the current one, and
    /// otherwise a rebuild truncated them when it switched away.
    pub async fn remove_stale(&self) -> Result<Vec<u64>, StoreError> {
        let current = self.current().await?;
        let stale: Vec<u64> = self
            .on_cluster()
            .await?
            .into_iter()
            .filter(|g| *g != current)
            .collect();
        for g in &stale {
            self.remove(*g).await?;
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_keyspaces_are_named_after_the_base() {
        assert_eq!(keyspace_of("ns_courier", 0).unwrap(), "ns_courier");
        assert_eq!(keyspace_of("ns_courier", 12).unwrap(), "ns_courier_g12");
        assert!(keyspace_of(&"k".repeat(46), 1).is_err(), "49 characters");
        assert_eq!(generation_of("ns_courier", "ns_courier_g12"), Some(12));
        assert_eq!(generation_of("ns_courier", "ns_courier"), None);
        assert_eq!(generation_of("ns_courier", "ns_courier_g0"), None);
        assert_eq!(generation_of("ns_courier", "ns_courier_gx"), None);
        assert_eq!(generation_of("ns_courier", "ns_courier_g"), None);
        assert_eq!(generation_of("ns", "ns_courier_g1"), None);
        assert_eq!(generation_of("ns_courier", "ns_courier_g1_g2"), None);
    }
}
