//! The query side: every shard of a generation, searched for one user and merged.
//! This is the API `courier search` and the gateway's `GET /v1/search` call.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use std::collections::BTreeSet;

use tantivy::collector::TopDocs;
use tantivy::query::Query;
use tantivy::schema::Value;
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument};

use courier_search_query::{Fields, Queries, SearchError};

use super::metrics::metrics;

/// One result (it lives with the search processor, so the gateway, which links
/// no sinks, can document it).
pub use courier_processors::search::SearchHit;

/// One shard open for reading.
struct ReadShard {
    dir: PathBuf,
    partition: u32,
    reader: IndexReader,
}

/// Every shard of one generation, for queries. Cheap to share (`&self` methods):
/// shards created after it was opened are picked up by the next query, and each
/// shard's reader follows its commits (within about half a second), so it can
/// serve queries in the process whose processor is indexing.
pub struct SearchShards {
    root: PathBuf,
    fields: Fields,
    queries: Queries,
    shards: Mutex<Vec<ReadShard>>,
}

impl SearchShards {
    /// The shards under `root` (a generation directory); none there yet is fine.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SearchError> {
        let fields = Fields::new();
        let shards = SearchShards {
            root: root.into(),
            queries: Queries::new(&fields),
            fields,
            shards: Mutex::new(Vec::new()),
        };
        shards.refresh()?;
        Ok(shards)
    }

    /// Opens shards that appeared since the last look.
    fn refresh(&self) -> Result<(), SearchError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => {
                return Err(SearchError::Index(format!(
                    "listing {}: {e}",
                    self.root.display()
                )));
            }
        };
        let mut shards = self.shards.lock().expect("shard list lock");
        for entry in entries.flatten() {
            let dir = entry.path();
            let Some(partition) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.strip_prefix('p'))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if !dir.join("meta.json").exists() || shards.iter().any(|s| s.dir == dir) {
                continue;
            }
            let index = Index::open_in_dir(&dir)
                .map_err(|e| SearchError::Index(format!("opening {}: {e}", dir.display())))?;
            let reader = index
                .reader_builder()
                .reload_policy(ReloadPolicy::OnCommitWithDelay)
                .try_into()
                .map_err(|e| SearchError::Index(format!("reading {}: {e}", dir.display())))?;
            shards.push(ReadShard {
                dir,
                partition,
                reader,
            });
        }
        shards.sort_by(|a, b| a.dir.cmp(&b.dir));
        Ok(())
    }

    /// Where the shards are.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Parses a query with the syntax `search` accepts (see
    /// [`Queries::parse`], which this is).
    pub fn parse(&self, query: &str) -> Result<Box<dyn Query>, SearchError> {
        self.queries.parse(query)
    }

    /// The messages `user` may see (a member when they were sent), not deleted,
    /// whose current text matches `query`, best first (ties: conversation, then
    /// message id), at most `limit`, optionally only in `conversation`.
    pub fn search(
        &self,
        user: &str,
        query: &str,
        limit: usize,
        conversation: Option<&str>,
    ) -> Result<Vec<SearchHit>, SearchError> {
        self.search_in(user, query, limit, conversation, None)
    }

    /// [`Self::search`] over the shards of `partitions` only (all when `None`):
    /// what one instance answers in distributed mode, for the shards it owns.
    pub fn search_in(
        &self,
        user: &str,
        query: &str,
        limit: usize,
        conversation: Option<&str>,
        partitions: Option<&BTreeSet<u32>>,
    ) -> Result<Vec<SearchHit>, SearchError> {
        let started = Instant::now();
        let result = self.search_inner(user, query, limit, conversation, partitions);
        let outcome = match &result {
            Ok(_) => "ok",
            Err(SearchError::MalformedQuery { .. } | SearchError::ZeroLimit) => "bad_query",
            Err(SearchError::Index(_)) => "error",
        };
        metrics()
            .query_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        tracing::debug!(
            user,
            query,
            limit,
            outcome,
            elapsed_us = started.elapsed().as_micros() as u64,
            "search"
        );
        result
    }

    fn search_inner(
        &self,
        user: &str,
        query: &str,
        limit: usize,
        conversation: Option<&str>,
        partitions: Option<&BTreeSet<u32>>,
    ) -> Result<Vec<SearchHit>, SearchError> {
        if limit == 0 {
            return Err(SearchError::ZeroLimit);
        }
        let parsed = self.parse(query)?;
        self.refresh()?;
        let f = &self.fields;
        let full = self.queries.restrict(&*parsed, user, conversation);
        let searchers: Vec<Searcher> = self
            .shards
            .lock()
            .expect("shard list lock")
            .iter()
            .filter(|s| partitions.is_none_or(|p| p.contains(&s.partition)))
            .map(|s| s.reader.searcher())
            .collect();
        let mut hits = Vec::new();
        for searcher in &searchers {
            let top = searcher
                .search(&full, &TopDocs::with_limit(limit).order_by_score())
                .map_err(|e| SearchError::Index(format!("searching: {e}")))?;
            if top.is_empty() {
                continue;
            }
            let mut snippets = SnippetGenerator::create(searcher, &*parsed, f.text)
                .map_err(|e| SearchError::Index(format!("preparing snippets: {e}")))?;
            snippets.set_max_num_chars(150);
            for (score, addr) in top {
                hits.push(self.hit(searcher, addr, score, &snippets)?);
            }
        }
        Ok(merge(hits, limit))
    }

    fn hit(
        &self,
        searcher: &Searcher,
        addr: DocAddress,
        score: f32,
        snippets: &SnippetGenerator,
    ) -> Result<SearchHit, SearchError> {
        let f = &self.fields;
        let doc: TantivyDocument = searcher
            .doc(addr)
            .map_err(|e| SearchError::Index(format!("reading a document: {e}")))?;
        let text_of = |field| {
            doc.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let text = text_of(f.text);
        Ok(SearchHit {
            message_id: text_of(f.message_id),
            conversation_id: text_of(f.conversation_id),
            sender_id: text_of(f.sender_id),
            snippet: snippets.snippet(&text).to_html(),
            text,
            sent_at_ms: doc
                .get_first(f.sent_at_ms)
                .and_then(|v| v.as_i64())
                .unwrap_or_default(),
            score,
        })
    }
}

