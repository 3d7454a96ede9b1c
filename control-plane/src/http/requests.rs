//! The request log: `GET /requests` (search the organization's usage records) and
//! `GET /requests/{id}` (one request with every upstream attempt, its tags and, when the
//! organization stores payloads, its prompt and answer). Every request shows its guardrail
//! decisions (`guardrails`: policy, rule, action, count; never the matched text).
//!
//! Search parameters: `id`, `key_id`, `model`, `status` (HTTP code), `outcome`
//! (`success`, `error`, `truncated`, `client_disconnected`), `tag=<key>:<value>`, and the range
//! `from`/`to` (RFC 3339; default the last 24 hours, at most [`MAX_RANGE_DAYS`] days; with
//! `id`, no default range). Every search is bounded by `started_at`, the column
//! `usage_records` is partitioned on, so PostgreSQL only reads the partitions of the range.
//!
//! Results are newest first, ordered by `(started_at, id)`; `limit` rows per page (default
//! 50, at most 200). `next_cursor` is an opaque token of the last row's `(started_at, id)`:
//! passed back as `cursor` (with the same filters) it continues strictly after that row, so
//! pages neither skip nor repeat rows, even when rows share a timestamp or new rows arrive.
//!
//! Members and viewers see the whole organization's requests, as with `GET /usage`.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, Order, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use shared::money::format_usd;
use shared::usage::{FailedAttempt, GuardrailDecision};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::usage::{Cmp, after_key, started_at_cmp, started_at_order};
use super::{ApiPath, ApiQuery};
use crate::auth::AuthUser;
use crate::entities::{tenant, usage_payload, usage_record};
use crate::error::ApiError;
use crate::state::AppState;

/// Longest searchable range.
pub const MAX_RANGE_DAYS: i64 = 31;
const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 200;
const MAX_FILTER_LEN: usize = 256;
const CURSOR_VERSION: &str = "r1";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/requests", get(list_requests))
        .route("/requests/{id}", get(get_request))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct RequestsQuery {
    /// Only the request with this id (no default time range then).
    pub id: Option<String>,
    /// Only requests of this API key.
    pub key_id: Option<String>,
    /// Only requests for this (requested) model.
    pub model: Option<String>,
    /// Only requests answered with this HTTP status.
    pub status: Option<u16>,
    /// Only `success`, `error`, `truncated` or `client_disconnected` requests.
    pub outcome: Option<String>,
    /// Only requests with this tag, as `key:value`.
    pub tag: Option<String>,
    /// Start of the range (RFC 3339, inclusive); default 24 hours before `to`.
    pub from: Option<String>,
    /// End of the range (RFC 3339, exclusive); default now.
    pub to: Option<String>,
    /// Rows per page, 1 to 200 (default 50).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One request of the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestSummary {
    /// The request id (`x-switchyard-request-id` of the gateway response).
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub key_id: Option<Uuid>,
    pub team_id: Option<Uuid>,
    /// The model name the client asked for.
    pub model: String,
    /// Provider kind of the deployment that served (or was tried last).
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    pub deployment_id: Option<Uuid>,
    /// The route the request named.
    pub route: Option<String>,
    pub region: Option<String>,
    /// Which API was called, e.g. `chat.completions`.
    pub endpoint: String,
    pub stream: bool,
    /// HTTP status returned to the client.
    pub status: i32,
    /// `success`, `error`, `truncated` or `client_disconnected`.
    pub outcome: String,
    pub error_code: Option<String>,
    pub error_class: Option<String>,
    /// Answered from the gateway's response cache.
    pub cache_hit: bool,
    /// Upstream attempts (1 + the failed ones before the last).
    pub attempt_count: i32,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub tokens_estimated: bool,
    /// Exact decimal string.
    pub cost_usd: String,
    pub cost_micros: i64,
    pub latency_ms: i64,
    pub ttft_ms: Option<i64>,
    /// The request's tags (key metadata and the `x-switchyard-tags` header).
    #[schema(value_type = Object)]
    pub tags: serde_json::Value,
    /// What the guardrail that applied decided (rule and action, never the matched text);
    /// empty when nothing.
    pub guardrails: Vec<GuardrailDecisionDto>,
}

