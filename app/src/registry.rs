//! The processors, named once: each one's name, consumer group, topics, view
//! directory, and where it runs. Every command that lists, starts, rebuilds or
//! measures processors reads this table, so adding a processor is adding a row
//! (and its start in [`crate::processors`]).

use crate::config::Config;
use crate::config::ViewsBackend;
use courier_sinks::inbox::{CassandraGenerations, Generations};

/// A processor courier can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Processor {
    /// Inboxes and message history (courier.conversations.v1 → inbox views).
    Inbox,
    /// Latest presence of every user (courier.presence.v1 → presence table).
    Presence,
    /// Push jobs for offline recipients (courier.conversations.v1 and the
    /// presence table → courier.push-jobs.v1).
    Notify,
    /// Push delivery (courier.push-jobs.v1 → the push provider at push.endpoint).
    Push,
    /// Full-text search (courier.conversations.v1 → tantivy, one shard per
    /// partition).
    Search,
}

/// When `courier up` (and `courier bench`, which measures what `up` runs) starts a
/// processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InUp {
    /// Always.
    Always,
    /// Only when `push.endpoint` is set: without a provider, push jobs wait on
    /// their topic for a later `courier run push`, and the first `courier up` on a
    /// laptop does not fail for want of one.
    WithPushEndpoint,
}

/// One row of the registry.
#[derive(Debug)]
pub struct Entry {
    /// The processor.
    pub processor: Processor,
    /// Its name: metrics label, view directory, and its consumer group is
    /// `courier.NAME` (`courier.NAME.gN` for generation N of a rebuildable view).
    pub name: &'static str,
    /// The topics its consumer group reads.
    pub topics: &'static [&'static str],
    /// When `courier up` runs it.
    pub in_up: InUp,
    /// Whether `courier rebuild` builds its view in generations, each with a
    /// consumer group of its own.
    pub generations: bool,
}

/// The registry, in the order `courier up` starts processors and `courier lag`
/// lists them.
pub const REGISTRY: &[Entry] = &[
    Entry {
        processor: Processor::Inbox,
        name: "inbox",
        topics: &[courier_topics::CONVERSATIONS],
        in_up: InUp::Always,
        generations: true,
    },
    Entry {
        processor: Processor::Presence,
        name: "presence",
        topics: &[courier_topics::PRESENCE],
        in_up: InUp::Always,
        generations: false,
    },
    Entry {
        processor: Processor::Search,
        name: "search",
        topics: &[courier_topics::CONVERSATIONS],
        in_up: InUp::Always,
        generations: true,
    },
    Entry {
        processor: Processor::Notify,
        // Presence is read too, but outside the group (a global table).
        name: "notify",
        topics: &[courier_topics::CONVERSATIONS],
        in_up: InUp::Always,
        generations: false,
    },
    Entry {
        processor: Processor::Push,
        name: "push",
        topics: &[courier_topics::PUSH_JOBS],
        in_up: InUp::WithPushEndpoint,
        generations: false,
    },
];

impl Processor {
    /// Every processor, in registry order.
    pub fn all() -> impl Iterator<Item = Processor> {
        REGISTRY.iter().map(|e| e.processor)
    }

    /// What `courier up` runs with this config: the processors `InUp::Always`,
    /// and push delivery when there is a provider to deliver to.
    pub fn in_up(config: &Config) -> Vec<Processor> {
        REGISTRY
            .iter()
            .filter(|e| match e.in_up {
                InUp::Always => true,
                InUp::WithPushEndpoint => config.push.endpoint.is_some(),
            })
            .map(|e| e.processor)
            .collect()
    }

    /// What `courier up` runs whatever the config (what `courier bench` loads).
    pub fn always_in_up() -> Vec<Processor> {
        REGISTRY
            .iter()
            .filter(|e| e.in_up == InUp::Always)
            .map(|e| e.processor)
            .collect()
    }

    /// Its row.
    pub fn entry(self) -> &'static Entry {
        REGISTRY
            .iter()
            .find(|e| e.processor == self)
            .expect("every processor has a row in REGISTRY")
    }

    /// Its name: metrics label, view directory, consumer group `courier.NAME`.
    pub fn name(self) -> &'static str {
        self.entry().name
    }

    /// Its consumer group (for a view kept in generations: of generation 0, see
    /// [`Processor::generation_group`]).
    pub fn group(self) -> String {
        format!("courier.{}", self.name())
    }

    /// The consumer group of generation `g` of its view: each generation has its
    /// own, so a rebuild starts from the beginning of the log and the live
    /// processor continues where the generation it serves ended. Generation 0
    /// keeps the plain `courier.NAME`.
    pub fn generation_group(self, g: u64) -> String {
        let base = self.group();
        if g == 0 { base } else { format!("{base}.g{g}") }
    }

    /// The topics it consumes.
    pub fn topics(self) -> Vec<String> {
        self.entry().topics.iter().map(|t| t.to_string()).collect()
    }

    /// The consumer group of the instance running now: a view kept in
    /// generations follows the generation serving reads (on RocksDB and, for the
    /// inbox, on Cassandra).
    pub async fn live_group(self, config: &Config) -> anyhow::Result<String> {
        if !self.entry().generations {
            return Ok(self.group());
        }
        let g = match self {
            Processor::Inbox if config.views.backend == ViewsBackend::Cassandra => {
                let settings = crate::views::cassandra_settings(config)?;
                CassandraGenerations::connect(&settings)
                    .await?
                    .current()
                    .await?
            }
            _ => Generations::new(config.view_dir(self.name())).current()?,
        };
        Ok(self.generation_group(g))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_processor_has_one_row_and_its_clap_name() {
        use clap::ValueEnum;
        for p in Processor::value_variants() {
            assert_eq!(
                REGISTRY.iter().filter(|e| e.processor == *p).count(),
                1,
                "{p:?}"
            );
            let clap_name = p.to_possible_value().expect("named").get_name().to_string();
            assert_eq!(
                clap_name,
                p.name(),
                "the command line and the registry agree"
            );
        }
    }
}
