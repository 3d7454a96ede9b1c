//! Guardrails: `POST /guardrails`, `GET /guardrails`, `GET /guardrails/{id}`,
//! `PATCH /guardrails/{id}`, `DELETE /guardrails/{id}`. A guardrail is an organization's prompt
//! policy (`shared::guardrails`): PII detection (redact or block), blocked terms, a prompt
//! token cap and the tools a request may define. The gateway applies the most specific one to
//! each request (key, then team, then route, then organization); every guardrail is published
//! in `TenantConfig.guardrails` before the call returns.
//!
//! - `scope` (`organization`, `team`, `key`, `route`) and `scope_id`: absent (or null) for the
//!   organization, else one of its teams, keys or routes; an id of another organization is a
//!   404, the same as an unknown one. Each scope object has at most one guardrail, and names
//!   are unique within the organization (409 for a second one, naming the guardrail that holds
//!   the scope).
//! - The policy is checked as a whole by `shared::guardrails::Guardrail::compile`, the same
//!   check the data plane runs on every published version, and a refusal is a 400 whose
//!   message is the compiler's (it names the field: `pii.custom `ssn`: the pattern does not
//!   compile: …`). Custom patterns use the linear-time `regex` crate, so back-references and
//!   look-around are refused, as are patterns that match the empty string or compile too big.
//! - `PATCH` changes the fields it names (`null` clears `scope_id`, `max_prompt_tokens` or
//!   `allowed_tools`; inside `pii` each field given replaces that field, `custom` as a whole
//!   list; `blocked_terms` replaces the list) and validates the merged policy like `POST`.
//!
//! Owners and admins manage guardrails (as budgets); everyone reads them. A deleted team or
//! route takes its guardrail along ([`delete_for_scope`]); keys are revoked, never deleted.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::sea_query::Condition;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use shared::guardrails::{
    CustomPattern, Guardrail, GuardrailRecord, GuardrailScope, PiiDetector, PiiMode, PiiPolicy,
};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::entities::{api_key, guardrail, route, team};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/guardrails", get(list_guardrails).post(create_guardrail))
        .route(
            "/guardrails/{id}",
            get(get_guardrail)
                .patch(update_guardrail)
                .delete(delete_guardrail),
        )
}

impl TenantScoped for guardrail::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "guardrail";
    const KIND: &'static str = "guardrail";
    fn tenant_column() -> Self::Column {
        guardrail::Column::TenantId
    }
    fn id_column() -> Self::Column {
        guardrail::Column::Id
    }
    /// Oldest first.
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(guardrail::Column::CreatedAt)
            .order_by_asc(guardrail::Column::Id)
    }
}

// === wire names and their OpenAPI schemas ===

fn string_enum(values: &'static [&'static str], description: &str) -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .description(Some(description))
        .build()
}

fn scope_schema() -> utoipa::openapi::Object {
    string_enum(
        &["organization", "team", "key", "route"],
        "What the guardrail applies to: the whole organization, one team's keys, one key, or one route (requests naming it). The most specific one applies to a request: key, then team, then route, then organization.",
    )
}

fn pii_mode_schema() -> utoipa::openapi::Object {
    string_enum(
        &["off", "redact", "block"],
        "off (no PII checks), redact (findings are replaced by placeholders such as [EMAIL_1] before the prompt leaves) or block (the request is refused with 400 guardrail_blocked)",
    )
}

fn detectors_schema() -> utoipa::openapi::Array {
    use utoipa::openapi::schema::ArrayBuilder;
    ArrayBuilder::new()
        .items(string_enum(
            &["email", "phone", "card", "iban", "ip"],
            "A built-in detector (cards are Luhn checked, IBANs mod-97 checked)",
        ))
        .description(Some("Built-in detectors that run; default all of them"))
        .examples([serde_json::json!(["email", "card"])])
        .build()
}

// === DTOs ===

