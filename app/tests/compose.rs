//! Checks that the Docker stack in compose/ is consistent: docker-compose.yml,
//! courier.docker.toml (read with `courier_app::config::Config::parse`),
//! prometheus/prometheus.yml, the Grafana datasource and the Dockerfile agree with
//! each other, with the processors the `courier` CLI knows and with the workspace;
//! and that it is secured: Kafka only over TLS (clients with SCRAM over SASL_SSL,
//! brokers by certificate), ScyllaDB checking logins, every secret a compose
//! secret that compose/secrets.sh makes, none written in the files.
//! It only parses files, so it runs (and guards the stack) on machines without Docker.
//! Every failure names the file and what disagrees; each test reports all its
//! problems at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use courier_app::config::Backend;
use courier_app::config::Config;
use serde_yaml_ng::Value;

/// The processors `courier run PROCESSOR` accepts: the registry's names. Every
/// one must have a compose service, and a service may run only these.
fn processors() -> Vec<&'static str> {
    courier_app::registry::REGISTRY
        .iter()
        .map(|e| e.name)
        .collect()
}

const COMPOSE: &str = "compose/docker-compose.yml";
const CONFIG: &str = "compose/courier.docker.toml";
const PROMETHEUS: &str = "compose/prometheus/prometheus.yml";
const GRAFANA_DATASOURCES: &str = "compose/grafana/provisioning/datasources";
const DOCKERFILE: &str = "compose/Dockerfile";
const SECRETS_SCRIPT: &str = "compose/secrets.sh";

/// Keys of courier.docker.toml checked here, which no service may override from
/// its environment (any variable `courier_app::config::env_key` maps to one).
const OVERRIDES_CHECKED_SETTINGS: &[&str] = &["log.backend", "kafka.brokers", "metrics.listen"];

// ------------------------------------------------------------------ reading

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("app/ has a parent")
        .to_path_buf()
}

fn compose_dir() -> PathBuf {
    repo().join("compose")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: cannot read: {e}"))
}

/// Parses YAML and resolves `<<` merge keys (YAML anchors), as Compose does.
fn yaml(rel: &str, text: &str) -> Value {
    let mut v: Value =
        serde_yaml_ng::from_str(text).unwrap_or_else(|e| panic!("{rel}: not valid YAML: {e}"));
    // One pass resolves one level of merges; a merged mapping may bring its own.
    for _ in 0..8 {
        v.apply_merge()
            .unwrap_or_else(|e| panic!("{rel}: bad merge key: {e}"));
    }
    v
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list of strings, or one string split on whitespace (Compose's two forms of
/// `command`).
fn words(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Sequence(items)) => items.iter().filter_map(scalar).collect(),
        Some(v) => scalar(v)
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// One published or exposed port.
#[derive(Debug)]
struct Port {
    /// Host port, when fixed.
    host: Option<String>,
    /// Container port.
    container: String,
}

struct Service {
    name: String,
    v: Value,
}

impl Service {
    fn get(&self, key: &str) -> Option<&Value> {
        self.v.get(key)
    }

    fn str(&self, key: &str) -> Option<String> {
        self.get(key).and_then(scalar)
    }

    fn image(&self) -> String {
        self.str("image").unwrap_or_default()
    }

    /// `environment`, in map or `KEY=VALUE` list form.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        match self.get("environment") {
            Some(Value::Mapping(m)) => {
                for (k, v) in m {
                    if let Some(k) = scalar(k) {
                        env.insert(k, scalar(v).unwrap_or_default());
                    }
                }
            }
            Some(Value::Sequence(items)) => {
                for item in items.iter().filter_map(scalar) {
                    let (k, v) = item.split_once('=').unwrap_or((&item, ""));
                    env.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
        env
    }

    fn ports(&self) -> Vec<Port> {
        let Some(Value::Sequence(items)) = self.get("ports") else {
            return Vec::new();
        };
        items
            .iter()
            .map(|p| match p {
                Value::Mapping(_) => Port {
                    host: p
                        .get("published")
                        .and_then(scalar)
                        .filter(|h| !h.is_empty()),
                    container: p.get("target").and_then(scalar).unwrap_or_default(),
                },
                _ => {
                    // [IP:][HOST:]CONTAINER[/PROTO]
                    let s = scalar(p).unwrap_or_default();
                    let s = s.split('/').next().unwrap_or_default().to_string();
                    let mut parts = s.rsplitn(3, ':');
                    let container = parts.next().unwrap_or_default().to_string();
                    let host = parts.next().filter(|h| !h.is_empty()).map(str::to_string);
                    Port { host, container }
                }
            })
            .collect()
    }

    fn expose(&self) -> Vec<String> {
        words(self.get("expose"))
            .into_iter()
            .map(|p| p.split('/').next().unwrap_or_default().to_string())
            .collect()
    }

    /// Container ports this service makes reachable: `expose` and `ports` targets.
    fn container_ports(&self) -> BTreeSet<String> {
        self.expose()
            .into_iter()
            .chain(self.ports().into_iter().map(|p| p.container))
            .collect()
    }

    /// `volumes` as (source, target); source is empty for anonymous volumes.
    fn volumes(&self) -> Vec<(String, String)> {
        let Some(Value::Sequence(items)) = self.get("volumes") else {
            return Vec::new();
        };
        items
            .iter()
            .map(|v| match v {
                Value::Mapping(_) => (
                    v.get("source").and_then(scalar).unwrap_or_default(),
                    v.get("target").and_then(scalar).unwrap_or_default(),
                ),
                _ => {
                    let s = scalar(v).unwrap_or_default();
                    let parts: Vec<&str> = s.split(':').collect();
                    match parts.as_slice() {
                        [target] => (String::new(), target.to_string()),
                        [source, target, ..] => (source.to_string(), target.to_string()),
                        [] => (String::new(), String::new()),
                    }
                }
            })
            .collect()
    }

    /// Bind mounts (sources that are paths) as (absolute source, target).
    fn binds(&self) -> Vec<(PathBuf, String)> {
        self.volumes()
            .into_iter()
            .filter(|(s, _)| s.starts_with('.') || s.starts_with('/'))
            .map(|(s, t)| (normalize(&compose_dir().join(s)), t))
            .collect()
    }

    /// `depends_on` as service → condition (`service_started` for the list form).
    fn depends_on(&self) -> BTreeMap<String, String> {
        match self.get("depends_on") {
            Some(Value::Mapping(m)) => m
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        scalar(k)?,
                        v.get("condition")
                            .and_then(scalar)
                            .unwrap_or_else(|| "service_started".into()),
                    ))
                })
                .collect(),
            Some(v) => words(Some(v))
                .into_iter()
                .map(|s| (s, "service_started".to_string()))
                .collect(),
            None => BTreeMap::new(),
        }
    }

    /// `secrets` as (source, path in the container), short or long syntax.
    fn secrets(&self) -> Vec<(String, String)> {
        let Some(Value::Sequence(items)) = self.get("secrets") else {
            return Vec::new();
        };
        items
            .iter()
            .filter_map(|v| match v {
                Value::Mapping(_) => {
                    let source = v.get("source").and_then(scalar)?;
                    let target = v
                        .get("target")
                        .and_then(scalar)
                        .unwrap_or_else(|| source.clone());
                    Some((source, target))
                }
                _ => scalar(v).map(|n| (n.clone(), n)),
            })
            .map(|(source, target)| {
                let path = if target.starts_with('/') {
                    target
                } else {
                    format!("/run/secrets/{target}")
                };
                (source, path)
            })
            .collect()
    }

    /// Whether a file of `/run/secrets/` is mounted in this service.
    fn mounts_secret(&self, path: &str) -> bool {
        self.secrets().iter().any(|(_, p)| p == path)
    }

    /// A healthcheck that actually tests something.
    fn has_healthcheck(&self) -> bool {
        let Some(h) = self.get("healthcheck") else {
            return false;
        };
        let disabled = h.get("disable").and_then(Value::as_bool).unwrap_or(false);
        let test = words(h.get("test"));
        !disabled && !test.is_empty() && test[0] != "NONE"
    }

    /// Names other containers reach it by: the service name, and `hostname` if set.
    fn network_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::from([self.name.clone()]);
        names.extend(self.str("hostname"));
        names
    }
}

