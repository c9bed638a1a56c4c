//! A user's query → a tantivy query: bounded, then parsed with the syntax
//! `courier search` and `GET /v1/search` accept, naming no field.

use tantivy::Term;
use tantivy::query::{
    BooleanQuery, ConstScoreQuery, Occur, Query, QueryParser, RegexQuery, TermQuery,
};
use tantivy::query_grammar::{UserInputAst, UserInputLeaf};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TokenizerManager;

use crate::{Fields, exclusions};

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

/// Parses users' queries against the shard schema. Built once, shared (`&self`).
pub struct Queries {
    text: Field,
    visible: Field,
    conversation_id: Field,
    parser: QueryParser,
}

impl Queries {
    /// A parser for shards of `fields`' schema, searching their text only.
    pub fn new(fields: &Fields) -> Self {
        let mut parser = QueryParser::new(
            fields.schema.clone(),
            vec![fields.text],
            TokenizerManager::default(),
        );
        // Every word must match, as in every search box users know; `OR` widens.
        parser.set_conjunction_by_default();
        Queries {
            text: fields.text,
            visible: fields.visible,
            conversation_id: fields.conversation_id,
            parser,
        }
    }

    /// `parsed` (from [`Self::parse`]) as run for `user`: only the messages they
    /// may see, optionally only in `conversation`. Here, next to the parsing, so
    /// that the fuzz target runs exactly what a search runs.
    pub fn restrict(
        &self,
        parsed: &dyn Query,
        user: &str,
        conversation: Option<&str>,
    ) -> BooleanQuery {
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, parsed.box_clone()),
            (
                Occur::Must,
                filter(Term::from_field_text(self.visible, user)),
            ),
        ];
        if let Some(c) = conversation {
            clauses.push((
                Occur::Must,
                filter(Term::from_field_text(self.conversation_id, c)),
            ));
        }
        BooleanQuery::new(clauses)
    }

    /// Parses a query with the syntax `search` accepts: words (all must match),
    /// `"phrases"`, `AND`/`OR`/`NOT`, `+`/`-`, `(…)`, and prefixes (`hel*`).
    /// Every refusal is [`SearchError::MalformedQuery`], with a reason.
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
                // A boost needs a `^`; most queries skip the walk.
                .build_query_from_user_input_ast(if rest.contains('^') {
                    without_boosts(ast)
                } else {
                    ast
                })
                .map_err(|e| malformed(e.to_string()))?;
            let parsed = exclusions::guard(parsed);
            if prefixes.is_empty() {
                return Ok(parsed);
            }
            clauses.push((Occur::Must, parsed));
        }
        let mut positive = false;
        for (exclude, word) in prefixes {
            let regex = RegexQuery::from_pattern(&format!("{word}.*"), self.text)
                .map_err(|e| malformed(format!("prefix {word}*: {e}")))?;
            positive |= !exclude;
            let occur = if exclude { Occur::MustNot } else { Occur::Must };
            clauses.push((occur, Box::new(regex)));
        }
        if clauses.iter().all(|(o, _)| *o == Occur::MustNot) && !positive {
            return Err(malformed("only excluded words".to_string()));
        }
        // `parsed`, the first clause, is guarded already; an excluded prefix's
        // regex scorer has no `seek_danger` of its own.
        Ok(Box::new(BooleanQuery::new(clauses)))
    }
}

/// The query without its boosts (`word^2`, `(a b)^0.5`): they only weigh the
/// ranking, and a boosted group's clauses are out of reach of
/// [`exclusions::guard`]. Iterative: `NOT NOT … a^2` nests hundreds deep
/// within the length limit, and search threads have small stacks.
fn without_boosts(ast: UserInputAst) -> UserInputAst {
    fn unboosted(mut ast: UserInputAst) -> UserInputAst {
        loop {
            match ast {
                UserInputAst::Boost(inner, _) => ast = *inner,
                other => return other,
            }
        }
    }
    type Clauses = Vec<(Option<tantivy::query_grammar::Occur>, UserInputAst)>;
    let clauses = match unboosted(ast) {
        UserInputAst::Clause(clauses) => clauses,
        leaf => return leaf,
    };
    // The clauses being rebuilt, outermost first: (its occur in its parent,
    // the clauses still to visit, the clauses rebuilt so far).
    let mut stack: Vec<(
        Option<tantivy::query_grammar::Occur>,
        std::vec::IntoIter<_>,
        Clauses,
    )> = vec![(None, clauses.into_iter(), Vec::new())];
    loop {
        let (_, todo, _) = stack.last_mut().expect("the root is popped last");
        match todo.next() {
            Some((occur, child)) => match unboosted(child) {
                UserInputAst::Clause(inner) => stack.push((occur, inner.into_iter(), Vec::new())),
                leaf => stack.last_mut().expect("not empty").2.push((occur, leaf)),
            },
            None => {
                let (occur, _, done) = stack.pop().expect("not empty");
                let built = UserInputAst::Clause(done);
                match stack.last_mut() {
                    None => return built,
                    Some(parent) => parent.2.push((occur, built)),
                }
            }
        }
    }
}

