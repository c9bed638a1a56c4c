//! The search view end to end inside the library: embedded log → runner →
//! `SearchProcessor` → tantivy shards → `SearchShards::search`. The port's
//! conformance suite, semantic cases of docs/DESIGN.md, malformed queries, and a
//! crash between staging and committing.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use courier_pipeline::config::RunnerConfig;
use courier_pipeline::runner::{RunOptions, run};
use courier_pipeline::shutdown::Shutdown;
use courier_pipeline::{
    Appended, ConsumedRecord, EmbeddedLog, EventLog, GroupConsumer, LogError,
    Position as LogPosition, Record, producer,
};
use courier_processors::inbox::ConversationState;
use courier_processors::search::conformance::{CommittedDoc, SearchIndexFactory};
use courier_processors::search::{LatestStates, SearchBatch, SearchIndex, SearchProcessor};
use courier_processors::store::StoreError;
use courier_schemas::json::parse_line;
use courier_topics::{CONVERSATIONS, Catalog, DEAD_LETTERS};

use super::{SearchError, SearchShards, TantivySearchIndex};

/// Each check in a temporary directory; the committed documents are read from
/// the shard's last commit with a reader of its own, as `SearchShards` reads.
struct TantivyFactory;

#[async_trait]
impl SearchIndexFactory for TantivyFactory {
    type Place = tempfile::TempDir;
    type Index = TantivySearchIndex;
    async fn place(&self) -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }
    async fn open(&self, place: &tempfile::TempDir) -> TantivySearchIndex {
        TantivySearchIndex::new(place.path())
    }
    async fn committed_documents(
        &self,
        place: &tempfile::TempDir,
        partition: u32,
    ) -> Vec<CommittedDoc> {
        committed_documents(place.path(), partition)
    }
    async fn committed_states(
        &self,
        place: &tempfile::TempDir,
        partition: u32,
    ) -> Vec<ConversationState> {
        committed_states(place.path(), partition)
    }
}

courier_processors::search_index_conformance!(TantivyFactory);

/// The searcher of a shard's last commit, if it was ever created.
fn last_commit(root: &Path, partition: u32) -> Option<tantivy::Searcher> {
    let dir = super::shard_dir(root, partition);
    if !dir.join("meta.json").exists() {
        return None;
    }
    let index = tantivy::Index::open_in_dir(&dir).unwrap();
    Some(index.reader().unwrap().searcher())
}

/// Every live document of a searcher.
fn live_documents(
    searcher: &tantivy::Searcher,
) -> Vec<(tantivy::DocAddress, tantivy::TantivyDocument)> {
    use tantivy::collector::DocSetCollector;
    use tantivy::query::AllQuery;

    let mut addresses: Vec<_> = searcher
        .search(&AllQuery, &DocSetCollector)
        .unwrap()
        .into_iter()
        .collect();
    addresses.sort();
    addresses
        .into_iter()
        .map(|a| (a, searcher.doc(a).unwrap()))
        .collect()
}

/// The conversation states of a shard's last commit.
fn committed_states(root: &Path, partition: u32) -> Vec<ConversationState> {
    use tantivy::schema::Value;

    let Some(searcher) = last_commit(root, partition) else {
        return Vec::new();
    };
    let fields = super::Fields::new();
    live_documents(&searcher)
        .iter()
        .filter_map(|(_, doc)| doc.get_first(fields.state).and_then(|v| v.as_bytes()))
        .map(|bytes| crate::states::decode(bytes, super::STORE, "?").unwrap())
        .collect()
}

