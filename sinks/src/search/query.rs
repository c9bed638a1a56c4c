//! The query side: every shard of a generation, searched for one user and merged.
//! This is the API `courier search` and the gateway's `GET /v1/search` call.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use tantivy::collector::TopDocs;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RegexQuery, TermQuery,
};
use tantivy::query_grammar::{UserInputAst, UserInputLeaf};
use tantivy::schema::{IndexRecordOption, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TokenizerManager;
use tantivy::{DocAddress, Index, IndexReader, ReloadPolicy, Searcher, TantivyDocument, Term};

use super::documents::Fields;
use super::metrics::metrics;

/// One result, in the exact JSON shape of `courier search --json` and of the
/// gateway's `GET /v1/search`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    pub message_id: String,
    pub conversation_id: String,
    pub sender_id: String,
    /// The current text.
    pub text: String,
    pub sent_at_ms: i64,
    /// BM25 relevance within the message's shard (higher is better).
    pub score: f32,
    /// The best fragment of the text, matches wrapped in `<b>…</b>`, HTML-escaped.
    pub snippet: String,
}

/// Longest query accepted, in bytes. Far beyond what anyone types into a search
/// box, and a bound on the work one request can ask of the parser.
pub const MAX_QUERY_BYTES: usize = 1024;

/// Deepest nesting of parentheses accepted. tantivy's parser recurses once per
/// level with no bound of its own: 10,000 levels overflowed a worker thread's
/// stack and aborted the whole process.
pub const MAX_QUERY_DEPTH: usize = 16;

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The query does not parse; the user's fault (HTTP 400, CLI exit code 2).
    #[error("malformed query {query:?}: {reason}")]
    MalformedQuery {
        /// The query as given.
        query: String,
        /// What the parser objected to.
        reason: String,
    },
    /// A limit of 0.
    #[error("--limit must be at least 1")]
    ZeroLimit,
    /// The index could not be read.
    #[error("search index: {0}")]
    Index(String),
}

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
    parser: QueryParser,
    shards: Mutex<Vec<ReadShard>>,
}

impl SearchShards {
    /// The shards under `root` (a generation directory); none there yet is fine.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, SearchError> {
        let fields = Fields::new();
        let mut parser = QueryParser::new(
            fields.schema.clone(),
            vec![fields.text],
            TokenizerManager::default(),
        );
        // Every word must match, as in every search box users know; `OR` widens.
        parser.set_conjunction_by_default();
        let shards = SearchShards {
            root: root.into(),
            fields,
            parser,
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

    /// Parses a query with the syntax `search` accepts: words (all must match),
    /// `"phrases"`, `AND`/`OR`/`NOT`, `+`/`-`, `(…)`, and prefixes (`hel*`).
    ///
    /// tantivy's parser has prefixes only at the end of phrases (`"standup mo"*`),
    /// so a bare word ending in `*` (`stand*`, `-stand*`) is taken out of the
    /// query first and becomes a required (or, with `-`, excluded) prefix of a word
    /// of the text, AND-ed with the rest.
    pub fn parse(&self, query: &str) -> Result<Box<dyn Query>, SearchError> {
        let malformed = |reason: String| SearchError::MalformedQuery {
            query: query.to_string(),
            reason,
        };
        check_bounds(query).map_err(malformed)?;
        let (rest, prefixes) = split_prefixes(query);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !rest.trim().is_empty() || prefixes.is_empty() {
            let ast = tantivy::query_grammar::parse_query(&rest).map_err(|_| {
                malformed("syntax error (check its quotes and parentheses)".to_string())
            })?;
            only_the_text(&ast).map_err(malformed)?;
            let parsed = self
                .parser
                .build_query_from_user_input_ast(ast)
                .map_err(|e| malformed(e.to_string()))?;
            if prefixes.is_empty() {
                return Ok(parsed);
            }
            clauses.push((Occur::Must, parsed));
        }
        let mut positive = false;
        for (exclude, word) in prefixes {
            let regex = RegexQuery::from_pattern(&format!("{word}.*"), self.fields.text)
                .map_err(|e| malformed(format!("prefix {word}*: {e}")))?;
            positive |= !exclude;
            let occur = if exclude { Occur::MustNot } else { Occur::Must };
            clauses.push((occur, Box::new(regex)));
        }
        if clauses.iter().all(|(o, _)| *o == Occur::MustNot) && !positive {
            return Err(malformed("only excluded words".to_string()));
        }
        Ok(Box::new(BooleanQuery::new(clauses)))
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
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, parsed.box_clone()),
            (Occur::Must, filter(Term::from_field_text(f.visible, user))),
        ];
        if let Some(c) = conversation {
            clauses.push((
                Occur::Must,
                filter(Term::from_field_text(f.conversation_id, c)),
            ));
        }
        let full = BooleanQuery::new(clauses);
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

/// A clause that filters without scoring: only the user's words rank results.
fn filter(term: Term) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(
        Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        0.0,
    ))
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

