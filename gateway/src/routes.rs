//! The endpoints: one table of (path, method, handler) from which both the router
//! and the OpenAPI test are built, so they cannot drift apart.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use courier_processors::inbox::store::{self, QueryError};
use courier_processors::inbox::{ConversationView, InboxRow, Kind, MessageView};
use courier_processors::presence::{Status, UserPresence};
use courier_processors::search::SearchHit;
use courier_schemas::Event;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument;
use utoipa::{IntoParams, ToSchema};

use crate::conversations::Judgement;
use crate::error::{ApiError, Body, ErrorBody};
use crate::health::Health;
use crate::idempotency::{self, Claim, Stored};
use crate::live::StreamFrame;
use crate::openapi::{AuthErrors, BodyErrors, WriteErrors};
use crate::search::SearchFailure;
use crate::{Gateway, metrics, validate};

type App = Arc<Gateway>;

/// Every route: path template, method, handler. The router is built from this
/// table alone, and a test checks it against `/openapi.json`.
pub fn table() -> Vec<(&'static str, Method, MethodRouter<App>)> {
    vec![
        ("/v1/conversations", Method::POST, post(create_conversation)),
        ("/v1/conversations/{id}", Method::GET, get(conversation)),
        (
            "/v1/conversations/{id}/members",
            Method::POST,
            post(change_members),
        ),
        (
            "/v1/conversations/{id}/messages",
            Method::GET,
            get(messages),
        ),
        ("/v1/messages", Method::POST, post(send)),
        ("/v1/messages/{id}", Method::PATCH, patch(edit)),
        ("/v1/messages/{id}", Method::DELETE, delete(remove)),
        ("/v1/receipts", Method::POST, post(receipt)),
        ("/v1/presence", Method::PUT, put(presence)),
        ("/v1/presence/{user_id}", Method::GET, get(presence_of)),
        ("/v1/inbox", Method::GET, get(inbox)),
        ("/v1/search", Method::GET, get(search)),
        ("/v1/stream", Method::GET, get(stream)),
        ("/metrics", Method::GET, get(metrics_text)),
        ("/healthz", Method::GET, get(healthz)),
        ("/openapi.json", Method::GET, get(openapi)),
    ]
}

/// The router of a gateway.
pub fn router(gw: App) -> axum::Router {
    let mut r = axum::Router::new();
    for (path, _, handler) in table() {
        r = r.route(path, handler);
    }
    r.merge(crate::web::routes())
        .fallback(|| async { ApiError::not_found("no such endpoint (see /openapi.json)") })
        .layer(axum::middleware::from_fn_with_state(gw.clone(), observe))
        .with_state(gw)
}

/// Per request: the per-IP rate limit, a tracing span, metrics.
async fn observe(State(gw): State<App>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().clone();
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let span = tracing::info_span!("request", %method, route = %route, ip = ip.as_deref().unwrap_or("-"), status = tracing::field::Empty);
    let started = Instant::now();
    let limited = if route.starts_with("/v1/") {
        ip.as_deref().and_then(|ip| gw.ip_limits.check(ip).err())
    } else {
        None
    };
    let response = if let Some(wait) = limited {
        too_many("this IP address", wait)
    } else {
        next.run(req).instrument(span.clone()).await
    };
    let status = response.status();
    span.record("status", status.as_u16());
    let m = metrics::get();
    m.requests
        .with_label_values(&[&route, method.as_str(), status.as_str()])
        .inc();
    m.request_seconds
        .with_label_values(&[&route])
        .observe(started.elapsed().as_secs_f64());
    if status.is_server_error() {
        tracing::warn!(parent: &span, elapsed_ms = started.elapsed().as_millis() as u64, "request failed");
    } else {
        tracing::debug!(parent: &span, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    }
    response
}

fn too_many(who: &str, wait: std::time::Duration) -> Response {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit exceeded for {who}; retry in {secs} s"),
    );
    e.retry_after = Some(secs);
    e.into_response()
}

/// The signed-in user (bearer token), after their rate limit.
pub struct User(pub String);

impl FromRequestParts<App> for User {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gw: &App) -> Result<Self, Self::Rejection> {
        Ok(User(
            Session::from_request_parts(parts, gw).await?.claims.sub,
        ))
    }
}

/// The signed-in user's verified token: who, and until when (the live stream
/// ends when its token does).
pub struct Session {
    /// The token's claims.
    pub claims: crate::auth::Claims,
}

