//! `GET /usage`: the organization's usage records, newest first, with totals; and
//! `GET /usage/export`: the same records of a range as CSV (see [`export_usage`]).
//!
//! Query parameters:
//! - `limit`: rows per page, 1 to 1000 (default 50).
//! - `before`: continue after a previous page: the `next_before` value of that page (a record
//!   id), or an RFC 3339 timestamp (rows that started strictly earlier).
//! - `since`, `until`: an optional window (RFC 3339, `since` inclusive, `until` exclusive)
//!   applied to both the rows and the totals.
//!
//! `totals` cover every record of the organization in the window, not just the page.
//!
//! Rows are ordered by `(started_at, id)` descending, and pages continue from a record id, so
//! paging neither skips nor repeats rows even when several share a timestamp. SQLite keeps
//! timestamps as RFC 3339 text whose fractional part varies in length, which does not sort as
//! text; there the order and comparisons go through `julianday()` (millisecond precision),
//! with the id breaking ties, which keeps pages consistent.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sea_orm::sea_query::{Condition, Expr, SimpleExpr};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, FromQueryResult, Order, QueryFilter, QueryOrder,
    QuerySelect, Select,
};
use serde::{Deserialize, Serialize};
use shared::money::format_usd;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiQuery, validate};
use crate::auth::AuthUser;
use crate::entities::{api_key, usage_record};
use crate::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/usage", get(list_usage))
        .route("/usage/export", get(export_usage))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Rows per page, 1 to 1000 (default 50).
    pub limit: Option<u64>,
    /// A record id (`next_before` of the previous page) or an RFC 3339 timestamp.
    pub before: Option<String>,
    /// Only records that started at or after this RFC 3339 timestamp (rows and totals).
    pub since: Option<String>,
    /// Only records that started before this RFC 3339 timestamp (rows and totals).
    pub until: Option<String>,
}

/// One request through the gateway.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageRow {
    /// The request id (`x-switchyard-request-id` of the gateway response).
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    pub key_id: Option<Uuid>,
    /// The key's name, if it still exists.
    pub key_name: Option<String>,
    pub team_id: Option<Uuid>,
    /// The model name the client asked for.
    pub model: String,
    /// Provider kind wire name (`openai`, `anthropic`, `bedrock`, …), if a deployment was chosen.
    pub provider: Option<String>,
    pub upstream_model: Option<String>,
    /// Which API was called, e.g. `chat.completions`.
    pub endpoint: String,
    /// HTTP status returned to the client.
    pub status: i32,
    /// `success`, `error`, `truncated` or `client_disconnected`.
    pub outcome: String,
    pub error_code: Option<String>,
    pub stream: bool,
    /// All input tokens, cached ones included.
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Of `prompt_tokens`, how many were read from the provider's prompt cache.
    pub cache_read_tokens: i64,
    /// Of `prompt_tokens`, how many were written to the provider's prompt cache.
    pub cache_write_tokens: i64,
    /// True when the counts were estimated because the provider reported none.
    pub tokens_estimated: bool,
    /// Cost in micro-dollars.
    pub cost_micros: i64,
    /// Cost in USD as an exact decimal string, e.g. `"0.0075"`.
    pub cost_usd: String,
    pub latency_ms: i64,
    /// Time to first token (streams only).
    pub ttft_ms: Option<i64>,
}

/// Sums over every record in the window (not only the page).
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageTotals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_micros: i64,
    /// Exact decimal string.
    pub cost_usd: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageResponse {
    pub data: Vec<UsageRow>,
    pub totals: UsageTotals,
    /// Pass as `before` to get the next page; null on the last page.
    pub next_before: Option<String>,
}

#[derive(Debug, FromQueryResult)]
struct TotalsRow {
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    cache_read_tokens: i64,
    cache_write_tokens: i64,
    cost_micros: i64,
}

