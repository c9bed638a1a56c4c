//! Consumer groups of the embedded log: an in-process coordinator with Kafka's
//! cooperative rebalancing shape.
//!
//! A partition moves in two steps: its owner gives it up at its next `poll`
//! (`Revoked`), and only then may its new owner take it (`Assigned`). A member that
//! is processing a batch therefore never loses a partition under its feet, and a
//! partition is never owned twice. A member leaves by `close` or by being dropped
//! (a crashed task), and its partitions go to the others.
//!
//! Every change of membership or assignment is published to the log directory
//! (see `members`), so another process can describe the groups.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Inner, members, wait_for_change};
use crate::log::{
    ConsumedRecord, ConsumerEvent, GroupConsumer, GroupMember, LogError, TopicPartition,
};

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
pub(crate) struct Coordinator {
    groups: Mutex<HashMap<String, Group>>,
    next_member: AtomicU64,
    /// Where the members are published (the log directory); `None` for a log
    /// opened read-only, which has no groups of its own.
    publish_to: Option<PathBuf>,
    /// Serialises publications, so the last file written is the last snapshot.
    publishing: Mutex<()>,
    pid: u32,
    host: String,
}

impl Coordinator {
    /// The coordinator of a log that publishes its members into `publish_to`.
    pub(crate) fn new(publish_to: Option<PathBuf>) -> Self {
        let c = Coordinator {
            groups: Mutex::new(HashMap::new()),
            next_member: AtomicU64::new(0),
            publish_to,
            publishing: Mutex::new(()),
            pid: std::process::id(),
            host: members::hostname(),
        };
        // At once, so a reader knows the holder even before any group forms (and
        // a file a killed holder left behind is replaced).
        c.publish();
        c
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn member_info(&self, id: u64, m: &Member) -> GroupMember {
        GroupMember {
            member_id: format!("{}-{id}", self.pid),
            client_id: "courier-group".to_string(),
            host: self.host.clone(),
            assignment: m.owned.iter().cloned().collect(),
        }
    }

    /// The live members of every group with any.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, Vec<GroupMember>> {
        self.lock()
            .iter()
            .filter(|(_, g)| !g.members.is_empty())
            .map(|(name, g)| {
                let members = g
                    .members
                    .iter()
                    .map(|(id, m)| self.member_info(*id, m))
                    .collect();
                (name.clone(), members)
            })
            .collect()
    }

    /// Runs `f` (a write of the group's offsets) only if `group` has no member,
    /// holding the coordinator's lock so none joins meanwhile.
    pub(crate) fn while_empty<T>(
        &self,
        group: &str,
        f: impl FnOnce() -> Result<T, LogError>,
    ) -> Result<T, LogError> {
        let groups = self.lock();
        if let Some(g) = groups.get(group).filter(|g| !g.members.is_empty()) {
            return Err(LogError::GroupNotEmpty {
                group: group.to_string(),
                members: g
                    .members
                    .iter()
                    .map(|(id, m)| self.member_info(*id, m))
                    .collect(),
            });
        }
        f()
    }

    /// Rewrites the published members (best effort: a failure only makes
    /// `courier groups` in another process see an older snapshot).
    pub(crate) fn publish(&self) {
        let Some(dir) = &self.publish_to else {
            return;
        };
        let _one_at_a_time = self.publishing.lock().unwrap_or_else(|p| p.into_inner());
        let published = members::Published {
            pid: self.pid,
            groups: self.snapshot(),
        };
        if let Err(e) = members::write(dir, &published) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot publish the groups' members");
        }
    }
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
        inner.groups.publish();
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
        self.inner.groups.publish();
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
            self.inner.groups.publish();
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
        self.inner.groups.publish();
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