/// One decision of the guardrail that applied to a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct GuardrailDecisionDto {
    /// The guardrail (`GET /api/v1/guardrails/{id}`).
    pub guardrail_id: Uuid,
    /// `pii.email`, `pii.custom.<name>`, `blocked_terms`, `max_prompt_tokens`,
    /// `allowed_tools`, …
    #[schema(example = "pii.email")]
    pub rule: String,
    /// `redacted` (replaced by placeholders before the prompt left), `blocked` (the request
    /// was refused) or `restored` (placeholders in the answer were put back).
    #[schema(example = "redacted")]
    pub action: String,
    /// How many findings the decision covers (1 for a filter).
    pub count: u32,
}

/// The decisions stored on a record; a malformed value (never written by the ingest) reads as
/// none.
fn decisions(r: &usage_record::Model) -> Vec<GuardrailDecisionDto> {
    let stored: Vec<GuardrailDecision> = r
        .guardrails
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    stored
        .into_iter()
        .map(|d| GuardrailDecisionDto {
            guardrail_id: d.guardrail_id,
            rule: d.rule,
            action: d.action.as_str().to_owned(),
            count: d.count,
        })
        .collect()
}

impl From<&usage_record::Model> for RequestSummary {
    fn from(r: &usage_record::Model) -> Self {
        RequestSummary {
            id: r.id,
            started_at: r.started_at,
            key_id: r.key_id,
            team_id: r.team_id,
            model: r.model.clone(),
            provider: r.provider.clone(),
            upstream_model: r.upstream_model.clone(),
            deployment_id: r.deployment_id,
            route: r.route.clone(),
            region: r.region.clone(),
            endpoint: r.endpoint.clone(),
            stream: r.stream,
            status: r.status,
            outcome: r.outcome.clone(),
            error_code: r.error_code.clone(),
            error_class: r.error_class.clone(),
            cache_hit: r.cache_hit,
            attempt_count: r.attempts,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cache_read_tokens: r.cache_read_tokens,
            cache_write_tokens: r.cache_write_tokens,
            tokens_estimated: r.tokens_estimated,
            cost_usd: format_usd(r.cost_micros),
            cost_micros: r.cost_micros,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
            tags: r
                .tags
                .clone()
                .unwrap_or_else(|| serde_json::Value::Object(Default::default())),
            guardrails: decisions(r),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RequestList {
    pub data: Vec<RequestSummary>,
    /// Pass as `cursor` (with the same filters) for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One upstream attempt of a request.
#[derive(Debug, Serialize, ToSchema)]
pub struct Attempt {
    /// 1 for the first attempt.
    pub number: u32,
    pub deployment_id: Option<Uuid>,
    pub region: Option<String>,
    /// `failed` for an attempt followed by another one; for the last attempt, the request's
    /// outcome (`success`, `error`, `truncated`, `client_disconnected`).
    pub outcome: String,
    /// Upstream HTTP status of a failed attempt (when the provider answered); the status
    /// returned to the client for the last one.
    pub status: Option<i32>,
    pub error_code: Option<String>,
    /// The retry class of a failed attempt (`server_error`, `rate_limited`, …); the request's
    /// error class for the last one.
    pub error_class: Option<String>,
    /// Time the failed attempt took; null for the last one (the request's `latency_ms` covers
    /// all attempts).
    pub latency_ms: Option<u64>,
}

/// What was sent and answered (organizations that store payloads only).
#[derive(Debug, Serialize, ToSchema)]
pub struct Payload {
    /// The client's request body (JSON text), possibly cut at 64 KiB.
    pub request: String,
    /// The answer's text, possibly cut at 64 KiB.
    pub response: String,
    /// True when either side was cut.
    pub truncated: bool,
}

/// One request with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestDetail {
    #[serde(flatten)]
    pub request: RequestSummary,
    /// Every upstream attempt in order: the failed ones, then the last (serving) one.
    pub attempts: Vec<Attempt>,
    /// The stored prompt and answer; null unless the organization stores payloads
    /// (`store_payloads`, now) and this request's was kept.
    pub payload: Option<Payload>,
}

fn bounded(field: &str, v: Option<&str>) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(s) if s.is_empty() || s.len() > MAX_FILTER_LEN => Err(ApiError::invalid(
            field,
            format_args!("must be 1 to {MAX_FILTER_LEN} bytes"),
        )),
        Some(s) => Ok(Some(s.to_owned())),
    }
}

fn uuid(field: &str, v: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    v.map(|s| {
        Uuid::parse_str(s.trim()).map_err(|_| {
            ApiError::invalid(
                field,
                "must be a UUID, e.g. 0192f0c1-7c4e-7d3a-9a57-1c2e3f4a5b6c",
            )
        })
    })
    .transpose()
}

/// The opaque cursor of a row: `r1:<unix nanos>:<id>`, base64url.
fn encode_cursor(started_at: OffsetDateTime, id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!(
        "{CURSOR_VERSION}:{}:{id}",
        started_at.unix_timestamp_nanos()
    ))
}

