//! The configuration's loading, environment overrides, validation and masking.

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_embedded_under_data() {
    let c = Config::load(None, env(&[])).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.log.backend, Backend::Embedded);
    assert_eq!(c.runner.max_batch, 1000);
}

#[test]
fn file_then_environment_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "data_dir = \"/x\"\n[log]\nfsync = false\n[runner]\nmax_batch = 10\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&path),
        env(&[("COURIER_LOG_FSYNC", "true"), ("OTHER", "1")]),
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/x"));
    assert!(c.log.fsync);
    assert_eq!(c.runner.max_batch, 10);
    let c = Config::load(Some(&path), env(&[("COURIER_DATA_DIR", "/y")])).unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/y"));
}

#[test]
fn mistakes_are_reported_with_where() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[log]\nbackend = \"embeded\"\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("c.toml") && e.contains("embeded"), "{e}");
    std::fs::write(&path, "[runner]\nmax_bacth = 3\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("max_bacth"), "{e}");
    let e = Config::load(None, env(&[("COURIER_LOG_FSYNC", "yes")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "environment variable COURIER_LOG_FSYNC=yes: expected true or false"
    );
    std::fs::write(&path, "[runner]\nmax_batch = 0\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert_eq!(e, "config: runner.max_batch must be at least 1");
}

#[test]
fn kafka_backend_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "namespace = \"staging\"\n[log]\nbackend = \"kafka\"\n[kafka]\nbrokers = \"k1:9092,k2:9092\"\nreplication_factor = 3\n[kafka.properties]\n\"security.protocol\" = \"SSL\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(c.log.backend, Backend::Kafka);
    assert_eq!(c.namespace, "staging");
    let k = c.kafka_settings().unwrap();
    assert_eq!(k.brokers, "k1:9092,k2:9092");
    assert_eq!(k.namespace, "staging");
    assert_eq!(k.replication_factor, 3);
    assert_eq!(
        k.properties.get("security.protocol").map(String::as_str),
        Some("SSL")
    );

    let c = Config::load(
        None,
        env(&[
            ("COURIER_LOG_BACKEND", "kafka"),
            ("COURIER_KAFKA_BROKERS", "b:1"),
            ("COURIER_NAMESPACE", "t1"),
        ]),
    )
    .unwrap();
    assert_eq!(c.log.backend, Backend::Kafka);
    assert_eq!(c.kafka.brokers, "b:1");
    assert_eq!(c.kafka.replication_factor, 1);
    assert_eq!(c.namespace, "t1");
    // Defaults: the local broker of compose/local, no namespace.
    let d = Config::load(None, env(&[])).unwrap();
    assert_eq!(d.kafka.brokers, "127.0.0.1:9092");
    assert_eq!(d.namespace, "");
}

#[test]
fn views_default_to_rocksdb_and_cassandra_to_the_local_node() {
    let c = Config::load(None, env(&[])).unwrap();
    assert_eq!(c.views.backend, ViewsBackend::Rocksdb);
    assert_eq!(c.cassandra.contact_points, "127.0.0.1:9042");
    assert_eq!(c.cassandra.keyspace, "courier");
    assert_eq!(c.cassandra.replication_factor, 1);
    assert_eq!(c.cassandra.local_datacenter, None);
    assert_eq!(c.cassandra_keyspace().unwrap(), "courier");
}

#[test]
fn cassandra_views_from_file_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "namespace = \"ci-7.a\"\n[views]\nbackend = \"cassandra\"\n[cassandra]\ncontact_points = \"n1:9042,n2:9042\"\nkeyspace = \"Views\"\nreplication_factor = 3\nlocal_datacenter = \"dc1\"\n",
    )
    .unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    assert_eq!(c.views.backend, ViewsBackend::Cassandra);
    assert_eq!(c.cassandra.contact_points, "n1:9042,n2:9042");
    assert_eq!(c.cassandra.replication_factor, 3);
    assert_eq!(c.cassandra.local_datacenter.as_deref(), Some("dc1"));
    assert_eq!(c.cassandra_keyspace().unwrap(), "ci_7_a_views");

    let c = Config::load(
        Some(&path),
        env(&[
            ("COURIER_VIEWS_BACKEND", "rocksdb"),
            ("COURIER_CASSANDRA_CONTACT_POINTS", "c:1"),
            ("COURIER_NAMESPACE", ""),
        ]),
    )
    .unwrap();
    assert_eq!(c.views.backend, ViewsBackend::Rocksdb);
    assert_eq!(c.cassandra.contact_points, "c:1");
    assert_eq!(c.cassandra_keyspace().unwrap(), "views");
    let c = Config::load(None, env(&[("COURIER_VIEWS_BACKEND", "cassandra")])).unwrap();
    assert_eq!(c.views.backend, ViewsBackend::Cassandra);
}

