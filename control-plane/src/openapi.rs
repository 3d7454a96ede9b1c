//! The OpenAPI document of the control API and the Swagger UI that renders it.
//!
//! Every handler carries a `#[utoipa::path]` annotation and is listed in [`ApiDoc`]; schemas
//! referenced from the paths are collected automatically. The document is served at
//! `/api/v1/openapi.json`, Swagger UI at `/docs`, and a copy is committed at
//! `openapi/control-plane.json`. The `openapi_drift` test fails when the committed copy differs
//! from what the code generates; `UPDATE_OPENAPI=1 cargo test -p control-plane --test
//! openapi_drift` rewrites it.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::http;

/// Where the spec is served.
pub const SPEC_PATH: &str = "/api/v1/openapi.json";
/// Where Swagger UI is served.
pub const DOCS_PATH: &str = "/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard control API",
        description = "Manage organizations, API keys, providers, the model catalog, model deployments, routes and usage of the Switchyard LLM gateway. \
                       Errors are `{\"error\": {\"code\": \"…\", \"message\": \"…\"}}`; every response carries `x-switchyard-request-id`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        http::health::healthz,
        http::health::readyz,
        http::meta::meta,
        http::auth::signup,
        http::auth::login,
        http::auth::refresh,
        http::auth::logout,
        http::auth::me,
        http::auth::switch_organization,
        http::members::list_members,
        http::members::add_member,
        http::members::remove_member,
        http::members::update_member,
        http::invitations::create_invitation,
        http::invitations::list_invitations,
        http::invitations::revoke_invitation,
        http::invitations::accept_invitation,
        http::organization::get_organization,
        http::organization::update_organization,
        http::teams::create_team,
        http::teams::list_teams,
        http::teams::get_team,
        http::teams::update_team,
        http::teams::delete_team,
        http::team_members::list_team_members,
        http::team_members::add_team_member,
        http::team_members::remove_team_member,
        http::keys::create_key,
        http::keys::list_keys,
        http::keys::get_key,
        http::keys::revoke_key,
        http::keys::update_key,
        http::keys::rotate_key,
        http::providers::create_provider,
        http::providers::list_providers,
        http::providers::get_provider,
        http::providers::delete_provider,
        http::models::create_model,
        http::models::list_models,
        http::models::get_model,
        http::models::delete_model,
        http::routes::create_route,
        http::routes::list_routes,
        http::routes::get_route,
        http::routes::update_route,
        http::routes::delete_route,
        http::catalog::list_catalog,
        http::catalog::get_entry,
        http::catalog::create_entry,
        http::catalog::put_entry,
        http::catalog::delete_entry,
        http::usage::list_usage,
        http::analytics::timeseries,
        http::analytics::breakdown,
        http::usage::export_usage,
        http::requests::list_requests,
        http::requests::get_request,
        http::budgets::create_budget,
        http::budgets::list_budgets,
        http::budgets::get_budget,
        http::budgets::update_budget,
        http::budgets::delete_budget,
        http::guardrails::create_guardrail,
        http::guardrails::list_guardrails,
        http::guardrails::get_guardrail,
        http::guardrails::update_guardrail,
        http::guardrails::delete_guardrail,
        http::alerts::list_alerts,
        http::alerts::rotate_webhook_secret,
        http::audit::list_audit,
        http::billing::get_billing,
        http::billing::checkout,
        http::billing::portal,
        http::billing::webhook,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Sign up, sign in, sessions"),
        (name = "members", description = "Who belongs to the organization, and invitations to join it"),
        (name = "organization", description = "The organization's settings (its region policy)"),
        (name = "teams", description = "Groups of API keys and of members, with rate limits"),
        (name = "keys", description = "Virtual API keys for the gateway"),
        (name = "providers", description = "Provider credentials (API keys stored sealed)"),
        (name = "models", description = "Model deployments and their prices"),
        (name = "routes", description = "Names clients send as `model` that choose among deployments: strategy, fallback, retries, timeouts, region pins"),
        (name = "catalog", description = "The model catalog (built-in, merged with the organization's own entries)"),
        (name = "usage", description = "Requests, tokens and cost"),
        (name = "requests", description = "The request log: search requests, and one request with every upstream attempt"),
        (name = "analytics", description = "Usage over time and by model, provider, deployment, route, team, key, region or tag, from the usage rollups"),
        (name = "budgets", description = "Spending caps of the organization, a team or a key per period, enforced by the gateway"),
        (name = "guardrails", description = "Prompt policies of the organization, a team, a key or a route: PII redaction or blocking, blocked terms, prompt token caps, allowed tools; enforced by the gateway"),
        (name = "alerts", description = "Budget thresholds crossed, and their signed webhook deliveries"),
        (name = "health", description = "Liveness and readiness"),
        (name = "meta", description = "Deployment facts for clients such as the web console (public)"),
        (name = "audit", description = "Who changed what, when (owners and admins)"),
        (name = "billing", description = "Plan, Stripe subscription, metered usage, invoices and the Stripe webhook"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme (access tokens from `/auth/login`) the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        scheme.description =
            Some("Access token from POST /api/v1/auth/login or /auth/signup".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The document as committed: pretty-printed JSON with a trailing newline.
pub fn spec_json() -> String {
    let mut json = ApiDoc::openapi().to_pretty_json().unwrap_or_default();
    json.push('\n');
    json
}

/// Swagger UI at `/docs`, fetching the spec from `/api/v1/openapi.json` (served by the same router).
pub fn swagger_ui() -> SwaggerUi {
    SwaggerUi::new(DOCS_PATH).url(SPEC_PATH, ApiDoc::openapi())
}
