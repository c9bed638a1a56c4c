//! Users' search queries (`courier search`, `GET /v1/search?q=`, `run search
//! --serve`): any text parses or is refused as a malformed query with a reason,
//! never a panic or a stack overflow; a query over the length limit is refused;
//! a query that parses runs, restricted to one user as a search runs it, against
//! a small in-RAM index without an error, finds only what that user may see, and
//! its snippets render.
#![no_main]

use std::sync::OnceLock;

use courier_search_query::{Fields, MAX_QUERY_BYTES, Queries, SearchError};
use libfuzzer_sys::fuzz_target;
use tantivy::collector::TopDocs;
use tantivy::schema::Value;
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, Searcher, TantivyDocument};

/// The user every query runs for; messages whose id starts with `hidden` are not
/// theirs, so no query may find them.
const USER: &str = "u1";

/// (conversation, message, text, who sees it): words, phrases, unicode, a word
/// longer than the tokenizer keeps, an empty text.
const MESSAGES: &[(&str, &str, &str, &[&str])] = &[
    ("c1", "m1", "the standup moved to 10:30", &[USER, "u2"]),
    (
        "c1",
        "m2",
        "Lunch? 🍕 café naïve Grüße aus Köln",
        &[USER, "u2"],
    ),
    ("c1", "hidden1", "the standup moved for u2 only", &["u2"]),
    ("c2", "m3", "東京でランチ ok? hello hello world", &[USER]),
    ("c2", "m4", "", &[USER]),
    (
        "c2",
        "m5",
        "supercalifragilisticexpialidocious-and-then-some-more-letters x",
        &[USER],
    ),
    ("c3", "hidden2", "hello standup lunch secret", &["u3"]),
];

struct Setup {
    fields: Fields,
    queries: Queries,
    searcher: Searcher,
}

/// Built once: the index lives in RAM (no disk, no store) for the whole run.
fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let fields = Fields::new();
        let index = Index::create_in_ram(fields.schema.clone());
        let mut writer = index
            .writer_with_num_threads::<TantivyDocument>(1, 15_000_000)
            .expect("an in-RAM index writer");
        for (conversation, message, text, visible) in MESSAGES {
            let mut doc = TantivyDocument::default();
            doc.add_text(fields.conversation_id, conversation);
            doc.add_text(fields.message_id, message);
            doc.add_text(fields.text, text);
            for user in *visible {
                doc.add_text(fields.visible, user);
            }
            writer.add_document(doc).expect("adding a document");
        }
        writer.commit().expect("committing");
        let searcher = index.reader().expect("a reader").searcher();
        Setup {
            queries: Queries::new(&fields),
            fields,
            searcher,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Invalid UTF-8 never reaches the parser (axum and clap refuse it first), but
    // its replacement characters are text a user can type.
    let query = String::from_utf8_lossy(data);
    let s = setup();
    let parsed = match s.queries.parse(&query) {
        Ok(parsed) => parsed,
        Err(SearchError::MalformedQuery {
            query: given,
            reason,
        }) => {
            assert_eq!(given, query, "the error carries the query as given");
            assert!(!reason.is_empty(), "a refusal says why");
            return;
        }
        Err(other) => panic!("parsing gave a non-query error: {other}"),
    };
    assert!(
        query.len() <= MAX_QUERY_BYTES,
        "a query of {} bytes was accepted",
        query.len()
    );
    for conversation in [None, Some("c1")] {
        let full = s.queries.restrict(&*parsed, USER, conversation);
        let top = s
            .searcher
            .search(&full, &TopDocs::with_limit(10).order_by_score())
            .unwrap_or_else(|e| panic!("a query that parsed failed to run: {e}"));
        let mut snippets = SnippetGenerator::create(&s.searcher, &*parsed, s.fields.text)
            .unwrap_or_else(|e| panic!("snippets of a query that parsed: {e}"));
        snippets.set_max_num_chars(150);
        for (_, addr) in top {
            let doc: TantivyDocument = s.searcher.doc(addr).expect("a stored document");
            let field = |f| {
                doc.get_first(f)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
            };
            let message = field(s.fields.message_id);
            assert!(!message.starts_with("hidden"), "{USER} found {message}");
            if let Some(c) = conversation {
                assert_eq!(field(s.fields.conversation_id), c, "outside --conversation");
            }
            let _ = snippets.snippet(field(s.fields.text)).to_html();
        }
    }
});