/// `a/b/../c` → `a/c`, without touching the file system.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// What a courier service runs.
#[derive(Debug, PartialEq)]
enum Role {
    /// `courier topics apply`.
    TopicsApply,
    /// `courier migrate`.
    Migrate,
    /// `courier run PROCESSOR`, with `--serve ADDR` for search.
    Processor(String, Option<String>),
    /// `courier up --processors LIST --listen ADDR --search-peers URLS`: the gateway.
    Gateway {
        processors: Option<String>,
        listen: Option<String>,
        search_peers: Vec<String>,
    },
}

/// The parsed stack.
struct Stack {
    services: Vec<Service>,
    config: Config,
}

impl Stack {
    fn load() -> Stack {
        let compose = yaml(COMPOSE, &read(COMPOSE));
        let Some(Value::Mapping(services)) = compose.get("services") else {
            panic!("{COMPOSE}: no `services` mapping");
        };
        let services = services
            .iter()
            .map(|(k, v)| Service {
                name: scalar(k)
                    .unwrap_or_else(|| panic!("{COMPOSE}: a service name is not a string")),
                v: v.clone(),
            })
            .collect();
        let config = Config::parse(&read(CONFIG))
            .unwrap_or_else(|e| panic!("{CONFIG}: not a valid courier config: {e}"));
        Stack { services, config }
    }

    fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// Kafka nodes: services configured with `KAFKA_PROCESS_ROLES`.
    fn kafka(&self) -> Vec<&Service> {
        self.services
            .iter()
            .filter(|s| s.env().contains_key("KAFKA_PROCESS_ROLES"))
            .collect()
    }

    /// ScyllaDB nodes: the image run as itself (a one-shot that runs its cqlsh
    /// through another entrypoint is no node).
    fn scylla(&self) -> Vec<&Service> {
        self.services
            .iter()
            .filter(|s| s.image().starts_with("scylladb/scylla") && s.get("entrypoint").is_none())
            .collect()
    }

    /// The top-level `secrets`: name → file, relative to compose/.
    fn secret_files(&self) -> BTreeMap<String, Option<String>> {
        let compose = yaml(COMPOSE, &read(COMPOSE));
        let Some(Value::Mapping(secrets)) = compose.get("secrets") else {
            return BTreeMap::new();
        };
        secrets
            .iter()
            .filter_map(|(k, v)| Some((scalar(k)?, v.get("file").and_then(scalar))))
            .collect()
    }

    /// Services built from compose/Dockerfile, or running the image it builds.
    fn courier(&self) -> Vec<&Service> {
        let dockerfile = repo().join(DOCKERFILE);
        let built = |s: &Service| {
            let Some(build) = s.get("build") else {
                return false;
            };
            let (context, file) = match build {
                Value::Mapping(_) => (
                    build
                        .get("context")
                        .and_then(scalar)
                        .unwrap_or_else(|| ".".into()),
                    build
                        .get("dockerfile")
                        .and_then(scalar)
                        .unwrap_or_else(|| "Dockerfile".into()),
                ),
                v => (scalar(v).unwrap_or_default(), "Dockerfile".into()),
            };
            normalize(&compose_dir().join(context).join(file)) == dockerfile
        };
        let images: BTreeSet<String> = self
            .services
            .iter()
            .filter(|s| built(s))
            .map(Service::image)
            .filter(|i| !i.is_empty())
            .collect();
        self.services
            .iter()
            .filter(|s| built(s) || images.contains(&s.image()))
            .collect()
    }

    /// The services that run `courier run PROCESSOR`, with the processor.
    fn processors(&self) -> Vec<(&Service, String)> {
        self.courier()
            .into_iter()
            .filter_map(|s| match courier_invocation(s) {
                Ok((_, Role::Processor(p, _))) => Some((s, p)),
                _ => None,
            })
            .collect()
    }

    /// The services whose command is `role`'s kind.
    fn with_role(&self, kind: fn(&Role) -> bool) -> Vec<(&Service, Role)> {
        self.courier()
            .into_iter()
            .filter_map(|s| match courier_invocation(s) {
                Ok((_, r)) if kind(&r) => Some((s, r)),
                _ => None,
            })
            .collect()
    }

    fn topics_services(&self) -> Vec<&Service> {
        self.courier()
            .into_iter()
            .filter(|s| matches!(courier_invocation(s), Ok((_, Role::TopicsApply))))
            .collect()
    }

    /// Services with a `restart: "no"` whose command contains `needle`.
    fn one_shots_whose_command_has(&self, needle: &str) -> Vec<&Service> {
        self.services
            .iter()
            .filter(|s| s.str("restart").as_deref() == Some("no"))
            .filter(|s| words(s.get("command")).join(" ").contains(needle))
            .collect()
    }

    /// The port of `metrics.listen`.
    fn metrics_port(&self) -> Option<String> {
        let listen = self.config.metrics.listen.as_deref()?;
        Some(listen.rsplit_once(':')?.1.to_string())
    }
}

/// The config path and role of a courier service, from its command (the image's
/// entrypoint is `courier`).
fn courier_invocation(s: &Service) -> Result<(Option<String>, Role), String> {
    let entrypoint = words(s.get("entrypoint"));
    if !(entrypoint.is_empty() || entrypoint == ["courier"]) {
        return Err(format!(
            "its entrypoint is {entrypoint:?}; courier services use the image's `courier`"
        ));
    }
    let mut args = words(s.get("command")).into_iter();
    let mut config = None;
    let mut rest = Vec::new();
    while let Some(a) = args.next() {
        if a == "--config" {
            config = args.next();
        } else if let Some(path) = a.strip_prefix("--config=") {
            config = Some(path.to_string());
        } else {
            rest.push(a);
        }
    }
    let config = config.or_else(|| s.env().get("COURIER_CONFIG").cloned());
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    let role = match rest.as_slice() {
        ["topics", "apply"] => Role::TopicsApply,
        ["migrate"] => Role::Migrate,
        ["run", p] => Role::Processor(p.to_string(), None),
        ["run", "search", "--serve", addr] => {
            Role::Processor("search".to_string(), Some(addr.to_string()))
        }
        ["up", flags @ ..] => {
            let (mut processors, mut listen, mut search_peers) = (None, None, Vec::new());
            let mut it = flags.iter();
            while let Some(flag) = it.next() {
                let value = it
                    .next()
                    .map(|v| v.to_string())
                    .ok_or_else(|| format!("`courier up`: {flag} has no value"))?;
                match *flag {
                    "--processors" => processors = Some(value),
                    "--listen" => listen = Some(value),
                    "--search-peers" => {
                        search_peers = value.split(',').map(str::to_string).collect()
                    }
                    other => return Err(format!("`courier up`: unknown flag {other}")),
                }
            }
            Role::Gateway {
                processors,
                listen,
                search_peers,
            }
        }
        other => {
            return Err(format!(
                "its command runs `courier {}`; expected `run PROCESSOR`, `run search --serve ADDR`, `up ...`, `migrate` or `topics apply`",
                other.join(" ")
            ));
        }
    };
    Ok((config, role))
}