/// List usage records, newest first, with totals.
#[utoipa::path(
    get,
    path = "/api/v1/usage",
    tag = "usage",
    security(("bearer" = [])),
    params(UsageQuery),
    responses(
        (status = 200, body = UsageResponse),
        (status = 400, description = "Bad limit, cursor or timestamp", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    )
)]
pub async fn list_usage(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<Json<UsageResponse>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format_args!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let since = q
        .since
        .as_deref()
        .map(|s| validate::timestamp("since", s))
        .transpose()?;
    let until = q
        .until
        .as_deref()
        .map(|s| validate::timestamp("until", s))
        .transpose()?;
    let db = &state.db;
    let backend = db.get_database_backend();

    let in_window = |mut select: Select<usage_record::Entity>| {
        select = select.filter(usage_record::Column::TenantId.eq(auth.tenant_id));
        if let Some(t) = since {
            select = select.filter(started_at_cmp(backend, Cmp::Ge, t));
        }
        if let Some(t) = until {
            select = select.filter(started_at_cmp(backend, Cmp::Lt, t));
        }
        select
    };

    let mut page = in_window(usage_record::Entity::find());
    match q.before.as_deref().map(str::trim) {
        None | Some("") => {}
        Some(before) => {
            if let Ok(cursor_id) = Uuid::parse_str(before) {
                let cursor = usage_record::Entity::find_by_id(cursor_id)
                    .filter(usage_record::Column::TenantId.eq(auth.tenant_id))
                    .one(db)
                    .await?
                    .ok_or_else(|| ApiError::invalid("before", "no such usage record"))?;
                page = page.filter(
                    Condition::any()
                        .add(started_at_cmp(backend, Cmp::Lt, cursor.started_at))
                        .add(
                            Condition::all()
                                .add(started_at_cmp(backend, Cmp::Eq, cursor.started_at))
                                .add(usage_record::Column::Id.lt(cursor_id)),
                        ),
                );
            } else {
                let t = validate::timestamp("before", before).map_err(|_| {
                    ApiError::invalid(
                        "before",
                        "must be a usage record id or an RFC 3339 timestamp",
                    )
                })?;
                page = page.filter(started_at_cmp(backend, Cmp::Lt, t));
            }
        }
    }
    let rows = page
        .order_by(started_at_order(backend), Order::Desc)
        .order_by_desc(usage_record::Column::Id)
        .limit(limit)
        .all(db)
        .await?;

    let key_ids: Vec<Uuid> = rows.iter().filter_map(|r| r.key_id).collect();
    let key_names: HashMap<Uuid, String> = if key_ids.is_empty() {
        HashMap::new()
    } else {
        super::resource::scoped::<api_key::Entity>(auth.tenant_id)
            .filter(api_key::Column::Id.is_in(key_ids))
            .all(db)
            .await?
            .into_iter()
            .map(|k| (k.id, k.name))
            .collect()
    };

    let totals = in_window(usage_record::Entity::find())
        .select_only()
        .column_as(Expr::cust("COUNT(*)"), "requests")
        .column_as(sum("prompt_tokens"), "prompt_tokens")
        .column_as(sum("completion_tokens"), "completion_tokens")
        .column_as(sum("cache_read_tokens"), "cache_read_tokens")
        .column_as(sum("cache_write_tokens"), "cache_write_tokens")
        .column_as(sum("cost_micros"), "cost_micros")
        .into_model::<TotalsRow>()
        .one(db)
        .await?
        .unwrap_or(TotalsRow {
            requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cache_read_tokens: 0,
            cache_write_tokens: 0,
            cost_micros: 0,
        });

    let next_before = match rows.last() {
        Some(last) if rows.len() as u64 == limit => Some(last.id.to_string()),
        _ => None,
    };
    let data = rows
        .into_iter()
        .map(|r| UsageRow {
            key_name: r.key_id.and_then(|k| key_names.get(&k).cloned()),
            cost_usd: format_usd(r.cost_micros),
            id: r.id,
            started_at: r.started_at,
            key_id: r.key_id,
            team_id: r.team_id,
            model: r.model,
            provider: r.provider,
            upstream_model: r.upstream_model,
            endpoint: r.endpoint,
            status: r.status,
            outcome: r.outcome,
            error_code: r.error_code,
            stream: r.stream,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cache_read_tokens: r.cache_read_tokens,
            cache_write_tokens: r.cache_write_tokens,
            tokens_estimated: r.tokens_estimated,
            cost_micros: r.cost_micros,
            latency_ms: r.latency_ms,
            ttft_ms: r.ttft_ms,
        })
        .collect();
    Ok(Json(UsageResponse {
        data,
        totals: UsageTotals {
            requests: totals.requests,
            prompt_tokens: totals.prompt_tokens,
            completion_tokens: totals.completion_tokens,
            cache_read_tokens: totals.cache_read_tokens,
            cache_write_tokens: totals.cache_write_tokens,
            cost_micros: totals.cost_micros,
            cost_usd: format_usd(totals.cost_micros),
        },
        next_before,
    }))
}

/// `SUM(col)` as a 64-bit integer, 0 when there are no rows. (PostgreSQL's SUM of bigint is
/// numeric; the cast brings it back to bigint.)
pub(crate) fn sum(column: &str) -> SimpleExpr {
    Expr::cust(format!("CAST(COALESCE(SUM(\"{column}\"), 0) AS BIGINT)"))
}

/// What rows are ordered by: the column on PostgreSQL, its Julian day on SQLite (see module docs).
pub(crate) fn started_at_order(backend: DbBackend) -> SimpleExpr {
    match backend {
        DbBackend::Sqlite => Expr::cust("julianday(\"started_at\")"),
        _ => Expr::col(usage_record::Column::StartedAt),
    }
}

