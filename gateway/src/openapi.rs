//! The OpenAPI 3 document served at `/openapi.json`, written by hand next to the
//! routes; a test keeps its paths and methods equal to the router's table.

use serde_json::{Value, json};

fn error_responses(extra: &[(&str, &str)]) -> Value {
    let mut r = serde_json::Map::new();
    for (code, why) in [
        ("401", "missing, malformed, expired or foreign token"),
        ("429", "rate limit (per user or per IP); see Retry-After"),
    ]
    .iter()
    .chain(extra)
    {
        r.insert(
            code.to_string(),
            json!({ "description": why, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
        );
    }
    Value::Object(r)
}

fn op(summary: &str, body: Option<&str>, ok: (&str, &str), errors: &[(&str, &str)]) -> Value {
    let mut responses = error_responses(errors);
    responses[ok.0] = json!({ "description": "success", "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{}", ok.1) } } } });
    let mut o = json!({
        "summary": summary,
        "security": [{ "bearer": [] }],
        "responses": responses,
    });
    if let Some(b) = body {
        o["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{b}") } } } });
    }
    o
}

const WRITE_ERRORS: &[(&str, &str)] = &[
    ("400", "malformed JSON"),
    (
        "404",
        "no conversation (or message) of yours by that id: one answer whether it does not exist or you may not see it",
    ),
    ("409", "already exists / message id already used"),
    ("413", "text too large"),
    (
        "422",
        "unknown or missing fields, invalid values, a rule of the view would reject it",
    ),
    ("503", "the log is unavailable; nothing was published"),
];

fn idempotency_header() -> Value {
    json!({ "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "Retries with the same key publish once and answer the same.",
            "schema": { "type": "string", "maxLength": 255 } })
}

fn with_params(mut o: Value, params: Value) -> Value {
    o["parameters"] = params;
    o
}