/// Collects every problem of one check, then fails once with all of them.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn push(&mut self, problem: String) {
        self.0.push(problem);
    }

    fn check(&mut self, ok: bool, problem: impl FnOnce() -> String) {
        if !ok {
            self.0.push(problem());
        }
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{} problem(s):\n- {}",
            self.0.len(),
            self.0.join("\n- ")
        );
    }
}

/// `NAME://host:port,...` → [(NAME, host, port)].
fn listeners(spec: &str) -> Vec<(String, String, String)> {
    spec.split(',')
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| {
            let (name, addr) = l.trim().split_once("://")?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((name.to_string(), host.to_string(), port.to_string()))
        })
        .collect()
}

fn int(env: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    env.get(key).and_then(|v| v.trim().parse().ok())
}

// ------------------------------------------------------------------ checks

#[test]
fn config_brokers_are_the_advertised_client_listeners_of_the_kafka_services() {
    let stack = Stack::load();
    let mut p = Problems::default();
    p.check(stack.config.log.backend == Backend::Kafka, || {
        format!("{CONFIG}: [log] backend is not \"kafka\"; the compose stack runs courier on its Kafka cluster")
    });
    let kafka = stack.kafka();
    p.check(!kafka.is_empty(), || {
        format!("{COMPOSE}: no Kafka service (none sets KAFKA_PROCESS_ROLES)")
    });
    let mut advertised = BTreeSet::new();
    for k in &kafka {
        let env = k.env();
        let names = k.network_names();
        let adv = listeners(
            env.get("KAFKA_ADVERTISED_LISTENERS")
                .map_or("", String::as_str),
        );
        // Brokers replicate over their own listener; the clients' is the other one.
        let inter_broker = env
            .get("KAFKA_INTER_BROKER_LISTENER_NAME")
            .cloned()
            .unwrap_or_default();
        let on_network: Vec<_> = adv
            .iter()
            .filter(|(n, h, _)| names.contains(h) && *n != inter_broker)
            .collect();
        let [(name, host, port)] = on_network.as_slice() else {
            p.push(format!(
                "{COMPOSE}: service {}: KAFKA_ADVERTISED_LISTENERS should have exactly one client listener on the compose network (host {}, besides the inter-broker {inter_broker}), found {on_network:?}",
                k.name, k.name
            ));
            continue;
        };
        let bound = listeners(env.get("KAFKA_LISTENERS").map_or("", String::as_str));
        p.check(bound.iter().any(|(n, _, pt)| n == name && pt == port), || {
            format!(
                "{COMPOSE}: service {}: advertises {name}://{host}:{port} but KAFKA_LISTENERS binds no {name} listener on port {port}",
                k.name
            )
        });
        let controllers = env
            .get("KAFKA_CONTROLLER_LISTENER_NAMES")
            .cloned()
            .unwrap_or_default();
        p.check(!controllers.split(',').any(|c| c == name), || {
            format!(
                "{COMPOSE}: service {}: the advertised client listener {name} is a controller listener",
                k.name
            )
        });
        let protocol = env
            .get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")
            .and_then(|m| {
                m.split(',').find_map(|e| {
                    e.split_once(':')
                        .filter(|(n, _)| n == name)
                        .map(|(_, pr)| pr.to_string())
                })
            })
            .unwrap_or_else(|| name.clone());
        let client_protocol = stack
            .config
            .kafka
            .properties
            .get("security.protocol")
            .map(String::as_str)
            .or(stack.config.kafka.security_protocol())
            .unwrap_or("PLAINTEXT")
            .to_uppercase();
        p.check(protocol == client_protocol, || {
            format!(
                "{COMPOSE}: service {}: listener {name} speaks {protocol}, but {CONFIG} connects with security.protocol {client_protocol}",
                k.name
            )
        });
        advertised.insert(format!("{host}:{port}"));
    }
    let brokers: BTreeSet<String> = stack
        .config
        .kafka
        .brokers
        .split(',')
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .collect();
    p.check(brokers == advertised, || {
        format!(
            "{CONFIG}: [kafka] brokers = {brokers:?}, but the Kafka services of {COMPOSE} advertise {advertised:?} on the compose network"
        )
    });
    p.assert_none();
}

#[test]
fn kraft_quorum_and_replication_fit_the_brokers() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let kafka = stack.kafka();
    let n = kafka.len() as i64;
    p.check(n >= 3, || {
        format!("{COMPOSE}: {n} Kafka service(s); the stack is a KRaft quorum of 3 brokers")
    });
    let rf = i64::from(stack.config.kafka.replication_factor);
    p.check(rf <= n, || {
        format!("{CONFIG}: [kafka] replication_factor = {rf}, but {COMPOSE} has only {n} Kafka broker(s): topic creation would fail")
    });

    // The quorum every node must name: NODE_ID@service:controller port.
    let mut expected_voters = BTreeSet::new();
    let mut node_ids = BTreeSet::new();
    for k in &kafka {
        let env = k.env();
        let roles: BTreeSet<&str> = env["KAFKA_PROCESS_ROLES"]
            .split(',')
            .map(str::trim)
            .collect();
        p.check(roles == BTreeSet::from(["broker", "controller"]), || {
            format!(
                "{COMPOSE}: service {}: KAFKA_PROCESS_ROLES is {roles:?}; every node is a combined broker+controller",
                k.name
            )
        });
        let Some(id) = env.get("KAFKA_NODE_ID") else {
            p.push(format!("{COMPOSE}: service {}: no KAFKA_NODE_ID", k.name));
            continue;
        };
        p.check(node_ids.insert(id.clone()), || {
            format!(
                "{COMPOSE}: service {}: KAFKA_NODE_ID {id} is used twice",
                k.name
            )
        });
        let controller = env
            .get("KAFKA_CONTROLLER_LISTENER_NAMES")
            .cloned()
            .unwrap_or_default();
        let bound = listeners(env.get("KAFKA_LISTENERS").map_or("", String::as_str));
        match bound.iter().find(|(name, _, _)| *name == controller) {
            Some((_, _, port)) => {
                expected_voters.insert(format!("{id}@{}:{port}", k.name));
            }
            None => p.push(format!(
                "{COMPOSE}: service {}: KAFKA_LISTENERS binds no {controller:?} listener (KAFKA_CONTROLLER_LISTENER_NAMES)",
                k.name
            )),
        }
    }
    for k in &kafka {
        let env = k.env();
        let voters: BTreeSet<String> = env
            .get("KAFKA_CONTROLLER_QUORUM_VOTERS")
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default();
        p.check(voters == expected_voters, || {
            format!(
                "{COMPOSE}: service {}: KAFKA_CONTROLLER_QUORUM_VOTERS is {voters:?}, but the Kafka services are {expected_voters:?}",
                k.name
            )
        });
        p.check(env.get("CLUSTER_ID").is_some_and(|c| !c.is_empty()), || {
            format!(
                "{COMPOSE}: service {}: no CLUSTER_ID to format its storage with",
                k.name
            )
        });
        for key in [
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        ] {
            match int(&env, key) {
                Some(v) => p.check(v <= n, || {
                    format!("{COMPOSE}: service {}: {key} = {v} but there are {n} brokers", k.name)
                }),
                None => p.push(format!(
                    "{COMPOSE}: service {}: {key} is not set (Kafka's default does not fit a {n}-broker cluster)",
                    k.name
                )),
            }
        }
        match int(&env, "KAFKA_MIN_INSYNC_REPLICAS") {
            Some(isr) => p.check(isr <= rf && (rf == 1 || isr < rf), || {
                format!(
                    "{COMPOSE}: service {}: KAFKA_MIN_INSYNC_REPLICAS = {isr} against replication_factor = {rf} of {CONFIG}: acks=all writes need at most {} in sync so that one broker can be down",
                    k.name,
                    (rf - 1).max(1)
                )
            }),
            None => p.push(format!("{COMPOSE}: service {}: KAFKA_MIN_INSYNC_REPLICAS is not set", k.name)),
        }
    }
    // Cluster-wide settings are the same on every node; only identity and listeners differ.
    let per_node = [
        "KAFKA_NODE_ID",
        "KAFKA_LISTENERS",
        "KAFKA_ADVERTISED_LISTENERS",
    ];
    if let Some(first) = kafka.first() {
        let common = |s: &Service| -> BTreeMap<String, String> {
            s.env()
                .into_iter()
                .filter(|(k, _)| !per_node.contains(&k.as_str()))
                .collect()
        };
        let reference = common(first);
        for k in &kafka[1..] {
            let other = common(k);
            let differ: Vec<&String> = reference
                .keys()
                .chain(other.keys())
                .filter(|key| reference.get(*key) != other.get(*key))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            p.check(differ.is_empty(), || {
                format!(
                    "{COMPOSE}: services {} and {} differ in cluster-wide settings {differ:?}",
                    first.name, k.name
                )
            });
        }
    }
    p.assert_none();
}