/// A clause that filters without scoring: only the user's words rank results.
fn filter(term: Term) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(
        Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        0.0,
    ))
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
mod tests {
    use super::*;

    /// The bounds hold without any store: what the fuzz target relies on.
    #[test]
    fn refusals_are_malformed_queries_with_a_reason_and_the_query_as_given() {
        let queries = Queries::new(&Fields::new());
        let long = "a ".repeat(MAX_QUERY_BYTES);
        let deep = format!("{}a{}", "(".repeat(17), ")".repeat(17));
        for (bad, says) in [
            (long.as_str(), "bytes long"),
            (deep.as_str(), "nest 17 deep"),
            ("\"unclosed", "syntax error"),
            ("visible:bob", "names a field"),
            ("-lunch*", "only excluded words"),
        ] {
            match queries.parse(bad) {
                Err(SearchError::MalformedQuery { query, reason }) => {
                    assert_eq!(query, bad);
                    assert!(reason.contains(says), "{bad:?}: {reason}");
                }
                other => panic!("{bad:?} gave {:?}", other.map(|_| ())),
            }
        }
        assert!(queries.parse(&"a ".repeat(MAX_QUERY_BYTES / 2)).is_ok());
    }

    /// The fuzz target's find: an excluded phrase whose words occur but never
    /// as the phrase made tantivy's phrase scorer panic in builds with debug
    /// assertions (this test's). Every such query runs, and excludes.
    #[test]
    fn excluded_phrases_that_never_match_run_and_exclude_nothing_else() {
        use tantivy::collector::TopDocs;
        use tantivy::schema::Value;
        use tantivy::{Index, TantivyDocument};

        let fields = Fields::new();
        let index = Index::create_in_ram(fields.schema.clone());
        let mut writer = index
            .writer_with_num_threads::<TantivyDocument>(1, 15_000_000)
            .unwrap();
        for (id, text) in [
            ("m1", "the standup moved"),
            ("m2", "lunch at noon"),
            ("m3", "hello hello world"),
            ("m4", "hello world again, lunch"),
        ] {
            let mut doc = TantivyDocument::default();
            doc.add_text(fields.conversation_id, "c1");
            doc.add_text(fields.message_id, id);
            doc.add_text(fields.text, text);
            doc.add_text(fields.visible, "u1");
            writer.add_document(doc).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let queries = Queries::new(&fields);
        let found = |q: &str| -> Vec<String> {
            let parsed = queries.parse(q).unwrap();
            let full = queries.restrict(&*parsed, "u1", None);
            let mut ids: Vec<String> = searcher
                .search(&full, &TopDocs::with_limit(10).order_by_score())
                .unwrap()
                .into_iter()
                .map(|(_, addr)| {
                    let doc: TantivyDocument = searcher.doc(addr).unwrap();
                    let id = doc.get_first(fields.message_id).and_then(|v| v.as_str());
                    id.unwrap().to_string()
                })
                .collect();
            ids.sort();
            ids
        };
        assert_eq!(found("+hello hello -world-world"), ["m3", "m4"]);
        assert_eq!(found("hello -\"world again\""), ["m3"]);
        assert_eq!(found("hello -\"world hello\""), ["m3", "m4"]);
        assert_eq!(found("(lunch -\"hello world\")^2"), ["m2"]);
        assert_eq!(found("lunch NOT \"noon at\""), ["m2", "m4"]);
        assert_eq!(found("hello -lun*"), ["m3"]);
        // Hundreds of nested NOTs, boosted, within the length limit, on a
        // stack as small as the search tests give their thread.
        let deep = format!("{}\"hello world\"^2", "NOT ".repeat(250));
        assert!(deep.len() <= MAX_QUERY_BYTES);
        let queries = Queries::new(&fields);
        std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || queries.parse(&deep).map(|_| ()))
            .unwrap()
            .join()
            .expect("no stack overflow")
            .expect_err("only excluding terms");
    }

    #[test]
    fn bare_prefixes_are_taken_out_of_the_query_but_not_out_of_quotes() {
        assert_eq!(
            split_prefixes("Stand* -lun* \"mo* x\" a*b"),
            (
                "  \"mo* x\" a*b".to_string(),
                vec![(false, "stand".to_string()), (true, "lun".to_string())]
            )
        );
    }
}
