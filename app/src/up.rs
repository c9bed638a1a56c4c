//! `courier up`: the whole platform in one process — the gateway and every
//! processor — embedded by default, until Ctrl-C / SIGTERM.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::config::ViewsBackend;
use anyhow::Context;
use async_trait::async_trait;
use courier_gateway::tls;
use courier_gateway::{Gateway, Keys, Parts, PresenceViews, SearchFailure, SearchViews};
use courier_pipeline::secret::expand_home;
use courier_pipeline::{EventLog, shutdown};
use courier_processors::inbox::store::{ConversationRows, InboxBatch, InboxStore};
use courier_processors::inbox::{ConversationState, InboxRow};
use courier_processors::presence::{PresenceRow, PresenceStore};
use courier_processors::store::StoreError;
use courier_sinks::presence::RocksPresenceStore;
use courier_sinks::search::{SearchError, SearchShards};
use futures::StreamExt;
use futures::stream::FuturesUnordered;

use crate::processors::{ProcessorThread, on_signals};
use crate::registry::Processor;

/// `--processors`: `none` (the gateway alone, as a distributed deployment runs it
/// beside processors that are services of their own), or processor names.
fn parse_processors(list: &str) -> anyhow::Result<Vec<Processor>> {
    if list.trim() == "none" {
        return Ok(Vec::new());
    }
    let mut out: Vec<Processor> = Vec::new();
    for name in list.split(',').map(str::trim) {
        let p = <Processor as clap::ValueEnum>::from_str(name, true).map_err(|_| {
            anyhow::anyhow!(
                "--processors: unknown processor {name:?}; expected `none` or some of inbox, presence, search, notify, push"
            )
        })?;
        if !out.iter().any(|q| q.name() == p.name()) {
            out.push(p);
        }
    }
    Ok(out)
}

/// Search through distributed instances (`--search-peers`), for `GET /v1/search`.
struct PeerSearch(super::search::Peers);

#[async_trait]
impl SearchViews for PeerSearch {
    async fn search(&self, user: &str, query: &str, limit: usize) -> Result<String, SearchFailure> {
        match self.0.ask(user, query, limit, None).await {
            Ok(hits) => serde_json::to_string(&hits)
                .map_err(|e| SearchFailure::Unavailable(format!("encoding hits: {e}"))),
            Err(e) if e.is::<super::search::BadQuery>() => {
                Err(SearchFailure::BadQuery(e.root_cause().to_string()))
            }
            Err(e) => Err(SearchFailure::Unavailable(format!("{e:#}"))),
        }
    }
}

/// The search shards of this process's search processor, for `GET /v1/search`.
/// The shards' readers follow the processor's commits.
struct LocalSearch(Arc<SearchShards>);

#[async_trait]
impl SearchViews for LocalSearch {
    async fn search(&self, user: &str, query: &str, limit: usize) -> Result<String, SearchFailure> {
        let shards = self.0.clone();
        let (user, query) = (user.to_owned(), query.to_owned());
        // tantivy searches are blocking work; keep them off the request threads.
        let found = tokio::task::spawn_blocking(move || shards.search(&user, &query, limit, None))
            .await
            .map_err(|e| SearchFailure::Unavailable(format!("search task failed: {e}")))?;
        match found {
            Ok(hits) => serde_json::to_string(&hits)
                .map_err(|e| SearchFailure::Unavailable(format!("encoding hits: {e}"))),
            Err(e @ (SearchError::MalformedQuery { .. } | SearchError::ZeroLimit)) => {
                Err(SearchFailure::BadQuery(e.to_string()))
            }
            Err(e) => Err(SearchFailure::Unavailable(e.to_string())),
        }
    }
}

/// One part of the platform running in this process: its name and how it ended.
type Part<'a> = Pin<Box<dyn Future<Output = (&'static str, anyhow::Result<()>)> + 'a>>;