/// An organization's own PII pattern.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomPatternDto {
    /// Lowercase letters, digits and `_` (1 to 64): the rule is `pii.custom.<name>`, the
    /// placeholder `[<NAME>_n]`.
    #[schema(example = "employee_id")]
    pub name: String,
    /// A linear-time regular expression (the `regex` crate: no back-references or
    /// look-around), at most 1024 bytes, that does not match the empty string.
    #[schema(example = "EMP-[0-9]{6}")]
    pub pattern: String,
}

/// PII handling as sent; fields left out take their defaults (on `PATCH`: stay as they are).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PiiRequest {
    /// Default `off`.
    #[serde(default)]
    #[schema(schema_with = pii_mode_schema, required = false)]
    pub mode: Option<PiiMode>,
    #[serde(default)]
    #[schema(schema_with = detectors_schema, required = false)]
    pub detectors: Option<Vec<PiiDetector>>,
    /// The organization's own patterns (at most 32), each a rule `pii.custom.<name>`.
    #[serde(default)]
    pub custom: Option<Vec<CustomPatternDto>>,
    /// `redact` mode: put the original values back where the answer repeats a placeholder.
    #[serde(default)]
    pub restore: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGuardrailRequest {
    /// Unique within the organization, 1 to 128 bytes.
    #[schema(example = "no customer PII")]
    pub name: String,
    #[schema(schema_with = scope_schema)]
    pub scope: GuardrailScope,
    /// The team, key or route; absent for `organization`.
    #[serde(default)]
    pub scope_id: Option<Uuid>,
    /// PII handling; default off.
    #[serde(default)]
    pub pii: Option<PiiRequest>,
    /// Terms a prompt may not contain (case-insensitive, whole words), at most 1000 of 1 to 256
    /// bytes.
    #[serde(default)]
    #[schema(example = json!(["project nightingale"]))]
    pub blocked_terms: Option<Vec<String>>,
    /// The most prompt tokens (the gateway's estimate) a request may send; omit for no cap.
    #[serde(default)]
    #[schema(example = 8000)]
    pub max_prompt_tokens: Option<u32>,
    /// Tool (function) names a request may define, at most 256; omit for any.
    #[serde(default)]
    #[schema(example = json!(["get_weather"]))]
    pub allowed_tools: Option<Vec<String>>,
}

/// Changes to a guardrail; fields left out stay as they are. The merged policy is validated
/// like a new one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGuardrailRequest {
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = String, required = false)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(schema_with = scope_schema, required = false)]
    pub scope: Option<GuardrailScope>,
    /// null for `organization`.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Uuid>, required = false)]
    pub scope_id: Option<Option<Uuid>>,
    /// Each field given replaces that field (`custom` as a whole list).
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = PiiRequest, required = false)]
    pub pii: Option<PiiRequest>,
    /// Replaces the list (`[]` for none).
    #[serde(default, deserialize_with = "validate::present")]
    #[schema(value_type = Vec<String>, required = false)]
    pub blocked_terms: Option<Vec<String>>,
    /// null removes the cap.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<u32>, required = false)]
    pub max_prompt_tokens: Option<Option<u32>>,
    /// null allows any tool.
    #[serde(default, deserialize_with = "validate::nullable")]
    #[schema(value_type = Option<Vec<String>>, required = false)]
    pub allowed_tools: Option<Option<Vec<String>>>,
}

/// PII handling of a guardrail.
#[derive(Debug, Serialize, ToSchema)]
pub struct PiiDto {
    #[schema(schema_with = pii_mode_schema)]
    pub mode: PiiMode,
    #[schema(schema_with = detectors_schema)]
    pub detectors: Vec<PiiDetector>,
    pub custom: Vec<CustomPatternDto>,
    pub restore: bool,
}

