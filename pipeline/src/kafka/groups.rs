//! Consumer groups as Kafka's group coordinator knows them: list them, describe
//! one (members with client id, host and assignment; committed offsets), and
//! move a group's committed offsets while it has no members.
//!
//! - Members come from DescribeGroups (`fetch_group_list`); a member's
//!   assignment is the raw bytes of Kafka's consumer protocol
//!   (`ConsumerProtocolAssignment`: i16 version, an array of (topic, array of
//!   i32 partitions), then user data), parsed by [`parse_assignment`].
//! - Offsets are committed by the group's offset client (`Inner::offset_client`),
//!   a consumer with the group's `group.id` that never joins it: for a group
//!   without members the broker takes its commit as a standalone one
//!   (generation -1); for a group with members it refuses it, so a member that
//!   joins between the check and the commit cannot have its offsets moved
//!   under it.
//! - Names are logical: the namespace prefix is taken off groups and topics,
//!   and a group or topic of another namespace is not shown.

use std::sync::Arc;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{Inner, OP_TIMEOUT, blocking, retrying};
use crate::log::{GroupDescription, GroupMember, LogError, TopicPartition};

/// Every group of this namespace the coordinators know (with members or
/// committed offsets), logical names, sorted.
pub(crate) async fn list(inner: &Arc<Inner>) -> Result<Vec<String>, LogError> {
    let meta = inner.meta.clone();
    let all = blocking("list consumer groups", move || {
        let list = retrying("list consumer groups", || {
            meta.fetch_group_list(None, OP_TIMEOUT)
        })
        .map_err(|e| LogError::backend("list consumer groups", e))?;
        Ok(list
            .groups()
            .iter()
            .map(|g| g.name().to_string())
            .collect::<Vec<_>>())
    })
    .await?;
    let mut out: Vec<String> = all
        .iter()
        .filter_map(|g| inner.names().logical_group(g))
        .map(str::to_string)
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A group's state and members (logical topics).
async fn members_of(
    inner: &Arc<Inner>,
    group: &str,
) -> Result<(String, Vec<GroupMember>), LogError> {
    let kafka_group = inner.names().group(group);
    let meta = inner.meta.clone();
    let names = inner.names().clone();
    blocking("describe a consumer group", move || {
        let list = retrying("describe a consumer group", || {
            meta.fetch_group_list(Some(&kafka_group), OP_TIMEOUT)
        })
        .map_err(|e| {
            LogError::backend("describe a consumer group", format!("{kafka_group}: {e}"))
        })?;
        let Some(g) = list.groups().iter().find(|g| g.name() == kafka_group) else {
            return Ok(("Dead".to_string(), Vec::new()));
        };
        let mut members = Vec::new();
        for m in g.members() {
            let raw = parse_assignment(m.assignment().unwrap_or_default()).map_err(|e| {
                LogError::backend(
                    "describe a consumer group",
                    format!("{kafka_group}: the assignment of member {}: {e}", m.id()),
                )
            })?;
            let assignment = raw
                .into_iter()
                .filter_map(|(topic, partition)| {
                    Some(TopicPartition::new(
                        names.logical(&topic)?,
                        u32::try_from(partition).ok()?,
                    ))
                })
                .collect();
            members.push(GroupMember {
                member_id: m.id().to_string(),
                client_id: m.client_id().to_string(),
                // The broker writes the address as `/IP`.
                host: m.client_host().trim_start_matches('/').to_string(),
                assignment,
            });
        }
        Ok((g.state().to_string(), members))
    })
    .await
}

/// A group's members and its committed offsets on the catalog's topics.
pub(crate) async fn describe(
    inner: &Arc<Inner>,
    group: &str,
) -> Result<GroupDescription, LogError> {
    let (state, members) = members_of(inner, group).await?;
    let client = inner.offset_client(group)?;
    let kafka_group = inner.names().group(group);
    let mut tpl = TopicPartitionList::new();
    for spec in inner.catalog.topics() {
        tpl.add_partition_range(
            &inner.names().topic(&spec.name),
            0,
            spec.partitions as i32 - 1,
        );
    }
    let names = inner.names().clone();
    let committed = blocking("read committed offsets", move || {
        let res = retrying("read committed offsets", || {
            client.committed_offsets(tpl.clone(), OP_TIMEOUT)
        })
        .map_err(|e| {
            LogError::backend(
                "read committed offsets",
                format!("group {kafka_group}: {e}"),
            )
        })?;
        let mut out: Vec<(TopicPartition, u64)> = res
            .elements()
            .iter()
            .filter_map(|e| {
                let Offset::Offset(o) = e.offset() else {
                    return None;
                };
                let topic = names.logical(e.topic())?;
                Some((
                    TopicPartition::new(topic, u32::try_from(e.partition()).ok()?),
                    u64::try_from(o).ok()?,
                ))
            })
            .collect();
        out.sort();
        Ok(out)
    })
    .await?;
    Ok(GroupDescription {
        group: group.to_string(),
        state,
        members,
        committed,
    })
}

/// Commits `offsets` for `group`, refused while it has members.
pub(crate) async fn reset(
    inner: &Arc<Inner>,
    group: &str,
    offsets: &[(TopicPartition, u64)],
) -> Result<(), LogError> {
    let mut tpl = TopicPartitionList::new();
    for (tp, offset) in offsets {
        let kafka_topic = inner.check(&tp.topic, tp.partition)?;
        let offset = i64::try_from(*offset)
            .map_err(|_| LogError::backend("move committed offsets", "offset out of range"))?;
        tpl.add_partition_offset(&kafka_topic, tp.partition as i32, Offset::Offset(offset))
            .map_err(|e| LogError::backend("move committed offsets", e))?;
    }
    let (_, members) = members_of(inner, group).await?;
    if !members.is_empty() {
        return Err(LogError::GroupNotEmpty {
            group: group.to_string(),
            members,
        });
    }
    let client = inner.offset_client(group)?;
    let kafka_group = inner.names().group(group);
    let committed = blocking("move committed offsets", move || {
        client
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| LogError::backend("move committed offsets", format!("{kafka_group}: {e}")))
    })
    .await;
    if let Err(e) = committed {
        // The likeliest refusal: a member joined after the check.
        let (_, members) = members_of(inner, group).await?;
        if !members.is_empty() {
            return Err(LogError::GroupNotEmpty {
                group: group.to_string(),
                members,
            });
        }
        return Err(e);
    }
    Ok(())
}

