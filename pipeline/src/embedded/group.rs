//! Consumer groups of the embedded log: an in-process coordinator with Kafka's
//! cooperative rebalancing shape.
//!
//! A partition moves in two steps: its owner gives it up at its next `poll`
//! (`Revoked`), and only then may its new owner take it (`Assigned`). A member that
//! is processing a batch therefore never loses a partition under its feet, and a
//! partition is never owned twice. A member leaves by `close` or by being dropped
//! (a crashed task), and its partitions go to the others.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Inner, wait_for_change};
use crate::log::{ConsumedRecord, ConsumerEvent, GroupConsumer, LogError, TopicPartition};

#[derive(Default)]
struct Member {
    topics: Vec<String>,
    owned: BTreeSet<TopicPartition>,
}

#[derive(Default)]
struct Group {
    /// Members by join order (ids only grow), which makes assignment deterministic.
    members: BTreeMap<u64, Member>,
}

/// All groups of one embedded log.
#[derive(Default)]
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
}

impl Group {
    /// Round-robin of each topic's partitions over the members subscribed to it.
    fn target(&self, inner: &Inner, member: u64) -> BTreeSet<TopicPartition> {
        let mut out = BTreeSet::new();
        let Some(me) = self.members.get(&member) else {
            return out;
        };
        for topic in &me.topics {
            let subscribers: Vec<u64> = self
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(topic))
                .map(|(id, _)| *id)
                .collect();
            let Some(idx) = subscribers.iter().position(|id| *id == member) else {
                continue;
            };
            let n = inner.partitions_of(topic).unwrap_or(0);
            for p in (0..n).filter(|p| *p as usize % subscribers.len() == idx) {
                out.insert(TopicPartition::new(topic.clone(), p));
            }
        }
        out
    }

    fn owner_of(&self, tp: &TopicPartition) -> Option<u64> {
        self.members
            .iter()
            .find(|(_, m)| m.owned.contains(tp))
            .map(|(id, _)| *id)
    }
}

/// One member of an embedded consumer group.
pub(crate) struct EmbeddedConsumer {
    inner: Arc<Inner>,
    group: String,
    member: u64,
    positions: BTreeMap<TopicPartition, u64>,
    /// Where the next poll starts reading, so no partition starves the others.
    cursor: usize,
    left: bool,
}

impl EmbeddedConsumer {
    pub(crate) fn join(inner: Arc<Inner>, group: &str, topics: &[String]) -> Self {
        let member = inner.groups.next_member.fetch_add(1, Ordering::Relaxed);
        {
            let mut groups = inner
                .groups
                .groups
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            groups.entry(group.to_string()).or_default().members.insert(
                member,
                Member {
                    topics: topics.to_vec(),
                    owned: BTreeSet::new(),
                },
            );
        }
        tracing::debug!(group, member, "joined consumer group");
        inner.notify();
        EmbeddedConsumer {
            inner,
            group: group.to_string(),
            member,
            positions: BTreeMap::new(),
            cursor: 0,
            left: false,
        }
    }

    fn leave(&mut self) {
        if self.left {
            return;
        }
        self.left = true;
        let mut groups = self
            .inner
            .groups
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(g) = groups.get_mut(&self.group) {
            g.members.remove(&self.member);
            if g.members.is_empty() {
                groups.remove(&self.group);
            }
        }
        drop(groups);
        tracing::debug!(group = %self.group, member = self.member, "left consumer group");
        self.inner.notify();
    }