#[test]
fn courier_services_run_known_commands_with_the_config_mounted() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let config_file = repo().join(CONFIG);
    let courier = stack.courier();
    p.check(!courier.is_empty(), || {
        format!("{COMPOSE}: no service is built from {DOCKERFILE} (build: context .., dockerfile compose/Dockerfile)")
    });
    for s in &courier {
        let (config, role) = match courier_invocation(s) {
            Ok(x) => x,
            Err(e) => {
                p.push(format!("{COMPOSE}: service {}: {e}", s.name));
                continue;
            }
        };
        if let Role::Processor(name, _) = &role {
            p.check(processors().contains(&name.as_str()), || {
                format!(
                    "{COMPOSE}: service {}: runs `courier run {name}`, but the CLI's processors are {:?} (app/src/registry.rs)",
                    s.name,
                    processors()
                )
            });
        }
        match config {
            None => p.push(format!(
                "{COMPOSE}: service {}: its command has no --config (nor COURIER_CONFIG); it would run on the embedded defaults",
                s.name
            )),
            Some(path) => p.check(
                s.binds().iter().any(|(src, target)| *src == config_file && *target == path),
                || {
                    format!(
                        "{COMPOSE}: service {}: --config {path}, but {CONFIG} is not mounted there (volumes: {:?})",
                        s.name,
                        s.volumes()
                    )
                },
            ),
        }
        let env = s.env();
        for var in env.keys() {
            let key = courier_app::config::env_key(var).map(|k| k.join("."));
            let checked = key.is_some_and(|k| OVERRIDES_CHECKED_SETTINGS.contains(&k.as_str()));
            p.check(!checked, || {
                format!(
                    "{COMPOSE}: service {}: sets {var}, which overrides {CONFIG}; change the config file instead",
                    s.name
                )
            });
        }
    }
    let services = stack.processors();
    for name in processors() {
        let running: Vec<&str> = services
            .iter()
            .filter(|(_, p)| p == name)
            .map(|(s, _)| s.name.as_str())
            .collect();
        p.check(running.len() == 1, || {
            format!(
                "{COMPOSE}: processor {name} should be run by exactly one service (scaled with --scale), found {running:?}"
            )
        });
    }
    let topics = stack.topics_services();
    p.check(topics.len() == 1, || {
        format!(
            "{COMPOSE}: expected one one-shot service running `courier topics apply`, found {:?}",
            topics.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    });
    p.assert_none();
}

#[test]
fn processors_start_after_topics_apply_which_waits_for_every_broker() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let topics = stack.topics_services();
    let Some(topics) = topics.first() else {
        panic!("{COMPOSE}: no service runs `courier topics apply`");
    };
    for (s, _) in stack.processors() {
        let deps = s.depends_on();
        p.check(
            deps.get(&topics.name).map(String::as_str) == Some("service_completed_successfully"),
            || {
                format!(
                    "{COMPOSE}: service {}: must depend on {} with condition service_completed_successfully (depends_on: {deps:?})",
                    s.name, topics.name
                )
            },
        );
    }
    let deps = topics.depends_on();
    for k in stack.kafka() {
        p.check(deps.get(&k.name).map(String::as_str) == Some("service_healthy"), || {
            format!(
                "{COMPOSE}: service {}: must wait for {} to be service_healthy (depends_on: {deps:?})",
                topics.name, k.name
            )
        });
    }
    let restart = topics.str("restart").unwrap_or_else(|| "no".into());
    p.check(restart == "no" || restart == "on-failure", || {
        format!(
            "{COMPOSE}: service {}: restart: {restart}; a one-shot must be allowed to complete",
            topics.name
        )
    });
    // courier logs in to Kafka: the user must exist before anything of courier's runs.
    if stack.config.kafka.username.is_some() {
        let makers = stack.one_shots_whose_command_has("--entity-type users");
        p.check(
            makers
                .iter()
                .any(|m| deps.get(&m.name).map(String::as_str) == Some("service_completed_successfully")),
            || {
                format!(
                    "{COMPOSE}: service {}: must wait (service_completed_successfully) for the one-shot that makes courier's Kafka user ({:?})",
                    topics.name,
                    makers.iter().map(|m| &m.name).collect::<Vec<_>>()
                )
            },
        );
    }
    p.assert_none();
}

#[test]
fn every_depends_on_names_an_existing_service_and_healthy_means_a_healthcheck() {
    let stack = Stack::load();
    let mut p = Problems::default();
    for s in &stack.services {
        for (dep, condition) in s.depends_on() {
            let Some(target) = stack.service(&dep) else {
                p.push(format!(
                    "{COMPOSE}: service {} depends on {dep}, which is not a service",
                    s.name
                ));
                continue;
            };
            p.check(
                matches!(
                    condition.as_str(),
                    "service_started" | "service_healthy" | "service_completed_successfully"
                ),
                || {
                    format!(
                        "{COMPOSE}: service {}: unknown depends_on condition {condition} for {dep}",
                        s.name
                    )
                },
            );
            p.check(condition != "service_healthy" || target.has_healthcheck(), || {
                format!(
                    "{COMPOSE}: service {} waits for {dep} to be healthy, but {dep} has no healthcheck",
                    s.name
                )
            });
        }
    }
    p.assert_none();
}

#[test]
fn kafka_and_scylla_have_healthchecks_and_scylla_serves_cql_on_9042() {
    let stack = Stack::load();
    let mut p = Problems::default();
    for s in stack.kafka().into_iter().chain(stack.scylla()) {
        p.check(s.has_healthcheck(), || {
            format!("{COMPOSE}: service {} has no healthcheck", s.name)
        });
    }
    let scylla = stack.scylla();
    p.check(scylla.len() == 1, || {
        format!(
            "{COMPOSE}: expected one scylladb/scylla service, found {}",
            scylla.len()
        )
    });
    for s in scylla {
        p.check(s.container_ports().contains("9042"), || {
            format!(
                "{COMPOSE}: service {}: CQL port 9042 is neither exposed nor published (ports {:?})",
                s.name,
                s.ports()
            )
        });
        let command = words(s.get("command")).join(" ");
        for flag in ["--smp 1", "--memory ", "--overprovisioned 1"] {
            p.check(command.contains(flag), || {
                format!(
                    "{COMPOSE}: service {}: command `{command}` lacks `{flag}` (one shard, bounded memory, shared CPUs)",
                    s.name
                )
            });
        }
    }
    p.assert_none();
}

