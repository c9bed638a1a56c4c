//! `courier search USER QUERY`: full-text search over the messages USER may see,
//! from every shard of the current generation of the search view — or, with
//! `--peers`, from every instance of a distributed search processor (each answers
//! for the shards it owns; this side fans out and merges).

use std::collections::{BTreeSet, HashMap};
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::Config;
use anyhow::Context;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use courier_sinks::inbox::Generations;
use courier_sinks::search::{SearchError, SearchHit, SearchShards, merge};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Arguments of `search`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Whose messages: only those they were a member for when sent.
    user: String,
    /// Words (all must match), "phrases", AND / OR / NOT, prefixes (`hel*`).
    query: String,
    /// At most this many results.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Only in this conversation.
    #[arg(long, value_name = "ID")]
    conversation: Option<String>,
    /// Print a JSON array, best first, of `{message_id, conversation_id,
    /// sender_id, text, sent_at_ms, score, snippet}`.
    #[arg(long)]
    json: bool,
    /// Distributed mode: ask these search instances (`courier run search --serve
    /// ADDR`, as `http://HOST:PORT`, comma-separated; `dns+http://NAME:PORT` means
    /// every address NAME resolves to) instead of local shards, and merge their
    /// answers.
    #[arg(long, value_delimiter = ',', value_name = "URL")]
    peers: Vec<String>,
}

/// The shards of the current generation of the search view, for queries (works
/// beside a running `courier run search`).
pub fn open_shards(config: &Config) -> anyhow::Result<SearchShards> {
    let generations = Generations::new(config.view_dir(crate::registry::Processor::Search.name()));
    Ok(SearchShards::open(generations.current_dir()?)?)
}

/// A search that failed because of what the user asked (exit code 2; HTTP 400 at
/// the gateway).
#[derive(Debug)]
pub struct BadQuery(String);

impl std::fmt::Display for BadQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadQuery {}