/// The document.
pub fn document() -> Value {
    let id = |name: &str, place: &str| json!({ "name": name, "in": place, "required": true, "schema": { "type": "string" } });
    let idem = idempotency_header();
    json!({
        "openapi": "3.0.3",
        "info": { "title": "courier gateway", "version": "1" },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer", "bearerFormat": "JWT" } },
            "schemas": {
                "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
                "CreateConversation": { "type": "object", "additionalProperties": false, "required": ["kind", "member_ids"], "properties": {
                    "kind": { "type": "string", "enum": ["direct", "group"] },
                    "member_ids": { "type": "array", "items": { "type": "string" }, "description": "The creator is added if absent." },
                    "title": { "type": "string" } } },
                "ConversationCreated": { "type": "object", "properties": { "conversation_id": { "type": "string" } } },
                "MembersChange": { "type": "object", "additionalProperties": false, "description": "Exactly one of add, remove.", "properties": {
                    "add": { "type": "array", "items": { "type": "string" } },
                    "remove": { "type": "array", "items": { "type": "string" } } } },
                "SendMessage": { "type": "object", "additionalProperties": false, "required": ["conversation_id", "text"], "properties": {
                    "conversation_id": { "type": "string" }, "text": { "type": "string" },
                    "message_id": { "type": "string", "description": "Client-chosen id; a retry with it publishes once." } } },
                "MessageId": { "type": "object", "properties": { "message_id": { "type": "string" } } },
                "EditMessage": { "type": "object", "additionalProperties": false, "required": ["conversation_id", "text"], "properties": {
                    "conversation_id": { "type": "string" }, "text": { "type": "string" } } },
                "Receipt": { "type": "object", "additionalProperties": false, "required": ["conversation_id", "message_id", "status"], "properties": {
                    "conversation_id": { "type": "string" }, "message_id": { "type": "string" },
                    "status": { "type": "string", "enum": ["delivered", "read"] } } },
                "Presence": { "type": "object", "additionalProperties": false, "required": ["status"], "properties": {
                    "status": { "type": "string", "enum": ["online", "offline"] } } },
                "PresenceAnswer": { "type": "object", "properties": { "user_id": { "type": "string" }, "status": { "type": "string" } } },
                "InboxRow": { "type": "object", "properties": {
                    "conversation_id": { "type": "string" }, "last_message_id": { "type": "string", "nullable": true },
                    "last_message_preview": { "type": "string", "nullable": true }, "last_message_deleted": { "type": "boolean", "nullable": true },
                    "last_activity_ms": { "type": "integer" }, "unread_count": { "type": "integer" } } },
                "Inbox": { "type": "array", "items": { "$ref": "#/components/schemas/InboxRow" } },
                "Message": { "type": "object", "properties": {
                    "message_id": { "type": "string" }, "sender_id": { "type": "string" }, "text": { "type": "string", "nullable": true },
                    "ciphertext": { "type": "string" }, "media": { "type": "object" },
                    "sent_at_ms": { "type": "integer" }, "edited": { "type": "boolean" }, "deleted": { "type": "boolean" },
                    "delivered_to": { "type": "array", "items": { "type": "string" } },
                    "read_by": { "type": "array", "items": { "type": "string" } } } },
                "Messages": { "type": "array", "items": { "$ref": "#/components/schemas/Message" } },
                "SearchHits": { "type": "array", "items": { "type": "object" }, "description": "Exactly what `courier search --json` prints." },
                "Event": { "type": "object", "description": "One event in canonical JSON (docs/DESIGN.md, Events)." },
                "Health": { "type": "object", "properties": {
                    "status": { "type": "string", "enum": ["ok", "degraded", "unavailable"] },
                    "log": { "$ref": "#/components/schemas/Dependency" },
                    "views": { "$ref": "#/components/schemas/Dependency" },
                    "processors": { "type": "object", "additionalProperties": { "type": "object", "properties": {
                        "lag": { "type": "integer" }, "stalled": { "type": "boolean" } } } } } },
                "Dependency": { "type": "object", "required": ["ok"], "properties": {
                    "ok": { "type": "boolean" }, "backend": { "type": "string" }, "error": { "type": "string" } } }
            }
        },
        "paths": {
            "/v1/conversations": { "post": with_params(op("Create a conversation", Some("CreateConversation"), ("201", "ConversationCreated"), WRITE_ERRORS), json!([idem])) },
            "/v1/conversations/{id}/members": { "post": with_params(op("Add or remove members", Some("MembersChange"), ("200", "ConversationCreated"), WRITE_ERRORS), json!([id("id", "path"), idem])) },
            "/v1/conversations/{id}/messages": { "get": with_params(
                op("Messages visible to you, oldest first (exactly `courier messages ID --as YOU --json`)", None, ("200", "Messages"), &[("404", "not a conversation of yours"), ("422", "bad before/limit")]),
                json!([id("id", "path"),
                       { "name": "before", "in": "query", "required": false, "schema": { "type": "string" }, "description": "Only messages older than this message id." },
                       { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 }, "description": "Only the newest this many." }])) },
            "/v1/messages": { "post": with_params(op("Send a message", Some("SendMessage"), ("201", "MessageId"), WRITE_ERRORS), json!([idem])) },
            "/v1/messages/{id}": {
                "patch": with_params(op("Edit your message", Some("EditMessage"), ("200", "MessageId"), WRITE_ERRORS), json!([id("id", "path"), idem])),
                "delete": with_params(op("Delete your message for everyone", None, ("200", "MessageId"), WRITE_ERRORS), json!([id("id", "path"), id("conversation_id", "query"), idem]))
            },
            "/v1/receipts": { "post": with_params(op("Delivered/read up to a message", Some("Receipt"), ("200", "Receipt"), WRITE_ERRORS), json!([idem])) },
            "/v1/presence": { "put": with_params(op("Set your presence", Some("Presence"), ("200", "PresenceAnswer"), WRITE_ERRORS), json!([idem])) },
            "/v1/inbox": { "get": op("Your inbox (exactly `courier inbox YOU --json`)", None, ("200", "Inbox"), &[("503", "views unavailable")]) },
            "/v1/search": { "get": with_params(
                op("Search messages visible to you (exactly `courier search --json`)", None, ("200", "SearchHits"), &[("400", "malformed query"), ("422", "empty q or bad limit"), ("503", "search view not available")]),
                json!([{ "name": "q", "in": "query", "required": true, "schema": { "type": "string" } },
                       { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000, "default": 20 } }])) },
            "/v1/stream": { "get": with_params(
                op("WebSocket: your live events, one canonical JSON event per text frame. A client too slow to keep up gets {\"type\":\"error\"} and close code 1008.", None, ("101", "Event"), &[]),
                json!([{ "name": "access_token", "in": "query", "required": false, "schema": { "type": "string" }, "description": "The token, for clients that cannot set headers." }])) },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format", "content": { "text/plain": { "schema": { "type": "string" } } } } } } },
            "/healthz": { "get": { "summary": "Each dependency: the log, the views, this process's processors (lag, stalled)", "responses": {
                "200": { "description": "ok, or degraded (views unreachable or a processor stalled)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } },
                "503": { "description": "the log is unreachable: no write can be accepted", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Health" } } } } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3", "content": { "application/json": { "schema": { "type": "object" } } } } } } }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    #[test]
    fn every_served_route_is_documented_and_every_documented_route_is_served() {
        let served: BTreeSet<(String, String)> = crate::routes::table()
            .into_iter()
            .map(|(path, method, _)| (path.to_string(), method.as_str().to_lowercase()))
            .collect();
        let doc = super::document();
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert((path.clone(), method.clone()));
            }
        }
        assert_eq!(served, documented);
    }

    #[test]
    fn every_schema_reference_resolves() {
        let doc = super::document();
        let text = doc.to_string();
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = &r[..r.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "dangling $ref {name}"
            );
        }
    }
}