/// A guardrail.
#[derive(Debug, Serialize, ToSchema)]
pub struct GuardrailDto {
    pub id: Uuid,
    pub name: String,
    #[schema(schema_with = scope_schema)]
    pub scope: GuardrailScope,
    /// The team, key or route; null for `organization`.
    pub scope_id: Option<Uuid>,
    pub pii: PiiDto,
    pub blocked_terms: Vec<String>,
    /// null: no cap.
    pub max_prompt_tokens: Option<u32>,
    /// null: any tool.
    pub allowed_tools: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GuardrailList {
    pub data: Vec<GuardrailDto>,
}

impl GuardrailDto {
    fn new(r: GuardrailRecord, created_at: OffsetDateTime, updated_at: OffsetDateTime) -> Self {
        Self {
            id: r.id,
            name: r.name,
            scope: r.scope,
            scope_id: r.scope_id,
            pii: PiiDto {
                mode: r.pii.mode,
                detectors: r.pii.detectors,
                custom: r
                    .pii
                    .custom
                    .into_iter()
                    .map(|c| CustomPatternDto {
                        name: c.name,
                        pattern: c.pattern,
                    })
                    .collect(),
                restore: r.pii.restore,
            },
            blocked_terms: r.blocked_terms,
            max_prompt_tokens: r.max_prompt_tokens,
            allowed_tools: r.allowed_tools,
            created_at,
            updated_at,
        }
    }

    /// The answer for a stored guardrail, through the record the data plane gets.
    fn stored(row: &guardrail::Model) -> Result<Self, ApiError> {
        Ok(Self::new(record(row)?, row.created_at, row.updated_at))
    }
}

/// The stored guardrail as its record (a row this version cannot read is an internal error:
/// only hand-edited data).
fn record(row: &guardrail::Model) -> Result<GuardrailRecord, ApiError> {
    row.record().ok_or_else(|| {
        ApiError::Internal(anyhow::anyhow!(
            "guardrail {} cannot be read by this version",
            row.id
        ))
    })
}

// === rules ===

impl PiiRequest {
    /// `policy` with the fields of this request applied.
    fn apply(self, policy: &mut PiiPolicy) {
        if let Some(v) = self.mode {
            policy.mode = v;
        }
        if let Some(v) = self.detectors {
            // Each detector once, in the order given.
            let mut out: Vec<PiiDetector> = Vec::with_capacity(v.len());
            for d in v {
                if !out.contains(&d) {
                    out.push(d);
                }
            }
            policy.detectors = out;
        }
        if let Some(v) = self.custom {
            policy.custom = v
                .into_iter()
                .map(|c| CustomPattern {
                    name: c.name,
                    pattern: c.pattern,
                })
                .collect();
        }
        if let Some(v) = self.restore {
            policy.restore = v;
        }
    }
}

impl UpdateGuardrailRequest {
    fn apply(self, r: &mut GuardrailRecord) {
        if let Some(v) = self.name {
            r.name = v.trim().to_owned();
        }
        if let Some(v) = self.scope {
            r.scope = v;
        }
        if let Some(v) = self.scope_id {
            r.scope_id = v;
        }
        if let Some(v) = self.pii {
            v.apply(&mut r.pii);
        }
        if let Some(v) = self.blocked_terms {
            r.blocked_terms = v;
        }
        if let Some(v) = self.max_prompt_tokens {
            r.max_prompt_tokens = v;
        }
        if let Some(v) = self.allowed_tools {
            r.allowed_tools = v;
        }
    }
}

/// The record of a `POST` body (not yet validated).
fn new_record(id: Uuid, req: CreateGuardrailRequest) -> GuardrailRecord {
    let mut pii = PiiPolicy::default();
    if let Some(p) = req.pii {
        p.apply(&mut pii);
    }
    GuardrailRecord {
        id,
        name: req.name.trim().to_owned(),
        scope: req.scope,
        scope_id: req.scope_id,
        pii,
        blocked_terms: req.blocked_terms.unwrap_or_default(),
        max_prompt_tokens: req.max_prompt_tokens,
        allowed_tools: req.allowed_tools,
    }
}

/// Checks `record` the way the data plane compiles it; the refusal is the compiler's message,
/// which names the field.
fn compiled(record: GuardrailRecord) -> Result<GuardrailRecord, ApiError> {
    Guardrail::compile(record)
        .map(|g| g.record().clone())
        .map_err(|e| ApiError::Validation(e.0))
}

/// The scope object must be a team, key or route of the caller's organization (404 otherwise,
/// like an unknown id). `compile` has already checked `scope_id` is present exactly when it
/// is needed.
async fn check_scope<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    r: &GuardrailRecord,
) -> Result<(), ApiError> {
    match (r.scope, r.scope_id) {
        (GuardrailScope::Team, Some(id)) => {
            resource::find::<team::Entity, _>(conn, tenant_id, id).await?;
        }
        (GuardrailScope::Key, Some(id)) => {
            resource::find::<api_key::Entity, _>(conn, tenant_id, id).await?;
        }
        (GuardrailScope::Route, Some(id)) => {
            resource::find::<route::Entity, _>(conn, tenant_id, id).await?;
        }
        _ => {}
    }
    Ok(())
}