#[test]
fn scalable_services_publish_no_fixed_host_ports_and_host_ports_are_unique() {
    let stack = Stack::load();
    let mut p = Problems::default();
    // The gateway is the one courier singleton: clients need a fixed address.
    let scalable = stack
        .courier()
        .into_iter()
        .filter(|s| !matches!(courier_invocation(s), Ok((_, Role::Gateway { .. }))));
    for s in scalable {
        for port in s.ports() {
            p.check(port.host.is_none(), || {
                format!(
                    "{COMPOSE}: service {}: publishes host port {} (container {}); two replicas cannot bind it, so `--scale {}=N` fails — use expose",
                    s.name,
                    port.host.clone().unwrap_or_default(),
                    port.container,
                    s.name
                )
            });
        }
        p.check(s.get("container_name").is_none(), || {
            format!(
                "{COMPOSE}: service {}: container_name allows only one container; remove it to scale",
                s.name
            )
        });
    }
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for s in &stack.services {
        for port in s.ports() {
            if let Some(h) = port.host {
                owners.entry(h).or_default().push(s.name.clone());
            }
        }
    }
    for (port, services) in owners {
        p.check(services.len() == 1, || {
            format!("{COMPOSE}: host port {port} is published by several services: {services:?}")
        });
    }
    p.assert_none();
}

#[test]
fn prometheus_scrapes_every_processor_replica_on_the_metrics_port() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let Some(port) = stack.metrics_port() else {
        panic!("{CONFIG}: [metrics] listen is not set; processors would serve no /metrics");
    };
    let listen = stack.config.metrics.listen.clone().unwrap_or_default();
    let host = listen.rsplit_once(':').map_or("", |(h, _)| h);
    p.check(matches!(host, "0.0.0.0" | "[::]" | "::" | ""), || {
        format!("{CONFIG}: [metrics] listen = {listen:?} is not reachable from the Prometheus container; listen on 0.0.0.0")
    });

    let prom = yaml(PROMETHEUS, &read(PROMETHEUS));
    // (name, port, dns type or "static") of every target.
    let mut dns: Vec<(String, String, String)> = Vec::new();
    let mut statics: Vec<(String, String)> = Vec::new();
    for job in prom
        .get("scrape_configs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        for sd in job
            .get("dns_sd_configs")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let port = sd.get("port").and_then(scalar).unwrap_or_default();
            // Prometheus's default record type is SRV, which compose's DNS does not serve.
            let kind = sd
                .get("type")
                .and_then(scalar)
                .unwrap_or_else(|| "SRV".into());
            for name in words(sd.get("names")) {
                dns.push((name, port.clone(), kind.clone()));
            }
        }
        for sc in job
            .get("static_configs")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            for t in words(sc.get("targets")) {
                if let Some((h, pt)) = t.rsplit_once(':') {
                    statics.push((h.to_string(), pt.to_string()));
                }
            }
        }
    }
    for (s, _) in stack.processors() {
        let found = dns.iter().any(|(n, pt, kind)| {
            *n == s.name && *pt == port && matches!(kind.as_str(), "A" | "AAAA")
        });
        let only_static = statics.iter().any(|(h, pt)| *h == s.name && *pt == port);
        let wrong_type = dns
            .iter()
            .find(|(n, pt, _)| *n == s.name && *pt == port)
            .map(|(_, _, kind)| kind.clone());
        p.check(found, || {
            if let Some(kind) = wrong_type {
                format!(
                    "{PROMETHEUS}: {} is looked up as DNS type {kind}; compose's DNS answers A records (one per replica), so set `type: A`",
                    s.name
                )
            } else if only_static {
                format!(
                    "{PROMETHEUS}: {}:{port} is a static target, which scrapes one replica; list {} under dns_sd_configs (type A, port {port}) to scrape every replica",
                    s.name, s.name
                )
            } else {
                format!(
                    "{PROMETHEUS}: service {} of {COMPOSE} is not scraped on the metrics port {port} of {CONFIG} (dns_sd_configs: {dns:?})",
                    s.name
                )
            }
        });
        // A healthcheck probing a TCP port must probe the metrics port.
        if let Some(h) = s.get("healthcheck") {
            let test = words(h.get("test")).join(" ");
            if let Some(probe) = test.split("/dev/tcp/").nth(1) {
                let probed = probe
                    .split('/')
                    .nth(1)
                    .unwrap_or_default()
                    .trim_matches(|c: char| !c.is_ascii_digit());
                p.check(probed == port, || {
                    format!(
                        "{COMPOSE}: service {}: the healthcheck probes port {probed}, but {CONFIG} serves /metrics on {port}",
                        s.name
                    )
                });
            }
        }
        let expose = s.expose();
        p.check(expose.is_empty() || expose.contains(&port), || {
            format!(
                "{COMPOSE}: service {}: exposes {expose:?}, not the metrics port {port} of {CONFIG}",
                s.name
            )
        });
    }
    for (name, _, _) in &dns {
        p.check(stack.service(name).is_some(), || {
            format!("{PROMETHEUS}: scrapes {name}, which is not a service of {COMPOSE}")
        });
    }
    for (host, _) in &statics {
        p.check(
            matches!(host.as_str(), "localhost" | "127.0.0.1") || stack.service(host).is_some(),
            || format!("{PROMETHEUS}: scrapes {host}, which is not a service of {COMPOSE}"),
        );
    }
    let prometheus_file = repo().join(PROMETHEUS);
    let mounted = stack.services.iter().any(|s| {
        s.binds()
            .iter()
            .any(|(src, t)| *src == prometheus_file && t == "/etc/prometheus/prometheus.yml")
    });
    p.check(mounted, || {
        format!("{COMPOSE}: no service mounts {PROMETHEUS} at /etc/prometheus/prometheus.yml")
    });
    p.assert_none();
}

#[test]
fn grafana_provisions_the_stacks_prometheus() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let provisioning = repo().join("compose/grafana/provisioning");
    let mounted = stack.services.iter().any(|s| {
        s.binds()
            .iter()
            .any(|(src, t)| *src == provisioning && t == "/etc/grafana/provisioning")
    });
    p.check(mounted, || {
        format!(
            "{COMPOSE}: no service mounts compose/grafana/provisioning at /etc/grafana/provisioning"
        )
    });
    let prometheus = stack
        .services
        .iter()
        .find(|s| s.image().starts_with("prom/prometheus"))
        .unwrap_or_else(|| panic!("{COMPOSE}: no prom/prometheus service"));
    let expected = format!("http://{}:9090", prometheus.name);
    let mut urls = Vec::new();
    let dir = repo().join(GRAFANA_DATASOURCES);
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{GRAFANA_DATASOURCES}: {e}")) {
        let path = entry.expect("directory entry").path();
        let rel = format!(
            "{GRAFANA_DATASOURCES}/{}",
            path.file_name().unwrap_or_default().to_string_lossy()
        );
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            continue;
        }
        let doc = yaml(&rel, &read(&rel));
        for ds in doc
            .get("datasources")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if ds.get("type").and_then(scalar).as_deref() == Some("prometheus") {
                urls.push((
                    rel.clone(),
                    ds.get("url").and_then(scalar).unwrap_or_default(),
                ));
            }
        }
    }
    p.check(urls.iter().any(|(_, u)| u.trim_end_matches('/') == expected), || {
        format!("{GRAFANA_DATASOURCES}: no prometheus datasource with url {expected} (found {urls:?})")
    });
    p.assert_none();
}

