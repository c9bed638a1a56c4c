//! The members of the embedded log's consumer groups, published for other
//! processes.
//!
//! The embedded log's groups live in the memory of the one process that holds
//! the log (RocksDB's lock), so another process (`courier groups describe`
//! beside `courier up`) cannot ask the coordinator. The holder therefore keeps
//! a file in the log directory, [`FILE`], with its pid and every member of
//! every group with its assignment, rewritten whenever a member joins, leaves
//! or a partition moves. It is written to a temporary name and renamed over
//! the old one, so a reader sees one whole snapshot or the previous one.
//!
//! A reader trusts the file only while the log is held by someone (it could not
//! open the log read-write) and the pid in the file is alive: a process killed
//! with SIGKILL leaves its file behind, and the next process to open the log
//! read-write removes it.
//!
//! Format, text, one record per line, fields separated by tabs (`\`, tab and
//! newline escaped as `\\`, `\t`, `\n`): a head line `courier-groups`, `1`
//! (the version), PID; then one line per member: GROUP, MEMBER_ID, CLIENT_ID,
//! HOST, and its partitions as `TOPIC/PARTITION` joined by commas.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crate::log::{GroupMember, TopicPartition};

/// The file's name in the log directory.
pub(crate) const FILE: &str = "courier-groups";

/// The first field of the first line, and the format's version.
const MAGIC: &str = "courier-groups";
const VERSION: &str = "1";

/// What a holder published.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Published {
    /// The process holding the log.
    pub(crate) pid: u32,
    /// Members by group (groups without members are not listed).
    pub(crate) groups: BTreeMap<String, Vec<GroupMember>>,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// The file's text for a snapshot.
pub(crate) fn encode(published: &Published) -> String {
    let mut out = format!("{MAGIC}\t{VERSION}\t{}\n", published.pid);
    for (group, members) in &published.groups {
        for m in members {
            let assignment: Vec<String> = m
                .assignment
                .iter()
                .map(|tp| format!("{}/{}", tp.topic, tp.partition))
                .collect();
            out.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                escape(group),
                escape(&m.member_id),
                escape(&m.client_id),
                escape(&m.host),
                escape(&assignment.join(","))
            ));
        }
    }
    out
}

/// A snapshot from the file's text; `None` for text this build does not read
/// (another version, or damage): the reader then knows no members.
pub(crate) fn decode(text: &str) -> Option<Published> {
    let mut lines = text.lines();
    let mut head = lines.next()?.split('\t');
    if head.next()? != MAGIC || head.next()? != VERSION {
        return None;
    }
    let pid = head.next()?.parse().ok()?;
    let mut groups: BTreeMap<String, Vec<GroupMember>> = BTreeMap::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let f: Vec<String> = line.split('\t').map(unescape).collect();
        let [group, member_id, client_id, host, assignment] = <[String; 5]>::try_from(f).ok()?;
        let mut tps = Vec::new();
        for tp in assignment.split(',').filter(|s| !s.is_empty()) {
            let (topic, partition) = tp.rsplit_once('/')?;
            tps.push(TopicPartition::new(topic, partition.parse().ok()?));
        }
        groups.entry(group).or_default().push(GroupMember {
            member_id,
            client_id,
            host,
            assignment: tps,
        });
    }
    Some(Published { pid, groups })
}

/// Replaces the file in `dir` with this snapshot (write, then rename).
pub(crate) fn write(dir: &Path, published: &Published) -> io::Result<()> {
    let tmp = dir.join(format!("{FILE}.tmp"));
    std::fs::write(&tmp, encode(published))?;
    std::fs::rename(&tmp, dir.join(FILE))
}

/// The snapshot in `dir`; `None` when there is none or it cannot be read.
pub(crate) fn read(dir: &Path) -> Option<Published> {
    decode(&std::fs::read_to_string(dir.join(FILE)).ok()?)
}

/// Removes the file (the holder is closing the log, or a new holder starts).
pub(crate) fn remove(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILE));
}

/// Whether process `pid` is alive. Where `/proc` does not exist, every pid
/// counts as alive (the log being held already says someone is).
pub(crate) fn alive(pid: u32) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new(&format!("/proc/{pid}")).exists()
}

/// This machine's name, as a member's host.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_reads_back_as_written_whatever_its_names_hold() {
        let mut groups = BTreeMap::new();
        groups.insert(
            "courier.inbox".to_string(),
            vec![
                GroupMember {
                    member_id: "12-0".into(),
                    client_id: "courier-group".into(),
                    host: "box".into(),
                    assignment: vec![
                        TopicPartition::new("courier.conversations.v1", 0),
                        TopicPartition::new("courier.conversations.v1", 11),
                    ],
                },
                GroupMember {
                    member_id: "12-3".into(),
                    client_id: "courier-group".into(),
                    host: "box".into(),
                    assignment: vec![],
                },
            ],
        );
        groups.insert(
            "odd\tname\\with\nbreaks".to_string(),
            vec![GroupMember {
                member_id: "12-1".into(),
                client_id: "c".into(),
                host: "h".into(),
                assignment: vec![TopicPartition::new("t", 2)],
            }],
        );
        let p = Published { pid: 12, groups };
        assert_eq!(decode(&encode(&p)), Some(p));
    }

    #[test]
    fn text_of_another_version_or_damaged_is_not_read() {
        assert_eq!(decode("courier-groups\t2\t12\n"), None);
        assert_eq!(decode("something else"), None);
        assert_eq!(decode("courier-groups\t1\t12\ng\tm\tc\n"), None);
        assert_eq!(
            decode("courier-groups\t1\t12\n"),
            Some(Published {
                pid: 12,
                groups: BTreeMap::new()
            })
        );
    }
}
