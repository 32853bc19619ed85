//! Keel's HTTP API: actix-web handlers, request/response types, problem+json
//! errors, authentication, idempotency, metrics, and the OpenAPI document
//! generated from the same route tree the server runs.

pub mod actor_cache;
pub mod auth;
pub mod body;
pub mod dto;
pub mod error;
pub mod hashing;
pub mod idempotency;
pub mod inbound;
pub mod metrics;
pub mod reply;
pub mod routes;
pub mod state;

pub use state::{ApiSettings, AppState};

use actix_web::web;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as OpenApiDoc, RefOr, Response};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::routes::{auth as a, incidents as i, ops, people as p, sla as s, webhooks as w};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Keel",
        description = "Keel is an open-source IT service management platform: incidents, users, \
            groups and more behind one REST API.\n\nAuthenticate with `POST /api/v1/auth/login` \
            and send the access token as `Authorization: Bearer <token>`; integrators use API \
            tokens the same way. Errors are `application/problem+json` with a stable `code`. \
            Lists are paged with an opaque `cursor`. Creating POSTs accept `Idempotency-Key`; \
            updates take `If-Match` with the ETag last read.",
        license(name = "AGPL-3.0-or-later", identifier = "AGPL-3.0-or-later"),
        version = "1"
    ),
    components(schemas(error::Problem)),
    tags(
        (name = "auth", description = "Login, tokens and one's own account"),
        (name = "api-tokens", description = "Long-lived tokens for integrations"),
        (name = "users", description = "User accounts (admins manage, agents read)"),
        (name = "groups", description = "Assignment groups and membership"),
        (name = "incidents", description = "Incident management: restore service fast"),
        (name = "sla", description = "Business calendars and SLA policies"),
        (name = "inbound", description = "Email into Keel"),
        (name = "webhooks", description = "Events out to other systems"),
        (name = "ops", description = "Health and metrics"),
    ),
    modifiers(&Conventions)
)]
struct ApiDoc;

/// Adds the bearer scheme and the error responses every operation shares.
struct Conventions;

fn problem(description: &str) -> RefOr<Response> {
    RefOr::T(
        utoipa::openapi::ResponseBuilder::new()
            .description(description)
            .content(
                error::PROBLEM_JSON,
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

impl Modify for Conventions {
    fn modify(&self, doc: &mut OpenApiDoc) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An access JWT from /api/v1/auth/login, or an API token (`keel_...`)",
                    ))
                    .build(),
            ),
        );
    }
}

/// serde reads an externally tagged enum variant (`{"date": ...}`,
/// `{"warning": 75}`) from an object with exactly that one key; utoipa's
/// `oneOf` branches for them do not say "no other keys". This says it.
fn close_tagged_variants(doc: &mut OpenApiDoc) {
    use utoipa::openapi::schema::{AdditionalProperties, Schema};
    let Some(components) = doc.components.as_mut() else {
        return;
    };
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::OneOf(one_of)) = schema else {
            continue;
        };
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(variant)) = item
                && variant.properties.len() == 1
                && variant.required.len() == 1
                && variant.properties.contains_key(&variant.required[0])
            {
                variant.additional_properties =
                    Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Adds security requirements and shared error responses to every
/// operation. Runs on the collected document, after the route tree is known.
fn finish(mut doc: OpenApiDoc) -> OpenApiDoc {
    use utoipa::openapi::security::SecurityRequirement;
    close_tagged_variants(&mut doc);
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            item.get.as_mut(),
            item.post.as_mut(),
            item.put.as_mut(),
            item.patch.as_mut(),
            item.delete.as_mut(),
        ];
        for op in ops.into_iter().flatten() {
            // `security(())` on an operation marks it public.
            let public = op.security.as_ref().is_some_and(|s| {
                s.len() == 1
                    && serde_json::to_value(&s[0]).is_ok_and(|v| v == serde_json::json!({}))
            });
            let r = &mut op.responses.responses;
            let mut add = |code: &str, desc: &str| {
                r.entry(code.to_owned()).or_insert_with(|| problem(desc));
            };
            if public {
                op.security = None;
            } else {
                op.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
                add(
                    "401",
                    "Not authenticated, or the token is invalid, expired or revoked",
                );
                add("403", "The caller's role or token scopes do not allow this");
            }
            if !path.ends_with("/healthz")
                && !path.ends_with("/metrics")
                && !path.ends_with("/readyz")
            {
                add(
                    "400",
                    "Malformed request: unreadable JSON, wrong types, unknown fields or bad query parameters",
                );
                add("500", "Unexpected error (the body says nothing internal)");
                add("503", "The database is unavailable; retry shortly");
            }
            if op.request_body.is_some() {
                add("413", "The body is too large");
                add("415", "The body is not in a supported media type");
                add(
                    "422",
                    "The request breaks a rule; `code` and `field` say which",
                );
            }
            if op.operation_id.as_deref().is_some_and(|id| {
                id.starts_with("create") || id.starts_with("add_") || id == "upload"
            }) {
                add(
                    "409",
                    "A request with this Idempotency-Key is still being processed, or the record conflicts",
                );
                add(
                    "422",
                    "The request breaks a rule, or the Idempotency-Key was used with another body",
                );
            }
            if path.contains("{id}") || path.contains("{user_id}") || path.contains("{event}") {
                add("404", "No such resource, or the caller may not see it");
            }
        }
    }
    doc
}

