//! Excluded clauses (`-word`, `-"a phrase"`, `NOT …`) behind a scorer that
//! answers "is this document excluded?" without tantivy's phrase scorers' own
//! `seek_danger`.
//!
//! tantivy 0.27's `PhraseScorer::seek_danger` debug-asserts that it is never
//! asked about a document before the one it stands on, but its own `Exclude`
//! asks exactly that: an excluded phrase whose words occur in a segment but
//! never as the phrase has already run to its end when `Exclude` asks about the
//! first candidate. Builds with debug assertions (tests, the fuzz target, which
//! found it with `+hello hello -world-world`) panicked; release builds answer
//! correctly. [`PlainSeek`] answers with `DocSet`'s default `seek_danger`, which
//! moves the scorer only forward and gives the same answer.

use tantivy::query::{BooleanQuery, EnableScoring, Explanation, Occur, Query, Scorer, Weight};
use tantivy::{DocId, DocSet, Score, SegmentReader, Term};

/// `query` with every excluded clause, at any depth of its boolean queries,
/// behind [`PlainSeek`]. (The caller takes boosts out of the query first: a
/// boosted group's clauses cannot be reached.) Iterative, and cloning only
/// the leaves: `NOT NOT … hello` nests hundreds of boolean queries deep
/// within the query length limit, and search threads have small stacks.
pub(crate) fn guard(query: Box<dyn Query>) -> Box<dyn Query> {
    let Some(root) = query.as_ref().downcast_ref::<BooleanQuery>() else {
        return query;
    };
    // The boolean queries being rebuilt, outermost first, each with the
    // clauses rebuilt so far.
    let mut stack: Vec<(&BooleanQuery, Clauses)> = vec![(root, Vec::new())];
    loop {
        let (boolean, done) = stack.last_mut().expect("the root is popped last");
        if let Some((occur, sub)) = boolean.clauses().get(done.len()) {
            if let Some(inner) = sub.as_ref().downcast_ref::<BooleanQuery>() {
                stack.push((inner, Vec::new()));
            } else {
                done.push((*occur, wrap(*occur, sub.box_clone())));
            }
            continue;
        }
        let (boolean, done) = stack.pop().expect("not empty");
        let built: Box<dyn Query> = Box::new(BooleanQuery::with_minimum_required_clauses(
            done,
            boolean.get_minimum_number_should_match(),
        ));
        match stack.last_mut() {
            None => return built,
            Some((parent, done)) => {
                let occur = parent.clauses()[done.len()].0;
                done.push((occur, wrap(occur, built)));
            }
        }
    }
}

type Clauses = Vec<(Occur, Box<dyn Query>)>;

fn wrap(occur: Occur, query: Box<dyn Query>) -> Box<dyn Query> {
    match occur {
        Occur::MustNot => Box::new(Excluded(query)),
        _ => query,
    }
}

/// An excluded clause: the same documents, through [`PlainSeek`].
#[derive(Debug)]
struct Excluded(Box<dyn Query>);

impl Clone for Excluded {
    fn clone(&self) -> Self {
        Excluded(self.0.box_clone())
    }
}

impl Query for Excluded {
    fn weight(&self, enable_scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(ExcludedWeight(self.0.weight(enable_scoring)?)))
    }

    // Snippets highlight the query's terms; an excluded one is never in a hit.
    fn query_terms<'a>(&'a self, visitor: &mut dyn FnMut(&'a Term, bool)) {
        self.0.query_terms(visitor);
    }
}

struct ExcludedWeight(Box<dyn Weight>);

impl Weight for ExcludedWeight {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        Ok(Box::new(PlainSeek(self.0.scorer(reader, boost)?)))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        self.0.explain(reader, doc)
    }
}

/// A scorer whose `seek_danger` is `DocSet`'s default: it seeks only when
/// behind the target, so the inner scorer's `seek` is never asked to go back.
struct PlainSeek(Box<dyn Scorer>);

impl DocSet for PlainSeek {
    fn advance(&mut self) -> DocId {
        self.0.advance()
    }

    fn seek(&mut self, target: DocId) -> DocId {
        self.0.seek(target)
    }

    fn doc(&self) -> DocId {
        self.0.doc()
    }

    fn size_hint(&self) -> u32 {
        self.0.size_hint()
    }

    fn cost(&self) -> u64 {
        self.0.cost()
    }
}

impl Scorer for PlainSeek {
    fn score(&mut self) -> Score {
        self.0.score()
    }
}