impl FromRequestParts<App> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gw: &App) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            // Browsers cannot set headers on a WebSocket handshake.
            .or_else(|| {
                (parts.uri.path() == "/v1/stream")
                    .then(|| {
                        parts.uri.query().and_then(|q| {
                            q.split('&')
                                .find_map(|kv| kv.strip_prefix("access_token="))
                                .map(str::to_string)
                        })
                    })
                    .flatten()
            });
        let Some(token) = token else {
            return Err(ApiError::unauthorized(
                "missing `Authorization: Bearer TOKEN` (mint one with `courier token USER`)",
            )
            .into_response());
        };
        let claims = gw
            .keys
            .verify(&token)
            .map_err(|e| ApiError::unauthorized(e.to_string()).into_response())?;
        if let Err(wait) = gw.user_limits.check(&claims.sub) {
            return Err(too_many(&format!("user {}", claims.sub), wait));
        }
        Ok(Session { claims })
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The namespace of [`id_for_key`]'s UUIDv5s.
const KEYED_IDS: uuid::Uuid = uuid::Uuid::from_u128(0x6f1c_2a3e_0d4b_4c55_9a7e_2b8f_3c1d_5e60);

/// The id a write names its new conversation or message by when the client gave
/// an Idempotency-Key (and no id of its own): derived from (user, endpoint, key),
/// so a retry after a restart, when the in-memory key store is empty, publishes
/// under the same id, and the judge recognises the first write in the log
/// (`Judgement::AlreadySent`) instead of making a second one. A malformed key
/// derives nothing: `write` refuses it.
fn id_for_key(headers: &HeaderMap, user: &str, endpoint: &str) -> Option<String> {
    let key = headers.get("idempotency-key")?.to_str().ok()?;
    if key.is_empty() || key.len() > 255 {
        return None;
    }
    let name = format!("{user}\n{endpoint}\n{key}");
    Some(uuid::Uuid::new_v5(&KEYED_IDS, name.as_bytes()).to_string())
}

/// An event from its canonical JSON, so the schema crate's structural checks
/// (and their messages) apply to what the gateway builds too.
fn event(mut fields: Value) -> Result<Event, ApiError> {
    fields["event_id"] = json!(new_id());
    fields["at_ms"] = json!(now_ms());
    courier_schemas::json::parse_line(&fields.to_string())
        .map_err(|e| ApiError::invalid(e.to_string()))
}

/// A client-chosen id that makes a write safe to retry without an
/// Idempotency-Key, and what a reuse of it with other content is told.
struct ClientId {
    key: String,
    conflict: String,
}

/// The write path every mutating endpoint shares: idempotency, judging, one
/// publish, waiting for the gateway's own tail, the answer.
async fn write(
    gw: &Gateway,
    user: &str,
    headers: &HeaderMap,
    endpoint: &str,
    fingerprint: u64,
    fallback: Option<ClientId>,
    build: impl FnOnce() -> Result<(Event, Value), ApiError>,
) -> Result<Response, ApiError> {
    let (fallback_key, conflict) = match fallback {
        Some(f) => (Some(f.key), Some(f.conflict)),
        None => (None, None),
    };
    let explicit = headers.contains_key("idempotency-key");
    let key = match headers.get("idempotency-key") {
        Some(v) => {
            let k = v
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?;
            if k.is_empty() || k.len() > 255 {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 characters",
                ));
            }
            Some(k.to_string())
        }
        None => fallback_key,
    };
    let scoped = key.map(|k| format!("{user}\n{endpoint}\n{k}"));
    if let Some(k) = &scoped {
        match gw.idempotency.claim(k, fingerprint).await {
            Ok(Claim::Replay(stored)) => {
                return Ok((stored.status, Json(stored.body)).into_response());
            }
            Ok(Claim::Fresh) => {}
            // The key is the client's own id (a send's `message_id`), not an
            // Idempotency-Key: another request under it is the same conflict the
            // log would report after a restart, so it gets the same 409.
            Err(e) => match conflict {
                Some(message) if !explicit => {
                    return Err(ApiError::new(StatusCode::CONFLICT, message));
                }
                _ => return Err(e),
            },
        }
    }
    let result = publish_judged(gw, user, build).await;
    match (&scoped, &result) {
        (Some(k), Ok((status, body))) => gw.idempotency.finish(
            k,
            Stored {
                status: *status,
                body: body.clone(),
            },
        ),
        (Some(k), Err(_)) => gw.idempotency.release(k),
        _ => {}
    }
    let (status, body) = result?;
    Ok((status, Json(body)).into_response())
}

