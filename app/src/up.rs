//! `courier up`: the whole platform in one process — the gateway and every
//! processor — embedded by default, until Ctrl-C / SIGTERM.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::Config;
use crate::config::ViewsBackend;
use anyhow::Context;
use async_trait::async_trait;
use courier_gateway::{Gateway, Keys, Parts, SearchFailure, SearchViews};
use courier_pipeline::{EventLog, shutdown};
use courier_processors::inbox::store::{ConversationRows, InboxBatch, InboxStore};
use courier_processors::inbox::{ConversationState, InboxRow};
use courier_processors::store::StoreError;
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
}

/// The RocksDB inbox views as the gateway reads them beside the processor that
/// writes them in this process: opened read-only per call (like `courier inbox`),
/// because a read-only RocksDB handle sees only what was written before it was
/// opened. Before the processor first opened its store, everything is empty.
struct ReopenedViews(Config);

impl ReopenedViews {
    async fn open(&self) -> Result<Option<Box<dyn InboxStore>>, StoreError> {
        crate::views::open_views(&self.0)
            .await
            .map_err(|e| StoreError::retryable("inbox/rocksdb", format!("{e:#}")))
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
    let listen = args.listen.unwrap_or_else(|| config.gateway.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;

    let processors = match &args.processors {
        Some(list) => parse_processors(list)?,
        None => Processor::in_up(config),
    };
    let search = search_views(config, &processors, args.search_peers)?;
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
            settings: config.gateway.clone(),
            log: log.clone(),
            views: gateway_views(config).await?,
            search,
            keys,
        },
        stop.clone(),
    )
    .await
    .context("starting the gateway")?;
    parts.push(Box::pin(async move {
        (
            "gateway",
            gateway.serve(listener).await.map_err(anyhow::Error::from),
        )
    }));

    println!("courier is up: http://{addr}");
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
    println!("  get a token:  courier{cli_flags} token USER");
    println!(
        "  try:          curl -H \"Authorization: Bearer $(courier{cli_flags} token alice)\" http://{addr}/v1/inbox"
    );
    println!("  API:          http://{addr}/openapi.json   stop: Ctrl-C");
    tracing::info!(%addr, "gateway listening");

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