/// A comparison of `started_at` with a timestamp.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Lt,
    Eq,
    Gt,
    Ge,
}

/// `started_at <cmp> t`, consistent with [`started_at_order`].
pub(crate) fn started_at_cmp(backend: DbBackend, cmp: Cmp, t: OffsetDateTime) -> SimpleExpr {
    let col = usage_record::Column::StartedAt;
    match backend {
        DbBackend::Sqlite => {
            let op = match cmp {
                Cmp::Lt => "<",
                Cmp::Eq => "=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
            };
            Expr::cust_with_values(format!("julianday(\"started_at\") {op} julianday(?)"), [t])
        }
        _ => match cmp {
            Cmp::Lt => col.lt(t),
            Cmp::Eq => col.eq(t),
            Cmp::Gt => col.gt(t),
            Cmp::Ge => col.gte(t),
        },
    }
}

/// Rows strictly after `(started_at, id)` in the order `(started_at, id)` descending
/// (`newest_first`) or ascending: the keyset condition of cursor paging.
pub(crate) fn after_key(
    backend: DbBackend,
    started_at: OffsetDateTime,
    id: Uuid,
    newest_first: bool,
) -> Condition {
    let (cmp, id_cmp) = if newest_first {
        (Cmp::Lt, usage_record::Column::Id.lt(id))
    } else {
        (Cmp::Gt, usage_record::Column::Id.gt(id))
    };
    Condition::any()
        .add(started_at_cmp(backend, cmp, started_at))
        .add(
            Condition::all()
                .add(started_at_cmp(backend, Cmp::Eq, started_at))
                .add(id_cmp),
        )
}

/// Columns of the CSV export, in order (a contract: documented in the README).
pub const EXPORT_COLUMNS: [&str; 28] = [
    "id",
    "started_at",
    "key_id",
    "team_id",
    "model",
    "provider",
    "upstream_model",
    "deployment_id",
    "route",
    "region",
    "endpoint",
    "stream",
    "status",
    "outcome",
    "error_code",
    "error_class",
    "cache_hit",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tokens_estimated",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "tags",
    "guardrails",
];

/// Rows read per database round trip of the export.
const EXPORT_PAGE: u64 = 1000;
/// Longest range one export may cover.
const MAX_EXPORT_DAYS: i64 = 366;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Start of the range (RFC 3339, inclusive); default 24 hours before `to`.
    pub from: Option<String>,
    /// End of the range (RFC 3339, exclusive); default now.
    pub to: Option<String>,
}

/// One CSV field: quoted when it holds a comma, quote, CR or LF (quotes doubled, RFC 4180).
/// Free text that a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab
/// or CR) gets a leading `'`.
fn csv_text(out: &mut String, value: &str) {
    let guarded = value.starts_with(['=', '+', '-', '@', '\t', '\r']);
    let quote = guarded || value.contains([',', '"', '\n', '\r']);
    if quote {
        out.push('"');
    }
    if guarded {
        out.push('\'');
    }
    for c in value.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    if quote {
        out.push('"');
    }
}

/// One record as a CSV line (with its `\r\n`).
fn csv_line(out: &mut String, r: &usage_record::Model) {
    use std::fmt::Write;
    let opt = |v: Option<String>| v.unwrap_or_default();
    let started = r
        .started_at
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let fields: [(String, bool); 28] = [
        (r.id.to_string(), false),
        (started, false),
        (opt(r.key_id.map(|u| u.to_string())), false),
        (opt(r.team_id.map(|u| u.to_string())), false),
        (r.model.clone(), true),
        (opt(r.provider.clone()), true),
        (opt(r.upstream_model.clone()), true),
        (opt(r.deployment_id.map(|u| u.to_string())), false),
        (opt(r.route.clone()), true),
        (opt(r.region.clone()), true),
        (r.endpoint.clone(), true),
        (r.stream.to_string(), false),
        (r.status.to_string(), false),
        (r.outcome.clone(), true),
        (opt(r.error_code.clone()), true),
        (opt(r.error_class.clone()), true),
        (r.cache_hit.to_string(), false),
        (r.attempts.to_string(), false),
        (r.prompt_tokens.to_string(), false),
        (r.completion_tokens.to_string(), false),
        (r.cache_read_tokens.to_string(), false),
        (r.cache_write_tokens.to_string(), false),
        (r.tokens_estimated.to_string(), false),
        (format_usd(r.cost_micros), false),
        (r.latency_ms.to_string(), false),
        (opt(r.ttft_ms.map(|v| v.to_string())), false),
        (opt(r.tags.as_ref().map(|t| t.to_string())), true),
        (opt(r.guardrails.as_ref().map(|g| g.to_string())), true),
    ];
    for (i, (value, text)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if *text {
            csv_text(out, value);
        } else {
            let _ = write!(out, "{value}");
        }
    }
    out.push_str("\r\n");
}

