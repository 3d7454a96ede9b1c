//! Routes: `POST /routes`, `GET /routes`, `GET /routes/{id}`, `PATCH /routes/{id}`,
//! `DELETE /routes/{id}`.
//!
//! A route is a name clients send as `model` that resolves to a choice among the
//! organization's model deployments (its `candidates`, each a deployment `model_id`). A route
//! shadows deployments of the same name. The `strategy` picks the first candidate of each
//! request (`priority`, `weighted`, `cheapest`, `fastest`, `reliable`, `least_busy`); the
//! other candidates form the fallback order. Optional settings override the gateway's
//! defaults: `allowed_regions` (a region policy, intersected with the organization's and the
//! key's team's), `max_attempts`, `retry_on` (error classes that move on to the next
//! attempt), `timeouts` (`connect_ms`, `first_token_ms`, `total_ms`), `hedge_after_ms` and
//! `sticky`; and `cache`, the route's response-cache setting (see `super::cache`; the least
//! specific level: a key's or its team's setting wins), published as `RouteRecord.cache`.
//!
//! Every write is validated as a whole, and a refusal names the field
//! (`candidates[1].model_id`):
//! - `name`: like a model name (trimmed, 1 to 200 characters, no control characters), unique
//!   within the organization (409);
//! - `candidates`: 1 to [`MAX_CANDIDATES`] deployments of this organization (an unknown id and
//!   another organization's id get the same answer), each listed once, all of one mode (chat or
//!   embedding), each in the route's `allowed_regions` when it has one;
//! - `weight` (0 to [`MAX_WEIGHT`], default 1) only with `weighted`, where the weights must not
//!   all be 0; `priority` (lower first, default the list order; ±[`MAX_PRIORITY`]) only with
//!   `priority`; `sticky` only with `weighted`. A setting the strategy does not read is refused
//!   rather than stored without effect;
//! - `max_attempts` 1 to [`MAX_ATTEMPTS`]; each timeout and `hedge_after_ms` 1 ms to one hour,
//!   `connect_ms` and `first_token_ms` at most `total_ms`, `hedge_after_ms` below `total_ms`
//!   and only with at least two candidates.
//!
//! `PATCH` changes only the fields it names (`null` clears an optional one; `candidates`
//! replaces the whole list) and validates the result like `POST`. Every change is published to
//! the data plane (in `TenantConfig.routes`) before the call returns. Owners and admins manage
//! routes; everyone reads them. A deployment a route lists cannot be deleted until it is
//! removed from the route (see `super::models`). Deleting a route deletes its guardrail.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use shared::cache::CacheSettings;
use shared::config::{
    DeploymentMode, RetryClass, RouteRecord, RouteStrategy, RouteTimeouts, region_allows,
};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::cache::{self, CacheDto, CacheRequest};
use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{model_deployment, route, route_candidate};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;
use crate::sync::route_record;

/// Most candidates in one route.
pub const MAX_CANDIDATES: usize = 50;
/// Largest candidate weight.
pub const MAX_WEIGHT: i64 = 1_000_000;
/// Largest (and, negated, smallest) candidate priority.
pub const MAX_PRIORITY: i64 = 1_000_000;
/// Most attempts (the first try included) a route may allow.
pub const MAX_ATTEMPTS: i64 = 10;
/// Longest accepted timeout or hedge delay: one hour.
pub const MAX_TIMEOUT_MS: i64 = 3_600_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/routes", get(list_routes).post(create_route))
        .route(
            "/routes/{id}",
            get(get_route).patch(update_route).delete(delete_route),
        )
}

impl TenantScoped for route::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "route";
    const KIND: &'static str = "route";
    fn tenant_column() -> Self::Column {
        route::Column::TenantId
    }
    fn id_column() -> Self::Column {
        route::Column::Id
    }
    /// By name (unique within an organization).
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(route::Column::Name)
            .order_by_asc(route::Column::Id)
    }
}

// === wire names and their OpenAPI schemas ===

/// The wire name of a strategy, as stored (exhaustive: a new strategy is a compile error here
/// until [`STRATEGIES`] lists it).
fn strategy_name(s: RouteStrategy) -> &'static str {
    match s {
        RouteStrategy::Priority => "priority",
        RouteStrategy::Weighted => "weighted",
        RouteStrategy::Cheapest => "cheapest",
        RouteStrategy::Fastest => "fastest",
        RouteStrategy::Reliable => "reliable",
        RouteStrategy::LeastBusy => "least_busy",
    }
}

/// Every strategy's wire name, in documentation order.
const STRATEGIES: [&str; 6] = [
    "priority",
    "weighted",
    "cheapest",
    "fastest",
    "reliable",
    "least_busy",
];

/// The wire name of a retry class, as stored (exhaustive, like [`strategy_name`]).
fn retry_class_name(c: RetryClass) -> &'static str {
    match c {
        RetryClass::RateLimited => "rate_limited",
        RetryClass::ServerError => "server_error",
        RetryClass::Timeout => "timeout",
        RetryClass::Connection => "connection",
        RetryClass::ContextLengthExceeded => "context_length_exceeded",
        RetryClass::ContentFilter => "content_filter",
    }
}