async fn publish_judged(
    gw: &Gateway,
    user: &str,
    build: impl FnOnce() -> Result<(Event, Value), ApiError>,
) -> Result<(StatusCode, Value), ApiError> {
    let (event, answer) = build()?;
    let conversation = event.conversation_id().map(str::to_string);
    if conversation.is_some() {
        match gw.conversations.judge(user, &event).await? {
            Judgement::Applies { .. } => {}
            Judgement::Unchanged => return Ok((StatusCode::OK, answer)),
            Judgement::AlreadySent => return Ok((StatusCode::CREATED, answer)),
        }
    }
    let timeout = std::time::Duration::from_millis(gw.settings.publish_timeout_ms);
    let published = match tokio::time::timeout(
        timeout,
        courier_pipeline::producer::publish(&*gw.log, std::slice::from_ref(&event)),
    )
    .await
    {
        Ok(Ok(published)) => published,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "publishing failed; nothing was published");
            return Err(ApiError::unavailable(format!(
                "the log is unavailable; nothing was published ({e})"
            )));
        }
        // The log did not answer in time (a broker down): the event may still
        // land once it is back, so the client is told to retry with its id, which
        // the judge then recognises instead of publishing twice.
        Err(_) => {
            tracing::warn!(
                timeout_ms = timeout.as_millis() as u64,
                "the log did not acknowledge in time"
            );
            return Err(ApiError::unavailable(format!(
                "the log did not acknowledge within {} ms; the write may still be applied: \
                 retry with the same message_id or Idempotency-Key",
                timeout.as_millis()
            )));
        }
    };
    if let Some(kind) = event.kind() {
        metrics::get()
            .published
            .with_label_values(&[kind.as_str()])
            .inc();
    }
    if conversation.is_some()
        && let Some(p) = published.first()
    {
        gw.conversations.applied(p.at.partition, p.at.offset).await;
    }
    let status = if matches!(
        event.body,
        Some(courier_schemas::proto::event::Body::ConversationCreated(_))
            | Some(courier_schemas::proto::event::Body::MessageSent(_))
    ) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, answer))
}

/// A write's answer as the JSON value the idempotency store keeps (and replays):
/// its keys sorted, as they always were on the wire.
fn answer(a: &impl Serialize) -> Value {
    serde_json::to_value(a).unwrap_or_default()
}

/// `{"conversation_id"}`: a conversation created or whose members changed.
#[derive(Serialize, ToSchema)]
pub struct ConversationId {
    /// The conversation.
    conversation_id: String,
}

/// `{"message_id"}`: a message sent or edited.
#[derive(Serialize, ToSchema)]
pub struct MessageId {
    /// The message (the client's `message_id`, or one the gateway chose).
    message_id: String,
}

/// `{"deleted": true, "message_id"}`: a message deleted for everyone.
#[derive(Serialize, ToSchema)]
pub struct MessageDeleted {
    /// Always true.
    deleted: bool,
    /// The message.
    message_id: String,
}

/// `{"status", "user_id"}`: the presence just set.
#[derive(Serialize, ToSchema)]
pub struct PresenceAnswer {
    /// As set.
    #[schema(value_type = Status)]
    status: String,
    /// The signed-in user.
    user_id: String,
}

/// The `Idempotency-Key` header of the writes.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// Retries with the same key publish once and answer the same.
    #[param(rename = "Idempotency-Key", max_length = 255, min_length = 1)]
    #[allow(dead_code)] // read from the headers by `write`; here for the document
    key: Option<String>,
}

fn fp(endpoint: &str, body: &impl serde::Serialize) -> u64 {
    idempotency::fingerprint(&[
        endpoint.as_bytes(),
        &serde_json::to_vec(body).unwrap_or_default(),
    ])
}

/// `POST /v1/conversations`.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    // A string, so that a wrong one gets this gateway's own 422 message.
    /// Direct (exactly two members: you and one other) or group.
    #[schema(value_type = Kind)]
    kind: String,
    /// The creator is added if absent.
    member_ids: Vec<String>,
    /// At most 256 characters (`validate::MAX_TITLE_CHARS`, which a test holds it to).
    #[serde(default)]
    #[schema(max_length = 256)]
    title: Option<String>,
}

#[utoipa::path(post, path = "/v1/conversations", summary = "Create a conversation",
    params(IdempotencyKey), request_body = CreateConversation,
    responses((status = 201, description = "success", body = ConversationId), WriteErrors, BodyErrors, AuthErrors),
    security(("bearer" = [])))]
