//! The REST API's OpenAPI 3.1 document, generated from the code, and its docs page.
//!
//! Every route is registered through `utoipa_axum::routes!` from its handler's
//! `#[utoipa::path]` (see [`super::token_routes`]), so the document's paths and methods are the
//! router's. Request and answer bodies are the handlers' own types (`ToSchema`), the error
//! shape is [`ErrorBody`]. [`document`] adds what every operation shares: the bearer security
//! scheme (every `/api/v1` operation but this document), and the error answers that any
//! operation may give (400 for parameters or bodies that do not parse, 401, 403, 413, 415, 429, 500),
//! as references to `components.responses`.
//!
//! Served at `GET /api/v1/openapi.json` without a token (it is the API's shape, no data), and
//! browsable at `/api/v1/docs` (Swagger UI; its assets are inside the binary, so the page works
//! on an origin without internet access).

use std::sync::LazyLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, Header, HeaderBuilder, ObjectBuilder, Ref, RefOr, ResponseBuilder, Type,
};
use utoipa::OpenApi as _;

use super::{AppState, ErrorBody};

/// The answer of `GET /pushes` (the handler writes it with `json!`; this type describes it).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub(super) struct PushList {
    /// Newest first.
    pushes: Vec<crate::db::PushInfo>,
}

/// The name of the bearer security scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// The path the document is served at, and the docs page reads it from.
pub(crate) const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// The docs page.
pub(crate) const DOCS_PATH: &str = "/api/v1/docs";

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "sitecast origin REST API",
        description = "Admin API of a sitecast origin: artifacts, images, sites and their nodes, \
users and grants, API tokens and the audit log, pushes to sites. Every `/api/v1` operation but \
`GET /api/v1/openapi.json` needs `Authorization: Bearer <token>` of a role allowed the call \
(admin, operator, viewer). JSON in and out; every error is `{\"error\":{\"code\",\"message\"}}` \
(`ErrorBody`) with the HTTP status, including 404 for unknown routes and 405 (with `Allow`) for \
a method a route does not take. The operator's reference is docs/rest-api.md.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "artifacts", description = "Files in the catalog: streamed upload, list, show, delete."),
        (name = "sites", description = "Sites, their nodes, join tokens and HTTPS names."),
        (name = "users", description = "Users who log in at the edges (HTTP, FTP, SFTP)."),
        (name = "grants", description = "Who may read and list which paths at which sites."),
        (name = "tokens", description = "API tokens and the audit log (admin only)."),
        (name = "registry-grants", description = "Who may pull from or push to the origin's OCI registry."),
        (name = "pushes", description = "Content sent to sites: create, follow, pause, resume, cancel."),
        (name = "events", description = "Server-Sent Events of push progress."),
        (name = "images", description = "Imports from upstream OCI registries."),
        (name = "meta", description = "Health, metrics and this document; no token needed."),
    ),
    components(schemas(ErrorBody)),
)]
struct ApiDoc;

/// The document, built once.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
});

/// The OpenAPI document of the router [`super::router`] builds.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi().merge_from(super::documented_routes().into_openapi());
    // axum's catch-all `{*path}` is an ordinary `{path}` template in OpenAPI (its values may
    // contain `/`, as the parameter's description says).
    let paths = std::mem::take(&mut doc.paths.paths);
    doc.paths.paths = paths
        .into_iter()
        .map(|(p, item)| (p.replace("{*", "{"), item))
        .collect();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API token: the admin token from `<data_dir>/admin.token`, or one made \
                     with `POST /api/v1/tokens`.",
                ))
                .build(),
        ),
    );
    for (name, response) in shared_responses() {
        components
            .responses
            .insert(name.to_owned(), response.into());
    }
    for (path, item) in &mut doc.paths.paths {
        for op in operations(item) {
            add_shared(path, op);
        }
    }
    doc
}

/// The document as served (pretty JSON).
pub(crate) fn document_json() -> &'static str {
    &DOCUMENT
}

/// Every operation of a path item.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
        item.head.as_mut(),
        item.options.as_mut(),
        item.trace.as_mut(),
    ]
    .into_iter()
    .flatten()
}

