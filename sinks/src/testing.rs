//! Cassandra settings for tests and benchmarks against the node of
//! compose/local/up.sh (see `courier_pipeline::testing`): its TLS and login come
//! from the `courier.env` up.sh wrote, so no test names a password or a CA.

use courier_pipeline::testing::CASSANDRA;

use crate::config::CassandraConfig;
use crate::inbox::CassandraSettings;

/// `settings` with the TLS and login of compose/local's Cassandra (none for a
/// plaintext node).
pub fn secured(settings: CassandraSettings) -> CassandraSettings {
    secured_by(settings, &CASSANDRA.client_env())
}

/// `settings` with the TLS and login that the `COURIER_CASSANDRA__*` variables of
/// `env` describe (a `courier.env`, e.g. of a test's own node). Panics on a
/// variable it does not know or settings that do not hold together: a test must
/// not silently run with less security than its server asks for.
pub fn secured_by(mut settings: CassandraSettings, env: &[(String, String)]) -> CassandraSettings {
    let mut c = CassandraConfig::default();
    for (var, value) in env {
        match var.strip_prefix("COURIER_CASSANDRA__") {
            Some("TLS") => c.tls = value == "true",
            Some("CA_FILE") => c.ca_file = Some(value.into()),
            Some("USERNAME") => c.username = Some(value.clone()),
            Some("PASSWORD") => c.password = Some(value.clone()),
            Some("PASSWORD_FILE") => c.password_file = Some(value.into()),
            _ => panic!("{var}: not a Cassandra client setting this helper knows"),
        }
    }
    let s = c
        .settings_in("")
        .unwrap_or_else(|e| panic!("the local Cassandra's client settings: {e}"));
    settings.tls = s.tls;
    settings.credentials = s.credentials;
    settings
}