async fn create_conversation(
    State(gw): State<App>,
    User(user): User,
    headers: HeaderMap,
    Body(req): Body<CreateConversation>,
) -> Result<Response, ApiError> {
    let f = fp("conversations", &req);
    write(&gw, &user, &headers, "conversations", f, None, || {
        validate::user_ids("member_ids", &req.member_ids, gw.settings.max_members)?;
        if let Some(t) = &req.title
            && t.chars().count() > validate::MAX_TITLE_CHARS
        {
            return Err(ApiError::invalid(format!(
                "`title` is longer than {} characters",
                validate::MAX_TITLE_CHARS
            )));
        }
        // The creator is a member whether or not they listed themselves.
        let mut members = req.member_ids.clone();
        if !members.contains(&user) {
            members.insert(0, user.clone());
        }
        if req.kind != "direct" && req.kind != "group" {
            return Err(ApiError::invalid(format!(
                "`kind` must be \"direct\" or \"group\", got {:?}",
                req.kind
            )));
        }
        if req.kind == "direct" && members.len() != 2 {
            return Err(ApiError::invalid(format!(
                "a direct conversation has exactly two members (you and one other); got {}",
                members.len()
            )));
        }
        let id = id_for_key(&headers, &user, "conversations").unwrap_or_else(new_id);
        let mut fields = json!({
            "type": "conversation_created",
            "conversation_id": id,
            "kind": req.kind,
            "creator_id": user,
            "member_ids": members,
        });
        if let Some(t) = &req.title {
            fields["title"] = json!(t);
        }
        Ok((
            event(fields)?,
            answer(&ConversationId {
                conversation_id: id,
            }),
        ))
    })
    .await
}

/// `GET /v1/conversations/{id}`: kind, title, creator and members, as the
/// caller sees them ([`ConversationState::seen_by`]: a former member as it was
/// when they left). Read from the gateway's own cache, like writes are judged,
/// so a client sees its own writes at once.
///
/// [`ConversationState::seen_by`]: courier_processors::inbox::ConversationState::seen_by
#[utoipa::path(get, path = "/v1/conversations/{id}",
    summary = "A conversation of yours: kind, title, creator, members",
    description = "As you see it: as it is while you are a member, as it was when you left once you are not. title, created_by and created_at_ms are null for conversations created before courier kept them in its states (until the views are rebuilt).",
    params(("id" = String, Path, description = "The conversation")),
    responses((status = 200, description = "success", body = ConversationView),
        (status = 404, description = "no conversation of yours by that id: one answer whether it does not exist or you were never in it", body = ErrorBody),
        (status = 422, description = "malformed id", body = ErrorBody),
        (status = 503, description = "the views or the log are unavailable", body = ErrorBody),
        AuthErrors),
    security(("bearer" = [])))]
async fn conversation(
    State(gw): State<App>,
    User(user): User,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    validate::id("conversation_id", &id)?;
    match gw
        .conversations
        .with_state(&id, |state, _| state.seen_by(&user))
        .await?
    {
        Some(view) => Ok(Json(view).into_response()),
        // Not telling a non-member whether the conversation exists.
        None => Err(ApiError::conversation_not_found(&id)),
    }
}

/// `POST /v1/conversations/{id}/members`: exactly one of `add`, `remove`.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MembersChange {
    /// Users to add.
    #[serde(default)]
    add: Option<Vec<String>>,
    /// Users to remove.
    #[serde(default)]
    remove: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/v1/conversations/{id}/members", summary = "Add or remove members",
    params(("id" = String, Path, description = "The conversation"), IdempotencyKey),
    request_body = MembersChange,
    responses((status = 200, description = "success", body = ConversationId), WriteErrors, BodyErrors, AuthErrors),
    security(("bearer" = [])))]
async fn change_members(
    State(gw): State<App>,
    User(user): User,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<MembersChange>,
) -> Result<Response, ApiError> {
    validate::id("conversation_id", &id)?;
    let f = fp(&format!("members {id}"), &req);
    write(&gw, &user, &headers, "members", f, None, || {
        let (ty, ids) = match (&req.add, &req.remove) {
            (Some(a), None) => ("members_added", a),
            (None, Some(r)) => ("members_removed", r),
            _ => {
                return Err(ApiError::invalid(
                    "give exactly one of `add` or `remove` (a list of user ids)",
                ));
            }
        };
        if ids.is_empty() {
            return Err(ApiError::invalid(format!(
                "`{}` must not be empty",
                if ty == "members_added" {
                    "add"
                } else {
                    "remove"
                }
            )));
        }
        validate::user_ids("user_ids", ids, gw.settings.max_members)?;
        let e = event(json!({
            "type": ty, "conversation_id": id, "actor_id": user, "user_ids": ids,
        }))?;
        Ok((
            e,
            answer(&ConversationId {
                conversation_id: id,
            }),
        ))
    })
    .await
}

/// `POST /v1/messages`.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// The conversation.
    conversation_id: String,
    /// The text.
    text: String,
    /// Client-chosen id; a retry with it publishes once.
    #[serde(default)]
    message_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/messages", summary = "Send a message",
    params(IdempotencyKey), request_body = SendMessage,
    responses((status = 201, description = "success", body = MessageId), WriteErrors, BodyErrors, AuthErrors),
    security(("bearer" = [])))]