/// The message documents of a shard's last commit, with the users who see them.
fn committed_documents(root: &Path, partition: u32) -> Vec<CommittedDoc> {
    use std::collections::HashMap;

    use tantivy::schema::{IndexRecordOption, Value};
    use tantivy::{DocAddress, DocSet, TERMINATED, TantivyDocument};

    let Some(searcher) = last_commit(root, partition) else {
        return Vec::new();
    };
    let fields = super::Fields::new();
    // Who sees a message is indexed, not stored: read it off the postings.
    let mut visible: HashMap<DocAddress, Vec<String>> = HashMap::new();
    for (ord, segment) in searcher.segment_readers().iter().enumerate() {
        let inverted = segment.inverted_index(fields.visible).unwrap();
        let mut terms = inverted.terms().stream().unwrap();
        while terms.advance() {
            let user = String::from_utf8(terms.key().to_vec()).unwrap();
            let mut postings = inverted
                .read_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)
                .unwrap();
            let mut d = postings.doc();
            while d != TERMINATED {
                visible
                    .entry(DocAddress::new(ord as u32, d))
                    .or_default()
                    .push(user.clone());
                d = postings.advance();
            }
        }
    }
    let text = |doc: &TantivyDocument, field| {
        doc.get_first(field)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let mut docs = Vec::new();
    for (address, doc) in live_documents(&searcher) {
        // State documents have no message id.
        let Some(message_id) = text(&doc, fields.message_id) else {
            continue;
        };
        let mut visible_to = visible.remove(&address).unwrap_or_default();
        visible_to.sort();
        docs.push(CommittedDoc {
            conversation_id: text(&doc, fields.conversation_id).unwrap(),
            message_id,
            sender_id: text(&doc, fields.sender_id).unwrap(),
            text: text(&doc, fields.text).unwrap(),
            sent_at_ms: doc
                .get_first(fields.sent_at_ms)
                .and_then(|v| v.as_i64())
                .unwrap(),
            visible_to,
        });
    }
    docs
}

/// Churn, edits, deletes, ciphertext, media, a duplicate, a rule break.
const STREAM: &str = r#"
{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2","u3"],"title":"t","at_ms":10}
{"type":"conversation_created","event_id":"e2","conversation_id":"c2","kind":"direct","creator_id":"u1","member_ids":["u1","u4"],"title":"","at_ms":11}
{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"Hello world, standup at noon","at_ms":12}
{"type":"message_sent","event_id":"e4","conversation_id":"c2","message_id":"m1","sender_id":"u4","text":"hello in private","at_ms":13}
{"type":"members_removed","event_id":"e5","conversation_id":"c1","actor_id":"u1","user_ids":["u3"],"at_ms":14}
{"type":"message_sent","event_id":"e6","conversation_id":"c1","message_id":"m2","sender_id":"u2","text":"hello while u3 is away","at_ms":15}
{"type":"message_sent","event_id":"e7","conversation_id":"c1","message_id":"m3","sender_id":"u3","text":"hello from outside","at_ms":16}
{"type":"members_added","event_id":"e8","conversation_id":"c1","actor_id":"u2","user_ids":["u3","u5"],"at_ms":17}
{"type":"message_sent","event_id":"e9","conversation_id":"c1","message_id":"m4","sender_id":"u5","text":"welcome back, hello again","at_ms":18}
{"type":"message_edited","event_id":"e10","conversation_id":"c1","message_id":"m2","editor_id":"u2","text":"goodbye while u3 is away","at_ms":19}
{"type":"message_sent","event_id":"e11","conversation_id":"c1","message_id":"m5","sender_id":"u1","ciphertext":"aGVsbG8gc2VjcmV0","at_ms":20}
{"type":"message_sent","event_id":"e12","conversation_id":"c1","message_id":"m6","sender_id":"u1","media":{"url":"https://cdn/hello.png","mime_type":"image/png","size_bytes":9},"at_ms":21}
{"type":"message_deleted","event_id":"e13","conversation_id":"c1","message_id":"m4","actor_id":"u5","at_ms":22}
{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"Hello world, standup at noon","at_ms":12}
{"type":"message_sent","event_id":"e14","conversation_id":"c1","message_id":"m7","sender_id":"u3","text":"HELLO everyone, standup moved","at_ms":23}
{"type":"message_edited","event_id":"e15","conversation_id":"c1","message_id":"m5","editor_id":"u1","text":"now in clear: secret plans","at_ms":24}
"#;

fn opts(group: &str, max_batch: usize) -> RunOptions {
    RunOptions {
        processor: "search".into(),
        group: group.into(),
        topics: vec![CONVERSATIONS.into()],
        until_caught_up: true,
        runner: RunnerConfig {
            max_batch,
            poll_timeout_ms: 50,
            max_attempts: 3,
        },
    }
}

async fn log_with(dir: &Path, stream: &str) -> Arc<dyn EventLog> {
    let log: Arc<dyn EventLog> =
        Arc::new(EmbeddedLog::open(dir, Catalog::builtin(), Default::default()).unwrap());
    let events: Vec<_> = stream
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| parse_line(l).unwrap())
        .collect();
    producer::publish(&*log, &events).await.unwrap();
    log
}

