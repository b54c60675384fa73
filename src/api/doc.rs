//! The OpenAPI document served at `GET /v1/openapi.json`. Its paths come from the router
//! itself (`utoipa-axum` registers a handler and its description together), its schemas from
//! the types the handlers answer with; only the title, the security scheme and the document's
//! settings are written here.

use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::{Modify, OpenApi as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "quorate",
        description = "The REST API of one quorate node (docs/rest-api.md). Reads are open; \
            mutating calls need the bearer token of the fleet file's [api] token_file. \
            Every refusal is JSON {\"error\": \"...\"} with a fitting status code.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Bearer),
    tags(
        (name = "read", description = "Open to monitoring; no token needed"),
        (name = "operator", description = "Mutating calls: the [api] token_file bearer token"),
    )
)]
struct Base;

/// The `bearer` security scheme the operator calls name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The first line of the fleet file's [api] token_file (operator calls), \
                         or of [api] read_token_file (step output of failover runs)",
                    ))
                    .build(),
            ),
        );
    }
}

/// The whole document: the base above with every route the router registers.
pub fn openapi() -> OpenApi {
    let (_, paths) = super::routes(super::Limits::default()).split_for_parts();
    let mut doc = Base::openapi();
    doc.merge(paths);
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc
}

/// The document as served, built once.
pub fn openapi_json() -> String {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| openapi().to_pretty_json().expect("the document serializes"))
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::snapshot::NodeSnapshot;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use serde_json::Value;
    use std::sync::Arc;
    use tower::ServiceExt;

    fn document() -> Value {
        serde_json::from_str(&openapi_json()).expect("the document is JSON")
    }

    /// Every `"$ref"` in `v`.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    /// (METHOD, path) of every operation the document lists.
    fn operations(doc: &Value) -> Vec<(String, String)> {
        let mut ops = vec![];
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
        ops
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_reference_resolved() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
        let schemas = doc["components"]["schemas"].as_object().expect("schemas");
        let mut all = vec![];
        refs(&doc, &mut all);
        assert!(all.len() > 20, "{all:?}");
        for r in all {
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} points outside the schemas"));
            assert!(schemas.contains_key(name), "{r} does not resolve");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        for (method, path) in operations(&doc) {
            let op = &doc["paths"][&path][method.to_lowercase()];
            let codes: Vec<&String> = op["responses"].as_object().unwrap().keys().collect();
            assert!(
                codes.iter().any(|c| c.starts_with('2')),
                "{method} {path} documents no success: {codes:?}"
            );
            // Every mutating call needs the operator token, and says what refuses it.
            if method != "GET" {
                assert_eq!(
                    op["security"],
                    serde_json::json!([{ "bearer": [] }]),
                    "{path}"
                );
                for code in ["401", "403", "404"] {
                    assert!(
                        op["responses"].get(code).is_some(),
                        "{method} {path} {code}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn the_document_lists_exactly_the_routes_the_router_serves() {
        let doc = document();
        let ops = operations(&doc);
        let expected = [
            ("GET", "/"),
            ("GET", "/page/app.js"),
            ("GET", "/page/style.css"),
            ("GET", "/v1/events"),
            ("GET", "/healthz"),
            ("GET", "/metrics"),
            ("GET", "/v1/openapi.json"),
            ("GET", "/v1/status"),
            ("GET", "/v1/sites"),
            ("GET", "/v1/sites/{id}"),
            ("GET", "/v1/verdicts"),
            ("GET", "/v1/failovers"),
            ("POST", "/v1/failovers"),
            ("GET", "/v1/failovers/{id}"),
            ("POST", "/v1/failbacks"),
            ("POST", "/v1/drills"),
            ("POST", "/v1/sites/{id}/maintenance"),
            ("DELETE", "/v1/sites/{id}/maintenance"),
            ("GET", "/v1/alarms"),
            ("POST", "/v1/alarms"),
            ("DELETE", "/v1/alarms/{site}/{source}"),
            ("POST", "/v1/alarms/hooks/{name}"),
        ];
        for (m, p) in expected {
            assert!(
                ops.contains(&(m.to_string(), p.to_string())),
                "{m} {p} is not documented"
            );
        }
        assert_eq!(ops.len(), expected.len(), "{ops:?}");

        // Each documented operation reaches a handler, not the router's fallbacks.
        let (_tx, rx) = tokio::sync::watch::channel(Arc::new(NodeSnapshot::default()));
        let (cmd_tx, _cmd_rx) = tokio::sync::mpsc::channel(1);
        let app = crate::api::router(rx, cmd_tx);
        for (method, path) in &ops {
            let uri = ["{id}", "{site}", "{source}", "{name}"]
                .iter()
                .fold(path.clone(), |p, param| p.replace(param, "x"));
            let req = Request::builder()
                .method(Method::from_bytes(method.as_bytes()).unwrap())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let resp = app.clone().oneshot(req).await.unwrap();
            let code = resp.status();
            // An event stream lasts while the node publishes: its answer is the stream's start.
            let streams = resp
                .headers()
                .get("content-type")
                .is_some_and(|t| t.as_bytes().starts_with(b"text/event-stream"));
            let body = if streams {
                Default::default()
            } else {
                axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap()
            };
            let text = String::from_utf8_lossy(&body);
            assert_ne!(
                code,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {uri}: {text}"
            );
            assert!(
                !text.contains("no such endpoint"),
                "{method} {uri} is documented but not routed: {text}"
            );
        }

        // Routes added to the router without `routes!` would be served but not documented.
        let source = include_str!("mod.rs");
        for (i, _) in source.match_indices(".route(\"") {
            let rest = &source[i + ".route(\"".len()..];
            let path = &rest[..rest.find('"').unwrap()];
            assert!(
                doc["paths"].get(path).is_some(),
                "{path} is routed with .route() in src/api/mod.rs but missing from the \
                 OpenAPI document: register it with .routes(routes!(handler)) and describe the \
                 handler with #[utoipa::path]"
            );
        }
    }
}