/// Where the export stream is.
struct ExportCursor {
    db: sea_orm::DatabaseConnection,
    tenant_id: Uuid,
    from: OffsetDateTime,
    to: OffsetDateTime,
    /// `(started_at, id)` of the last row sent; `None` before the first page.
    after: Option<(OffsetDateTime, Uuid)>,
    header_sent: bool,
    done: bool,
}

/// The next chunk of the export: the header, then one page of rows per call.
async fn next_chunk(
    mut c: ExportCursor,
) -> Option<(Result<axum::body::Bytes, std::io::Error>, ExportCursor)> {
    if !c.header_sent {
        c.header_sent = true;
        let mut line = EXPORT_COLUMNS.join(",");
        line.push_str("\r\n");
        return Some((Ok(line.into()), c));
    }
    if c.done {
        return None;
    }
    let backend = c.db.get_database_backend();
    let mut page = usage_record::Entity::find()
        .filter(usage_record::Column::TenantId.eq(c.tenant_id))
        .filter(started_at_cmp(backend, Cmp::Ge, c.from))
        .filter(started_at_cmp(backend, Cmp::Lt, c.to));
    if let Some((t, id)) = c.after {
        page = page.filter(after_key(backend, t, id, false));
    }
    let rows = match page
        .order_by(started_at_order(backend), Order::Asc)
        .order_by_asc(usage_record::Column::Id)
        .limit(EXPORT_PAGE)
        .all(&c.db)
        .await
    {
        Ok(rows) => rows,
        Err(e) => {
            // The 200 and the header are gone already: cut the body so the client sees a
            // truncated transfer rather than a complete-looking file.
            tracing::error!(error = %e, "usage export failed mid-stream");
            c.done = true;
            return Some((Err(std::io::Error::other("usage export failed")), c));
        }
    };
    if (rows.len() as u64) < EXPORT_PAGE {
        c.done = true;
    }
    let last = rows.last()?;
    c.after = Some((last.started_at, last.id));
    let mut out = String::with_capacity(rows.len() * 256);
    for r in &rows {
        csv_line(&mut out, r);
    }
    Some((Ok(out.into()), c))
}

/// Export the organization's usage records of a range as CSV, oldest first.
///
/// `text/csv` with a header row and one row per request; columns, in order: `id`,
/// `started_at` (RFC 3339, UTC), `key_id`, `team_id`, `model`, `provider`, `upstream_model`,
/// `deployment_id`, `route`, `region`, `endpoint`, `stream`, `status`, `outcome`,
/// `error_code`, `error_class`, `cache_hit`, `attempts`, `prompt_tokens`,
/// `completion_tokens`, `cache_read_tokens`, `cache_write_tokens`, `tokens_estimated`,
/// `cost_usd` (exact decimal), `latency_ms`, `ttft_ms`, `tags` (a JSON object), `guardrails`
/// (a JSON array of the guardrail's decisions: `guardrail_id`, `rule`, `action`, `count`).
/// Empty field = not set. Fields are quoted per RFC 4180 when needed; text that a spreadsheet would read as
/// a formula gets a leading `'`. The body is streamed page by page (1000 rows per database
/// read), so a long range is never held in memory. Range: `from`/`to` as RFC 3339 (default the
/// last 24 hours, at most 366 days).
#[utoipa::path(
    get,
    path = "/api/v1/usage/export",
    tag = "usage",
    security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "CSV, one row per request", content_type = "text/csv", body = String),
        (status = 400, description = "Bad range", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
    )
)]
pub async fn export_usage(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let (from, to) = super::analytics::range(
        q.from.as_deref(),
        q.to.as_deref(),
        OffsetDateTime::now_utc(),
        24 * 3600,
        MAX_EXPORT_DAYS,
    )?;
    let cursor = ExportCursor {
        db: state.db.clone(),
        tenant_id: auth.tenant_id,
        from,
        to,
        after: None,
        header_sent: false,
        done: false,
    };
    let body = axum::body::Body::from_stream(futures::stream::unfold(cursor, next_chunk));
    let name = format!(
        "attachment; filename=\"usage-{}-{}.csv\"",
        from.unix_timestamp(),
        to.unix_timestamp()
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, name),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::csv_text;

    fn esc(v: &str) -> String {
        let mut s = String::new();
        csv_text(&mut s, v);
        s
    }

    #[test]
    fn csv_fields_are_escaped() {
        assert_eq!(esc("gpt-4o"), "gpt-4o");
        assert_eq!(esc("a,b"), "\"a,b\"");
        assert_eq!(esc("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(esc("two\nlines"), "\"two\nlines\"");
        assert_eq!(esc("=HYPERLINK(1)"), "\"'=HYPERLINK(1)\"");
    }
}