/// Arguments of `up`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address the gateway listens on (default: `gateway.listen`, 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The processors to run beside the gateway, comma-separated, or `none` for
    /// the gateway alone (distributed deployments run each processor as its own
    /// service). Default: inbox, presence, search, notify, and push when
    /// `push.endpoint` is set.
    #[arg(long, value_name = "LIST")]
    processors: Option<String>,
    /// Answer `GET /v1/search` from these search instances (`courier run search
    /// --serve`), as `http://HOST:PORT` or `dns+http://NAME:PORT` (every address
    /// NAME resolves to), comma-separated, instead of this process's shards.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    search_peers: Vec<String>,
    /// Serve HTTPS and wss instead of plain HTTP, with this PEM certificate
    /// chain (default: `gateway.tls_cert_file`); needs `--tls-key`.
    #[arg(long, value_name = "PATH")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, RSA or EC) of `--tls-cert` (default:
    /// `gateway.tls_key_file`).
    #[arg(long, value_name = "PATH")]
    tls_key: Option<PathBuf>,
    /// Development sign-in for the web client at `/`: `POST /dev/token` gives
    /// a token for any user id, no questions asked. Only on a loopback address
    /// (127.0.0.1, ::1); elsewhere `up` refuses to start.
    #[arg(long)]
    dev: bool,
}

/// The listener's TLS: `--tls-cert`/`--tls-key` over `gateway.tls_cert_file` /
/// `gateway.tls_key_file`, both or neither; none serves plain HTTP.
fn tls_config(config: &Config, args: &Args) -> anyhow::Result<Option<Arc<tls::ServerConfig>>> {
    let pick =
        |flag: &Option<PathBuf>, flag_name, file: &Option<PathBuf>, key_name| match (flag, file) {
            (Some(p), _) => Some((flag_name, expand_home(p))),
            (None, Some(p)) => Some((key_name, expand_home(p))),
            (None, None) => None,
        };
    let cert = pick(
        &args.tls_cert,
        "--tls-cert",
        &config.gateway.tls_cert_file,
        "gateway.tls_cert_file",
    );
    let key = pick(
        &args.tls_key,
        "--tls-key",
        &config.gateway.tls_key_file,
        "gateway.tls_key_file",
    );
    match (cert, key) {
        (None, None) => Ok(None),
        (Some((given, _)), None) => anyhow::bail!(
            "{given} is given without a private key: give --tls-key (or gateway.tls_key_file) \
             too, or neither to serve plain HTTP"
        ),
        (None, Some((given, _))) => anyhow::bail!(
            "{given} is given without a certificate: give --tls-cert (or gateway.tls_cert_file) \
             too, or neither to serve plain HTTP"
        ),
        (Some((cert_setting, cert)), Some((key_setting, key))) => tls::server_config(
            tls::PemFile {
                setting: cert_setting,
                path: &cert,
            },
            tls::PemFile {
                setting: key_setting,
                path: &key,
            },
        )
        .map(|c| Some(Arc::new(c)))
        .map_err(anyhow::Error::msg),
    }
}

/// The RocksDB inbox views as the gateway reads them beside the processor that
/// writes them in this process: opened read-only per call (like `courier inbox`),
/// because a read-only RocksDB handle sees only what was written before it was
/// opened. Before the processor first opened its store, everything is empty.
struct ReopenedViews(Config);

impl ReopenedViews {
    async fn open(&self) -> Result<Option<Box<dyn InboxStore>>, StoreError> {
        beside_the_writer("the inbox views", || async {
            crate::views::open_views(&self.0)
                .await
                .map_err(|e| StoreError::retryable("inbox/rocksdb", format!("{e:#}")))
        })
        .await
    }
}

/// A read through a read-only open of a store that this process's processor
/// writes. Such an open can fail while the processor opens the same store (it
/// recovers its log and deletes files the open was reading), so a failed read
/// is tried again, twice, before the request gets a 503.
async fn beside_the_writer<T, Fut>(
    what: &'static str,
    mut read: impl FnMut() -> Fut,
) -> Result<T, StoreError>
where
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match read().await {
            Err(e) if attempt < 3 => {
                tracing::debug!(attempt, error = %e, "reading {what} read-only failed; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            done => return done,
        }
    }
}

#[async_trait]
impl InboxStore for ReopenedViews {
    async fn checkpoint(&self, partition: u32) -> Result<Option<u64>, StoreError> {
        match self.open().await? {
            Some(v) => v.checkpoint(partition).await,
            None => Ok(None),
        }
    }