pub async fn run(config: &Config, args: Args) -> anyhow::Result<ExitCode> {
    let found = if args.peers.is_empty() {
        let shards = open_shards(config)?;
        shards
            .search(
                &args.user,
                &args.query,
                args.limit,
                args.conversation.as_deref(),
            )
            .map_err(|e| match e {
                e @ (SearchError::MalformedQuery { .. } | SearchError::ZeroLimit) => {
                    anyhow::Error::new(BadQuery(e.to_string()))
                }
                e => e.into(),
            })
    } else {
        fan_out(&args).await
    };
    let hits = match found {
        Ok(hits) => hits,
        // The user's mistake, not a failure of courier: its own exit code.
        Err(e) if e.is::<BadQuery>() => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
        Err(e) => return Err(e),
    };
    if args.json {
        println!("{}", serde_json::to_string(&hits)?);
        return Ok(ExitCode::SUCCESS);
    }
    if hits.is_empty() {
        println!("no messages of {} match {:?}", args.user, args.query);
        return Ok(ExitCode::SUCCESS);
    }
    for h in hits {
        println!(
            "{:.3}  {}/{}  {} at {}: {}",
            h.score, h.conversation_id, h.message_id, h.sender_id, h.sent_at_ms, h.snippet
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks every peer at once and merges their answers; any peer failing fails the
/// search (a partial answer would silently miss messages).
async fn fan_out(args: &Args) -> anyhow::Result<Vec<SearchHit>> {
    Peers::new(args.peers.clone())
        .ask(
            &args.user,
            &args.query,
            args.limit,
            args.conversation.as_deref(),
        )
        .await
}

/// The search instances behind `peers`: each `http://HOST:PORT` as given, and each
/// `dns+http://NAME:PORT` as every address NAME resolves to now — how a scaled
/// service is found (a Docker Compose service name resolves to all its replicas),
/// resolved per search because replicas come and go. A name resolving to nothing
/// is an error, not an empty answer.
pub async fn expand_peers(peers: &[String]) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::with_capacity(peers.len());
    for peer in peers {
        let Some(rest) = peer.strip_prefix("dns+http://") else {
            out.push(peer.clone());
            continue;
        };
        let host = rest.trim_end_matches('/');
        let addrs: BTreeSet<std::net::SocketAddr> = tokio::net::lookup_host(host)
            .await
            .with_context(|| format!("resolving the search peers {peer}"))?
            .collect();
        anyhow::ensure!(
            !addrs.is_empty(),
            "the search peers {peer}: {host} resolves to no address"
        );
        out.extend(addrs.into_iter().map(|a| format!("http://{a}")));
    }
    Ok(out)
}

/// How long one peer has to answer a search.
const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// The instances of a distributed search processor (`courier run search --serve`),
/// asked over HTTP/1.1 with keep-alive connections kept between searches.
pub struct Peers {
    peers: Vec<String>,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Peers {
    /// Peers as `--peers` / `--search-peers` give them (see [`expand_peers`]).
    pub fn new(peers: Vec<String>) -> Peers {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(PEER_TIMEOUT));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Peers { peers, client }
    }

    /// One search: asks every peer at once and merges their answers. Any peer
    /// failing fails the search (a partial answer would silently miss messages);
    /// a malformed query is a [`BadQuery`].
    pub async fn ask(
        &self,
        user: &str,
        query: &str,
        limit: usize,
        conversation: Option<&str>,
    ) -> anyhow::Result<Vec<SearchHit>> {
        let mut path = format!(
            "/v1/shards/search?user={}&q={}&limit={}",
            encode(user),
            encode(query),
            limit
        );
        if let Some(c) = conversation {
            path.push_str(&format!("&conversation={}", encode(c)));
        }
        let mut asks = tokio::task::JoinSet::new();
        for peer in expand_peers(&self.peers).await? {
            let (path, client) = (path.clone(), self.client.clone());
            asks.spawn(async move {
                let answer = tokio::time::timeout(PEER_TIMEOUT, get(&client, &peer, &path)).await;
                answer
                    .map_err(|_| anyhow::anyhow!("search peer {peer}: no answer within 10 s"))?
                    .with_context(|| format!("search peer {peer}"))
            });
        }
        let mut hits = Vec::new();
        while let Some(answer) = asks.join_next().await {
            hits.extend(answer.context("a search request task failed")??);
        }
        Ok(merge(hits, limit))
    }
}

/// One `GET` of a peer's shard search.
async fn get(
    client: &Client<HttpConnector, Empty<Bytes>>,
    peer: &str,
    path: &str,
) -> anyhow::Result<Vec<SearchHit>> {
    let base = peer.trim_end_matches('/');
    anyhow::ensure!(
        base.starts_with("http://"),
        "{peer:?} is not an http://HOST:PORT address"
    );
    let uri: hyper::Uri = format!("{base}{path}")
        .parse()
        .with_context(|| format!("{peer:?} is not an http://HOST:PORT address"))?;
    let answer = client.get(uri).await?;
    let status = answer.status().as_u16();
    let body = answer.into_body().collect().await?.to_bytes();
    match status {
        200 => Ok(serde_json::from_slice(&body).context("decoding the hits")?),
        400 => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            Err(BadQuery(v["error"].as_str().unwrap_or("bad request").to_string()).into())
        }
        s => anyhow::bail!("HTTP {s}: {}", String::from_utf8_lossy(&body)),
    }
}

/// Percent-encodes a query-string value (everything but RFC 3986 unreserved).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

type ServeState = (Arc<SearchShards>, Arc<RwLock<BTreeSet<u32>>>);

/// Serves `GET /v1/shards/search?user=&q=&limit=&conversation=` on `listen` for
/// the shards in `owned` (those this instance's processor holds): distributed
/// mode's per-instance answer, merged by `courier search --peers`.
pub async fn serve(
    listen: &str,
    shards: SearchShards,
    owned: Arc<RwLock<BTreeSet<u32>>>,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the search endpoint to {listen}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving search shards");
    let app = axum::Router::new()
        .route("/v1/shards/search", axum::routing::get(shard_search))
        .with_state((Arc::new(shards), owned));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "search endpoint stopped");
        }
    });
    Ok(())
}

async fn shard_search(
    State((shards, owned)): State<ServeState>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let bad = |msg: String| {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": msg })),
        )
            .into_response()
    };
    let (Some(user), Some(q)) = (params.get("user").cloned(), params.get("q").cloned()) else {
        return bad("`user` and `q` are required".to_string());
    };
    let limit = match params.get("limit").map(|l| l.parse::<usize>()) {
        None => 20,
        Some(Ok(l)) => l,
        Some(Err(_)) => return bad("`limit` must be a whole number".to_string()),
    };
    let conversation = params.get("conversation").cloned();
    let owned = owned.read().expect("owned lock").clone();
    // tantivy searches block: keep them off the async workers.
    let answer = tokio::task::spawn_blocking(move || {
        shards.search_in(&user, &q, limit, conversation.as_deref(), Some(&owned))
    })
    .await;
    match answer {
        Ok(Ok(hits)) => axum::Json(hits).into_response(),
        Ok(Err(e @ (SearchError::MalformedQuery { .. } | SearchError::ZeroLimit))) => {
            bad(e.to_string())
        }
        Ok(Err(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