/// Registers every `/api/v1` route. Used by the server and by [`openapi`],
/// so the document always describes exactly what runs.
pub fn api_routes(cfg: &mut ServiceConfig) {
    // The router tries routes in this order, one pattern match each, and
    // incidents are what most requests are for: they go first. No two
    // patterns here match the same path, so the order changes nothing else.
    cfg.service(i::create)
        .service(i::list)
        .service(i::get)
        .service(i::update)
        .service(i::transition)
        .service(i::add_comment)
        .service(i::list_comments)
        .service(i::upload)
        .service(i::list_attachments)
        .service(i::download)
        .service(i::add_link)
        .service(i::list_links)
        .service(i::remove_link)
        .service(i::add_watcher)
        .service(i::list_watchers)
        .service(i::remove_watcher)
        .service(i::history)
        .service(i::receive_email)
        .service(a::login)
        .service(a::refresh)
        .service(a::logout)
        .service(a::me)
        .service(a::change_password)
        .service(a::list_notification_prefs)
        .service(a::set_notification_pref)
        .service(a::create_api_token)
        .service(a::list_api_tokens)
        .service(a::revoke_api_token)
        .service(p::create_user)
        .service(p::list_users)
        .service(p::get_user)
        .service(p::update_user)
        .service(p::create_group)
        .service(p::list_groups)
        .service(p::get_group)
        .service(p::update_group)
        .service(p::delete_group)
        .service(p::list_members)
        .service(p::add_member)
        .service(p::remove_member)
        .service(s::list_calendars)
        .service(s::create_calendar)
        .service(s::get_calendar)
        .service(s::update_calendar)
        .service(s::delete_calendar)
        .service(s::import_holidays)
        .service(s::list_policies)
        .service(s::create_policy)
        .service(s::get_policy)
        .service(s::update_policy)
        .service(s::delete_policy)
        .service(s::sla_report)
        .service(w::create_webhook)
        .service(w::list_webhooks)
        .service(w::get_webhook)
        .service(w::update_webhook)
        .service(w::delete_webhook)
        .service(w::list_deliveries)
        .service(w::redeliver);
}

/// Operator routes outside `/api/v1`.
pub fn ops_routes(cfg: &mut ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics);
}

/// The OpenAPI document, generated from the route tree.
pub fn openapi() -> OpenApiDoc {
    let (_, doc) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .service(utoipa_actix_web::scope("/api/v1").configure(api_routes))
        .configure(ops_routes)
        .split_for_parts();
    finish(doc)
}

/// The document as committed at `openapi/openapi.json`.
pub fn openapi_json() -> String {
    let mut s = openapi().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

/// Mounts the whole HTTP surface on an actix `ServiceConfig`: the API, the
/// operator routes, the served OpenAPI document and the offline API
/// reference at `/docs`.
pub fn configure(cfg: &mut web::ServiceConfig, state: AppState) {
    let max_json = state.settings.max_json_bytes;
    // Raw bodies (inbound mail, iCalendar files) up to the inbound limit.
    let max_payload = state.settings.inbound_max_bytes + 64 * 1024;
    cfg.app_data(web::Data::new(state))
        .app_data(
            web::JsonConfig::default()
                .limit(max_json)
                .error_handler(error::json_error),
        )
        .app_data(web::PayloadConfig::new(max_payload))
        .app_data(web::QueryConfig::default().error_handler(error::query_error))
        .app_data(web::PathConfig::default().error_handler(error::path_error));
    // The API comes first: the router tries patterns in order, and the
    // reference's `/docs/{_:.*}` is a regular expression, run in vain for
    // every API request when it came first. The served document is in the
    // API's scope, which would otherwise answer 404 for it.
    let doc = web::Data::new(openapi());
    cfg.service(
        web::scope("/api/v1")
            .service(
                web::resource("/openapi.json")
                    .guard(actix_web::guard::Get())
                    .app_data(doc)
                    .to(serve_openapi),
            )
            .configure(|cfg| api_routes(&mut ServiceConfig::new(cfg))),
    )
    .service(
        utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
            .config(utoipa_swagger_ui::Config::from("/api/v1/openapi.json")),
    )
    .service(web::redirect("/docs", "/docs/"));
    ServiceConfig::new(cfg).configure(ops_routes);
}

/// `GET /api/v1/openapi.json`: the document [`openapi`] generates.
async fn serve_openapi(doc: web::Data<OpenApiDoc>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(doc.as_ref())
}