fn decode_cursor(s: &str) -> Result<(OffsetDateTime, Uuid), ApiError> {
    let bad = || {
        ApiError::invalid(
            "cursor",
            "is not a cursor of this endpoint (use next_cursor)",
        )
    };
    let raw = URL_SAFE_NO_PAD.decode(s.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let mut parts = text.splitn(3, ':');
    if parts.next() != Some(CURSOR_VERSION) {
        return Err(bad());
    }
    let nanos: i128 = parts.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
    let id = parts
        .next()
        .and_then(|i| Uuid::parse_str(i).ok())
        .ok_or_else(bad)?;
    let t = OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|_| bad())?;
    Ok((t, id))
}

/// `tags` holds `key` with the text `value`.
fn tag_condition(backend: DbBackend, key: &str, value: &str) -> sea_orm::sea_query::SimpleExpr {
    match backend {
        DbBackend::Sqlite => Expr::cust_with_values(
            "EXISTS (SELECT 1 FROM json_each(\"usage_records\".\"tags\") WHERE json_each.key = ? AND json_each.type = 'text' AND json_each.value = ?)",
            [key.to_owned(), value.to_owned()],
        ),
        _ => Expr::cust_with_values(
            // Containment, so the GIN index on `tags` serves it.
            "\"usage_records\".\"tags\" @> jsonb_build_object(CAST($1 AS text), CAST($2 AS text))",
            [key.to_owned(), value.to_owned()],
        ),
    }
}

/// Search the request log, newest first.
///
/// Bounded by `started_at` (default the last 24 hours, at most 31 days); cursor-paginated
/// without skips or repeats.
#[utoipa::path(
    get,
    path = "/api/v1/requests",
    tag = "requests",
    security(("bearer" = [])),
    params(RequestsQuery),
    responses(
        (status = 200, body = RequestList),
        (status = 400, description = "Bad filter, range, limit or cursor (the message names the parameter)", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    )
)]
pub async fn list_requests(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<RequestsQuery>,
) -> Result<Json<RequestList>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format_args!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let id = uuid("id", q.id.as_deref())?;
    let key_id = uuid("key_id", q.key_id.as_deref())?;
    let model = bounded("model", q.model.as_deref())?;
    if let Some(s) = q.status
        && !(100..=599).contains(&s)
    {
        return Err(ApiError::invalid(
            "status",
            "must be an HTTP status from 100 to 599",
        ));
    }
    let outcome = bounded("outcome", q.outcome.as_deref())?;
    if let Some(o) = &outcome
        && !matches!(
            o.as_str(),
            "success" | "error" | "truncated" | "client_disconnected"
        )
    {
        return Err(ApiError::invalid(
            "outcome",
            "must be one of success, error, truncated, client_disconnected",
        ));
    }
    let tag = super::analytics::tag_filter(q.tag.as_deref())?;
    let cursor = q
        .cursor
        .as_deref()
        .filter(|c| !c.trim().is_empty())
        .map(decode_cursor)
        .transpose()?;
    let now = OffsetDateTime::now_utc();
    // A search by id needs no range (the id is the key); anything else is bounded.
    let range = if id.is_some() && q.from.is_none() && q.to.is_none() {
        None
    } else {
        Some(super::analytics::range(
            q.from.as_deref(),
            q.to.as_deref(),
            now,
            24 * 3600,
            MAX_RANGE_DAYS,
        )?)
    };

    let db = &state.db;
    let backend = db.get_database_backend();
    let mut select =
        usage_record::Entity::find().filter(usage_record::Column::TenantId.eq(auth.tenant_id));
    if let Some((from, to)) = range {
        select = select
            .filter(started_at_cmp(backend, Cmp::Ge, from))
            .filter(started_at_cmp(backend, Cmp::Lt, to));
    }
    if let Some(v) = id {
        select = select.filter(usage_record::Column::Id.eq(v));
    }
    if let Some(v) = key_id {
        select = select.filter(usage_record::Column::KeyId.eq(v));
    }
    if let Some(v) = model {
        select = select.filter(usage_record::Column::Model.eq(v));
    }
    if let Some(v) = q.status {
        select = select.filter(usage_record::Column::Status.eq(i32::from(v)));
    }
    if let Some(v) = outcome {
        select = select.filter(usage_record::Column::Outcome.eq(v));
    }
    if let Some((k, v)) = &tag {
        select = select.filter(tag_condition(backend, k, v));
    }
    if let Some((t, cid)) = cursor {
        select = select.filter(after_key(backend, t, cid, true));
    }
    let rows = select
        .order_by(started_at_order(backend), Order::Desc)
        .order_by_desc(usage_record::Column::Id)
        .limit(limit)
        .all(db)
        .await?;
    let next_cursor = match rows.last() {
        Some(last) if rows.len() as u64 == limit => Some(encode_cursor(last.started_at, last.id)),
        _ => None,
    };
    Ok(Json(RequestList {
        data: rows.iter().map(RequestSummary::from).collect(),
        next_cursor,
    }))
}