async fn send(
    State(gw): State<App>,
    User(user): User,
    headers: HeaderMap,
    Body(req): Body<SendMessage>,
) -> Result<Response, ApiError> {
    validate::id("conversation_id", &req.conversation_id)?;
    if let Some(m) = &req.message_id {
        validate::id("message_id", m)?;
    }
    validate::text(&req.text, gw.settings.max_text_bytes)?;
    let f = fp("messages", &req);
    // A client's message id makes a retry safe even without an Idempotency-Key.
    let fallback = req.message_id.as_ref().map(|m| ClientId {
        key: format!("message {}/{m}", req.conversation_id),
        conflict: format!(
            "message_id {m} is already used in conversation {} by a message with other content",
            req.conversation_id
        ),
    });
    write(&gw, &user, &headers, "messages", f, fallback, || {
        let id = req
            .message_id
            .clone()
            .or_else(|| id_for_key(&headers, &user, "messages"))
            .unwrap_or_else(new_id);
        let e = event(json!({
            "type": "message_sent", "conversation_id": req.conversation_id,
            "message_id": id, "sender_id": user, "text": req.text,
        }))?;
        Ok((e, answer(&MessageId { message_id: id })))
    })
    .await
}

/// `PATCH /v1/messages/{id}`.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditMessage {
    /// The message's conversation.
    conversation_id: String,
    /// The new text.
    text: String,
}

#[utoipa::path(patch, path = "/v1/messages/{id}", summary = "Edit your message",
    params(("id" = String, Path, description = "The message"), IdempotencyKey),
    request_body = EditMessage,
    responses((status = 200, description = "success", body = MessageId), WriteErrors, BodyErrors, AuthErrors),
    security(("bearer" = [])))]
async fn edit(
    State(gw): State<App>,
    User(user): User,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(req): Body<EditMessage>,
) -> Result<Response, ApiError> {
    validate::id("message_id", &id)?;
    validate::id("conversation_id", &req.conversation_id)?;
    validate::text(&req.text, gw.settings.max_text_bytes)?;
    let f = fp(&format!("edit {id}"), &req);
    write(&gw, &user, &headers, "edit", f, None, || {
        let e = event(json!({
            "type": "message_edited", "conversation_id": req.conversation_id,
            "message_id": id, "editor_id": user, "text": req.text,
        }))?;
        Ok((e, answer(&MessageId { message_id: id })))
    })
    .await
}

/// `DELETE /v1/messages/{id}?conversation_id=`.
#[derive(Debug, Deserialize, serde::Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InConversation {
    /// The message's conversation.
    conversation_id: String,
}

#[utoipa::path(delete, path = "/v1/messages/{id}", summary = "Delete your message for everyone",
    params(("id" = String, Path, description = "The message"), InConversation, IdempotencyKey),
    responses((status = 200, description = "success", body = MessageDeleted), WriteErrors, AuthErrors),
    security(("bearer" = [])))]
async fn remove(
    State(gw): State<App>,
    User(user): User,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<InConversation>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::invalid(e.body_text()))?;
    validate::id("message_id", &id)?;
    validate::id("conversation_id", &q.conversation_id)?;
    let f = fp(&format!("delete {id}"), &q);
    write(&gw, &user, &headers, "delete", f, None, || {
        let e = event(json!({
            "type": "message_deleted", "conversation_id": q.conversation_id,
            "message_id": id, "actor_id": user,
        }))?;
        Ok((
            e,
            answer(&MessageDeleted {
                deleted: true,
                message_id: id,
            }),
        ))
    })
    .await
}

/// A receipt: `POST /v1/receipts` takes it, and answers it as given.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[schema(as = Receipt)]
#[serde(deny_unknown_fields)]
pub struct ReceiptRequest {
    /// The conversation.
    conversation_id: String,
    /// Everything up to this message is delivered, or read.
    message_id: String,
    // A string, so that a wrong one gets this gateway's own 422 message.
    /// Delivered or read.
    #[schema(value_type = ReceiptStatus)]
    status: String,
}

/// What a receipt says: everything up to the message is delivered, or read.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ReceiptStatus {
    /// Reached the recipient's device.
    Delivered,
    /// Read: implies delivered.
    Read,
}

#[utoipa::path(post, path = "/v1/receipts", summary = "Delivered/read up to a message",
    params(IdempotencyKey), request_body = ReceiptRequest,
    responses((status = 200, description = "success", body = ReceiptRequest), WriteErrors, BodyErrors, AuthErrors),
    security(("bearer" = [])))]