    async fn load_states(
        &self,
        conversations: &[String],
    ) -> Result<Vec<Option<ConversationState>>, StoreError> {
        match self.open().await? {
            Some(v) => v.load_states(conversations).await,
            None => Ok(vec![None; conversations.len()]),
        }
    }

    /// One open for both: two opens can see the store going back in time (the
    /// second during the processor's recovery, without its log), and states older
    /// than the checkpoint would lose the events between them (RELIABILITY.md).
    async fn states_at_checkpoint(
        &self,
        partition: u32,
        conversations: &[String],
    ) -> Result<(Option<u64>, Vec<Option<ConversationState>>), StoreError> {
        match self.open().await? {
            Some(v) => v.states_at_checkpoint(partition, conversations).await,
            None => Ok((None, vec![None; conversations.len()])),
        }
    }

    async fn write(&mut self, _batch: &InboxBatch) -> Result<(), StoreError> {
        Err(StoreError::fatal(
            "inbox/rocksdb",
            "the gateway's views are read-only",
        ))
    }

    async fn inbox_rows(&self, user: &str) -> Result<Vec<InboxRow>, StoreError> {
        match self.open().await? {
            Some(v) => v.inbox_rows(user).await,
            None => Ok(Vec::new()),
        }
    }

    async fn conversation_rows(&self, conversation: &str) -> Result<ConversationRows, StoreError> {
        match self.open().await? {
            Some(v) => v.conversation_rows(conversation).await,
            None => Ok(ConversationRows::default()),
        }
    }
}

/// The inbox views the gateway reads.
async fn gateway_views(config: &Config) -> anyhow::Result<Arc<dyn InboxStore>> {
    Ok(match config.views.backend {
        ViewsBackend::Rocksdb => Arc::new(ReopenedViews(config.clone())),
        ViewsBackend::Cassandra => match crate::views::open_views(config).await? {
            Some(v) => Arc::from(v),
            None => anyhow::bail!("the Cassandra inbox views did not open"),
        },
    })
}

/// The presence table of this process's presence processor, as the gateway
/// reads it: opened read-only per call, like [`ReopenedViews`], and tried again
/// when an open races the processor opening the same store.
struct ReopenedPresence(std::path::PathBuf);

#[async_trait]
impl PresenceViews for ReopenedPresence {
    async fn presence(&self, user: &str) -> Result<Option<PresenceRow>, StoreError> {
        beside_the_writer("the presence table", || {
            let (dir, user) = (self.0.clone(), user.to_owned());
            async move {
                // RocksDB reads block; keep them off the request threads.
                tokio::task::spawn_blocking(move || {
                    match RocksPresenceStore::open_read_only(&dir)? {
                        Some(table) => table.get(&user),
                        None => Ok(None),
                    }
                })
                .await
                .map_err(|e| StoreError::retryable("presence/rocksdb", e))?
            }
        })
        .await
    }
}

/// The presence view of this process's presence processor, when it runs here;
/// else none (the gateway answers 503), as for search: a table written by no
/// one here would say everyone is offline.
fn presence_views(config: &Config, processors: &[Processor]) -> Option<Arc<dyn PresenceViews>> {
    processors
        .iter()
        .any(|p| matches!(p, Processor::Presence))
        .then(|| {
            Arc::new(ReopenedPresence(
                config.view_dir(Processor::Presence.name()),
            )) as Arc<dyn PresenceViews>
        })
}

/// Where the gateway's searches go: the peers when given; else this process's
/// shards when its search processor runs here; else none (the gateway answers
/// 503), since shards written by no one here would silently answer nothing.
fn search_views(
    config: &Config,
    processors: &[Processor],
    peers: Vec<String>,
) -> anyhow::Result<Option<Arc<dyn SearchViews>>> {
    if !peers.is_empty() {
        return Ok(Some(Arc::new(PeerSearch(super::search::Peers::new(peers)))));
    }
    if !processors.iter().any(|p| matches!(p, Processor::Search)) {
        return Ok(None);
    }
    Ok(Some(Arc::new(LocalSearch(Arc::new(
        super::search::open_shards(config)?,
    )))))
}