#[test]
fn cassandra_mistakes_are_reported_with_where() {
    let e = Config::load(None, env(&[("COURIER_VIEWS_BACKEND", "cassandr")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("environment variable COURIER_VIEWS_BACKEND=cassandr: unknown variant `cassandr`, expected `rocksdb` or `cassandra`"),
        "{e}"
    );
    let e = Config::load(None, env(&[("COURIER_CASSANDRA_CONTACT_POINTS", "")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("cassandra.contact_points is empty"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[views]\nbackend = \"scylla\"\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("c.toml") && e.contains("scylla"), "{e}");
    std::fs::write(&path, "[cassandra]\ncontact_point = \"x:1\"\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("c.toml") && e.contains("contact_point"), "{e}");
    std::fs::write(&path, "[cassandra]\nreplication_factor = 0\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert_eq!(
        e,
        "config: cassandra.replication_factor must be at least 1, not 0"
    );
    std::fs::write(&path, "[cassandra]\nkeyspace = \"a b\"\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.starts_with("config: cassandra keyspace `a b`"), "{e}");
    let long = "n".repeat(45);
    let e = Config::load(None, env(&[("COURIER_NAMESPACE", long.as_str())]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 48"), "{e}");
}

#[test]
fn namespace_prefixes_local_directories() {
    let c = Config::load(None, env(&[("COURIER_DATA_DIR", "/d")])).unwrap();
    assert_eq!(c.log_dir(), PathBuf::from("/d/log"));
    assert_eq!(c.view_dir("presence"), PathBuf::from("/d/views/presence"));
    let c = Config::load(
        None,
        env(&[("COURIER_DATA_DIR", "/d"), ("COURIER_NAMESPACE", "ci-7")]),
    )
    .unwrap();
    assert_eq!(c.log_dir(), PathBuf::from("/d/ci-7/log"));
    assert_eq!(
        c.view_dir("presence"),
        PathBuf::from("/d/ci-7/views/presence")
    );
}

#[test]
fn kafka_mistakes_are_reported_with_where() {
    let e = Config::load(None, env(&[("COURIER_LOG_BACKEND", "kafak")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("environment variable COURIER_LOG_BACKEND=kafak: unknown variant `kafak`, expected `embedded` or `kafka`"),
        "{e}"
    );
    let e = Config::load(None, env(&[("COURIER_NAMESPACE", "a/b")]))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("config: namespace `a/b`"), "{e}");
    let e = Config::load(None, env(&[("COURIER_NAMESPACE", "..")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("namespace `..`"), "{e}");
    let e = Config::load(None, env(&[("COURIER_KAFKA_BROKERS", " ")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("kafka.brokers is empty"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[kafka]\nbroker = \"x:1\"\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("c.toml") && e.contains("broker"), "{e}");
    std::fs::write(&path, "[kafka]\nreplication_factor = 0\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert_eq!(
        e,
        "config: kafka.replication_factor must be at least 1, not 0"
    );
    std::fs::write(&path, "[kafka.properties]\n\"linger.ms\" = 5\n").unwrap();
    let e = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
    assert!(e.contains("c.toml") && e.contains("linger.ms"), "{e}");
}

#[test]
fn push_endpoint_comes_from_the_file_or_the_environment_and_limits_are_checked() {
    let c = Config::parse("[push]\nendpoint = \"http://f/push\"\nconcurrency = 4\n").unwrap();
    assert_eq!(c.push.endpoint.as_deref(), Some("http://f/push"));
    assert_eq!((c.push.concurrency, c.push.max_attempts), (4, 8));
    let c = Config::load(None, env(&[("COURIER_PUSH_ENDPOINT", "http://e/p")])).unwrap();
    assert_eq!(c.push.endpoint.as_deref(), Some("http://e/p"));
    assert!(
        Config::parse("[push]\nendpont = \"x\"\n").is_err(),
        "unknown keys are refused"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[push]\nconcurrency = 0\n").unwrap();
    let e = Config::load(Some(&path), Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("push.concurrency"), "{e}");
}

#[test]
fn push_tls_files_come_from_the_file_or_the_environment_and_go_in_pairs() {
    let c =
        Config::parse("[push]\nendpoint = \"https://p/x\"\nca_file = \"/etc/ca.pem\"\n").unwrap();
    assert_eq!(c.push.tls().ca_file, Some(PathBuf::from("/etc/ca.pem")));
    let c = Config::load(
        None,
        env(&[
            ("COURIER_PUSH__CA_FILE", "/run/ca.pem"),
            ("COURIER_PUSH__CLIENT_CERT_FILE", "/run/c.pem"),
            ("COURIER_PUSH__CLIENT_KEY_FILE", "/run/c.key"),
        ]),
    )
    .unwrap();
    let tls = c.push.tls();
    assert_eq!(tls.ca_file, Some(PathBuf::from("/run/ca.pem")));
    assert_eq!(tls.client_cert_file, Some(PathBuf::from("/run/c.pem")));
    assert_eq!(tls.client_key_file, Some(PathBuf::from("/run/c.key")));
    // Empty means unset, as for every optional text key.
    let c = Config::load(None, env(&[("COURIER_PUSH__CA_FILE", "")])).unwrap();
    assert_eq!(c.push.ca_file, None);
    let e = Config::load(None, env(&[("COURIER_PUSH__CLIENT_CERT_FILE", "/c.pem")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("set both or neither"), "{e}");
}

#[test]
fn the_instance_id_comes_from_the_environment_only_and_is_checked() {
    let c = Config::load(None, env(&[("COURIER_INSTANCE_ID", "inbox-1")])).unwrap();
    assert_eq!(c.kafka.instance_id.as_deref(), Some("inbox-1"));
    assert_eq!(
        c.kafka_settings().unwrap().instance_id.as_deref(),
        Some("inbox-1")
    );
    for bad in ["", "a b", "a/b", &"x".repeat(250)] {
        let e = Config::load(None, env(&[("COURIER_INSTANCE_ID", bad)]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("COURIER_INSTANCE_ID"), "{bad:?}: {e}");
    }
    assert!(
        Config::parse("[kafka]\ninstance_id = \"shared\"\n").is_err(),
        "not a key of the shared file"
    );
}

#[test]
fn every_key_can_be_set_from_the_environment_typed_as_its_key() {
    let c = Config::load(
        None,
        env(&[
            ("COURIER_GATEWAY__MAX_TEXT_BYTES", "4096"),
            ("COURIER_GATEWAY__USER_RATE_PER_SEC", "2.5"),
            ("COURIER_GATEWAY__JWT_SECRET", "s3cret"),
            ("COURIER_LOG__FSYNC", "true"),
            ("COURIER_RUNNER__MAX_BATCH", "7"),
            ("COURIER_CASSANDRA__LOCAL_DATACENTER", "dc2"),
            ("COURIER_KAFKA__PROPERTIES__SASL_MECHANISM", "SCRAM-SHA-512"),
            // Not config keys: left alone.
            ("COURIER_LOG", "debug"),
            ("COURIER_CONFIG", "/elsewhere.toml"),
        ]),
    )
    .unwrap();
    assert_eq!(c.gateway.max_text_bytes, 4096);
    assert_eq!(c.gateway.user_rate_per_sec, 2.5);
    assert_eq!(c.gateway.jwt_secret.as_deref(), Some("s3cret"));
    assert!(c.log.fsync);
    assert_eq!(c.runner.max_batch, 7);
    assert_eq!(c.cassandra.local_datacenter.as_deref(), Some("dc2"));
    assert_eq!(
        c.kafka.properties.get("sasl.mechanism").map(String::as_str),
        Some("SCRAM-SHA-512")
    );
    // The long form of an alias is the same key.
    let c = Config::load(None, env(&[("COURIER_LOG__BACKEND", "kafka")])).unwrap();
    assert_eq!(c.log.backend, Backend::Kafka);
}

#[test]
fn environment_mistakes_name_the_variable() {
    let e = Config::load(None, env(&[("COURIER_GATEWAY__MAX_TXT_BYTES", "1")]))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "environment variable COURIER_GATEWAY__MAX_TXT_BYTES=1: unknown field `max_txt_bytes`"
        ),
        "{e}"
    );
    let e = Config::load(None, env(&[("COURIER_GATEWAY__MAX_TEXT_BYTES", "4k")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "environment variable COURIER_GATEWAY__MAX_TEXT_BYTES=4k: expected a whole number"
    );
    let e = Config::load(None, env(&[("COURIER_KAFKA__PROPERTIES", "x")]))
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "environment variable COURIER_KAFKA__PROPERTIES=x: `kafka.properties` is a section; set its keys"
    );
    let e = Config::load(None, env(&[("COURIER_NOSUCH__KEY", "x")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `nosuch`"), "{e}");
}

#[test]
fn empty_optional_text_means_unset() {
    let c = Config::parse("[push]\nendpoint = \"http://f/push\"\n").unwrap();
    assert!(c.push.endpoint.is_some());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        "[push]\nendpoint = \"http://f/push\"\n[metrics]\nlisten = \"127.0.0.1:1\"\n",
    )
    .unwrap();
    let c = Config::load(
        Some(&path),
        env(&[
            ("COURIER_PUSH_ENDPOINT", ""),
            ("COURIER_METRICS__LISTEN", ""),
        ]),
    )
    .unwrap();
    assert_eq!((c.push.endpoint, c.metrics.listen), (None, None));
}

#[test]
fn cassandra_tls_and_login_from_file_environment_or_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "from-the-file\n").unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!(
            "[cassandra]\ntls = true\nca_file = \"/etc/ca.pem\"\nusername = \"courier\"\npassword_file = \"{}\"\n",
            pw.display()
        ),
    )
    .unwrap();
    let c = Config::load(Some(&path), env(&[])).unwrap();
    let s = c.cassandra_settings().unwrap();
    assert_eq!(
        s.tls.unwrap().ca_file.as_deref(),
        Some(Path::new("/etc/ca.pem"))
    );
    let login = s.credentials.unwrap();
    assert_eq!(login.username, "courier");
    assert_eq!(login.password.expose(), "from-the-file");
    // The password never prints, the file's name does (it is no secret).
    let printed = c.to_masked_toml();
    assert!(!printed.contains("from-the-file"), "{printed}");
    assert!(printed.contains(&pw.display().to_string()), "{printed}");

    // From the environment, the file unset by an empty variable.
    let c = Config::load(
        Some(&path),
        env(&[
            ("COURIER_CASSANDRA__PASSWORD", "from-env"),
            ("COURIER_CASSANDRA__PASSWORD_FILE", ""),
        ]),
    )
    .unwrap();
    assert_eq!(
        c.cassandra_settings()
            .unwrap()
            .credentials
            .unwrap()
            .password
            .expose(),
        "from-env"
    );
    assert!(!c.to_masked_toml().contains("from-env"));

    // Both at once, a username without a password, a CA without TLS, a missing
    // password file: each named.
    for (vars, wanted) in [
        (
            vec![("COURIER_CASSANDRA__PASSWORD", "x")],
            "cassandra.password and cassandra.password_file are both set",
        ),
        (
            vec![("COURIER_CASSANDRA__PASSWORD_FILE", "")],
            "cassandra.username is set without a password",
        ),
        (
            vec![("COURIER_CASSANDRA__TLS", "false")],
            "cassandra.ca_file is set but cassandra.tls is false",
        ),
    ] {
        let e = Config::load(Some(&path), env(&vars))
            .unwrap_err()
            .to_string();
        assert!(e.contains(wanted), "{wanted} in {e}");
    }
    // The file is read when courier connects: a config may name it before the
    // server that writes it first started.
    let c = Config::load(
        Some(&path),
        env(&[("COURIER_CASSANDRA__PASSWORD_FILE", "/no/such/file")]),
    )
    .unwrap();
    let e = c.cassandra_settings().unwrap_err().to_string();
    assert!(e.contains("cassandra.password_file /no/such/file"), "{e}");
    // Without any of it: plaintext, no login.
    let s = Config::load(None, env(&[]))
        .unwrap()
        .cassandra_settings()
        .unwrap();
    assert_eq!((s.tls, s.credentials), (None, None));
}

#[test]
fn the_printed_config_has_every_section_and_masks_secrets() {
    let c = Config::load(
        None,
        env(&[
            ("COURIER_GATEWAY__JWT_SECRET", "top-secret-value"),
            ("COURIER_KAFKA__PROPERTIES__SASL_PASSWORD", "hunter2"),
            ("COURIER_KAFKA__PROPERTIES__SASL_USERNAME", "courier"),
        ]),
    )
    .unwrap();
    let printed = c.to_masked_toml();
    for secret in ["top-secret-value", "hunter2"] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    assert!(printed.contains("jwt_secret = \"********\""), "{printed}");
    assert!(printed.contains("token_ttl_secs = 2592000"), "{printed}");
    assert!(
        printed.contains("\"sasl.password\" = \"********\""),
        "{printed}"
    );
    assert!(
        printed.contains("\"sasl.username\" = \"courier\""),
        "{printed}"
    );
    for section in [
        "[log]",
        "[kafka]",
        "[runner]",
        "[metrics]",
        "[views]",
        "[cassandra]",
        "[push]",
        "[gateway]",
    ] {
        assert!(printed.contains(section), "{section} missing:\n{printed}");
    }
    // What it prints is a config courier reads back as the same (secrets aside).
    let back = Config::parse(&printed).unwrap();
    let mut expected = c.clone();
    expected.gateway.jwt_secret = Some("********".into());
    expected
        .kafka
        .properties
        .insert("sasl.password".into(), "********".into());
    assert_eq!(back, expected);
}

#[test]
fn search_snapshots_are_off_by_default_and_live_per_namespace_and_generation() {
    let c = Config::load(None, env(&[])).unwrap();
    assert!(
        c.search_snapshots(0).is_none(),
        "no store unless configured"
    );
    let c = Config::load(
        None,
        env(&[
            ("COURIER_SEARCH__SNAPSHOT_DIR", "/mnt/shared"),
            ("COURIER_SEARCH__SNAPSHOT_INTERVAL_MS", "500"),
            ("COURIER_NAMESPACE", "eu"),
        ]),
    )
    .unwrap();
    let store = c.search_snapshots(3).unwrap();
    assert_eq!(store.root(), Path::new("/mnt/shared/eu/search/g3"));
    assert_eq!(store.interval(), std::time::Duration::from_millis(500));
    let c = Config::load(None, env(&[("COURIER_SEARCH__SNAPSHOT_DIR", "")])).unwrap();
    assert!(c.search_snapshots(0).is_none(), "empty means unset");
    let e = Config::load(None, env(&[("COURIER_SEARCH__SNAPSHOT_INTERVAL_MS", "0")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("search.snapshot_interval_ms"), "{e}");
}
