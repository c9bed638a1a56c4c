//! The web client `courier up` serves at `/`: static assets embedded in the
//! binary (no CDN, no build step), served beside the API but not part of it,
//! so they are not in `routes::table()` nor in `/openapi.json`.
//!
//! Beside them, what the app needs to sign in: `/app-config.json` tells it
//! whether development sign-in is on (`courier up --dev`), and `POST
//! /dev/token` then mints a token for a user id with the gateway's own key,
//! as `courier token USER` would. Without `--dev` that endpoint answers the
//! 404 of any unknown path, and the app asks for a pasted token instead.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, Body};
use crate::{Gateway, validate};

const INDEX: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// Scripts and styles come only from this origin (no inline script can run, so
/// a message rendered by mistake as markup cannot execute). `ws: wss:` for the
/// stream, since `'self'` does not cover WebSocket URLs in every browser.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The routes of the web client.
pub fn routes() -> axum::Router<Arc<Gateway>> {
    axum::Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/app-config.json", get(app_config))
        .route(
            "/dev/token",
            // Other methods get the 404 of an unknown path too, not a 405
            // that would tell the endpoint exists.
            post(dev_token).fallback(|| async { no_such_endpoint() }),
        )
}

/// What the app cannot know from its own assets: whether it may offer the
/// name box of development sign-in.
async fn app_config(State(gw): State<Arc<Gateway>>) -> Response {
    let mut r = Json(json!({ "dev_sign_in": gw.settings.dev_sign_in })).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `POST /dev/token` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSignIn {
    user_id: String,
}

/// Anyone who can reach a `--dev` gateway can be anyone: that is why `courier
/// up` allows `--dev` on loopback addresses only.
async fn dev_token(
    State(gw): State<Arc<Gateway>>,
    Body(req): Body<DevSignIn>,
) -> Result<Response, ApiError> {
    if !gw.settings.dev_sign_in {
        // Indistinguishable from a path that does not exist.
        return Err(no_such_endpoint());
    }
    validate::id("user_id", &req.user_id)?;
    let token = gw
        .keys
        .mint(&req.user_id, gw.settings.token_ttl_secs)
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(Json(json!({ "token": token, "user_id": req.user_id })).into_response())
}

/// An embedded asset; `no-cache` so a browser revalidates after an upgrade of
/// the binary instead of running an old app against a new API.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

/// The router's own answer to an unknown path.
fn no_such_endpoint() -> ApiError {
    ApiError::not_found("no such endpoint (see /openapi.json)")
}