/// Refuses a query too long or too deeply nested for the parser to be handed
/// safely (see [`MAX_QUERY_BYTES`], [`MAX_QUERY_DEPTH`]). Parentheses inside
/// quotes are words, not nesting.
fn check_bounds(query: &str) -> Result<(), String> {
    let (mut depth, mut deepest, mut quoted) = (0usize, 0usize, false);
    for c in query.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' if !quoted => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > MAX_QUERY_DEPTH {
        return Err(format!(
            "parentheses nest {deepest} deep; at most {MAX_QUERY_DEPTH} levels are accepted"
        ));
    }
    if query.len() > MAX_QUERY_BYTES {
        return Err(format!(
            "the query is {} bytes long; at most {MAX_QUERY_BYTES} are accepted",
            query.len()
        ));
    }
    Ok(())
}

/// Refuses any part of a parsed query that names a field (`visible:bob`,
/// `conversation_id:*`, `text:[a TO b]`) or asks whether one exists (`*` on a
/// field): only the message text is searchable. The index's other fields are
/// internal — `visible` says who was a member when — and some answer such
/// queries only with an error at search time. The same words for every field
/// name, so an answer tells nothing about which fields exist.
fn only_the_text(ast: &UserInputAst) -> Result<(), String> {
    let named = |field: &Option<String>| match field {
        Some(f) => Err(format!(
            "`{f}:` names a field; only the message text is searched, so write the words alone"
        )),
        None => Ok(()),
    };
    match ast {
        UserInputAst::Clause(clauses) => clauses.iter().try_for_each(|(_, a)| only_the_text(a)),
        UserInputAst::Boost(a, _) => only_the_text(a),
        UserInputAst::Leaf(leaf) => match &**leaf {
            UserInputLeaf::Literal(l) => named(&l.field_name),
            UserInputLeaf::All => Ok(()),
            UserInputLeaf::Range { field, .. }
            | UserInputLeaf::Set { field, .. }
            | UserInputLeaf::Regex { field, .. } => named(field),
            UserInputLeaf::Exists { field } => named(&Some(field.clone())),
        },
    }
}

/// Takes the bare prefix words (`stand*`, `-stand*`, `+stand*`) out of a query
/// outside quotes: (the rest, [(excluded, lowercased prefix)]). A word is what the
/// default tokenizer keeps: alphanumeric characters.
fn split_prefixes(query: &str) -> (String, Vec<(bool, String)>) {
    let mut rest = String::with_capacity(query.len());
    let mut prefixes = Vec::new();
    let mut quoted = false;
    let mut word = String::new();
    let flush = |word: &mut String, rest: &mut String, prefixes: &mut Vec<(bool, String)>| {
        let (sign, body) = match word.chars().next() {
            Some(c @ ('-' | '+')) => (Some(c), &word[1..]),
            _ => (None, word.as_str()),
        };
        let stem = body.strip_suffix('*').unwrap_or_default();
        if !stem.is_empty() && stem.chars().all(char::is_alphanumeric) {
            prefixes.push((sign == Some('-'), stem.to_lowercase()));
        } else {
            rest.push_str(word);
        }
        word.clear();
    };
    for c in query.chars() {
        if quoted {
            rest.push(c);
            quoted = c != '"';
        } else if c == '"' && word.is_empty() {
            rest.push(c);
            quoted = true;
        } else if c.is_whitespace() {
            flush(&mut word, &mut rest, &mut prefixes);
            rest.push(c);
        } else {
            word.push(c);
        }
    }
    flush(&mut word, &mut rest, &mut prefixes);
    (rest, prefixes)
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