/// The attempts of a record: its failed attempts in order, then the last one.
fn attempts(r: &usage_record::Model) -> Vec<Attempt> {
    let failed: Vec<FailedAttempt> = r
        .failed_attempts
        .clone()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(failed.len() + 1);
    for (i, f) in failed.into_iter().enumerate() {
        out.push(Attempt {
            number: u32::try_from(i + 1).unwrap_or(u32::MAX),
            deployment_id: Some(f.deployment_id),
            region: f.region,
            outcome: "failed".to_owned(),
            status: f.status.map(i32::from),
            error_code: Some(f.error_code),
            error_class: f
                .error_class
                .and_then(|c| serde_json::to_value(c).ok())
                .and_then(|v| v.as_str().map(str::to_owned)),
            latency_ms: Some(f.latency_ms),
        });
    }
    out.push(Attempt {
        number: u32::try_from(out.len() + 1).unwrap_or(u32::MAX),
        deployment_id: r.deployment_id,
        region: r.region.clone(),
        outcome: r.outcome.clone(),
        status: Some(r.status),
        error_code: r.error_code.clone(),
        error_class: r.error_class.clone(),
        latency_ms: None,
    });
    out
}

/// Get one request with every attempt (and its payload, when stored).
#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Request id (`x-switchyard-request-id`)")),
    responses(
        (status = 200, body = RequestDetail),
        (status = 400, description = "The id is not a UUID", body = crate::error::ErrorBody),
        (status = 404, description = "No such request in this organization", body = crate::error::ErrorBody),
    )
)]
pub async fn get_request(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<RequestDetail>, ApiError> {
    // By id: on PostgreSQL one probe of each partition's primary-key index (`(id, started_at)`).
    let row = usage_record::Entity::find()
        .filter(usage_record::Column::Id.eq(id))
        .filter(usage_record::Column::TenantId.eq(auth.tenant_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("request"))?;
    // Payloads are shown only while the organization stores them: opting out hides the ones
    // kept so far (retention removes them).
    let opted_in = tenant::Entity::find_by_id(auth.tenant_id)
        .one(&state.db)
        .await?
        .is_some_and(|t| t.store_payloads);
    let stored = if opted_in {
        usage_payload::Entity::find()
            .filter(usage_payload::Column::Id.eq(id))
            .filter(usage_payload::Column::TenantId.eq(auth.tenant_id))
            .one(&state.db)
            .await?
    } else {
        None
    };
    let payload = stored.map(|p| Payload {
        request: p.request,
        response: p.response,
        truncated: p.truncated,
    });
    Ok(Json(RequestDetail {
        attempts: attempts(&row),
        request: RequestSummary::from(&row),
        payload,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_765_000_000_123_456_000).unwrap();
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(t, id)).unwrap(), (t, id));
        for bad in ["", "abc", "cjE6eDp5", "!!!"] {
            assert!(decode_cursor(bad).is_err(), "{bad}");
        }
    }
}