/// Merges hits from several shards or instances: best first (ties: conversation,
/// then message id), each message once (a shard that just moved between instances
/// may answer from both), at most `limit`.
pub fn merge(mut hits: Vec<SearchHit>, limit: usize) -> Vec<SearchHit> {
    hits.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.conversation_id.cmp(&b.conversation_id))
            .then_with(|| a.message_id.cmp(&b.message_id))
    });
    let mut seen = std::collections::HashSet::new();
    hits.retain(|h| seen.insert((h.conversation_id.clone(), h.message_id.clone())));
    hits.truncate(limit);
    hits
}

#[cfg(test)]
mod field_tests {
    use super::*;

    /// Issue 16: `visible:*` answered with tantivy's "Field visible is not a fast
    /// field" at search time (a 503 at the gateway), and `visible:bob` told who
    /// was a member when. Every field name is refused when parsing, alike.
    #[test]
    fn a_query_naming_any_field_is_malformed_and_says_the_same_for_every_field() {
        let dir = tempfile::tempdir().unwrap();
        let shards = SearchShards::open(dir.path()).unwrap();
        for (query, field) in [
            ("visible:*", "visible"),
            ("visible:bob", "visible"),
            ("conversation_id:*", "conversation_id"),
            ("hello AND conversation_id:c1", "conversation_id"),
            ("sent_at_ms:[0 TO 99]", "sent_at_ms"),
            ("text:*", "text"),
            ("nosuchfield:x", "nosuchfield"),
            ("(a OR key:x)", "key"),
        ] {
            let Err(SearchError::MalformedQuery { reason, .. }) = shards.parse(query) else {
                panic!("{query} was accepted");
            };
            assert_eq!(
                reason,
                format!(
                    "`{field}:` names a field; only the message text is searched, so write the words alone"
                ),
                "{query}"
            );
        }
        for fine in [
            "hello",
            "\"standup moved\" OR lunch",
            "stand*",
            "-lunch hello",
            "*",
        ] {
            assert!(shards.parse(fine).is_ok(), "{fine}");
        }
    }
}
