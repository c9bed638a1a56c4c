//! The catalog of topics (`catalog.toml`), loaded and checked once.

use std::sync::OnceLock;

use serde::Deserialize;

/// How the log reclaims a topic's old records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cleanup {
    /// Records older than the retention are deleted.
    Delete,
    /// Only the latest record of each key is kept.
    Compact,
}

impl Cleanup {
    /// The value of Kafka's `cleanup.policy` for this policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Cleanup::Delete => "delete",
            Cleanup::Compact => "compact",
        }
    }
}

/// One topic of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Logical name (`courier.conversations.v1`); a namespace may prefix it on a backend.
    pub name: String,
    /// Which field of an event is the record key.
    pub key: String,
    /// The event types the topic holds, for people reading `topics list`.
    pub holds: String,
    /// Number of partitions; fixed for the life of the topic.
    pub partitions: u32,
    /// Cleanup policy.
    pub cleanup: Cleanup,
    /// Retention in milliseconds; -1 keeps records forever.
    pub retention_ms: i64,
}

/// The whole catalog.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "topic")]
    topics: Vec<TopicSpec>,
}

/// A catalog that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The TOML does not parse or has unknown fields.
    #[error("topic catalog: {0}")]
    Parse(#[from] toml::de::Error),
    /// A topic with zero partitions.
    #[error("topic catalog: `{0}` has 0 partitions; a topic needs at least one")]
    NoPartitions(String),
    /// The same name twice.
    #[error("topic catalog: `{0}` is listed twice")]
    Duplicate(String),
    /// A name that the log backends could not use.
    #[error("topic catalog: `{0}` is not a valid topic name (letters, digits, '.', '_', '-')")]
    BadName(String),
}

const BUILTIN: &str = include_str!("../catalog.toml");

impl Catalog {
    /// The catalog compiled into courier (topics/catalog.toml).
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            // The file is part of the build and a unit test parses it, so this cannot
            // fail in a released binary.
            Catalog::parse(BUILTIN).expect("topics/catalog.toml is valid")
        })
    }

    /// Parses and checks a catalog.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let catalog: Catalog = toml::from_str(text)?;
        let mut seen = std::collections::BTreeSet::new();
        for t in &catalog.topics {
            if t.name.is_empty()
                || !t
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(CatalogError::BadName(t.name.clone()));
            }
            if t.partitions == 0 {
                return Err(CatalogError::NoPartitions(t.name.clone()));
            }
            if !seen.insert(t.name.as_str()) {
                return Err(CatalogError::Duplicate(t.name.clone()));
            }
        }
        Ok(catalog)
    }

    /// Every topic, in catalog order.
    pub fn topics(&self) -> &[TopicSpec] {
        &self.topics
    }

    /// The topic with this logical name.
    pub fn get(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_holds_the_design_topics() {
        let c = Catalog::builtin();
        let names: Vec<_> = c.topics().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                crate::CONVERSATIONS,
                crate::PRESENCE,
                crate::PUSH_JOBS,
                crate::DEAD_LETTERS
            ]
        );
        assert_eq!(c.get(crate::PRESENCE).unwrap().cleanup, Cleanup::Compact);
        assert_eq!(c.get(crate::CONVERSATIONS).unwrap().key, "conversation_id");
        assert!(c.get("nope").is_none());
    }

    #[test]
    fn bad_catalogs_are_refused_with_the_reason() {
        let zero = "[[topic]]\nname='a'\nkey='k'\nholds='x'\npartitions=0\ncleanup='delete'\nretention_ms=1\n";
        assert_eq!(
            Catalog::parse(zero).unwrap_err().to_string(),
            "topic catalog: `a` has 0 partitions; a topic needs at least one"
        );
        let twice = format!("{}{}", zero.replace("=0", "=1"), zero.replace("=0", "=1"));
        assert!(matches!(
            Catalog::parse(&twice),
            Err(CatalogError::Duplicate(_))
        ));
        let unknown = zero.replace("partitions=0", "partitions=1\ncolour='red'");
        assert!(
            Catalog::parse(&unknown)
                .unwrap_err()
                .to_string()
                .contains("colour")
        );
        let name = zero.replace("name='a'", "name='a b'").replace("=0", "=1");
        assert!(matches!(
            Catalog::parse(&name),
            Err(CatalogError::BadName(_))
        ));
    }
}