/// (conversation, message) of each hit, in result order.
fn ids(shards: &SearchShards, user: &str, query: &str) -> Vec<(String, String)> {
    shards
        .search(user, query, 100, None)
        .unwrap()
        .into_iter()
        .map(|h| (h.conversation_id, h.message_id))
        .collect()
}

fn set(shards: &SearchShards, user: &str, query: &str) -> BTreeSet<String> {
    ids(shards, user, query)
        .into_iter()
        .map(|(c, m)| format!("{c}/{m}"))
        .collect()
}

fn of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_follows_visibility_edits_deletes_and_never_indexes_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(&dir.path().join("log"), STREAM).await;
    let root = dir.path().join("search");
    let mut p = SearchProcessor::new(TantivySearchIndex::new(&root), log.clone());
    let stats = run(
        log.clone(),
        &mut p,
        opts("courier.search", 4),
        Shutdown::never(),
    )
    .await
    .unwrap();
    assert_eq!(stats.records, 16);
    drop(p);
    let s = SearchShards::open(&root).unwrap();

    // Membership as of the send: u3 was away for m2 (and m3 was rejected).
    assert_eq!(set(&s, "u1", "hello"), of(&["c1/m1", "c1/m7", "c2/m1"]));
    assert_eq!(set(&s, "u3", "hello"), of(&["c1/m1", "c1/m7"]));
    assert_eq!(set(&s, "u2", "goodbye"), of(&["c1/m2"]));
    assert!(
        set(&s, "u3", "goodbye").is_empty(),
        "sent while u3 was away"
    );
    // A new member sees only what came after they joined.
    assert_eq!(set(&s, "u5", "standup"), of(&["c1/m7"]));
    // The direct conversation is its members' only.
    assert_eq!(set(&s, "u4", "hello"), of(&["c2/m1"]));
    assert!(set(&s, "u2", "private").is_empty());
    // Edits replace the text; deletes remove the message.
    assert!(set(&s, "u2", "while").contains("c1/m2"));
    assert!(set(&s, "u1", "welcome").is_empty(), "m4 is deleted");
    // Ciphertext and media are never indexed; an edit to text is.
    assert!(
        set(&s, "u1", "secret").contains("c1/m5"),
        "edited to clear text"
    );
    assert!(set(&s, "u1", "aGVsbG8gc2VjcmV0").is_empty());
    assert!(set(&s, "u1", "png").is_empty(), "media-only");
    // Case-insensitive words, phrases, prefixes, booleans, a conversation filter.
    assert_eq!(set(&s, "u1", "HeLLo"), set(&s, "u1", "hello"));
    assert_eq!(set(&s, "u1", "\"standup moved\""), of(&["c1/m7"]));
    assert_eq!(set(&s, "u1", "\"moved standup\""), of(&[]));
    assert_eq!(set(&s, "u1", "stand*"), of(&["c1/m1", "c1/m7"]));
    assert_eq!(set(&s, "u1", "noon OR plans"), of(&["c1/m1", "c1/m5"]));
    assert_eq!(set(&s, "u1", "standup noon"), of(&["c1/m1"]), "all words");
    assert_eq!(set(&s, "u1", "hello -noon"), of(&["c1/m7", "c2/m1"]));
    assert_eq!(set(&s, "u1", "hello -stand*"), of(&["c2/m1"]));
    assert_eq!(
        s.search("u4", "hello", 10, Some("c1")).unwrap().len(),
        0,
        "u4 is no member of c1"
    );
    assert_eq!(s.search("u1", "hello", 10, Some("c2")).unwrap().len(), 1);
    assert!(s.search("u9", "hello", 10, None).unwrap().is_empty());

    // The hit carries the message and a highlighted snippet; best first.
    let hits = s.search("u1", "standup", 1, None).unwrap();
    assert_eq!(hits.len(), 1, "the limit holds");
    let all = s.search("u1", "hello", 10, None).unwrap();
    assert!(all.windows(2).all(|w| w[0].score >= w[1].score));
    let m7 = all.iter().find(|h| h.message_id == "m7").unwrap();
    assert_eq!(m7.sender_id, "u3");
    assert_eq!(m7.text, "HELLO everyone, standup moved");
    assert_eq!(m7.sent_at_ms, 23);
    assert!(m7.snippet.contains("<b>HELLO</b>"), "{}", m7.snippet);
    let json = serde_json::to_value(m7).unwrap();
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys.iter().copied().collect::<BTreeSet<_>>(),
        [
            "message_id",
            "conversation_id",
            "sender_id",
            "text",
            "sent_at_ms",
            "score",
            "snippet"
        ]
        .into_iter()
        .collect()
    );

    // Malformed queries are errors that say so, never panics.
    for bad in ["\"unclosed", "nosuchfield:x", "(hello", "text:"] {
        match s.search("u1", bad, 10, None) {
            Err(SearchError::MalformedQuery { query, reason }) => {
                assert_eq!(query, bad);
                assert!(!reason.is_empty());
            }
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    assert!(matches!(
        s.search("u1", "hello", 0, None),
        Err(SearchError::ZeroLimit)
    ));
}

/// Queries past the bounds are refused with a reason, and every query within them
/// parses (or is refused) on a stack smaller than a tokio worker's: before the
/// bounds, 10,000 nested parentheses overflowed the stack and aborted the process.
#[test]
fn overlong_and_overnested_queries_are_refused_and_none_within_bounds_overflows() {
    use super::{MAX_QUERY_BYTES, MAX_QUERY_DEPTH};
    let dir = tempfile::tempdir().unwrap();
    let shards = SearchShards::open(dir.path()).unwrap();
    let nested = |n: usize| format!("{}hello{}", "(".repeat(n), ")".repeat(n));
    let refused = |q: &str, says: &str| match shards.search("u1", q, 10, None) {
        Err(SearchError::MalformedQuery { reason, .. }) => {
            assert!(reason.contains(says), "{reason}")
        }
        other => panic!("{} bytes gave {other:?}", q.len()),
    };
    refused(&nested(10_000), "nest");
    refused(&nested(MAX_QUERY_DEPTH + 1), "nest");
    refused(&"hello ".repeat(MAX_QUERY_BYTES), "bytes");
    // Parentheses in quotes are text, not nesting.
    assert!(shards.parse(&format!("\"{}\"", "(".repeat(100))).is_ok());

    let fill = |unit: &str, tail: &str| {
        let mut q = unit.repeat((MAX_QUERY_BYTES - tail.len()) / unit.len());
        q.push_str(tail);
        q
    };
    let within = [
        nested(MAX_QUERY_DEPTH),
        fill("NOT ", "hello"),
        fill("-", "hello"),
        fill("+", "hello"),
        fill("hello AND ", "hello"),
        fill("a OR ", "b"),
        fill("(a) ", ""),
        fill("\"", ""),
        fill("*", ""),
        fill("a* ", ""),
        fill("text:", "x"),
        fill("\\", ""),
        fill("[", ""),
        fill("{", ""),
        fill("^2 ", ""),
        fill("~", ""),
    ];
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || {
            for q in &within {
                assert!(q.len() <= MAX_QUERY_BYTES);
                match shards.parse(q) {
                    Ok(_) | Err(SearchError::MalformedQuery { .. }) => {}
                    Err(e) => panic!("{q:?}: {e}"),
                }
            }
        })
        .unwrap()
        .join()
        .expect("parsing within the bounds finishes on a small stack");
}