#[test]
fn bind_mounted_files_exist() {
    let stack = Stack::load();
    let mut p = Problems::default();
    for s in &stack.services {
        for (src, target) in s.binds() {
            p.check(src.exists(), || {
                format!(
                    "{COMPOSE}: service {} mounts {} at {target}, which does not exist",
                    s.name,
                    src.strip_prefix(repo()).unwrap_or(&src).display()
                )
            });
        }
    }
    p.assert_none();
}

#[test]
fn dockerfile_builds_the_whole_workspace_and_runs_courier() {
    let mut p = Problems::default();
    let dockerfile = read(DOCKERFILE);
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    // Sources of COPY lines that copy from the build context.
    let copied: BTreeSet<String> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.contains("--from="))
        .flat_map(|l| {
            let parts: Vec<&str> = l
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            parts[..parts.len().saturating_sub(1)]
                .iter()
                .map(|s| s.trim_end_matches('/').to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml parses");
    let members: Vec<String> = manifest["workspace"]["members"]
        .as_array()
        .expect("[workspace] members")
        .iter()
        .filter_map(|m| m.as_str().map(str::to_string))
        .collect();
    for needed in members
        .iter()
        .map(String::as_str)
        .chain(["Cargo.toml", "Cargo.lock", "src"])
    {
        p.check(copied.contains(needed), || {
            format!("{DOCKERFILE}: does not COPY {needed} (a workspace member or manifest in Cargo.toml); the image build would fail")
        });
    }
    let froms: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    p.check(
        froms
            .first()
            .is_some_and(|f| f.starts_with("rust:") && f.contains("bookworm")),
        || {
            format!(
                "{DOCKERFILE}: the first stage is {:?}, expected a rust:*-bookworm builder",
                froms.first()
            )
        },
    );
    p.check(froms.last().is_some_and(|f| f.starts_with("debian:bookworm-slim")), || {
        format!("{DOCKERFILE}: the runtime stage is {:?}, expected debian:bookworm-slim (same glibc as the builder)", froms.last())
    });
    p.check(dockerfile.contains("libclang-dev"), || {
        format!("{DOCKERFILE}: does not install libclang-dev, which rocksdb's bindgen needs")
    });
    // librdkafka is built with TLS and SASL against the system's OpenSSL: headers
    // to build, the library to run.
    let runtime = dockerfile
        .rsplit_once("\nFROM ")
        .map_or("", |(_, last)| last);
    p.check(dockerfile.contains("libssl-dev") && dockerfile.contains("pkg-config"), || {
        format!("{DOCKERFILE}: the build stage does not install libssl-dev and pkg-config, which librdkafka's TLS needs")
    });
    p.check(runtime.contains("libssl3"), || {
        format!("{DOCKERFILE}: the runtime stage does not install libssl3, which librdkafka links")
    });
    p.check(dockerfile.contains("cargo build --release"), || {
        format!("{DOCKERFILE}: no `cargo build --release`")
    });
    p.check(lines.iter().any(|l| l.replace(' ', "") == "ENTRYPOINT[\"courier\"]"), || {
        format!("{DOCKERFILE}: ENTRYPOINT is not [\"courier\"]; {COMPOSE} passes courier's arguments as `command`")
    });
    p.assert_none();
}

#[test]
fn the_gateway_runs_alone_reads_scylla_and_searches_every_search_replica() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let gateways = stack.with_role(|r| matches!(r, Role::Gateway { .. }));
    let [(gateway, role)] = gateways.as_slice() else {
        panic!(
            "{COMPOSE}: expected one gateway service (`courier up --processors none`), found {:?}",
            gateways.iter().map(|(s, _)| &s.name).collect::<Vec<_>>()
        );
    };
    let Role::Gateway {
        processors,
        listen,
        search_peers,
    } = role
    else {
        unreachable!()
    };
    p.check(processors.as_deref() == Some("none"), || {
        format!(
            "{COMPOSE}: service {}: runs processors {processors:?} beside the gateway; they are services of their own (`--processors none`)",
            gateway.name
        )
    });
    let listen_port = listen
        .as_deref()
        .and_then(|l| l.strip_prefix("0.0.0.0:"))
        .unwrap_or_default()
        .to_string();
    p.check(!listen_port.is_empty(), || {
        format!(
            "{COMPOSE}: service {}: --listen {listen:?}; listen on 0.0.0.0:PORT to be reachable",
            gateway.name
        )
    });
    p.check(
        gateway
            .ports()
            .iter()
            .any(|port| port.container == listen_port && port.host.is_some()),
        || {
            format!(
                "{COMPOSE}: service {}: does not publish its --listen port {listen_port}",
                gateway.name
            )
        },
    );

    // Every search replica is asked: the peers are the search service by DNS, on the
    // port it serves and exposes.
    let searchers = stack.with_role(|r| matches!(r, Role::Processor(n, _) if n == "search"));
    for (s, role) in &searchers {
        let Role::Processor(_, serve) = role else {
            unreachable!()
        };
        let Some(port) = serve
            .as_deref()
            .and_then(|a| a.strip_prefix("0.0.0.0:"))
            .map(str::to_string)
        else {
            p.push(format!(
                "{COMPOSE}: service {}: `run search` without `--serve 0.0.0.0:PORT`; the gateway cannot ask it",
                s.name
            ));
            continue;
        };
        p.check(s.expose().contains(&port), || {
            format!(
                "{COMPOSE}: service {}: serves search on {port} but exposes {:?}",
                s.name,
                s.expose()
            )
        });
        let want = format!("dns+http://{}:{port}", s.name);
        p.check(search_peers.contains(&want), || {
            format!(
                "{COMPOSE}: service {}: --search-peers {search_peers:?} should include {want} (every replica of {})",
                gateway.name, s.name
            )
        });
        p.check(gateway.depends_on().contains_key(&s.name), || {
            format!(
                "{COMPOSE}: service {}: should start after {}",
                gateway.name, s.name
            )
        });
    }

    // Views shared by replicas and the gateway: Cassandra, at the scylla service,
    // migrated by a one-shot that waits for it.
    p.check(
        stack.config.views.backend == courier_app::config::ViewsBackend::Cassandra,
        || format!("{CONFIG}: [views] backend should be cassandra, so every inbox replica and the gateway share the views"),
    );
    let scylla: Vec<String> = stack.scylla().iter().map(|s| s.name.clone()).collect();
    for point in stack.config.cassandra.contact_points.split(',') {
        let (host, port) = point.trim().rsplit_once(':').unwrap_or((point, ""));
        p.check(scylla.iter().any(|s| s == host) && port == "9042", || {
            format!("{CONFIG}: [cassandra] contact point {point} is not a scylla service of {COMPOSE} on 9042 ({scylla:?})")
        });
    }
    let migrates = stack.with_role(|r| matches!(r, Role::Migrate));
    let [(migrate, _)] = migrates.as_slice() else {
        panic!("{COMPOSE}: expected one one-shot service running `courier migrate`");
    };
    for name in &scylla {
        p.check(
            migrate.depends_on().get(name).map(String::as_str) == Some("service_healthy"),
            || {
                format!(
                    "{COMPOSE}: service {}: must wait for {name} to be service_healthy",
                    migrate.name
                )
            },
        );
    }
    let inbox = stack
        .processors()
        .into_iter()
        .filter(|(_, p)| p == "inbox")
        .map(|(s, _)| s)
        .chain([*gateway]);
    for s in inbox {
        p.check(
            s.depends_on().get(&migrate.name).map(String::as_str)
                == Some("service_completed_successfully"),
            || {
                format!(
                    "{COMPOSE}: service {}: reads or writes the Cassandra views, so must depend on {} with service_completed_successfully",
                    s.name, migrate.name
                )
            },
        );
    }
    p.assert_none();
}

/// The courier (and process) metric names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &expr[i..];
        if starts_word && (rest.starts_with("courier_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            out.push(rest[..len].to_string());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

/// Whether `name` is an exported metric or one of the series a histogram of that
/// name exports.
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || ["_bucket", "_sum", "_count"].iter().any(|s| {
            name.strip_suffix(s)
                .is_some_and(|base| exported.contains(base))
        })
}

const DASHBOARDS: &str = "compose/grafana/provisioning/dashboards";
const ALERTS: &str = "compose/prometheus/alerts.yml";

#[test]
fn every_metric_a_dashboard_or_alert_reads_is_one_courier_exports() {
    let exported = courier_app::metrics::exported_names();
    // Some of each crate's, so an empty or partial registry cannot pass.
    for name in [
        "courier_processor_events_total",
        "courier_push_sent_total",
        "courier_search_query_seconds",
        "courier_gateway_requests_total",
        "courier_build_info",
        "process_resident_memory_bytes",
    ] {
        assert!(exported.contains(name), "{name} not exported: {exported:?}");
    }
    let mut p = Problems::default();
    let mut exprs: Vec<(String, String)> = Vec::new();
    let mut dashboards = 0;
    for entry in std::fs::read_dir(repo().join(DASHBOARDS)).expect(DASHBOARDS) {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        dashboards += 1;
        let rel = format!(
            "{DASHBOARDS}/{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let doc: serde_json::Value =
            serde_json::from_str(&read(&rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        for panel in doc["panels"].as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                if let Some(e) = target["expr"].as_str() {
                    let title = panel["title"].as_str().unwrap_or("?");
                    exprs.push((format!("{rel}: panel {title:?}"), e.to_string()));
                }
            }
        }
    }
    assert!(dashboards > 0, "{DASHBOARDS}: no dashboard");
    let rules = yaml(ALERTS, &read(ALERTS));
    let mut alerts = BTreeSet::new();
    for group in rules
        .get("groups")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
    {
        for rule in group
            .get("rules")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let name = rule.get("alert").and_then(scalar).unwrap_or_default();
            alerts.insert(name.clone());
            let expr = rule.get("expr").and_then(scalar).unwrap_or_default();
            exprs.push((format!("{ALERTS}: alert {name}"), expr));
        }
    }
    // What operators are promised alerts for: lag growing, dead letters, the push
    // breaker open, a processor down.
    for want in [
        "CourierLagGrowing",
        "CourierDeadLetters",
        "CourierPushBreakerOpen",
        "CourierInstanceDown",
    ] {
        p.check(alerts.contains(want), || {
            format!("{ALERTS}: no alert {want}")
        });
    }
    let mut read_somewhere = BTreeSet::new();
    for (place, expr) in &exprs {
        let names = metric_names(expr);
        p.check(!names.is_empty() || expr.contains("up{"), || {
            format!("{place}: `{expr}` reads no courier metric")
        });
        for name in names {
            p.check(is_exported(&name, &exported), || {
                format!("{place}: `{name}` is not a metric courier exports")
            });
            read_somewhere.insert(name);
        }
    }
    // The dashboard covers what the operator needs to see.
    for (what, metric) in [
        ("throughput", "courier_processor_events_total"),
        (
            "end-to-end latency per view",
            "courier_processor_e2e_latency_seconds_bucket",
        ),
        (
            "lag per group and partition",
            "courier_processor_lag_records",
        ),
        ("dead letters", "courier_processor_dead_letters_total"),
        ("push outcomes", "courier_push_sent_total"),
        ("push breaker state", "courier_push_breaker_state"),
        ("gateway requests", "courier_gateway_requests_total"),
        ("WebSocket connections", "courier_gateway_ws_connections"),
    ] {
        p.check(read_somewhere.contains(metric), || {
            format!("{DASHBOARDS}: no panel shows {what} ({metric})")
        });
    }
    let prom = yaml(PROMETHEUS, &read(PROMETHEUS));
    let loads_rules = prom
        .get("rule_files")
        .and_then(Value::as_sequence)
        .is_some_and(|files| {
            files
                .iter()
                .any(|f| scalar(f).as_deref() == Some("alerts.yml"))
        });
    p.check(loads_rules, || {
        format!("{PROMETHEUS}: rule_files does not load alerts.yml")
    });
    let stack = Stack::load();
    let alerts_file = repo().join(ALERTS);
    let mounted = stack.services.iter().any(|s| {
        s.binds()
            .iter()
            .any(|(src, t)| *src == alerts_file && t == "/etc/prometheus/alerts.yml")
    });
    p.check(mounted, || {
        format!("{COMPOSE}: no service mounts {ALERTS} at /etc/prometheus/alerts.yml, beside prometheus.yml")
    });
    p.assert_none();
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(courier_x_seconds_bucket[5m]))) / process_y"
        ),
        vec!["courier_x_seconds_bucket", "process_y"]
    );
    assert_eq!(
        metric_names("sum by (processor) (my_courier_z)"),
        Vec::<String>::new()
    );
}