/// Every retry class's wire name.
const RETRY_CLASSES: [&str; 6] = [
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "context_length_exceeded",
    "content_filter",
];

fn strategy_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(STRATEGIES))
        .description(Some(
            "How the first candidate is picked: priority (in order), weighted (split by weights), cheapest (lowest expected cost for the request), fastest (lowest recent time to first token), reliable (highest recent success rate), least_busy (fewest requests in flight). The other candidates form the fallback order.",
        ))
        .examples([serde_json::json!("priority")])
        .build()
}

fn retry_on_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(RETRY_CLASSES)),
        )
        .description(Some(
            "Upstream error classes that move on to the next attempt; null: the gateway's default. Other client errors are never retried.",
        ))
        .examples([serde_json::json!(["rate_limited", "server_error", "timeout"])])
        .build()
}

// === DTOs ===

/// One deployment a route may choose.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CandidateRequest {
    /// A model deployment of this organization (`GET /api/v1/models`).
    pub model_id: Uuid,
    /// `weighted` only: the relative share (0 to 1000000, default 1).
    #[serde(default)]
    #[schema(example = 3)]
    pub weight: Option<i64>,
    /// `priority` only: lower goes first (default: the list order).
    #[serde(default)]
    #[schema(example = 0)]
    pub priority: Option<i64>,
}

/// Per-route timeouts in milliseconds (1 to 3600000), each overriding the gateway's default.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsRequest {
    /// Establishing the connection to the provider.
    #[serde(default)]
    #[schema(example = 2000)]
    pub connect_ms: Option<i64>,
    /// From sending the request to the first token (or the whole answer, unstreamed).
    #[serde(default)]
    #[schema(example = 10000)]
    pub first_token_ms: Option<i64>,
    /// The whole request, every attempt included.
    #[serde(default)]
    #[schema(example = 60000)]
    pub total_ms: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRouteRequest {
    /// The name clients send as `model`; unique within the organization. It shadows
    /// deployments of the same name.
    #[schema(example = "support-chat")]
    pub name: String,
    #[schema(schema_with = strategy_schema)]
    pub strategy: RouteStrategy,
    /// The deployments the route chooses among, at least one.
    pub candidates: Vec<CandidateRequest>,
    /// Regions (or region prefixes such as `eu`) this route may use; every candidate must be
    /// in one.
    #[serde(default)]
    #[schema(example = json!(["eu"]))]
    pub allowed_regions: Option<Vec<String>>,
    /// Most attempts across candidates, the first try included (1 to 10).
    #[serde(default)]
    #[schema(example = 3)]
    pub max_attempts: Option<i64>,
    #[serde(default)]
    #[schema(schema_with = retry_on_schema, required = false)]
    pub retry_on: Option<Vec<RetryClass>>,
    #[serde(default)]
    pub timeouts: Option<TimeoutsRequest>,
    /// Opt-in hedging: after this many milliseconds without an answer, also try the next
    /// candidate and keep the first answer.
    #[serde(default)]
    #[schema(example = 1500)]
    pub hedge_after_ms: Option<i64>,
    /// `weighted` only: keep one user (the request's `user`, or the
    /// `x-switchyard-sticky-key` header) on one deployment.
    #[serde(default)]
    pub sticky: bool,
    /// The route's response-cache setting (a key's or team's setting wins over it); omit for
    /// none.
    #[serde(default)]
    pub cache: Option<CacheRequest>,
}