/// Delegates to the tantivy index, but its `crash_at`-th write stages every shard,
/// commits only the first, and fails for good: what a process killed in the
/// middle of a multi-shard batch leaves on disk once its writers are dropped.
struct CrashingIndex {
    inner: TantivySearchIndex,
    writes: usize,
    crash_at: usize,
    crashed: bool,
}

#[async_trait]
impl SearchIndex for CrashingIndex {
    async fn open_shard(&mut self, partition: u32) -> Result<Option<u64>, StoreError> {
        self.inner.open_shard(partition).await
    }
    async fn close_shard(
        &mut self,
        partition: u32,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        self.inner.close_shard(partition, latest).await
    }
    async fn load_states(
        &mut self,
        partition: u32,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        self.inner.load_states(partition, conversations).await
    }
    async fn flush(&mut self, latest: &dyn LatestStates) -> Result<(), StoreError> {
        self.inner.flush(latest).await
    }
    async fn write(
        &mut self,
        batch: &SearchBatch,
        latest: &dyn LatestStates,
    ) -> Result<(), StoreError> {
        self.writes += 1;
        if self.writes < self.crash_at || batch.shards.len() < 2 {
            return self.inner.write(batch, latest).await;
        }
        for w in &batch.shards {
            self.inner.stage(w)?;
        }
        let first = &batch.shards[0];
        self.inner
            .commit_shard(first.partition, first.next_offset, latest)?;
        self.crashed = true;
        Err(StoreError::fatal(
            "crash",
            "killed between two shard commits",
        ))
    }
}