/// 409 when another guardrail of the organization has `r`'s name or scope. Called after the
/// change took the organization's config lock (`Change::publish_tenant`), so two concurrent
/// writes cannot both pass; the unique indexes back it up.
async fn check_unique<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    r: &GuardrailRecord,
) -> Result<(), ApiError> {
    let same_scope = match r.scope_id {
        Some(id) => Condition::all()
            .add(guardrail::Column::Scope.eq(r.scope.as_str()))
            .add(guardrail::Column::ScopeId.eq(id)),
        None => Condition::all().add(guardrail::Column::ScopeId.is_null()),
    };
    let others = resource::scoped::<guardrail::Entity>(tenant_id)
        .filter(guardrail::Column::Id.ne(r.id))
        .filter(
            Condition::any()
                .add(guardrail::Column::Name.eq(r.name.as_str()))
                .add(same_scope),
        )
        .all(conn)
        .await?;
    if others.iter().any(|o| o.name == r.name) {
        return Err(ApiError::Conflict(
            "a guardrail with this name already exists".to_owned(),
        ));
    }
    if let Some(other) = others.first() {
        let what = match r.scope {
            GuardrailScope::Organization => "the organization",
            GuardrailScope::Team => "this team",
            GuardrailScope::Key => "this key",
            GuardrailScope::Route => "this route",
        };
        return Err(ApiError::Conflict(format!(
            "{what} already has a guardrail ({}); change that one",
            other.id
        )));
    }
    Ok(())
}

/// The row of a validated record (timestamps set by the caller).
fn active_row(tenant_id: Uuid, r: &GuardrailRecord) -> Result<guardrail::ActiveModel, ApiError> {
    let json =
        |v: serde_json::Result<serde_json::Value>| v.map_err(|e| ApiError::Internal(e.into()));
    Ok(guardrail::ActiveModel {
        id: Set(r.id),
        tenant_id: Set(tenant_id),
        name: Set(r.name.clone()),
        scope: Set(r.scope.as_str().to_owned()),
        scope_id: Set(r.scope_id),
        pii: Set(json(serde_json::to_value(&r.pii))?),
        blocked_terms: Set(json(serde_json::to_value(&r.blocked_terms))?),
        max_prompt_tokens: Set(r.max_prompt_tokens.map(i64::from)),
        allowed_tools: Set(r
            .allowed_tools
            .as_ref()
            .map(|t| json(serde_json::to_value(t)))
            .transpose()?),
        ..Default::default()
    })
}

/// Fallback of [`check_unique`] for a race the lock did not cover (never expected).
const TAKEN: &str = "a guardrail with this name or scope already exists";

