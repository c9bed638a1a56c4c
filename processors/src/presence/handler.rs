//! Drives the presence fold from the runner: decode, fold, write rows with their
//! checkpoint, dead-letter what cannot be applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::runner::{Handler, HandlerError};
use courier_pipeline::{ConsumedRecord, EventLog, TopicPartition, dead_letter, replay};

use super::{PresenceRow, PresenceStore, fold};

/// The presence processor over a store port.
pub struct PresenceProcessor<S> {
    store: S,
    /// Where dead letters go.
    log: Arc<dyn EventLog>,
    /// Next offset to apply per owned partition, as stored with the rows.
    applied: HashMap<u32, u64>,
}

impl<S: PresenceStore> PresenceProcessor<S> {
    /// A processor writing to `store`, dead-lettering through `log`.
    pub fn new(store: S, log: Arc<dyn EventLog>) -> Self {
        PresenceProcessor {
            store,
            log,
            applied: HashMap::new(),
        }
    }

    /// The store (for queries after a run).
    pub fn store(&self) -> &S {
        &self.store
    }
}

#[async_trait]
impl<S: PresenceStore> Handler for PresenceProcessor<S> {
    async fn on_assigned(
        &mut self,
        tps: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, u64)>, HandlerError> {
        // The checkpoint written with the rows is the truth: the group's commit may
        // lag it by a batch after a crash.
        let mut seeks = Vec::new();
        for tp in tps {
            if let Some(next) = self.store.checkpoint(tp.partition)? {
                self.applied.insert(tp.partition, next);
                seeks.push((tp.clone(), next));
            }
        }
        Ok(seeks)
    }

    async fn on_revoked(&mut self, tps: &[TopicPartition]) -> Result<(), HandlerError> {
        for tp in tps {
            self.applied.remove(&tp.partition);
        }
        Ok(())
    }

    async fn handle(&mut self, batch: &[ConsumedRecord]) -> Result<(), HandlerError> {
        let mut latest: HashMap<String, PresenceRow> = HashMap::new();
        let mut rejected = Vec::new();
        let mut next: BTreeMap<u32, u64> = BTreeMap::new();
        for r in batch {
            next.insert(r.partition, r.offset + 1);
            // Records at or below the checkpoint were applied before a crash; a
            // record redriven for another processor is not ours to apply.
            if self
                .applied
                .get(&r.partition)
                .is_some_and(|cp| r.offset < *cp)
                || dead_letter::addressed_to_another(r, "presence")
            {
                continue;
            }
            match replay::decode(r)
                .map_err(|e| e.to_string())
                .and_then(|e| fold(&e))
            {
                Ok(row) => {
                    latest.insert(row.user_id.clone(), row);
                }
                Err(reason) => rejected.push((r, reason)),
            }
        }
        dead_letter::send(&*self.log, "presence", &rejected)
            .await
            .map_err(|e| HandlerError::retryable(format!("writing dead letters: {e}")))?;
        let rows: Vec<_> = latest.into_values().collect();
        let checkpoints: Vec<_> = next.into_iter().collect();
        self.store.write(&rows, &checkpoints)?;
        self.applied.extend(checkpoints);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use courier_pipeline::config::RunnerConfig;
    use courier_pipeline::runner::{RunOptions, run};
    use courier_pipeline::shutdown::Shutdown;
    use courier_pipeline::{EmbeddedLog, Record, producer};
    use courier_schemas::json::parse_line;
    use courier_topics::{Catalog, DEAD_LETTERS, PRESENCE};

    use super::*;
    use crate::presence::Status;
    use crate::store::StoreError;

    /// The port in memory: enough to test the processor's own logic.
    #[derive(Default)]
    struct MemoryStore {
        rows: HashMap<String, PresenceRow>,
        checkpoints: HashMap<u32, u64>,
        writes: usize,
    }

    impl PresenceStore for MemoryStore {
        fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
            Ok(self.checkpoints.get(&partition).copied())
        }
        fn write(
            &mut self,
            rows: &[PresenceRow],
            checkpoints: &[(u32, u64)],
        ) -> Result<(), StoreError> {
            self.writes += 1;
            self.rows
                .extend(rows.iter().map(|r| (r.user_id.clone(), r.clone())));
            self.checkpoints.extend(checkpoints.iter().copied());
            Ok(())
        }
        fn get(&self, user_id: &str) -> Result<Option<PresenceRow>, StoreError> {
            Ok(self.rows.get(user_id).cloned())
        }
    }

    fn opts() -> RunOptions {
        RunOptions {
            processor: "presence".into(),
            group: "courier.presence".into(),
            topics: vec![PRESENCE.into()],
            until_caught_up: true,
            runner: RunnerConfig::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn poison_records_go_to_dead_letters_and_the_rest_applies() {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> = Arc::new(
            EmbeddedLog::open(dir.path(), Catalog::builtin(), Default::default()).unwrap(),
        );
        let ok = |l: &str| parse_line(l).unwrap();
        producer::publish(
            &*log,
            &[
                ok(r#"{"type":"presence","event_id":"p1","user_id":"u1","status":"online","at_ms":1}"#),
                ok(r#"{"type":"presence","event_id":"p2","user_id":"u1","status":"offline","at_ms":2}"#),
            ],
        )
        .await
        .unwrap();
        // Bytes that are no event at all, keyed like u1 so they sit between u1's events.
        let garbage = Record {
            key: b"u1".to_vec(),
            value: vec![0xff, 0xff],
            headers: vec![],
            timestamp_ms: 3,
        };
        log.append(PRESENCE, vec![garbage]).await.unwrap();
        producer::publish(
            &*log,
            &[ok(
                r#"{"type":"presence","event_id":"p3","user_id":"u2","status":"online","at_ms":4}"#,
            )],
        )
        .await
        .unwrap();

        let mut p = PresenceProcessor::new(MemoryStore::default(), log.clone());
        run(log.clone(), &mut p, opts(), Shutdown::never())
            .await
            .unwrap();
        let u1 = p.store().get("u1").unwrap().unwrap();
        assert_eq!((u1.status, u1.last_seen_ms), (Status::Offline, 2));
        assert_eq!(p.store().get("u2").unwrap().unwrap().status, Status::Online);

        let mut dead = Vec::new();
        for part in 0..log.partitions(DEAD_LETTERS).unwrap() {
            dead.extend(
                log.read(DEAD_LETTERS, part, 0, 10, Duration::ZERO)
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(dead.len(), 1, "one dead letter");
        let dl = replay::decode(&dead[0]).unwrap();
        let line = courier_schemas::json::to_line(&dl);
        assert!(
            line.contains(r#""source_topic":"courier.presence.v1""#),
            "{line}"
        );
        assert!(
            line.contains("has no `courier-schema` header"),
            "the reason names the problem: {line}"
        );

        // A second run over the same log changes nothing and writes nothing.
        let writes = p.store().writes;
        let mut again = PresenceProcessor::new(std::mem::take(&mut p.store), log.clone());
        let stats = run(log.clone(), &mut again, opts(), Shutdown::never())
            .await
            .unwrap();
        assert_eq!(stats.records, 0);
        assert_eq!(again.store().writes, writes);
    }
}