/// A generated stream over many conversations (so batches span shards).
fn generated() -> String {
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let mut out = String::new();
    for c in 0..12 {
        out.push_str(&format!(
            "{{\"type\":\"conversation_created\",\"event_id\":\"cc{c}\",\"conversation_id\":\"c{c}\",\"kind\":\"group\",\"creator_id\":\"u{}\",\"member_ids\":[\"u{}\",\"u{}\"],\"title\":\"\",\"at_ms\":1}}\n",
            c % 4,
            c % 4,
            (c + 1) % 4
        ));
    }
    for i in 0..30 {
        for c in 0..12 {
            let (a, b) = (words[(i + c) % 6], words[(i * 7 + c) % 6]);
            let line = match i % 5 {
                3 => format!(
                    "{{\"type\":\"members_added\",\"event_id\":\"a{c}-{i}\",\"conversation_id\":\"c{c}\",\"actor_id\":\"u{}\",\"user_ids\":[\"u{}\"],\"at_ms\":2}}",
                    c % 4,
                    (c + i) % 6
                ),
                4 => format!(
                    "{{\"type\":\"message_edited\",\"event_id\":\"ed{c}-{i}\",\"conversation_id\":\"c{c}\",\"message_id\":\"m{}\",\"editor_id\":\"u{}\",\"text\":\"{b} edited\",\"at_ms\":3}}",
                    i - 2,
                    c % 4
                ),
                _ => format!(
                    "{{\"type\":\"message_sent\",\"event_id\":\"s{c}-{i}\",\"conversation_id\":\"c{c}\",\"message_id\":\"m{i}\",\"sender_id\":\"u{}\",\"text\":\"{a} {b} {i}\",\"at_ms\":4}}",
                    c % 4
                ),
            };
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

fn everything(s: &SearchShards) -> Vec<Vec<(String, String)>> {
    let mut all = Vec::new();
    for u in 0..6 {
        for w in [
            "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "edited",
        ] {
            let mut hits = ids(s, &format!("u{u}"), w);
            hits.sort();
            all.push(hits);
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_shard_commits_neither_loses_nor_doubles_a_document() {
    let dir = tempfile::tempdir().unwrap();
    let stream = generated();
    let log = log_with(&dir.path().join("log"), &stream).await;
    let total = stream.lines().count() as u64;

    // The reference: one clean pass.
    let clean = dir.path().join("clean");
    let mut p = SearchProcessor::new(TantivySearchIndex::new(&clean), log.clone());
    run(log.clone(), &mut p, opts("clean", 50), Shutdown::never())
        .await
        .unwrap();
    drop(p);
    let want = everything(&SearchShards::open(&clean).unwrap());
    assert!(want.iter().map(Vec::len).sum::<usize>() > 100, "{want:?}");

    // The crash: one shard of the third batch committed, the others staged only.
    let root = dir.path().join("crashed");
    let index = CrashingIndex {
        inner: TantivySearchIndex::new(&root),
        writes: 0,
        crash_at: 3,
        crashed: false,
    };
    let mut p = SearchProcessor::new(index, log.clone());
    let err = run(
        log.clone(),
        &mut p,
        opts("courier.search", 50),
        Shutdown::never(),
    )
    .await;
    assert!(err.is_err(), "the crash stops the run");
    assert!(p.index().crashed);
    drop(p); // the writers go, with what they had staged

    // A restart in the same group resumes from each shard's commit payload: the
    // group committed only the first two batches, one shard is further along.
    let mut p = SearchProcessor::new(TantivySearchIndex::new(&root), log.clone());
    let stats = run(
        log.clone(),
        &mut p,
        opts("courier.search", 50),
        Shutdown::never(),
    )
    .await
    .unwrap();
    assert!(stats.records > 0 && stats.records < total, "{stats:?}");
    drop(p);
    assert_eq!(everything(&SearchShards::open(&root).unwrap()), want);

    // Another group (say a group whose offsets were lost) seeks to the payloads
    // too: nothing is applied again.
    let mut p = SearchProcessor::new(TantivySearchIndex::new(&root), log.clone());
    let stats = run(log.clone(), &mut p, opts("other", 50), Shutdown::never())
        .await
        .unwrap();
    assert_eq!(stats.records, 0);
    drop(p);
    assert_eq!(everything(&SearchShards::open(&root).unwrap()), want);
}

#[test]
fn a_shard_defers_its_commit_longer_only_while_the_processor_is_behind() {
    use std::time::Duration;

    use super::writer::commit_interval;
    let s = Duration::from_secs;
    // Keeping up: queries lag the log by about a second at most.
    assert_eq!(commit_interval(Duration::ZERO), s(1));
    assert_eq!(commit_interval(s(2)), s(1));
    // Catching up: half the lag, so queries are at most 1.5 times as stale as
    // the lag already makes them, but never more than 30 s of uncommitted work.
    assert_eq!(commit_interval(s(20)), s(10));
    assert_eq!(commit_interval(s(3600)), s(30));
}

/// The embedded log, but the first append to dead letters fails (a broker that
/// is briefly away).
struct FlakyDeadLetters {
    inner: Arc<dyn EventLog>,
    failed: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl EventLog for FlakyDeadLetters {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn partitions(&self, topic: &str) -> Result<u32, LogError> {
        self.inner.partitions(topic)
    }
    async fn append(&self, topic: &str, records: Vec<Record>) -> Result<Vec<Appended>, LogError> {
        if topic == DEAD_LETTERS && !self.failed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(LogError::Closed);
        }
        self.inner.append(topic, records).await
    }
    async fn watermarks(&self, topic: &str, partition: u32) -> Result<(u64, u64), LogError> {
        self.inner.watermarks(topic, partition).await
    }
    async fn resolve(
        &self,
        topic: &str,
        partition: u32,
        position: LogPosition,
    ) -> Result<u64, LogError> {
        self.inner.resolve(topic, partition, position).await
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
        timeout: std::time::Duration,
    ) -> Result<Vec<ConsumedRecord>, LogError> {
        self.inner.read(topic, partition, from, max, timeout).await
    }
    async fn committed(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, LogError> {
        self.inner.committed(group, topic).await
    }
    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn GroupConsumer>, LogError> {
        self.inner.subscribe(group, topics).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dead_letter_write_retries_on_the_states_of_the_deferred_batches() {
    // Batch 1 creates c1 and sends m1; the shard defers its commit (these events
    // are years old: the processor is far behind). Batch 2 breaks a rule (a dead
    // letter, whose write fails once) and edits m1: its retry must see m1, which
    // only the deferred batch has.
    let stream = r#"
{"type":"conversation_created","event_id":"e1","conversation_id":"c1","kind":"group","creator_id":"u1","member_ids":["u1","u2"],"title":"","at_ms":10}
{"type":"message_sent","event_id":"e2","conversation_id":"c1","message_id":"m1","sender_id":"u1","text":"first draft","at_ms":11}
{"type":"message_sent","event_id":"e3","conversation_id":"c1","message_id":"m2","sender_id":"u9","text":"not a member","at_ms":12}
{"type":"message_edited","event_id":"e4","conversation_id":"c1","message_id":"m1","editor_id":"u1","text":"final wording","at_ms":13}
"#;
    let dir = tempfile::tempdir().unwrap();
    let inner = log_with(&dir.path().join("log"), stream).await;
    let log: Arc<dyn EventLog> = Arc::new(FlakyDeadLetters {
        inner,
        failed: Default::default(),
    });
    let root = dir.path().join("search");
    let mut p = SearchProcessor::new(TantivySearchIndex::new(&root), log.clone());
    let stats = run(
        log.clone(),
        &mut p,
        opts("courier.search", 2),
        Shutdown::never(),
    )
    .await
    .unwrap();
    assert_eq!(stats.records, 4);
    drop(p);
    let mut dead_letters = 0;
    for partition in 0..log.partitions(DEAD_LETTERS).unwrap() {
        dead_letters += log.watermarks(DEAD_LETTERS, partition).await.unwrap().1;
    }
    assert_eq!(dead_letters, 1, "only the rule break, once");
    let shards = SearchShards::open(&root).unwrap();
    assert_eq!(set(&shards, "u2", "wording"), of(&["c1/m1"]));
    assert!(set(&shards, "u2", "draft").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_conversation_state_and_message_has_one_live_document_across_commits() {
    use tantivy::collector::Count;
    use tantivy::query::TermQuery;
    use tantivy::schema::IndexRecordOption;

    // Two runs, so the second commit of every shard replaces the states of the
    // first (one delete for all of them) and edits replace added messages.
    let stream = generated();
    let lines: Vec<&str> = stream.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let dir = tempfile::tempdir().unwrap();
    let log = log_with(&dir.path().join("log"), &first.join("\n")).await;
    let root = dir.path().join("search");
    for part in [None, Some(second)] {
        if let Some(part) = part {
            let events: Vec<_> = part.iter().map(|l| parse_line(l).unwrap()).collect();
            producer::publish(&*log, &events).await.unwrap();
        }
        let mut p = SearchProcessor::new(TantivySearchIndex::new(&root), log.clone());
        run(
            log.clone(),
            &mut p,
            opts("courier.search", 50),
            Shutdown::never(),
        )
        .await
        .unwrap();
    }

    let fields = super::Fields::new();
    let count = |term: tantivy::Term| {
        let mut n = 0;
        for entry in std::fs::read_dir(&root).unwrap() {
            let index = tantivy::Index::open_in_dir(entry.unwrap().path()).unwrap();
            let searcher = index.reader().unwrap().searcher();
            let q = TermQuery::new(term.clone(), IndexRecordOption::Basic);
            // A shard's reader sees its last commit.
            n += searcher.search(&q, &Count).unwrap();
        }
        n
    };
    for c in 0..12 {
        let c = format!("c{c}");
        assert_eq!(count(fields.state_key(&c)), 1, "state of {c}");
        // m0 was only added; m12 added in the first run and, for half the
        // conversations, edited in the second; m17 added and edited in the second.
        for m in ["m0", "m12", "m17"] {
            assert_eq!(count(fields.message_key(&c, m)), 1, "{c}/{m}");
        }
    }
}

/// A shard an older build wrote (layout 1, JSON states) is read as it is; a
/// shard of a newer layout is refused with the way out, and a rebuild can still
/// read where that generation had got to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_of_layout_1_are_read_and_newer_ones_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fields = super::Fields::new();
    for (p, layout) in [(3u32, 1u32), (4, 3)] {
        let shard = super::shard_dir(dir.path(), p);
        std::fs::create_dir_all(&shard).unwrap();
        let index = tantivy::Index::create_in_dir(&shard, fields.schema.clone()).unwrap();
        let mut writer: tantivy::IndexWriter =
            index.writer_with_num_threads(1, 15_000_000).unwrap();
        let mut doc = tantivy::TantivyDocument::default();
        doc.add_text(fields.key, "s\u{1f}c1");
        let json = serde_json::to_vec(&ConversationState::new("c1")).unwrap();
        doc.add_bytes(fields.state, json.as_slice());
        writer.add_document(doc).unwrap();
        let mut prepared = writer.prepare_commit().unwrap();
        prepared.set_payload(&format!(
            r#"{{"layout":{layout},"partition":{p},"next_offset":7}}"#
        ));
        prepared.commit().unwrap();
    }

    let mut index = TantivySearchIndex::new(dir.path());
    assert_eq!(index.open_shard(3).await.unwrap(), Some(7));
    let states = index.load_states(3, &["c1".to_string()]).await.unwrap();
    assert_eq!(states[0].as_ref().map(|s| s.conversation_id()), Some("c1"));
    let e = index.open_shard(4).await.unwrap_err();
    assert!(
        e.to_string().contains(
            "has layout 3, this build reads layouts 1 to 2: run a newer courier, or rebuild search"
        ),
        "{e}"
    );
    let offsets = super::committed_offsets(dir.path()).unwrap();
    assert_eq!(offsets.get(&4), Some(&7));
}

/// Hand-over: an instance indexes part of the log and stops; another, with an
/// empty disk and the same snapshot store, restores every shard from the
/// snapshots and applies only the records after them, and answers as one
/// clean pass over the whole log does. A copy abandoned mid-way (a writer
/// killed) is never taken for a snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_restores_snapshots_and_replays_only_what_follows() {
    use std::time::Duration;

    use super::SnapshotStore;

    let dir = tempfile::tempdir().unwrap();
    let stream = generated();
    let lines: Vec<&str> = stream.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);
    let log = log_with(&dir.path().join("log"), &first.join("\n")).await;

    // The reference: one clean pass over everything, without snapshots.
    let clean_log = log_with(&dir.path().join("clean-log"), &stream).await;
    let clean = dir.path().join("clean");
    let mut p = SearchProcessor::new(TantivySearchIndex::new(&clean), clean_log.clone());
    run(clean_log, &mut p, opts("clean", 50), Shutdown::never())
        .await
        .unwrap();
    drop(p);
    let want = everything(&SearchShards::open(&clean).unwrap());

    let store = SnapshotStore::new(dir.path().join("store"), Duration::from_secs(3600));
    // One instance over `root` in `group`, until caught up; stopping snapshots
    // every shard (the interval is far off). The records it applied.
    let instance = async |root: &Path, group: &str| {
        let index = TantivySearchIndex::new(root).with_snapshots(store.clone());
        let mut p = SearchProcessor::new(index, log.clone());
        run(log.clone(), &mut p, opts(group, 50), Shutdown::never())
            .await
            .unwrap()
            .records
    };
    let a = dir.path().join("a");
    assert_eq!(instance(&a, "a").await, first.len() as u64);
    let offsets = super::committed_offsets(&a).unwrap();
    assert!(offsets.len() > 3, "the stream spans shards: {offsets:?}");
    for (&partition, &next) in &offsets {
        let newest = store.newest(partition).unwrap().expect("a snapshot");
        assert_eq!(newest.next_offset, next, "p{partition}");
        // A copy killed mid-way: a temp directory, with a higher offset.
        let torn = store
            .root()
            .join(format!("p{partition:02}/.tmp-{:020}-x", next + 5));
        std::fs::create_dir_all(&torn).unwrap();
        std::fs::write(torn.join("meta.json"), b"{").unwrap();
        assert_eq!(store.newest(partition).unwrap(), Some(newest));
    }

    let events: Vec<_> = second.iter().map(|l| parse_line(l).unwrap()).collect();
    producer::publish(&*log, &events).await.unwrap();
    let restores = |source: &str| -> u64 {
        offsets
            .keys()
            .map(|p| {
                super::metrics::metrics()
                    .restores
                    .with_label_values(&[&p.to_string(), source])
                    .get()
            })
            .sum()
    };
    let before = restores("snapshot");
    let b = dir.path().join("b");
    assert_eq!(
        instance(&b, "b").await,
        second.len() as u64,
        "only what follows the snapshots is applied"
    );
    assert_eq!(restores("snapshot") - before, offsets.len() as u64);
    assert_eq!(everything(&SearchShards::open(&b).unwrap()), want);

    // The old owner, behind the store now, restores over its own shards too.
    assert_eq!(
        instance(&a, "a").await,
        0,
        "everything came from the snapshots"
    );
    assert_eq!(everything(&SearchShards::open(&a).unwrap()), want);
    // At most two snapshots a partition are kept.
    for &partition in offsets.keys() {
        assert!(store.list(partition).unwrap().len() <= 2);
    }
}