async fn receipt(
    State(gw): State<App>,
    User(user): User,
    headers: HeaderMap,
    Body(req): Body<ReceiptRequest>,
) -> Result<Response, ApiError> {
    validate::id("conversation_id", &req.conversation_id)?;
    validate::id("message_id", &req.message_id)?;
    if req.status != "delivered" && req.status != "read" {
        return Err(ApiError::invalid(format!(
            "`status` must be \"delivered\" or \"read\", got {:?}",
            req.status
        )));
    }
    let f = fp("receipts", &req);
    write(&gw, &user, &headers, "receipts", f, None, || {
        let e = event(json!({
            "type": "receipt", "conversation_id": req.conversation_id,
            "message_id": req.message_id, "user_id": user, "status": req.status,
        }))?;
        Ok((e, answer(&req)))
    })
    .await
}

/// `PUT /v1/presence`.
#[derive(Debug, Deserialize, serde::Serialize, ToSchema)]
#[schema(as = Presence)]
#[serde(deny_unknown_fields)]
pub struct PresenceRequest {
    // A string, so that a wrong one gets this gateway's own 422 message.
    /// Online or offline.
    #[schema(value_type = Status)]
    status: String,
}

#[utoipa::path(put, path = "/v1/presence", summary = "Set your presence",
    params(IdempotencyKey), request_body = PresenceRequest,
    responses((status = 200, description = "success", body = PresenceAnswer), WriteErrors, BodyErrors, AuthErrors),
    security(("bearer" = [])))]
async fn presence(
    State(gw): State<App>,
    User(user): User,
    headers: HeaderMap,
    Body(req): Body<PresenceRequest>,
) -> Result<Response, ApiError> {
    if req.status != "online" && req.status != "offline" {
        return Err(ApiError::invalid(format!(
            "`status` must be \"online\" or \"offline\", got {:?}",
            req.status
        )));
    }
    let f = fp("presence", &req);
    write(&gw, &user, &headers, "presence", f, None, || {
        let e = event(json!({ "type": "presence", "user_id": user, "status": req.status }))?;
        Ok((
            e,
            answer(&PresenceAnswer {
                status: req.status.clone(),
                user_id: user.clone(),
            }),
        ))
    })
    .await
}

/// A row of `GET /v1/inbox`: the row `courier inbox USER --json` prints, and
/// whom and what it is about, so a client can name it.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct InboxEntry {
    #[serde(flatten)]
    row: InboxRow,
    /// Direct or group; null only while the conversation's state is not stored
    /// yet (Cassandra writes rows before states).
    #[schema(required)]
    kind: Option<Kind>,
    /// Its title, if it was given one.
    #[schema(required)]
    title: Option<String>,
    /// The members as the user sees them (as when they left, for a former
    /// member), themself included: in a direct conversation, the other one.
    member_ids: Vec<String>,
}

/// `GET /v1/inbox`: the rows of `courier inbox USER --json`, each with `kind`,
/// `title` and `member_ids`. Those come from the conversations' stored states
/// at read time (the stored rows and their Cassandra tables stay as they are;
/// docs/decisions/2026-12-07-conversation-details.md).
#[utoipa::path(get, path = "/v1/inbox",
    summary = "Your inbox: the rows of `courier inbox YOU --json`, each with kind, title and member_ids",
    responses((status = 200, description = "success", body = Vec<InboxEntry>),
        (status = 503, description = "views unavailable", body = ErrorBody),
        AuthErrors),
    security(("bearer" = [])))]