pub async fn run(
    config: &Config,
    cli_flags: &str,
    log: Arc<dyn EventLog>,
    args: Args,
) -> anyhow::Result<ExitCode> {
    let (trigger, stop) = shutdown::channel();
    on_signals(trigger.clone());
    let keys = Keys::load(&config.gateway, &config.data_dir).with_context(|| {
        format!(
            "loading the token keys (gateway.jwt_keys, gateway.jwt_secret, or the development secret under {})",
            config.data_dir.display()
        )
    })?;
    let tls = tls_config(config, &args)?;
    let listen = args.listen.unwrap_or_else(|| config.gateway.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    if args.dev && !addr.ip().is_loopback() {
        anyhow::bail!(
            "--dev lets anyone who can reach {addr} sign in as any user: it is allowed on a \
             loopback address only (--listen 127.0.0.1:PORT); without --dev, sign in with a \
             token from `courier token USER`"
        );
    }
    if tls.is_none() && !addr.ip().is_loopback() {
        // Not refused: a TLS-terminating proxy in front is a sound deployment.
        tracing::warn!(
            %addr,
            "serving plain HTTP on a non-loopback address: tokens and messages cross the \
             network unencrypted unless a TLS-terminating proxy is in front; give --tls-cert \
             and --tls-key to serve HTTPS"
        );
    }
    let tls_on = tls.is_some();
    let scheme = if tls_on { "https" } else { "http" };

    let processors = match &args.processors {
        Some(list) => parse_processors(list)?,
        None => Processor::in_up(config),
    };
    let search = search_views(config, &processors, args.search_peers)?;
    let presence = presence_views(config, &processors);
    // Each processor on a thread of its own (see `ProcessorThread`), the gateway on
    // this runtime. A processor whose thread panicked ends as an error, which
    // stops everything.
    let mut parts: FuturesUnordered<Part<'_>> = FuturesUnordered::new();
    for &p in &processors {
        let thread = ProcessorThread::spawn(config.clone(), log.clone(), p, stop.clone())?;
        parts.push(Box::pin(async move {
            (p.name(), thread.finish().await.map(|_| ()))
        }));
    }
    let gateway = Gateway::start(
        Parts {
            settings: courier_gateway::GatewayConfig {
                dev_sign_in: args.dev,
                ..config.gateway.clone()
            },
            log: log.clone(),
            views: gateway_views(config).await?,
            search,
            presence,
            keys,
        },
        stop.clone(),
    )
    .await
    .context("starting the gateway")?;
    parts.push(Box::pin(async move {
        (
            "gateway",
            match tls {
                Some(tls) => gateway.serve_tls(listener, tls).await,
                None => gateway.serve(listener).await,
            }
            .map_err(anyhow::Error::from),
        )
    }));

    println!("courier is up: {scheme}://{addr}");
    println!(
        "  log: {}, views: {:?}, processors: {}",
        log.backend(),
        config.views.backend,
        if processors.is_empty() {
            "none (the gateway alone)".to_string()
        } else {
            processors
                .iter()
                .map(|p| p.name())
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    if args.dev {
        println!("  web client:   {scheme}://{addr}/  (dev sign-in: any name)");
    } else {
        println!("  web client:   {scheme}://{addr}/  (sign in with a token)");
    }
    println!("  get a token:  courier{cli_flags} token USER");
    println!(
        "  try:          curl -H \"Authorization: Bearer $(courier{cli_flags} token alice)\" {scheme}://{addr}/v1/inbox"
    );
    println!("  API:          {scheme}://{addr}/openapi.json   stop: Ctrl-C");
    tracing::info!(%addr, tls = tls_on, "gateway listening");

    // One part failing stops the others: a platform without its inbox would
    // accept messages nobody can read.
    let mut failed = false;
    while let Some((name, result)) = parts.next().await {
        if let Err(e) = result {
            tracing::error!(part = name, error = %format!("{e:#}"), "stopped with an error; stopping everything");
            eprintln!("error: {name}: {e:#}");
            failed = true;
            trigger.trigger();
        }
    }
    eprintln!("courier stopped: every processor committed what it applied");
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