/// Every `COURIER_PUSH_ENDPOINT=URL` the compose file shows (the push service's
/// example) is an endpoint courier's push client accepts: an example that makes
/// `courier run push` refuse to start would crash-loop the service.
#[test]
fn the_push_endpoint_examples_are_ones_the_push_client_accepts() {
    let text = read(COMPOSE);
    let mut p = Problems::default();
    let examples: Vec<&str> = text
        .split("COURIER_PUSH_ENDPOINT=")
        .skip(1)
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    p.check(!examples.is_empty(), || {
        format!("{COMPOSE}: no COURIER_PUSH_ENDPOINT=URL example for the push service")
    });
    for url in examples {
        if let Err(e) =
            courier_sinks::push::HttpProvider::new(url, std::time::Duration::from_secs(5))
        {
            p.push(format!("{COMPOSE}: push endpoint example {url}: {e}"));
        }
    }
    p.assert_none();
}

/// Every Kafka listener speaks TLS: clients' listeners SASL_SSL with SCRAM, the
/// others (controller quorum, replication) SSL with a client certificate required,
/// so nothing on any port is plaintext or anonymous; and courier.docker.toml logs
/// in over TLS, its password from a file.
#[test]
fn kafka_listens_only_over_tls_and_every_client_authenticates() {
    let stack = Stack::load();
    let mut p = Problems::default();
    for k in stack.kafka() {
        let env = k.env();
        let map: Vec<(String, String)> = env
            .get("KAFKA_LISTENER_SECURITY_PROTOCOL_MAP")
            .map(|m| {
                m.split(',')
                    .filter_map(|e| e.split_once(':'))
                    .map(|(n, pr)| (n.trim().to_string(), pr.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let bound = listeners(env.get("KAFKA_LISTENERS").map_or("", String::as_str));
        for (name, _, port) in &bound {
            let protocol = map
                .iter()
                .find(|(n, _)| n == name)
                .map_or(name.as_str(), |(_, pr)| pr.as_str());
            match protocol {
                "SASL_SSL" => {
                    let mechanisms = env
                        .get("KAFKA_SASL_ENABLED_MECHANISMS")
                        .cloned()
                        .unwrap_or_default();
                    p.check(
                        !mechanisms.is_empty() && mechanisms.split(',').all(|m| m.trim().starts_with("SCRAM-")),
                        || {
                            format!(
                                "{COMPOSE}: service {}: KAFKA_SASL_ENABLED_MECHANISMS is {mechanisms:?}; only SCRAM (no PLAIN, whose passwords the brokers would keep in their config)",
                                k.name
                            )
                        },
                    );
                }
                "SSL" => {
                    let key = format!(
                        "KAFKA_LISTENER_NAME_{}_SSL_CLIENT_AUTH",
                        name.to_uppercase()
                    );
                    p.check(env.get(&key).map(String::as_str) == Some("required"), || {
                        format!(
                            "{COMPOSE}: service {}: listener {name} (:{port}) is SSL without a login, so {key} must be \"required\" (mutual TLS); it is {:?}",
                            k.name,
                            env.get(&key)
                        )
                    });
                }
                other => p.push(format!(
                    "{COMPOSE}: service {}: listener {name} (:{port}) speaks {other}; every listener must be SSL or SASL_SSL",
                    k.name
                )),
            }
        }
        for key in [
            "KAFKA_SSL_KEYSTORE_LOCATION",
            "KAFKA_SSL_TRUSTSTORE_LOCATION",
        ] {
            match env.get(key) {
                Some(path) => p.check(k.mounts_secret(path), || {
                    format!(
                        "{COMPOSE}: service {}: {key} is {path}, which no secret of the service is mounted at ({:?})",
                        k.name,
                        k.secrets()
                    )
                }),
                None => p.push(format!("{COMPOSE}: service {}: {key} is not set", k.name)),
            }
        }
    }
    let kafka = &stack.config.kafka;
    p.check(kafka.tls && kafka.username.is_some(), || {
        format!("{CONFIG}: [kafka] must log in over TLS (tls = true, username)")
    });
    p.check(
        kafka.password.is_none()
            && kafka
                .password_file
                .as_ref()
                .is_some_and(|f| f.starts_with("/run/secrets/")),
        || format!("{CONFIG}: [kafka] takes its password from a compose secret (password_file = \"/run/secrets/...\"), never inline"),
    );
    p.assert_none();
}

/// ScyllaDB checks logins, courier.docker.toml logs in with a password from a
/// compose secret, and the views are migrated only once the role exists.
#[test]
fn scylla_checks_logins_and_courier_has_a_role_before_it_migrates() {
    let stack = Stack::load();
    let mut p = Problems::default();
    for s in stack.scylla() {
        let command = words(s.get("command")).join(" ");
        p.check(command.contains("--authenticator PasswordAuthenticator"), || {
            format!(
                "{COMPOSE}: service {}: command `{command}` lacks `--authenticator PasswordAuthenticator`; anyone on the network could read and write the views",
                s.name
            )
        });
    }
    let c = &stack.config.cassandra;
    p.check(c.username.is_some(), || {
        format!("{CONFIG}: [cassandra] has no username: ScyllaDB refuses anonymous logins")
    });
    p.check(
        c.password.is_none()
            && c.password_file
                .as_ref()
                .is_some_and(|f| f.starts_with("/run/secrets/")),
        || format!("{CONFIG}: [cassandra] takes its password from a compose secret (password_file = \"/run/secrets/...\"), never inline"),
    );
    let makers = stack.one_shots_whose_command_has("CREATE ROLE");
    p.check(!makers.is_empty(), || {
        format!("{COMPOSE}: no one-shot service makes courier's ScyllaDB role (CREATE ROLE)")
    });
    for (s, _) in stack.with_role(|r| matches!(r, Role::Migrate)) {
        let deps = s.depends_on();
        p.check(
            makers
                .iter()
                .any(|m| deps.get(&m.name).map(String::as_str) == Some("service_completed_successfully")),
            || {
                format!(
                    "{COMPOSE}: service {}: must wait (service_completed_successfully) for the one-shot that makes courier's role",
                    s.name
                )
            },
        );
    }
    p.assert_none();
}

/// Secrets are compose secrets, made by compose/secrets.sh into the git-ignored
/// compose/secrets/; every file the stack reads from /run/secrets is mounted into
/// the service that reads it; and no password, key or secret value is written in
/// docker-compose.yml (a variable naming one holds a file reference instead).
#[test]
fn secrets_are_compose_secrets_made_by_the_script_and_none_is_written_in_the_files() {
    let stack = Stack::load();
    let mut p = Problems::default();
    let script = read(SECRETS_SCRIPT);
    let files = stack.secret_files();
    p.check(!files.is_empty(), || {
        format!("{COMPOSE}: no top-level `secrets`")
    });
    for (name, file) in &files {
        match file.as_deref().and_then(|f| f.strip_prefix("./secrets/")) {
            Some(base) => p.check(script.contains(base.trim_end_matches(".pem").trim_end_matches(".p12").trim_end_matches(".properties")), || {
                format!("{COMPOSE}: secret {name} is ./secrets/{base}, which {SECRETS_SCRIPT} does not make")
            }),
            None => p.push(format!(
                "{COMPOSE}: secret {name} is {file:?}; expected `file: ./secrets/...` (made by {SECRETS_SCRIPT}, never committed)"
            )),
        }
    }
    p.check(
        read(".gitignore")
            .lines()
            .any(|l| l.trim() == "/compose/secrets"),
        || {
            ".gitignore: /compose/secrets is not ignored; generated secrets would be committed"
                .to_string()
        },
    );
    for s in &stack.services {
        for (source, _) in s.secrets() {
            p.check(files.contains_key(&source), || {
                format!(
                    "{COMPOSE}: service {} mounts secret {source}, which is not a top-level secret",
                    s.name
                )
            });
        }
        // Every /run/secrets path its environment or command names is mounted.
        let text = format!(
            "{} {}",
            words(s.get("command")).join(" "),
            s.env().values().cloned().collect::<Vec<_>>().join(" ")
        );
        for path in text
            .split(|c: char| c.is_whitespace() || "\\\"':;,[]()=$".contains(c))
            .filter(|w| w.starts_with("/run/secrets/"))
        {
            p.check(s.mounts_secret(path), || {
                format!(
                    "{COMPOSE}: service {} reads {path}, which is not mounted in it",
                    s.name
                )
            });
        }
        for (key, value) in s.env() {
            let upper = key.to_uppercase();
            let secretish = ["PASSWORD", "SECRET", "TOKEN", "CREDENTIAL", "JAAS"]
                .iter()
                .any(|w| upper.contains(w));
            let literal = !value.is_empty()
                && !value.starts_with("${file:")
                && !value.starts_with("$${file:")
                && !value.starts_with("/run/secrets/")
                && !value.ends_with("ScramLoginModule required;");
            p.check(!(secretish && literal), || {
                format!(
                    "{COMPOSE}: service {}: {key} is written in the file; read it from a secret (a /run/secrets/ file, or Kafka's ${{file:...}})",
                    s.name
                )
            });
            p.check(!value.to_lowercase().contains("password=\""), || {
                format!("{COMPOSE}: service {}: {key} holds a password", s.name)
            });
        }
    }
    // courier's own services read what its config names.
    let config = &stack.config;
    let named: Vec<String> = [
        config.kafka.ca_file.as_ref(),
        config.kafka.password_file.as_ref(),
        config.cassandra.ca_file.as_ref(),
        config.cassandra.password_file.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|f| f.display().to_string())
    .collect();
    for s in stack.courier() {
        for path in &named {
            p.check(s.mounts_secret(path), || {
                format!(
                    "{COMPOSE}: service {}: {CONFIG} reads {path}, which is not mounted in it",
                    s.name
                )
            });
        }
    }
    p.assert_none();
}