/// Deletes the guardrail of `scope` object `scope_id` (a team or route being deleted) in
/// `change`, and republishes the organization's config when there was one.
pub(crate) async fn delete_for_scope(
    change: &mut Change<'_>,
    tenant_id: Uuid,
    scope: GuardrailScope,
    scope_id: Uuid,
) -> Result<(), ApiError> {
    let rows = resource::scoped::<guardrail::Entity>(tenant_id)
        .filter(guardrail::Column::Scope.eq(scope.as_str()))
        .filter(guardrail::Column::ScopeId.eq(scope_id))
        .all(change.tx())
        .await?;
    for row in rows {
        let before = GuardrailDto::stored(&row)?;
        change
            .delete::<guardrail::Entity>(row.id)
            .await?
            .before(&before);
        change.publish_tenant().await?;
    }
    Ok(())
}

// === handlers ===

/// Create a guardrail.
///
/// It is published to the data plane (and enforced) before the call returns.
#[utoipa::path(
    post,
    path = "/api/v1/guardrails",
    tag = "guardrails",
    security(("bearer" = [])),
    request_body = CreateGuardrailRequest,
    responses(
        (status = 201, body = GuardrailDto),
        (status = 400, description = "Invalid policy (the message names the field, e.g. `pii.custom `ssn`: the pattern does not compile: …`)", body = crate::error::ErrorBody),
        (status = 403, description = "Needs owner or admin", body = crate::error::ErrorBody),
        (status = 404, description = "`scope_id` is not a team, key or route of this organization", body = crate::error::ErrorBody),
        (status = 409, description = "The name is taken, or the scope already has a guardrail", body = crate::error::ErrorBody),
    )
)]
pub async fn create_guardrail(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateGuardrailRequest>,
) -> Result<(StatusCode, Json<GuardrailDto>), ApiError> {
    auth.require_manage()?;
    let record = compiled(new_record(Uuid::now_v7(), req))?;
    let mut change = Change::begin(&state, &auth).await?;
    change.publish_tenant().await?;
    check_scope(change.tx(), auth.tenant_id, &record).await?;
    check_unique(change.tx(), auth.tenant_id, &record).await?;
    let at = now();
    let mut row = active_row(auth.tenant_id, &record)?;
    row.created_at = Set(at);
    row.updated_at = Set(at);
    guardrail::Entity::insert(row)
        .exec_without_returning(change.tx())
        .await
        .on_unique_violation(TAKEN)?;
    let dto = GuardrailDto::new(record, at, at);
    change
        .audit::<guardrail::Entity>(AuditAction::Create, &dto.id)
        .after(&dto);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// List guardrails, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/guardrails",
    tag = "guardrails",
    security(("bearer" = [])),
    responses((status = 200, body = GuardrailList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_guardrails(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<GuardrailList>, ApiError> {
    let rows = resource::list::<guardrail::Entity, _>(&state.db, auth.tenant_id).await?;
    let data = rows
        .iter()
        .map(GuardrailDto::stored)
        .collect::<Result<_, _>>()?;
    Ok(Json(GuardrailList { data }))
}

/// Get one guardrail.
#[utoipa::path(
    get,
    path = "/api/v1/guardrails/{id}",
    tag = "guardrails",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Guardrail id")),
    responses((status = 200, body = GuardrailDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_guardrail(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<GuardrailDto>, ApiError> {
    let row = resource::find::<guardrail::Entity, _>(&state.db, auth.tenant_id, id).await?;
    Ok(Json(GuardrailDto::stored(&row)?))
}

/// Change a guardrail: only the fields given; the merged policy is validated like a new one.
///
/// Published to the data plane before the call returns.
#[utoipa::path(
    patch,
    path = "/api/v1/guardrails/{id}",
    tag = "guardrails",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Guardrail id")),
    request_body = UpdateGuardrailRequest,
    responses(
        (status = 200, body = GuardrailDto),
        (status = 400, description = "Invalid policy (the message names the field)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "The name is taken, or the scope already has a guardrail", body = crate::error::ErrorBody),
    )
)]
pub async fn update_guardrail(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<UpdateGuardrailRequest>,
) -> Result<Json<GuardrailDto>, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<guardrail::Entity>(id).await?;
    let current = record(&row)?;
    let mut merged = current.clone();
    req.apply(&mut merged);
    let merged = compiled(merged)?;
    if merged == current {
        return Ok(Json(GuardrailDto::new(
            current,
            row.created_at,
            row.updated_at,
        )));
    }
    change.publish_tenant().await?;
    check_scope(change.tx(), auth.tenant_id, &merged).await?;
    check_unique(change.tx(), auth.tenant_id, &merged).await?;
    let at = now();
    let mut update = active_row(auth.tenant_id, &merged)?;
    update.tenant_id = sea_orm::ActiveValue::NotSet;
    update.updated_at = Set(at);
    guardrail::Entity::update(update)
        .exec(change.tx())
        .await
        .on_unique_violation(TAKEN)?;
    let before = GuardrailDto::new(current, row.created_at, row.updated_at);
    let dto = GuardrailDto::new(merged, row.created_at, at);
    change
        .audit::<guardrail::Entity>(AuditAction::Update, &id)
        .before(&before)
        .after(&dto);
    change.commit().await?;
    Ok(Json(dto))
}

/// Delete a guardrail. Requests are no longer checked against it once the call returns.
#[utoipa::path(
    delete,
    path = "/api/v1/guardrails/{id}",
    tag = "guardrails",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Guardrail id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
    )
)]
pub async fn delete_guardrail(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let row = change.find::<guardrail::Entity>(id).await?;
    let before = GuardrailDto::stored(&row)?;
    change
        .delete::<guardrail::Entity>(id)
        .await?
        .before(&before);
    change.publish_tenant().await?;
    change.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn create(v: serde_json::Value) -> CreateGuardrailRequest {
        serde_json::from_value(v).expect("deserializes")
    }

    #[test]
    fn a_bare_body_gets_the_defaults() {
        let r = new_record(
            Uuid::nil(),
            create(serde_json::json!({"name": "  base  ", "scope": "organization"})),
        );
        assert_eq!(r.name, "base");
        assert_eq!(r.pii, PiiPolicy::default());
        assert!(compiled(r).is_ok());
    }

    #[test]
    fn patches_merge_pii_field_by_field() {
        let mut r = new_record(
            Uuid::nil(),
            create(serde_json::json!({
                "name": "g", "scope": "organization",
                "pii": {"mode": "redact", "custom": [{"name": "emp", "pattern": "EMP-[0-9]+"}]},
            })),
        );
        let patch: UpdateGuardrailRequest = serde_json::from_value(serde_json::json!({
            "pii": {"mode": "block", "detectors": ["email", "email", "ip"]},
            "max_prompt_tokens": 100,
        }))
        .unwrap();
        patch.apply(&mut r);
        assert_eq!(r.pii.mode, PiiMode::Block);
        assert_eq!(r.pii.detectors, vec![PiiDetector::Email, PiiDetector::Ip]);
        assert_eq!(r.pii.custom.len(), 1, "custom stays");
        assert_eq!(r.max_prompt_tokens, Some(100));
        let clear: UpdateGuardrailRequest =
            serde_json::from_value(serde_json::json!({"max_prompt_tokens": null})).unwrap();
        clear.apply(&mut r);
        assert_eq!(r.max_prompt_tokens, None);
    }

    #[test]
    fn the_compiler_names_the_field() {
        let r = new_record(
            Uuid::nil(),
            create(serde_json::json!({
                "name": "g", "scope": "organization",
                "pii": {"mode": "redact", "custom": [{"name": "dup", "pattern": "(a)\\1"}]},
            })),
        );
        let e = compiled(r).unwrap_err().to_string();
        assert!(e.starts_with("pii.custom `dup`"), "{e}");
        let r = new_record(
            Uuid::nil(),
            create(serde_json::json!({"name": "g", "scope": "team"})),
        );
        assert!(compiled(r).unwrap_err().to_string().contains("scope_id"));
    }
}