    /// Applies one step of the rebalance protocol, if one is due.
    fn rebalance_step(&mut self) -> Result<Option<ConsumerEvent>, LogError> {
        let mut groups = self
            .inner
            .groups
            .groups
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let g = groups.get_mut(&self.group).ok_or(LogError::Closed)?;
        let target = g.target(&self.inner, self.member);
        let me = g.members.get_mut(&self.member).ok_or(LogError::Closed)?;
        let revoked: Vec<_> = me.owned.difference(&target).cloned().collect();
        if !revoked.is_empty() {
            for tp in &revoked {
                me.owned.remove(tp);
                self.positions.remove(tp);
            }
            drop(groups);
            // Others may be waiting to take these.
            self.inner.notify();
            return Ok(Some(ConsumerEvent::Revoked(revoked)));
        }
        let wanted: Vec<_> = target.difference(&me.owned).cloned().collect();
        let free: Vec<_> = wanted
            .into_iter()
            .filter(|tp| g.owner_of(tp).is_none())
            .collect();
        if free.is_empty() {
            return Ok(None);
        }
        let me = g.members.get_mut(&self.member).ok_or(LogError::Closed)?;
        me.owned.extend(free.iter().cloned());
        drop(groups);
        for tp in &free {
            let start = match self
                .inner
                .committed_sync(&self.group, &tp.topic, tp.partition)?
            {
                Some(o) => o,
                None => self.inner.earliest(&tp.topic, tp.partition)?,
            };
            self.positions.insert(tp.clone(), start);
        }
        Ok(Some(ConsumerEvent::Assigned(free)))
    }

    fn fetch(&mut self, max: usize) -> Result<Vec<ConsumedRecord>, LogError> {
        let tps: Vec<_> = self.positions.keys().cloned().collect();
        let mut out = Vec::new();
        if tps.is_empty() {
            return Ok(out);
        }
        for i in 0..tps.len() {
            if out.len() >= max {
                break;
            }
            let tp = &tps[(self.cursor + i) % tps.len()];
            let pos = self.positions[tp];
            let got = self
                .inner
                .read_sync(&tp.topic, tp.partition, pos, max - out.len())?;
            if let Some(last) = got.last() {
                self.positions.insert(tp.clone(), last.offset + 1);
            }
            out.extend(got);
        }
        self.cursor = (self.cursor + 1) % tps.len();
        Ok(out)
    }

    fn check_owned(&self, tp: &TopicPartition) -> Result<(), LogError> {
        if self.positions.contains_key(tp) {
            Ok(())
        } else {
            Err(LogError::NotOwned(tp.clone()))
        }
    }
}

#[async_trait]
impl GroupConsumer for EmbeddedConsumer {
    async fn poll(&mut self, max: usize, timeout: Duration) -> Result<ConsumerEvent, LogError> {
        if self.left {
            return Err(LogError::Closed);
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.inner.subscribe_changes();
        loop {
            if let Some(ev) = self.rebalance_step()? {
                return Ok(ev);
            }
            let records = self.fetch(max)?;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !records.is_empty() || left.is_zero() {
                return Ok(ConsumerEvent::Records(records));
            }
            wait_for_change(&mut rx, left).await;
        }
    }

    fn assignment(&self) -> Vec<TopicPartition> {
        self.positions.keys().cloned().collect()
    }

    fn position(&self, tp: &TopicPartition) -> Option<u64> {
        self.positions.get(tp).copied()
    }

    async fn seek(&mut self, tp: &TopicPartition, offset: u64) -> Result<(), LogError> {
        self.check_owned(tp)?;
        self.positions.insert(tp.clone(), offset);
        Ok(())
    }

    async fn commit(&mut self, offsets: &[(TopicPartition, u64)]) -> Result<(), LogError> {
        for (tp, _) in offsets {
            self.check_owned(tp)?;
        }
        self.inner.commit_sync(&self.group, offsets)
    }

    fn lag(&self) -> Vec<(TopicPartition, u64)> {
        self.positions
            .iter()
            .map(|(tp, pos)| {
                let high = self.inner.high(&tp.topic, tp.partition).unwrap_or(*pos);
                (tp.clone(), high.saturating_sub(*pos))
            })
            .collect()
    }

    async fn close(mut self: Box<Self>) -> Result<(), LogError> {
        self.leave();
        Ok(())
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        // A task that dies without closing still leaves the group, as a Kafka member
        // does when its session times out.
        self.leave();
    }
}