/// The (topic, partition) pairs of a member's assignment in Kafka's consumer
/// protocol (`ConsumerProtocolAssignment`, versions 0 to 3 share this prefix):
/// `i16 version | i32 n | n × (i16 len | topic | i32 m | m × i32 partition) |
/// user data`. Empty bytes (a member not yet assigned) are no partitions.
pub(crate) fn parse_assignment(bytes: &[u8]) -> Result<Vec<(String, i32)>, String> {
    struct Cursor<'a>(&'a [u8]);
    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
            if self.0.len() < n {
                return Err("truncated assignment".into());
            }
            let (head, rest) = self.0.split_at(n);
            self.0 = rest;
            Ok(head)
        }
        fn i16(&mut self) -> Result<i16, String> {
            Ok(i16::from_be_bytes(
                self.take(2)?.try_into().expect("2 bytes"),
            ))
        }
        fn i32(&mut self) -> Result<i32, String> {
            Ok(i32::from_be_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            ))
        }
    }
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut c = Cursor(bytes);
    let version = c.i16()?;
    if version < 0 {
        return Err(format!("assignment version {version}"));
    }
    let topics = c.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = c.i16()?;
        let topic = std::str::from_utf8(c.take(usize::try_from(len).map_err(|_| "topic length")?)?)
            .map_err(|_| "topic name is not UTF-8")?
            .to_string();
        let n = c.i32()?;
        for _ in 0..n.max(0) {
            out.push((topic.clone(), c.i32()?));
        }
    }
    // User data follows; courier's members send none it needs.
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(version: i16, topics: &[(&str, &[i32])], user_data: &[u8]) -> Vec<u8> {
        let mut b = version.to_be_bytes().to_vec();
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((user_data.len() as i32).to_be_bytes());
        b.extend(user_data);
        b
    }

    #[test]
    fn an_assignment_lists_every_topic_and_partition() {
        let b = assignment(3, &[("a", &[0, 5]), ("bb", &[2])], b"sticky");
        assert_eq!(
            parse_assignment(&b).unwrap(),
            vec![("a".into(), 0), ("a".into(), 5), ("bb".into(), 2)]
        );
        assert_eq!(parse_assignment(&assignment(0, &[], b"")).unwrap(), vec![]);
        assert_eq!(parse_assignment(&[]).unwrap(), vec![]);
    }

    #[test]
    fn a_truncated_assignment_is_an_error() {
        let b = assignment(1, &[("topic", &[1, 2, 3])], b"");
        assert!(parse_assignment(&b[..b.len() - 9]).is_err());
        assert!(parse_assignment(&[0]).is_err());
    }
}