/// Security and the error answers any operation of `path` may give, where the handler's own
/// attribute did not already say.
fn add_shared(path: &str, op: &mut Operation) {
    let secured = path.starts_with("/api/v1/") && op.security.is_none();
    if secured {
        op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    }
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let json_body = op.request_body.as_ref().is_some_and(|b| match b {
        RefOr::T(b) => b.content.keys().any(|k| k == "application/json"),
        RefOr::Ref(_) => false,
    });
    let mut wanted = Vec::new();
    if has_params || op.request_body.is_some() {
        wanted.push(("400", "BadRequest"));
    }
    if secured {
        wanted.extend([("401", "Unauthorized"), ("403", "Forbidden")]);
    }
    if json_body {
        wanted.extend([("413", "PayloadTooLarge"), ("415", "UnsupportedMediaType")]);
    }
    if secured || path == "/metrics" {
        wanted.push(("500", "Internal"));
    }
    // Rate limits are decided before anything else, on any path a rule matches.
    wanted.push(("429", "TooManyRequests"));
    for (status, name) in wanted {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
}

/// `components.responses`: the error answers operations share.
fn shared_responses() -> Vec<(&'static str, utoipa::openapi::Response)> {
    let error = |description: &str| {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    };
    let www_authenticate: Header = HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some("`Bearer realm=\"sitecast\"`"))
        .build();
    vec![
        (
            "BadRequest",
            error(
                "`bad_request` or `bad_path`: a path parameter, query string or body that does \
                 not decode or parse, a value out of range, conflicting fields; the message names \
                 what was refused",
            )
            .build(),
        ),
        (
            "Unauthorized",
            error("`unauthorized`: no token, an unknown one, or one expired or revoked")
                .header("WWW-Authenticate", www_authenticate)
                .build(),
        ),
        (
            "Forbidden",
            error("`forbidden`: the token's role may not make this call (the message names the role and what it may do)")
                .build(),
        ),
        (
            "PayloadTooLarge",
            error("`payload_too_large`: the JSON body exceeds `max_json_body`").build(),
        ),
        (
            "UnsupportedMediaType",
            error("`unsupported_media_type`: a `Content-Type` other than JSON (none is read as JSON)")
                .build(),
        ),
        (
            "Internal",
            error("`internal`: the origin failed; details are in its log").build(),
        ),
        (
            "TooManyRequests",
            error(
                "`too_many_requests`: a rate limit of the origin's config (`[[rate_limits]]`) \
                 refused the request before its token was checked; the message names the rule",
            )
            .header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Integer)))
                    .description(Some("Seconds until the rule lets a request through"))
                    .build(),
            )
            .build(),
        ),
    ]
}

/// `GET /api/v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1)", body = serde_json::Value))
)]
pub(super) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
        .into_response()
}

/// The docs page (Swagger UI) at [`DOCS_PATH`], reading the document from [`DOCUMENT_PATH`].
pub(super) fn docs_page() -> Router<AppState> {
    utoipa_swagger_ui::SwaggerUi::new(DOCS_PATH)
        .config(utoipa_swagger_ui::Config::new([DOCUMENT_PATH]))
        .into()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Routes are registered only through `routes!`, which documents them: any other way of
    /// adding one to the API's routers (`.route(`, `.route_service(`, `.nest_service(`) would
    /// leave it out of the document.
    #[test]
    fn every_route_is_registered_with_its_documentation() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split("//").next().unwrap_or("");
                // Spelled in pieces so that this line is not a match itself.
                for bypass in
                    [".route", ".route_service", ".nest_service"].map(|b| b.to_owned() + "(")
                {
                    assert!(
                        !code.contains(&bypass),
                        "{}:{}: `{bypass}` adds a route the OpenAPI document does not show; \
                         annotate the handler with #[utoipa::path] and register it with routes!",
                        path.display(),
                        n + 1
                    );
                }
            }
        }
        assert!(files > 10, "read {files} files of {dir}");
    }

    #[test]
    fn the_document_covers_every_route_with_unique_operation_ids() {
        let doc = document();
        let mut ids = BTreeSet::new();
        let mut ops = 0;
        for (path, item) in doc.paths.paths.clone().iter_mut() {
            assert!(!path.contains('*'), "{path}");
            for op in operations(item) {
                ops += 1;
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "operation id {id:?} twice");
                assert!(op.tags.as_ref().is_some_and(|t| !t.is_empty()), "{id}");
                let public = ["/healthz", "/metrics", DOCUMENT_PATH].contains(&path.as_str());
                let security = op.security.clone().unwrap_or_default();
                if public {
                    assert!(
                        security
                            .iter()
                            .all(|s| s == &SecurityRequirement::default()),
                        "{path} needs no token"
                    );
                } else {
                    assert!(
                        op.responses.responses.contains_key("401"),
                        "{path} {id}: no 401"
                    );
                    assert_eq!(
                        serde_json::to_value(&security).unwrap(),
                        serde_json::json!([{BEARER: []}]),
                        "{path} {id}"
                    );
                }
                // Every `{param}` of the template is declared as a path parameter.
                let declared: BTreeSet<String> = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p)
                            if p.parameter_in == utoipa::openapi::path::ParameterIn::Path =>
                        {
                            Some(p.name.clone())
                        }
                        _ => None,
                    })
                    .collect();
                let in_template: BTreeSet<String> = path
                    .split('{')
                    .skip(1)
                    .filter_map(|s| s.split_once('}').map(|(n, _)| n.to_owned()))
                    .collect();
                assert_eq!(declared, in_template, "{path} {id}");
            }
        }
        // 30 paths under /api/v1 with a token, the document, /healthz and /metrics.
        assert_eq!(doc.paths.paths.len(), 33, "{:?}", doc.paths.paths.keys());
        assert_eq!(ops, 44);
    }

    #[test]
    fn the_error_shape_is_described_as_it_is_written() {
        let doc = serde_json::to_value(document()).unwrap();
        let schema = &doc["components"]["schemas"]["ErrorBody"];
        assert_eq!(schema["required"], serde_json::json!(["error"]), "{schema}");
        let detail = &doc["components"]["schemas"]["ErrorDetail"];
        assert_eq!(
            detail["required"],
            serde_json::json!(["code", "message"]),
            "{detail}"
        );
        let codes: Vec<&str> = detail["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        for (code, _) in super::super::error::ERROR_CODES {
            assert!(codes.contains(&code), "{code} in {codes:?}");
        }
        let written = serde_json::to_value(ErrorBody {
            error: super::super::error::ErrorDetail {
                code: "not_found",
                message: "gone".into(),
            },
        })
        .unwrap();
        assert_eq!(
            written,
            serde_json::json!({"error": {"code": "not_found", "message": "gone"}})
        );
    }
}