/// Changes to a route; fields left out stay as they are, `null` clears an optional one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateRouteRequest {
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = String, required = false, example = "support-chat")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(schema_with = strategy_schema, required = false)]
    pub strategy: Option<RouteStrategy>,
    /// Replaces the whole list.
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = Vec<CandidateRequest>, required = false)]
    pub candidates: Option<Vec<CandidateRequest>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false, example = json!(["eu"]))]
    pub allowed_regions: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<i64>, required = false)]
    pub max_attempts: Option<Option<i64>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(schema_with = retry_on_schema, required = false)]
    pub retry_on: Option<Option<Vec<RetryClass>>>,
    /// Replaces all three timeouts (those left out are unset); null unsets them.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<TimeoutsRequest>, required = false)]
    pub timeouts: Option<Option<TimeoutsRequest>>,
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<i64>, required = false)]
    pub hedge_after_ms: Option<Option<i64>>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = bool, required = false)]
    pub sticky: Option<bool>,
    /// Replaces the route's response-cache setting; null removes it.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<CacheRequest>, required = false)]
    pub cache: Option<Option<CacheRequest>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CandidateDto {
    /// The model deployment's id.
    pub model_id: Uuid,
    pub weight: Option<u32>,
    pub priority: Option<i32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TimeoutsDto {
    pub connect_ms: Option<u64>,
    pub first_token_ms: Option<u64>,
    pub total_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteDto {
    pub id: Uuid,
    pub name: String,
    #[schema(schema_with = strategy_schema)]
    pub strategy: RouteStrategy,
    pub candidates: Vec<CandidateDto>,
    /// The route's region policy; null: none.
    pub allowed_regions: Option<Vec<String>>,
    /// null: the gateway's default.
    pub max_attempts: Option<u32>,
    #[schema(schema_with = retry_on_schema)]
    pub retry_on: Option<Vec<RetryClass>>,
    /// Each null: the gateway's default.
    pub timeouts: TimeoutsDto,
    /// null: no hedging.
    pub hedge_after_ms: Option<u64>,
    pub sticky: bool,
    /// The route's response-cache setting; null: none.
    pub cache: Option<CacheDto>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RouteList {
    pub data: Vec<RouteDto>,
}

impl RouteDto {
    /// The answer for a stored route, from the record the data plane gets (one conversion).
    fn new(row: &route::Model, candidates: &[route_candidate::Model]) -> Result<Self, ApiError> {
        let r: RouteRecord = route_record(row, candidates).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "route {} has a strategy this version does not know",
                row.id
            ))
        })?;
        Ok(Self {
            id: r.id,
            name: r.name,
            strategy: r.strategy,
            candidates: r
                .candidates
                .into_iter()
                .map(|c| CandidateDto {
                    model_id: c.deployment_id,
                    weight: c.weight,
                    priority: c.priority,
                })
                .collect(),
            allowed_regions: r.allowed_regions,
            max_attempts: r.max_attempts,
            retry_on: r.retry_on,
            timeouts: TimeoutsDto {
                connect_ms: r.timeouts.connect_ms,
                first_token_ms: r.timeouts.first_token_ms,
                total_ms: r.timeouts.total_ms,
            },
            hedge_after_ms: r.hedge_after_ms,
            sticky: r.sticky,
            cache: r.cache.map(CacheDto::from),
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

// === rules ===

/// A route as requested: a `POST` body, or a stored route with a `PATCH` applied.
#[derive(Debug, Clone)]
struct Spec {
    name: String,
    strategy: RouteStrategy,
    candidates: Vec<CandidateRequest>,
    allowed_regions: Option<Vec<String>>,
    max_attempts: Option<i64>,
    retry_on: Option<Vec<RetryClass>>,
    timeouts: TimeoutsRequest,
    hedge_after_ms: Option<i64>,
    sticky: bool,
    cache: Option<CacheRequest>,
}

impl From<CreateRouteRequest> for Spec {
    fn from(r: CreateRouteRequest) -> Self {
        Self {
            name: r.name,
            strategy: r.strategy,
            candidates: r.candidates,
            allowed_regions: r.allowed_regions,
            max_attempts: r.max_attempts,
            retry_on: r.retry_on,
            timeouts: r.timeouts.unwrap_or_default(),
            hedge_after_ms: r.hedge_after_ms,
            sticky: r.sticky,
            cache: r.cache,
        }
    }
}

impl Spec {
    /// The stored route as a spec, so a `PATCH` is validated like a `POST`.
    fn stored(r: &RouteRecord) -> Self {
        let ms = |v: Option<u64>| v.and_then(|n| i64::try_from(n).ok());
        Self {
            name: r.name.clone(),
            strategy: r.strategy,
            candidates: r
                .candidates
                .iter()
                .map(|c| CandidateRequest {
                    model_id: c.deployment_id,
                    weight: c.weight.map(i64::from),
                    priority: c.priority.map(i64::from),
                })
                .collect(),
            allowed_regions: r.allowed_regions.clone(),
            max_attempts: r.max_attempts.map(i64::from),
            retry_on: r.retry_on.clone(),
            timeouts: TimeoutsRequest {
                connect_ms: ms(r.timeouts.connect_ms),
                first_token_ms: ms(r.timeouts.first_token_ms),
                total_ms: ms(r.timeouts.total_ms),
            },
            hedge_after_ms: ms(r.hedge_after_ms),
            sticky: r.sticky,
            cache: r.cache.as_ref().map(|c| CacheRequest {
                mode: c.mode,
                ttl_seconds: Some(c.ttl_seconds),
                min_similarity: Some(c.min_similarity),
                embedding_model: c.embedding_model.clone(),
            }),
        }
    }

    fn apply(&mut self, p: UpdateRouteRequest) {
        if let Some(v) = p.name {
            self.name = v;
        }
        if let Some(v) = p.strategy {
            self.strategy = v;
        }
        if let Some(v) = p.candidates {
            self.candidates = v;
        }
        if let Some(v) = p.allowed_regions {
            self.allowed_regions = v;
        }
        if let Some(v) = p.max_attempts {
            self.max_attempts = v;
        }
        if let Some(v) = p.retry_on {
            self.retry_on = v;
        }
        if let Some(v) = p.timeouts {
            self.timeouts = v.unwrap_or_default();
        }
        if let Some(v) = p.hedge_after_ms {
            self.hedge_after_ms = v;
        }
        if let Some(v) = p.sticky {
            self.sticky = v;
        }
        if let Some(v) = p.cache {
            self.cache = v;
        }
    }
}

/// What a deployment contributes to a route's validation.
#[derive(Debug, Clone)]
struct DeploymentFacts {
    mode: DeploymentMode,
    region: Option<String>,
}

/// A validated route, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ValidRoute {
    name: String,
    strategy: RouteStrategy,
    /// (deployment id, weight, priority), in the route's order.
    candidates: Vec<(Uuid, Option<u32>, Option<i32>)>,
    allowed_regions: Option<Vec<String>>,
    max_attempts: Option<u32>,
    retry_on: Option<Vec<RetryClass>>,
    timeouts: RouteTimeouts,
    hedge_after_ms: Option<u64>,
    sticky: bool,
    cache: Option<CacheSettings>,
}

/// "a chat" / "an embedding".
fn a_mode(mode: DeploymentMode) -> &'static str {
    match mode {
        DeploymentMode::Chat => "a chat",
        DeploymentMode::Embedding => "an embedding",
    }
}

/// A duration field: 1 ms to one hour.
fn millis(field: &str, v: Option<i64>) -> Result<Option<u64>, ApiError> {
    match v {
        None => Ok(None),
        Some(n) if (1..=MAX_TIMEOUT_MS).contains(&n) => Ok(u64::try_from(n).ok()),
        Some(_) => Err(ApiError::invalid(
            field,
            format_args!("must be between 1 and {MAX_TIMEOUT_MS} milliseconds"),
        )),
    }
}

/// Applies every rule of the module docs. `deployments` holds this organization's deployments
/// among the candidates (so a foreign id is simply absent, like an unknown one). Pure, so each
/// rule has a unit test.
fn check(spec: Spec, deployments: &HashMap<Uuid, DeploymentFacts>) -> Result<ValidRoute, ApiError> {
    let name = validate::name("name", &spec.name)?;
    let strategy = spec.strategy;
    let s = strategy_name(strategy);
    if spec.candidates.is_empty() {
        return Err(ApiError::invalid(
            "candidates",
            "must list at least one model deployment",
        ));
    }
    if spec.candidates.len() > MAX_CANDIDATES {
        return Err(ApiError::invalid(
            "candidates",
            format_args!("must list at most {MAX_CANDIDATES} model deployments"),
        ));
    }
    let allowed_regions = spec
        .allowed_regions
        .as_deref()
        .map(|r| validate::region_list("allowed_regions", r))
        .transpose()?;
    let mut candidates = Vec::with_capacity(spec.candidates.len());
    let mut first_mode: Option<DeploymentMode> = None;
    for (i, c) in spec.candidates.iter().enumerate() {
        let at = |f: &str| format!("candidates[{i}].{f}");
        let facts = deployments.get(&c.model_id).ok_or_else(|| {
            ApiError::invalid(
                &at("model_id"),
                "no model deployment with this id in this organization",
            )
        })?;
        if let Some(j) = spec.candidates[..i]
            .iter()
            .position(|p| p.model_id == c.model_id)
        {
            return Err(ApiError::invalid(
                &at("model_id"),
                format_args!("lists the same deployment as candidates[{j}]"),
            ));
        }
        match first_mode {
            None => first_mode = Some(facts.mode),
            Some(m) if m != facts.mode => {
                return Err(ApiError::invalid(
                    &at("model_id"),
                    format_args!(
                        "is {} deployment, but candidates[0] is {} deployment; a route's deployments must all serve one API",
                        a_mode(facts.mode),
                        a_mode(m)
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(pin) = &allowed_regions {
            let inside = facts
                .region
                .as_deref()
                .is_some_and(|r| pin.iter().any(|e| region_allows(e, r)));
            if !inside {
                let region = match facts.region.as_deref() {
                    Some(r) => format!("region {:?}", validate::preview(r, 64)),
                    None => "no region".to_owned(),
                };
                return Err(ApiError::invalid(
                    &at("model_id"),
                    format_args!(
                        "the deployment has {region}, which allowed_regions does not allow (a deployment without a region never does)"
                    ),
                ));
            }
        }
        let weight = match c.weight {
            None => None,
            Some(_) if strategy != RouteStrategy::Weighted => {
                return Err(ApiError::invalid(
                    &at("weight"),
                    format_args!("is only used by strategy weighted, not {s}"),
                ));
            }
            Some(w) if !(0..=MAX_WEIGHT).contains(&w) => {
                return Err(ApiError::invalid(
                    &at("weight"),
                    format_args!("must be between 0 and {MAX_WEIGHT}"),
                ));
            }
            Some(w) => u32::try_from(w).ok(),
        };
        let priority = match c.priority {
            None => None,
            Some(_) if strategy != RouteStrategy::Priority => {
                return Err(ApiError::invalid(
                    &at("priority"),
                    format_args!("is only used by strategy priority, not {s}"),
                ));
            }
            Some(p) if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&p) => {
                return Err(ApiError::invalid(
                    &at("priority"),
                    format_args!("must be between -{MAX_PRIORITY} and {MAX_PRIORITY}"),
                ));
            }
            Some(p) => i32::try_from(p).ok(),
        };
        candidates.push((c.model_id, weight, priority));
    }
    if strategy == RouteStrategy::Weighted && candidates.iter().all(|c| c.1 == Some(0)) {
        return Err(ApiError::invalid(
            "candidates",
            "the weights must not all be 0 (a candidate without a weight has weight 1)",
        ));
    }
    let max_attempts = match spec.max_attempts {
        None => None,
        Some(n) if (1..=MAX_ATTEMPTS).contains(&n) => u32::try_from(n).ok(),
        Some(_) => {
            return Err(ApiError::invalid(
                "max_attempts",
                format_args!("must be between 1 and {MAX_ATTEMPTS}"),
            ));
        }
    };
    let retry_on = spec.retry_on.map(|classes| {
        let mut out: Vec<RetryClass> = Vec::with_capacity(classes.len());
        for c in classes {
            if !out.contains(&c) {
                out.push(c);
            }
        }
        out
    });
    let timeouts = RouteTimeouts {
        connect_ms: millis("timeouts.connect_ms", spec.timeouts.connect_ms)?,
        first_token_ms: millis("timeouts.first_token_ms", spec.timeouts.first_token_ms)?,
        total_ms: millis("timeouts.total_ms", spec.timeouts.total_ms)?,
    };
    if let Some(total) = timeouts.total_ms {
        for (field, v) in [
            ("timeouts.connect_ms", timeouts.connect_ms),
            ("timeouts.first_token_ms", timeouts.first_token_ms),
        ] {
            if v.is_some_and(|v| v > total) {
                return Err(ApiError::invalid(
                    field,
                    "must not exceed timeouts.total_ms",
                ));
            }
        }
    }
    let hedge_after_ms = millis("hedge_after_ms", spec.hedge_after_ms)?;
    if let Some(h) = hedge_after_ms {
        if candidates.len() < 2 {
            return Err(ApiError::invalid(
                "hedge_after_ms",
                "needs at least two candidates (the hedge goes to the next one)",
            ));
        }
        if timeouts.total_ms.is_some_and(|total| h >= total) {
            return Err(ApiError::invalid(
                "hedge_after_ms",
                "must be less than timeouts.total_ms",
            ));
        }
    }
    if spec.sticky && strategy != RouteStrategy::Weighted {
        return Err(ApiError::invalid(
            "sticky",
            format_args!("is only used by strategy weighted, not {s}"),
        ));
    }
    let cache = spec.cache.as_ref().map(cache::settings).transpose()?;
    Ok(ValidRoute {
        name,
        strategy,
        candidates,
        allowed_regions,
        max_attempts,
        retry_on,
        timeouts,
        hedge_after_ms,
        sticky: spec.sticky,
        cache,
    })
}

/// Validates `spec` against this organization's deployments (read in the change's
/// transaction).
async fn validated<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    spec: Spec,
) -> Result<ValidRoute, ApiError> {
    let ids: Vec<Uuid> = spec
        .candidates
        .iter()
        .take(MAX_CANDIDATES)
        .map(|c| c.model_id)
        .collect();
    let deployments: HashMap<Uuid, DeploymentFacts> =
        resource::scoped::<model_deployment::Entity>(tenant_id)
            .filter(model_deployment::Column::Id.is_in(ids))
            .all(conn)
            .await?
            .into_iter()
            .map(|d| {
                let facts = DeploymentFacts {
                    // The API only stores known modes; anything else reads as the default.
                    mode: DeploymentMode::parse(&d.mode).unwrap_or_default(),
                    region: d.region,
                };
                (d.id, facts)
            })
            .collect();
    check(spec, &deployments)
}

/// The route's row (without the timestamps the caller sets).
fn active_row(id: Uuid, tenant_id: Uuid, v: &ValidRoute) -> route::ActiveModel {
    let ms = |v: Option<u64>| v.and_then(|n| i64::try_from(n).ok());
    route::ActiveModel {
        id: Set(id),
        tenant_id: Set(tenant_id),
        name: Set(v.name.clone()),
        strategy: Set(strategy_name(v.strategy).to_owned()),
        allowed_regions: Set(v.allowed_regions.as_ref().map(|r| serde_json::json!(r))),
        max_attempts: Set(v.max_attempts.and_then(|n| i32::try_from(n).ok())),
        retry_on: Set(v.retry_on.as_ref().map(|r| {
            serde_json::json!(r.iter().copied().map(retry_class_name).collect::<Vec<_>>())
        })),
        connect_timeout_ms: Set(ms(v.timeouts.connect_ms)),
        first_token_timeout_ms: Set(ms(v.timeouts.first_token_ms)),
        total_timeout_ms: Set(ms(v.timeouts.total_ms)),
        hedge_after_ms: Set(ms(v.hedge_after_ms)),
        sticky: Set(v.sticky),
        cache: Set(v.cache.as_ref().and_then(|c| serde_json::to_value(c).ok())),
        ..Default::default()
    }
}

/// Replaces the candidate rows of route `id` with `v`'s.
async fn write_candidates<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    v: &ValidRoute,
) -> Result<Vec<route_candidate::Model>, ApiError> {
    route_candidate::Entity::delete_many()
        .filter(route_candidate::Column::RouteId.eq(id))
        .exec(conn)
        .await?;
    let rows: Vec<route_candidate::Model> = v
        .candidates
        .iter()
        .enumerate()
        .map(
            |(i, (deployment_id, weight, priority))| route_candidate::Model {
                route_id: id,
                // At most MAX_CANDIDATES.
                position: i32::try_from(i).unwrap_or(i32::MAX),
                deployment_id: *deployment_id,
                weight: weight.map(i64::from),
                priority: *priority,
            },
        )
        .collect();
    route_candidate::Entity::insert_many(
        rows.iter().cloned().map(route_candidate::ActiveModel::from),
    )
    .exec_without_returning(conn)
    .await
    // A deployment deleted concurrently (after validation read it).
    .on_foreign_key_violation("a candidate deployment was deleted meanwhile; retry")?;
    Ok(rows)
}

/// The candidate rows of `routes`, by route, in position order.
async fn candidates_of<C: ConnectionTrait>(
    conn: &C,
    routes: &[route::Model],
) -> Result<HashMap<Uuid, Vec<route_candidate::Model>>, ApiError> {
    let mut by_route: HashMap<Uuid, Vec<route_candidate::Model>> = HashMap::new();
    if routes.is_empty() {
        return Ok(by_route);
    }
    let rows = route_candidate::Entity::find()
        .filter(route_candidate::Column::RouteId.is_in(routes.iter().map(|r| r.id)))
        .order_by_asc(route_candidate::Column::RouteId)
        .order_by_asc(route_candidate::Column::Position)
        .all(conn)
        .await?;
    for c in rows {
        by_route.entry(c.route_id).or_default().push(c);
    }
    Ok(by_route)
}

const NAME_TAKEN: &str = "a route with this name already exists";

// === handlers ===

/// Create a route.
///
/// Published to the data plane before the call returns.
#[utoipa::path(
    post,
    path = "/api/v1/routes",
    tag = "routes",
    security(("bearer" = [])),
    request_body = CreateRouteRequest,
    responses(
        (status = 201, body = RouteDto),
        (status = 400, description = "Invalid field (the message names it, e.g. `candidates[1].model_id`)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "A route with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn create_route(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateRouteRequest>,
) -> Result<(StatusCode, Json<RouteDto>), ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let valid = validated(change.tx(), auth.tenant_id, Spec::from(req)).await?;
    let id = Uuid::new_v4();
    let at = now();
    let mut row = active_row(id, auth.tenant_id, &valid);
    row.created_at = Set(at);
    row.updated_at = Set(at);
    route::Entity::insert(row)
        .exec_without_returning(change.tx())
        .await
        .on_unique_violation(NAME_TAKEN)?;
    let candidates = write_candidates(change.tx(), id, &valid).await?;
    let stored = change.find::<route::Entity>(id).await?;
    change.publish_tenant().await?;
    let dto = RouteDto::new(&stored, &candidates)?;
    change
        .audit::<route::Entity>(AuditAction::Create, &id)
        .after(&dto);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// List routes, by name.
#[utoipa::path(
    get,
    path = "/api/v1/routes",
    tag = "routes",
    security(("bearer" = [])),
    responses((status = 200, body = RouteList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_routes(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<RouteList>, ApiError> {
    let rows = resource::list::<route::Entity, _>(&state.db, auth.tenant_id).await?;
    let candidates = candidates_of(&state.db, &rows).await?;
    let data = rows
        .iter()
        .map(|r| {
            let c = candidates.get(&r.id).map(Vec::as_slice).unwrap_or_default();
            RouteDto::new(r, c)
        })
        .collect::<Result<_, _>>()?;
    Ok(Json(RouteList { data }))
}

/// Get one route.
#[utoipa::path(
    get,
    path = "/api/v1/routes/{id}",
    tag = "routes",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Route id")),
    responses((status = 200, body = RouteDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_route(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RouteDto>, ApiError> {
    let row = resource::find::<route::Entity, _>(&state.db, auth.tenant_id, id).await?;
    let candidates = candidates_of(&state.db, std::slice::from_ref(&row)).await?;
    let c = candidates.get(&id).map(Vec::as_slice).unwrap_or_default();
    Ok(Json(RouteDto::new(&row, c)?))
}

/// Change a route: only the fields given (`null` clears an optional one); the result is
/// validated like a new route.
///
/// Published to the data plane before the call returns.
#[utoipa::path(
    patch,
    path = "/api/v1/routes/{id}",
    tag = "routes",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Route id")),
    request_body = UpdateRouteRequest,
    responses(
        (status = 200, body = RouteDto),
        (status = 400, description = "Invalid field (the message names it)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "A route with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn update_route(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateRouteRequest>,
) -> Result<Json<RouteDto>, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<route::Entity>(id).await?;
    let current = candidates_of(change.tx(), std::slice::from_ref(&row)).await?;
    let current = current.get(&id).map(Vec::as_slice).unwrap_or_default();
    let before = RouteDto::new(&row, current)?;
    let record = route_record(&row, current).ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "route {id} has a strategy this version does not know"
        ))
    })?;
    let mut spec = Spec::stored(&record);
    spec.apply(req);
    let valid = validated(change.tx(), auth.tenant_id, spec).await?;
    let mut update = active_row(id, auth.tenant_id, &valid);
    update.updated_at = Set(now());
    route::Entity::update(update)
        .exec(change.tx())
        .await
        .on_unique_violation(NAME_TAKEN)?;
    let candidates = write_candidates(change.tx(), id, &valid).await?;
    let stored = change.find::<route::Entity>(id).await?;
    change.publish_tenant().await?;
    let dto = RouteDto::new(&stored, &candidates)?;
    change
        .audit::<route::Entity>(AuditAction::Update, &id)
        .before(&before)
        .after(&dto);
    change.commit().await?;
    Ok(Json(dto))
}

/// Delete a route. Clients sending its name reach the deployments of that name again, if any.
#[utoipa::path(
    delete,
    path = "/api/v1/routes/{id}",
    tag = "routes",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Route id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn delete_route(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<route::Entity>(id).await?;
    let candidates = candidates_of(change.tx(), std::slice::from_ref(&row)).await?;
    let before = RouteDto::new(
        &row,
        candidates.get(&id).map(Vec::as_slice).unwrap_or_default(),
    )?;
    // The candidates go with it (ON DELETE CASCADE), and its guardrail (see `guardrails`).
    super::guardrails::delete_for_scope(
        &mut change,
        auth.tenant_id,
        shared::guardrails::GuardrailScope::Route,
        id,
    )
    .await?;
    change.delete::<route::Entity>(id).await?.before(&before);
    change.publish_tenant().await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    fn facts(list: &[(Uuid, DeploymentMode, Option<&str>)]) -> HashMap<Uuid, DeploymentFacts> {
        list.iter()
            .map(|(id, mode, region)| {
                (
                    *id,
                    DeploymentFacts {
                        mode: *mode,
                        region: region.map(str::to_owned),
                    },
                )
            })
            .collect()
    }

    fn spec(v: serde_json::Value) -> Spec {
        Spec::from(serde_json::from_value::<CreateRouteRequest>(v).expect("deserializes"))
    }

    fn refused(v: serde_json::Value, d: &HashMap<Uuid, DeploymentFacts>) -> String {
        match check(spec(v), d) {
            Ok(ok) => panic!("accepted: {ok:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_valid_route_keeps_order_and_settings() {
        let d = ids(2);
        let known = facts(&[
            (d[0], DeploymentMode::Chat, Some("eu-west-1")),
            (d[1], DeploymentMode::Chat, Some("eu-central-1")),
        ]);
        let ok = check(
            spec(serde_json::json!({
                "name": " support ", "strategy": "weighted", "sticky": true,
                "candidates": [{"model_id": d[1], "weight": 3}, {"model_id": d[0]}],
                "allowed_regions": ["eu", "EU"], "max_attempts": 3,
                "retry_on": ["rate_limited", "timeout", "rate_limited"],
                "timeouts": {"connect_ms": 1000, "total_ms": 30000}, "hedge_after_ms": 500,
            })),
            &known,
        )
        .unwrap();
        assert_eq!(ok.name, "support");
        assert_eq!(
            ok.candidates,
            vec![(d[1], Some(3), None), (d[0], None, None)]
        );
        assert_eq!(ok.allowed_regions, Some(vec!["eu".to_owned()]));
        assert_eq!(
            ok.retry_on,
            Some(vec![RetryClass::RateLimited, RetryClass::Timeout])
        );
        assert_eq!(ok.timeouts.total_ms, Some(30_000));
        assert_eq!(ok.hedge_after_ms, Some(500));
    }

    #[test]
    fn every_rule_names_its_field() {
        let d = ids(3);
        let foreign = Uuid::new_v4();
        let known = facts(&[
            (d[0], DeploymentMode::Chat, Some("eu-west-1")),
            (d[1], DeploymentMode::Chat, None),
            (d[2], DeploymentMode::Embedding, Some("eu-west-1")),
        ]);
        let route = |strategy: &str, candidates: serde_json::Value| serde_json::json!({"name": "r", "strategy": strategy, "candidates": candidates});
        let cases: Vec<(serde_json::Value, &str)> = vec![
            (
                route("priority", serde_json::json!([])),
                "candidates: must list at least one",
            ),
            (
                route(
                    "priority",
                    serde_json::json!([{"model_id": d[0]}, {"model_id": foreign}]),
                ),
                "candidates[1].model_id: no model deployment with this id in this organization",
            ),
            (
                route(
                    "priority",
                    serde_json::json!([{"model_id": d[0]}, {"model_id": d[1]}, {"model_id": d[0]}]),
                ),
                "candidates[2].model_id: lists the same deployment as candidates[0]",
            ),
            (
                route(
                    "priority",
                    serde_json::json!([{"model_id": d[0]}, {"model_id": d[2]}]),
                ),
                "candidates[1].model_id: is an embedding deployment, but candidates[0] is a chat deployment",
            ),
            (
                route(
                    "weighted",
                    serde_json::json!([{"model_id": d[0], "weight": -1}]),
                ),
                "candidates[0].weight: must be between 0 and",
            ),
            (
                route(
                    "weighted",
                    serde_json::json!([{"model_id": d[0], "weight": 0}, {"model_id": d[1], "weight": 0}]),
                ),
                "candidates: the weights must not all be 0",
            ),
            (
                route(
                    "priority",
                    serde_json::json!([{"model_id": d[0], "weight": 2}]),
                ),
                "candidates[0].weight: is only used by strategy weighted, not priority",
            ),
            (
                route(
                    "cheapest",
                    serde_json::json!([{"model_id": d[0], "priority": 1}]),
                ),
                "candidates[0].priority: is only used by strategy priority, not cheapest",
            ),
            (
                route(
                    "priority",
                    serde_json::json!([{"model_id": d[0], "priority": 2_000_000}]),
                ),
                "candidates[0].priority: must be between",
            ),
            (
                serde_json::json!({"name": "", "strategy": "priority", "candidates": [{"model_id": d[0]}]}),
                "name: must not be empty",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}, {"model_id": d[1]}], "allowed_regions": ["eu"]}),
                "candidates[1].model_id: the deployment has no region",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "allowed_regions": ["us"]}),
                "candidates[0].model_id: the deployment has region \"eu-west-1\"",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "allowed_regions": []}),
                "allowed_regions: must list at least one region",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "max_attempts": 11}),
                "max_attempts: must be between 1 and 10",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "max_attempts": 0}),
                "max_attempts: must be between 1 and 10",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "timeouts": {"connect_ms": 0}}),
                "timeouts.connect_ms: must be between 1 and 3600000",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "timeouts": {"total_ms": 3_600_001}}),
                "timeouts.total_ms: must be between 1 and 3600000",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "timeouts": {"first_token_ms": 5000, "total_ms": 1000}}),
                "timeouts.first_token_ms: must not exceed timeouts.total_ms",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}], "hedge_after_ms": 100}),
                "hedge_after_ms: needs at least two candidates",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "priority", "candidates": [{"model_id": d[0]}, {"model_id": d[1]}], "hedge_after_ms": 1000, "timeouts": {"total_ms": 1000}}),
                "hedge_after_ms: must be less than timeouts.total_ms",
            ),
            (
                serde_json::json!({"name": "r", "strategy": "fastest", "candidates": [{"model_id": d[0]}], "sticky": true}),
                "sticky: is only used by strategy weighted, not fastest",
            ),
        ];
        for (body, want) in cases {
            let got = refused(body.clone(), &known);
            assert!(
                got.starts_with(want),
                "{body}\n  got:  {got}\n  want: {want}"
            );
        }
        let many: Vec<serde_json::Value> = (0..=MAX_CANDIDATES)
            .map(|_| serde_json::json!({"model_id": d[0]}))
            .collect();
        assert!(
            refused(route("priority", serde_json::json!(many)), &known)
                .starts_with("candidates: must list at most")
        );
    }

    #[test]
    fn weighted_defaults_and_zero_weights() {
        let d = ids(2);
        let known = facts(&[
            (d[0], DeploymentMode::Chat, None),
            (d[1], DeploymentMode::Chat, None),
        ]);
        // One zero weight next to a default (1) is a valid split: all traffic to the other.
        let ok = check(
            spec(serde_json::json!({"name": "r", "strategy": "weighted",
                "candidates": [{"model_id": d[0], "weight": 0}, {"model_id": d[1]}]})),
            &known,
        )
        .unwrap();
        assert_eq!(ok.candidates[0].1, Some(0));
    }

    #[test]
    fn wire_names_match_serde() {
        for (i, name) in STRATEGIES.iter().enumerate() {
            let s: RouteStrategy = crate::sync::parse_wire(name).unwrap();
            assert_eq!(strategy_name(s), *name, "{i}");
        }
        for name in RETRY_CLASSES {
            let c: RetryClass = crate::sync::parse_wire(name).unwrap();
            assert_eq!(retry_class_name(c), name);
        }
    }
}
