//! `GET /audit`: the organization's audit log (see `crate::audit`), newest first, for owners
//! and admins.
//!
//! Query parameters (all optional):
//! - `action` (`create`, `update`, `delete`, `revoke`, `rotate`), `object_kind` (`api_key`,
//!   `team`, `member`, …), `object_id`, `actor_user_id`: exact matches;
//! - `since` (inclusive), `until` (exclusive): RFC 3339 timestamps on `created_at`;
//! - `limit`: 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]);
//! - `cursor`: `next_cursor` of the previous page.
//!
//! Events are ordered by id, which increases with insertion, so a page continues strictly
//! below the previous page's last id: paging neither skips nor repeats events. `next_cursor` is
//! null on the last page.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::{ApiQuery, validate};
use crate::auth::AuthUser;
use crate::entities::audit_event;
use crate::error::ApiError;
use crate::state::AppState;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 200;
/// Longest accepted filter value.
const MAX_FILTER_LEN: usize = 200;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list_audit))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// `create`, `update`, `delete`, `revoke` or `rotate`.
    pub action: Option<String>,
    /// The object kind, e.g. `api_key`, `team`, `member`, `team_member`, `organization`.
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub actor_user_id: Option<Uuid>,
    /// Events at or after this RFC 3339 timestamp.
    pub since: Option<String>,
    /// Events before this RFC 3339 timestamp.
    pub until: Option<String>,
    /// Events per page, 1 to 200 (default 50).
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One change made through the control API.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventDto {
    pub id: i64,
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub actor_user_id: Uuid,
    pub actor_session_id: Uuid,
    /// The actor's role when they acted.
    pub actor_role: String,
    /// The object as the API showed it before (null for a creation). Never holds secrets.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    /// The object as the API shows it after (null for a deletion). Never holds secrets.
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub data: Vec<AuditEventDto>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// The organization's audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, body = AuditPage),
        (status = 400, description = "Bad filter, limit, cursor or timestamp", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
    )
)]
pub async fn list_audit(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    auth.require_manage()?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format_args!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let mut select =
        audit_event::Entity::find().filter(audit_event::Column::TenantId.eq(auth.tenant_id));
    for (field, value, column) in [
        ("action", &q.action, audit_event::Column::Action),
        (
            "object_kind",
            &q.object_kind,
            audit_event::Column::ObjectKind,
        ),
        ("object_id", &q.object_id, audit_event::Column::ObjectId),
    ] {
        if let Some(v) = value {
            if v.chars().count() > MAX_FILTER_LEN {
                return Err(ApiError::invalid(
                    field,
                    format_args!("must be at most {MAX_FILTER_LEN} characters"),
                ));
            }
            select = select.filter(column.eq(v.trim()));
        }
    }
    if let Some(actor) = q.actor_user_id {
        select = select.filter(audit_event::Column::ActorUserId.eq(actor));
    }
    let backend = state.db.get_database_backend();
    if let Some(s) = q.since.as_deref() {
        let t = validate::timestamp("since", s)?;
        select = select.filter(created_at_cmp(backend, ">=", t));
    }
    if let Some(s) = q.until.as_deref() {
        let t = validate::timestamp("until", s)?;
        select = select.filter(created_at_cmp(backend, "<", t));
    }
    if let Some(c) = q.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        let below: i64 = c
            .parse()
            .map_err(|_| ApiError::invalid("cursor", "must be the next_cursor of a page"))?;
        select = select.filter(audit_event::Column::Id.lt(below));
    }
    let rows = select
        .order_by_desc(audit_event::Column::Id)
        .limit(limit)
        .all(&state.db)
        .await?;
    let next_cursor = match rows.last() {
        Some(last) if rows.len() as u64 == limit => Some(last.id.to_string()),
        _ => None,
    };
    let data = rows
        .into_iter()
        .map(|r| AuditEventDto {
            id: r.id,
            action: r.action,
            object_kind: r.object_kind,
            object_id: r.object_id,
            actor_user_id: r.actor_user_id,
            actor_session_id: r.actor_session_id,
            actor_role: r.actor_role,
            before: r.before,
            after: r.after,
            created_at: r.created_at,
        })
        .collect();
    Ok(Json(AuditPage { data, next_cursor }))
}

/// `created_at <op> t`; on SQLite through `julianday()`, since its RFC 3339 text does not sort
/// (see `super::usage`).
fn created_at_cmp(
    backend: DbBackend,
    op: &'static str,
    t: OffsetDateTime,
) -> sea_orm::sea_query::SimpleExpr {
    match backend {
        DbBackend::Sqlite => {
            Expr::cust_with_values(format!("julianday(\"created_at\") {op} julianday(?)"), [t])
        }
        _ if op == "<" => audit_event::Column::CreatedAt.lt(t),
        _ => audit_event::Column::CreatedAt.gte(t),
    }
}