async fn inbox(State(gw): State<App>, User(user): User) -> Result<Response, ApiError> {
    let unavailable = |e: courier_processors::store::StoreError| {
        ApiError::unavailable(format!("reading the inbox views: {e}"))
    };
    let rows = store::inbox(&*gw.views, &user).await.map_err(unavailable)?;
    let ids: Vec<String> = rows.iter().map(|r| r.conversation_id.clone()).collect();
    let states = gw.views.load_states(&ids).await.map_err(unavailable)?;
    let entries: Vec<InboxEntry> = rows
        .into_iter()
        .zip(states)
        .map(|(row, state)| {
            let seen = state.as_ref().and_then(|s| s.seen_by(&user));
            InboxEntry {
                row,
                kind: seen.as_ref().map(|v| v.kind),
                title: seen.as_ref().and_then(|v| v.title.clone()),
                member_ids: seen
                    .map(|v| v.members.into_iter().map(|m| m.user_id).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Ok(Json(entries).into_response())
}

/// `GET /v1/presence/{user_id}`: exactly what `courier presence USER --json`
/// prints, to the user themself and to their contacts: users who are members
/// of a conversation they are a member of now. Anyone else gets the 404 of a
/// user who does not exist, so presence tells nobody who talks to whom.
#[utoipa::path(get, path = "/v1/presence/{user_id}",
    summary = "A user's presence, to themself and to their contacts (users in a conversation with them now)",
    params(("user_id" = String, Path, description = "The user")),
    responses((status = 200, description = "success: exactly what `courier presence USER --json` prints", body = UserPresence),
        (status = 404, description = "no contact of yours by that id: one answer whether the user does not exist or shares no conversation with you", body = ErrorBody),
        (status = 422, description = "malformed user_id", body = ErrorBody),
        (status = 503, description = "presence view not available, or unreadable", body = ErrorBody),
        AuthErrors),
    security(("bearer" = [])))]
async fn presence_of(
    State(gw): State<App>,
    User(user): User,
    Path(target): Path<String>,
) -> Result<Response, ApiError> {
    validate::id("user_id", &target)?;
    let Some(views) = &gw.presence else {
        return Err(ApiError::unavailable(
            "presence view not available: this gateway runs beside no presence processor",
        ));
    };
    let contacts = crate::presence::audience(&*gw.views, &user)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the inbox views: {e}")))?;
    if !contacts.contains(&target) {
        return Err(ApiError::not_found(format!(
            "user {target} not found among your contacts"
        )));
    }
    let row = views
        .presence(&target)
        .await
        .map_err(|e| ApiError::unavailable(format!("reading the presence view: {e}")))?;
    let answer: UserPresence = courier_processors::presence::presence(&target, row.as_ref());
    Ok(Json(answer).into_response())
}

/// `GET /v1/conversations/{id}/messages` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Only messages older than this message id.
    #[serde(default)]
    before: Option<String>,
    /// Only the newest this many.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// Most messages one page may ask for.
pub const MAX_PAGE: usize = 1000;

/// Exactly what `courier messages ID --as USER --json` prints; with `before` (a
/// message id) only older messages, with `limit` only the newest `limit` of
/// those, still oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages",
    summary = "Messages visible to you, oldest first (exactly `courier messages ID --as YOU --json`), with their ticks (delivered_to, read_by)",
    params(("id" = String, Path, description = "The conversation"), Page),
    responses((status = 200, description = "success", body = Vec<MessageView>),
        (status = 404, description = "not a conversation of yours", body = ErrorBody),
        (status = 422, description = "bad before/limit", body = ErrorBody),
        (status = 503, description = "views unavailable", body = ErrorBody),
        AuthErrors),
    security(("bearer" = [])))]
async fn messages(
    State(gw): State<App>,
    User(user): User,
    Path(id): Path<String>,
    q: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(page) = q.map_err(|e| ApiError::invalid(e.body_text()))?;
    validate::id("conversation_id", &id)?;
    // A message id like any other: `?before=` (empty) or one with a control
    // character is refused as such, not looked up and echoed back raw.
    if let Some(b) = &page.before {
        validate::id("before", b)?;
    }
    if let Some(l) = page.limit
        && !(1..=MAX_PAGE).contains(&l)
    {
        return Err(ApiError::invalid(format!(
            "`limit` must be between 1 and {MAX_PAGE}, got {l}"
        )));
    }
    let mut list = match store::messages(&*gw.views, &id, &user).await {
        Ok(l) => l,
        // Not telling a non-member whether the conversation exists.
        Err(QueryError::NotAMember(_)) => {
            return Err(ApiError::conversation_not_found(&id));
        }
        Err(QueryError::Store(e)) => {
            return Err(ApiError::unavailable(format!(
                "reading the inbox views: {e}"
            )));
        }
    };
    if let Some(b) = &page.before {
        let Some(i) = list.iter().position(|m| &m.message_id == b) else {
            return Err(ApiError::invalid(format!(
                "`before` names {b}, which is not a message of {id} visible to you"
            )));
        };
        list.truncate(i);
    }
    if let Some(l) = page.limit
        && list.len() > l
    {
        list.drain(..list.len() - l);
    }
    Ok(Json(list).into_response())
}

/// `GET /v1/search` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// The query.
    q: String,
    /// The most hits to answer.
    #[serde(default)]
    #[param(minimum = 1, maximum = 1000, default = 20)]
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/search",
    summary = "Search messages visible to you (exactly `courier search --json`)",
    params(SearchQuery),
    responses((status = 200, description = "success", body = Vec<SearchHit>),
        (status = 400, description = "malformed query", body = ErrorBody),
        (status = 422, description = "empty q or bad limit", body = ErrorBody),
        (status = 503, description = "search view not available", body = ErrorBody),
        AuthErrors),
    security(("bearer" = [])))]
async fn search(
    State(gw): State<App>,
    User(user): User,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Some(views) = &gw.search else {
        return Err(ApiError::unavailable("search view not available"));
    };
    let Query(q) = q.map_err(|e| ApiError::invalid(e.body_text()))?;
    if q.q.trim().is_empty() {
        return Err(ApiError::invalid("`q` must not be empty"));
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "`limit` must be between 1 and {MAX_PAGE}, got {limit}"
        )));
    }
    let hits = views
        .search(&user, &q.q, limit)
        .await
        .map_err(|e| match e {
            SearchFailure::BadQuery(m) => ApiError::bad_request(m),
            SearchFailure::Unavailable(m) => ApiError::unavailable(m),
        })?;
    Ok(([(header::CONTENT_TYPE, "application/json")], hits).into_response())
}

/// `?since=` of `GET /v1/stream`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamParams {
    /// The cursor of the last frame received: resume from there.
    since: Option<String>,
}

/// `GET /v1/stream`: the signed-in user's events, one `{"cursor", "event"}`
/// object per text frame; with `?since=CURSOR`, first what they missed since
/// that frame (see `resume`).
#[utoipa::path(get, path = "/v1/stream",
    summary = "WebSocket: your live events, and your contacts' presence changes, one {cursor, event} object per text frame",
    description = "With ?since=CURSOR, first every event you missed since the frame that carried CURSOR (in log order within each conversation, each once), then live events. Close codes after a {\"type\":\"error\"} notice: 4410 the cursor cannot be resumed from (older than the log's retention, more missed events than gateway.resume_max_events, or another log's): re-read GET /v1/inbox and the messages, then connect without since; 1011 the log could not be read: retry with the same since; 1008 too slow to keep up; 4401 token expired.",
    params(("access_token" = Option<String>, Query, description = "The token, for clients that cannot set headers."), StreamParams),
    responses((status = 101, description = "switching to the WebSocket; each text frame is one StreamFrame", body = StreamFrame),
        (status = 400, description = "`since` is not a cursor of this stream", body = ErrorBody),
        AuthErrors),
    security(("bearer" = [])))]
async fn stream(
    State(gw): State<App>,
    session: Session,
    Query(params): Query<StreamParams>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    // A malformed cursor is the client's mistake: a 400 before the handshake.
    let since = params
        .since
        .as_deref()
        .map(crate::resume::Cursor::decode)
        .transpose()
        .map_err(ApiError::bad_request)?;
    // Registered before the handshake answers, so an event published right after
    // the client sees `101` reaches it. If the upgrade fails, the dropped
    // subscription is pruned at the next delivery.
    let sub = gw.hub.subscribe(&session.claims.sub);
    // Read after subscribing: every record from here on reaches `sub`.
    let live_from = gw.hub.live_from();
    // The socket lives no longer than a REST call with its token would succeed.
    let expires = gw.keys.valid_until(&session.claims);
    let user = session.claims.sub;
    Ok(ws.on_upgrade(move |socket| {
        crate::resume::serve(gw, socket, sub, live_from, user, since, expires)
    }))
}

#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics",
    responses((status = 200, description = "text exposition format", body = String, content_type = "text/plain")))]
async fn metrics_text() -> Response {
    let mut r = courier_pipeline::metrics::gather().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    r
}

#[utoipa::path(get, path = "/healthz",
    summary = "Each dependency: the log, the views, this process's processors (lag, stalled)",
    responses((status = 200, description = "ok, or degraded (views unreachable or a processor stalled)", body = Health),
        (status = 503, description = "the log is unreachable: no write can be accepted", body = Health)))]
async fn healthz(State(gw): State<App>) -> Response {
    crate::health::report(&gw).await
}

#[utoipa::path(get, path = "/openapi.json", summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object)))]
async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(crate::openapi::document())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The typed answers of the writes print exactly as the `json!` objects
    /// they replaced did (serde_json's maps sort their keys).
    #[test]
    fn the_writes_answers_are_the_bytes_they_were() {
        let text = |v: Value| v.to_string();
        assert_eq!(
            text(answer(&ConversationId {
                conversation_id: "c".into()
            })),
            text(json!({ "conversation_id": "c" }))
        );
        assert_eq!(
            text(answer(&MessageId {
                message_id: "m".into()
            })),
            text(json!({ "message_id": "m" }))
        );
        assert_eq!(
            text(answer(&MessageDeleted {
                deleted: true,
                message_id: "m".into()
            })),
            text(json!({ "message_id": "m", "deleted": true }))
        );
        assert_eq!(
            text(answer(&ReceiptRequest {
                conversation_id: "c".into(),
                message_id: "m".into(),
                status: "read".into()
            })),
            text(json!({ "conversation_id": "c", "message_id": "m", "status": "read" }))
        );
        assert_eq!(
            text(answer(&PresenceAnswer {
                status: "online".into(),
                user_id: "u".into()
            })),
            text(json!({ "user_id": "u", "status": "online" }))
        );
        assert_eq!(
            serde_json::to_string(&ErrorBody { error: "no".into() }).unwrap(),
            json!({ "error": "no" }).to_string()
        );
    }
}
