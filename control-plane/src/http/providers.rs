//! Provider credentials: `POST /providers`, `GET /providers`, `GET /providers/{id}`,
//! `DELETE /providers/{id}`.
//!
//! Every provider kind of `shared::config::ProviderKind` is accepted; an unknown kind is a 400
//! that lists the valid ones. What each kind needs:
//!
//! | kind | required | optional |
//! | ---- | -------- | -------- |
//! | `openai`, `anthropic`, `gemini`, `mistral`, `groq`, `deepseek`, `together`, `fireworks`, `xai`, `openrouter` | `api_key` | `base_url` (overrides the provider's public endpoint) |
//! | `openai_compatible` | `base_url` | `api_key` |
//! | `vllm`, `ollama`, `llamacpp` | | `base_url` (defaults `http://localhost:8000/v1`, `:11434/v1`, `:8080/v1`), `api_key` |
//! | `azure_openai` | `base_url` (the resource endpoint, `https://…`; plain `http` only on a loopback address), `api_key` | `api_version` (default [`DEFAULT_AZURE_API_VERSION`], stored on the credential) |
//! | `bedrock` | `region` (e.g. `us-east-1`), `access_key_id`, `secret_access_key` | `base_url` (a VPC endpoint or proxy; default `https://bedrock-runtime.{region}.amazonaws.com`) |
//! | `mock` | | `base_url`, `api_key` (unused) |
//!
//! Fields a kind does not use are refused (400) rather than silently stored. The kind-specific
//! settings are explicit fields; a generic `options` object is not accepted, so every stored
//! setting has been validated. The non-secret ones (`api_version`, `region`, `access_key_id`)
//! are stored in the credential's `options` and published in `ProviderRecord.options`.
//!
//! Addresses: `base_url` is parsed with WHATWG rules (as the data plane's HTTP client parses
//! it), must be http(s), and must not carry credentials (`user:pass@`), a query or a fragment;
//! it is stored normalized. Its host is checked against the egress policy
//! (`SWITCHYARD_UPSTREAM_ALLOW_CIDRS`, see `shared::egress`) when the provider is created: an IP
//! literal directly, a name after resolving it (at most 2 s; a name that does not resolve is
//! accepted, because the data plane checks every connection again after its own resolution).
//! A local kind without `base_url` is checked with its default (`http://localhost:…`). Answers
//! show `effective_base_url`, the URL the gateway calls (the kind's default when none was given).
//!
//! Secrets (the `api_key`, or Bedrock's `secret_access_key`, which takes the api key's place)
//! are sealed with the master key (AES-256-GCM, the provider id bound as associated data, see
//! `shared::crypto`) before they reach the database; responses only say whether one is set
//! (`has_api_key`). Every change bumps the tenant's config version and is published to the data
//! plane before the call returns. Owners and admins manage providers.

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Select,
};
use serde::{Deserialize, Serialize};
use shared::config::ProviderKind;
use shared::egress::EgressPolicy;
use time::OffsetDateTime;
use url::{Host, Url};
use utoipa::ToSchema;
use uuid::Uuid;

use super::resource::{self, Change, TenantScoped};
use super::{ApiJson, ApiPath, now, validate};
use crate::audit::AuditAction;
use crate::auth::AuthUser;
use crate::catalog::provider_kind_names;
use crate::entities::{model_deployment, provider_credential};
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;

/// Longest accepted provider API key (or secret access key).
const MAX_API_KEY_LEN: usize = 4096;
/// The Azure OpenAI `api-version` stored when a credential gives none: the latest GA
/// data-plane inference version (the data plane's Azure adapter uses the same default).
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";
/// Option keys, as published in `ProviderRecord.options`.
pub const OPTION_API_VERSION: &str = "api_version";
pub const OPTION_REGION: &str = "region";
pub const OPTION_ACCESS_KEY_ID: &str = "access_key_id";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers", get(list_providers).post(create_provider))
        .route("/providers/{id}", get(get_provider).delete(delete_provider))
}

impl TenantScoped for provider_credential::Entity {
    type Id = Uuid;
    const NOUN: &'static str = "provider";
    const KIND: &'static str = "provider";
    fn tenant_column() -> Self::Column {
        provider_credential::Column::TenantId
    }
    fn id_column() -> Self::Column {
        provider_credential::Column::Id
    }
    fn ordered(select: Select<Self>) -> Select<Self> {
        select
            .order_by_asc(provider_credential::Column::CreatedAt)
            .order_by_asc(provider_credential::Column::Id)
    }
}

/// OpenAPI schema of `kind`: one of the provider kind wire names.
fn kind_schema() -> utoipa::openapi::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ProviderKind::ALL.iter().map(|k| k.as_str())))
        .description(Some(
            "The provider kind: its wire protocol, defaults and required fields (see POST /api/v1/providers)",
        ))
        .examples([serde_json::json!("openai")])
        .build()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProviderRequest {
    /// Unique within the organization.
    #[schema(example = "openai-prod")]
    pub name: String,
    /// `openai`, `openai_compatible`, `mock`, `anthropic`, `gemini`, `azure_openai`, `bedrock`,
    /// `mistral`, `groq`, `deepseek`, `together`, `fireworks`, `xai`, `openrouter`, `vllm`,
    /// `ollama` or `llamacpp`.
    #[schema(schema_with = kind_schema)]
    pub kind: String,
    /// Base URL including the version path, e.g. `http://127.0.0.1:8000/v1`. Required for
    /// `openai_compatible`; for `azure_openai` the resource endpoint
    /// (`https://{resource}.openai.azure.com`; plain http only on localhost); optional (an
    /// override) for the others.
    #[serde(default)]
    pub base_url: Option<String>,
    /// The provider's API key. Stored sealed; never returned. Required for the hosted
    /// providers and `azure_openai`; refused for `bedrock` (use `secret_access_key`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// `azure_openai` only: the `api-version` query parameter (default `2024-10-21`).
    #[serde(default)]
    #[schema(example = "2024-10-21")]
    pub api_version: Option<String>,
    /// `bedrock` only (required): the AWS region, e.g. `us-east-1`.
    #[serde(default)]
    #[schema(example = "us-east-1")]
    pub region: Option<String>,
    /// `bedrock` only (required): the IAM access key id. Not secret; returned in `options`.
    #[serde(default)]
    #[schema(example = "AKIAIOSFODNN7EXAMPLE")]
    pub access_key_id: Option<String>,
    /// `bedrock` only (required): the IAM secret access key. Stored sealed; never returned.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Not accepted: kind-specific settings are the explicit fields above.
    #[serde(default)]
    #[schema(ignore)]
    pub options: Option<serde_json::Value>,
}

/// A provider credential. Secrets are never returned.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderDto {
    pub id: Uuid,
    pub name: String,
    /// The provider kind wire name, e.g. `openai` or `bedrock`.
    #[schema(example = "openai")]
    pub kind: String,
    /// The `base_url` given at creation (normalized); null when the kind's default is used.
    pub base_url: Option<String>,
    /// The URL the gateway calls: `base_url`, else the kind's default (for `bedrock`, the
    /// region's endpoint); null only for `mock`, which calls nothing.
    #[schema(example = "https://api.openai.com/v1")]
    pub effective_base_url: Option<String>,
    /// Whether a secret is stored (the API key; for `bedrock`, the secret access key).
    pub has_api_key: bool,
    /// Non-secret settings: `api_version` (Azure OpenAI), `region` and `access_key_id`
    /// (Bedrock). Empty for other kinds.
    #[schema(example = json!({"region": "us-east-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE"}))]
    pub options: BTreeMap<String, String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&provider_credential::Model> for ProviderDto {
    fn from(p: &provider_credential::Model) -> Self {
        let options = p.option_map();
        Self {
            id: p.id,
            name: p.name.clone(),
            kind: p.kind.clone(),
            base_url: p.base_url.clone(),
            effective_base_url: ProviderKind::parse(&p.kind)
                .and_then(|k| effective_base_url(k, p.base_url.as_deref(), &options))
                .or_else(|| p.base_url.clone()),
            has_api_key: p.api_key_sealed.is_some(),
            options,
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub data: Vec<ProviderDto>,
}

/// What a validated request stores.
#[derive(Debug, PartialEq, Eq)]
struct ValidCredential {
    kind: ProviderKind,
    /// The stored form (normalized, no trailing slash).
    base_url: Option<String>,
    /// The plaintext secret to seal (API key or secret access key).
    secret: Option<String>,
    options: BTreeMap<String, String>,
    /// What the egress check looks at, if anything.
    upstream: Option<UpstreamUrl>,
}

/// The URL whose host the write-time egress check judges.
#[derive(Debug, PartialEq, Eq)]
enum UpstreamUrl {
    /// The request's `base_url`.
    Given(Url),
    /// The kind's default, which points at this machine.
    Default(Url),
}

impl ValidCredential {
    /// Refuses a provider whose address the egress policy refuses (see
    /// `validate::upstream_address`: unresolvable names pass, the data plane checks again).
    async fn check_egress(&self, policy: &EgressPolicy) -> Result<(), ApiError> {
        match &self.upstream {
            None => Ok(()),
            Some(UpstreamUrl::Given(url)) => {
                validate::upstream_address("base_url", url, policy).await
            }
            Some(UpstreamUrl::Default(url)) => validate::upstream_address("base_url", url, policy)
                .await
                .map_err(|e| {
                    let problem = e.to_string();
                    let problem = problem.strip_prefix("base_url: ").unwrap_or(&problem);
                    ApiError::invalid(
                        "base_url",
                        format_args!(
                            "is not set, and the default of kind {} ({}) is refused: {problem}; set base_url to the server's address",
                            self.kind.as_str(),
                            validate::stored_url(url)
                        ),
                    )
                }),
        }
    }
}

/// Whether a kind requires, allows or refuses a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    Optional,
    Refused,
}

/// The per-kind rules of the module docs' table: (base_url, api_key).
fn needs(kind: ProviderKind) -> (Need, Need) {
    use Need::{Optional, Refused, Required};
    match kind {
        ProviderKind::OpenAi
        | ProviderKind::Anthropic
        | ProviderKind::Gemini
        | ProviderKind::Mistral
        | ProviderKind::Groq
        | ProviderKind::DeepSeek
        | ProviderKind::Together
        | ProviderKind::Fireworks
        | ProviderKind::Xai
        | ProviderKind::OpenRouter => (Optional, Required),
        ProviderKind::OpenAiCompatible => (Required, Optional),
        ProviderKind::Vllm | ProviderKind::Ollama | ProviderKind::LlamaCpp => (Optional, Optional),
        ProviderKind::AzureOpenAi => (Required, Required),
        ProviderKind::Bedrock => (Optional, Refused),
        ProviderKind::Mock => (Optional, Optional),
    }
}

/// A trimmed value; an empty or blank string counts as absent for URLs and names but is an
/// error for secrets (see [`secret`]).
fn present(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|s| !s.is_empty())
}

/// A secret: refused when empty (the client probably meant to send one) or too long.
fn secret<'a>(field: &str, v: Option<&'a str>) -> Result<Option<&'a str>, ApiError> {
    match v.map(str::trim) {
        Some("") => Err(ApiError::invalid(
            field,
            "must not be empty; omit it if the provider needs none",
        )),
        Some(k) if k.len() > MAX_API_KEY_LEN => Err(ApiError::invalid(
            field,
            format_args!("must be at most {MAX_API_KEY_LEN} bytes"),
        )),
        other => Ok(other),
    }
}

/// An AWS region name such as `us-east-1`, `eu-central-1` or `us-gov-west-1`: a two-letter
/// area, one or more lowercase words, and a number.
fn aws_region(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    let parts: Vec<&str> = v.split('-').collect();
    let ok = v.len() <= 32
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| (1..=2).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid(
            "region",
            "must be an AWS region such as us-east-1 or eu-central-1",
        ))
    }
}

/// An IAM access key id: 4 to 128 ASCII letters and digits (real ones are 20, e.g.
/// `AKIAIOSFODNN7EXAMPLE`). Catches a secret pasted into the wrong field.
fn access_key_id(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if (4..=128).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid(
            "access_key_id",
            "must be an IAM access key id (letters and digits, e.g. AKIAIOSFODNN7EXAMPLE)",
        ))
    }
}

/// An Azure `api-version` such as `2024-10-21` or `2025-04-01-preview`: letters, digits, `-`
/// and `.` only (it becomes a query parameter).
fn api_version(value: &str) -> Result<String, ApiError> {
    let v = value.trim();
    if (1..=64).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        Ok(v.to_owned())
    } else {
        Err(ApiError::invalid(
            "api_version",
            "must be an Azure OpenAI API version such as 2024-10-21",
        ))
    }
}

/// Whether an (already validated) URL points at this machine: `localhost`, `127.x.x.x` or
/// `[::1]`. Plain http is fine there (a local proxy or a test fake); it never crosses a network.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// The URL the data plane calls for a provider: its `base_url`, else the kind's default
/// (Bedrock's depends on the region); `None` for `mock`, which calls nothing.
pub(crate) fn effective_base_url(
    kind: ProviderKind,
    base_url: Option<&str>,
    options: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(url) = base_url {
        return Some(url.to_owned());
    }
    match kind {
        ProviderKind::Bedrock => options
            .get(OPTION_REGION)
            .map(|region| format!("https://bedrock-runtime.{region}.amazonaws.com")),
        other => other.default_base_url().map(str::to_owned),
    }
}

/// Applies the per-kind rules to a request. Pure, so every rule has a unit test.
fn validate_credential(req: &CreateProviderRequest) -> Result<ValidCredential, ApiError> {
    if req.options.is_some() {
        return Err(ApiError::invalid(
            "options",
            "is not accepted; set api_version (azure_openai) or region and access_key_id (bedrock) as fields",
        ));
    }
    let kind = ProviderKind::parse(req.kind.trim()).ok_or_else(|| {
        ApiError::invalid(
            "kind",
            format_args!(
                "unknown provider kind {:?}; valid kinds: {}",
                validate::preview(&req.kind, 32),
                provider_kind_names()
            ),
        )
    })?;
    let k = kind.as_str();
    let (base_need, key_need) = needs(kind);

    let base_url = match present(req.base_url.as_deref()) {
        Some(url) => {
            let url = validate::http_url("base_url", url)?;
            if kind == ProviderKind::AzureOpenAi && url.scheme() != "https" && !is_loopback(&url) {
                return Err(ApiError::invalid(
                    "base_url",
                    "must be the https:// endpoint of the Azure OpenAI resource, e.g. https://my-resource.openai.azure.com (plain http only on localhost)",
                ));
            }
            Some(url)
        }
        None if base_need == Need::Required => {
            let example = if kind == ProviderKind::AzureOpenAi {
                " (the resource endpoint, e.g. https://my-resource.openai.azure.com)"
            } else {
                " (e.g. http://127.0.0.1:8000/v1)"
            };
            return Err(ApiError::invalid(
                "base_url",
                format_args!("is required for kind {k}{example}"),
            ));
        }
        None => None,
    };

    let api_key = secret("api_key", req.api_key.as_deref())?;
    let secret_access_key = secret("secret_access_key", req.secret_access_key.as_deref())?;
    match (key_need, api_key) {
        (Need::Required, None) => {
            return Err(ApiError::invalid(
                "api_key",
                format_args!("is required for kind {k}"),
            ));
        }
        (Need::Refused, Some(_)) => {
            return Err(ApiError::invalid(
                "api_key",
                "is not used by kind bedrock; send access_key_id and secret_access_key",
            ));
        }
        _ => {}
    }

    let only_for = |field: &str, value: &Option<String>, owner: ProviderKind| {
        if value.is_some() && kind != owner {
            Err(ApiError::invalid(
                field,
                format_args!("is only used by kind {}", owner.as_str()),
            ))
        } else {
            Ok(())
        }
    };
    only_for("api_version", &req.api_version, ProviderKind::AzureOpenAi)?;
    only_for("region", &req.region, ProviderKind::Bedrock)?;
    only_for("access_key_id", &req.access_key_id, ProviderKind::Bedrock)?;
    only_for(
        "secret_access_key",
        &req.secret_access_key,
        ProviderKind::Bedrock,
    )?;

    let mut options = BTreeMap::new();
    let secret = match kind {
        ProviderKind::AzureOpenAi => {
            let version = match present(req.api_version.as_deref()) {
                Some(v) => api_version(v)?,
                None => DEFAULT_AZURE_API_VERSION.to_owned(),
            };
            options.insert(OPTION_API_VERSION.to_owned(), version);
            api_key
        }
        ProviderKind::Bedrock => {
            let region = present(req.region.as_deref())
                .ok_or_else(|| ApiError::invalid("region", "is required for kind bedrock"))?;
            options.insert(OPTION_REGION.to_owned(), aws_region(region)?);
            let key_id = present(req.access_key_id.as_deref()).ok_or_else(|| {
                ApiError::invalid("access_key_id", "is required for kind bedrock")
            })?;
            options.insert(OPTION_ACCESS_KEY_ID.to_owned(), access_key_id(key_id)?);
            Some(secret_access_key.ok_or_else(|| {
                ApiError::invalid("secret_access_key", "is required for kind bedrock")
            })?)
        }
        _ => api_key,
    };
    // The address the egress policy must allow: the given URL, or a default on this machine
    // (vllm, ollama, llamacpp). Hosted providers' public defaults need no check.
    let upstream = match &base_url {
        Some(url) => Some(UpstreamUrl::Given(url.clone())),
        None => kind
            .default_base_url()
            .and_then(|d| Url::parse(d).ok())
            .filter(is_loopback)
            .map(UpstreamUrl::Default),
    };
    Ok(ValidCredential {
        kind,
        base_url: base_url.as_ref().map(validate::stored_url),
        secret: secret.map(str::to_owned),
        options,
        upstream,
    })
}

/// Add a provider credential.
#[utoipa::path(
    post,
    path = "/api/v1/providers",
    tag = "providers",
    security(("bearer" = [])),
    request_body = CreateProviderRequest,
    responses(
        (status = 201, body = ProviderDto),
        (status = 400, description = "Unknown kind, or a field the kind requires is missing or invalid (the message names it)", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 409, description = "A provider with this name exists", body = crate::error::ErrorBody),
    )
)]
pub async fn create_provider(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiJson(req): ApiJson<CreateProviderRequest>,
) -> Result<(StatusCode, Json<ProviderDto>), ApiError> {
    auth.require_manage()?;
    let name = validate::name("name", &req.name)?;
    let valid = validate_credential(&req)?;
    valid.check_egress(&state.security.egress).await?;

    let id = Uuid::new_v4();
    let options = if valid.options.is_empty() {
        None
    } else {
        Some(serde_json::to_value(&valid.options).map_err(anyhow::Error::from)?)
    };
    let row = provider_credential::Model {
        id,
        tenant_id: auth.tenant_id,
        name,
        kind: valid.kind.as_str().to_owned(),
        base_url: valid.base_url,
        // Bound to this provider's id: a sealed key copied onto another row does not open.
        api_key_sealed: valid
            .secret
            .as_deref()
            .map(|k| state.master_key.seal(k, &id.to_string())),
        created_at: now(),
        options,
    };
    let mut change = Change::begin(&state, &auth).await?;
    provider_credential::Entity::insert(provider_credential::ActiveModel {
        id: Set(row.id),
        tenant_id: Set(row.tenant_id),
        name: Set(row.name.clone()),
        kind: Set(row.kind.clone()),
        base_url: Set(row.base_url.clone()),
        api_key_sealed: Set(row.api_key_sealed.clone()),
        created_at: Set(row.created_at),
        options: Set(row.options.clone()),
    })
    .exec_without_returning(change.tx())
    .await
    .on_unique_violation("a provider with this name already exists")?;
    change.publish_tenant().await?;
    let dto = ProviderDto::from(&row);
    // The DTO carries `has_api_key`, never the key (and `crate::audit` scrubs secrets anyway).
    change
        .audit::<provider_credential::Entity>(AuditAction::Create, &row.id)
        .after(&dto);
    change.commit().await?;
    Ok((StatusCode::CREATED, Json(dto)))
}

/// List provider credentials.
#[utoipa::path(
    get,
    path = "/api/v1/providers",
    tag = "providers",
    security(("bearer" = [])),
    responses((status = 200, body = ProviderList), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn list_providers(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<ProviderList>, ApiError> {
    let rows = resource::list::<provider_credential::Entity, _>(&state.db, auth.tenant_id).await?;
    Ok(Json(ProviderList {
        data: rows.iter().map(ProviderDto::from).collect(),
    }))
}

/// Get one provider credential.
#[utoipa::path(
    get,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Provider id")),
    responses((status = 200, body = ProviderDto), (status = 404, body = crate::error::ErrorBody))
)]
pub async fn get_provider(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ProviderDto>, ApiError> {
    let row =
        resource::find::<provider_credential::Entity, _>(&state.db, auth.tenant_id, id).await?;
    Ok(Json(ProviderDto::from(&row)))
}

/// Delete a provider credential. Refused (409) while model deployments use it.
#[utoipa::path(
    delete,
    path = "/api/v1/providers/{id}",
    tag = "providers",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Provider id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody),
        (status = 409, description = "Model deployments still use this provider", body = crate::error::ErrorBody),
    )
)]
pub async fn delete_provider(
    State(state): State<AppState>,
    auth: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    auth.require_manage()?;
    let mut change = Change::begin(&state, &auth).await?;
    let before = ProviderDto::from(&change.find::<provider_credential::Entity>(id).await?);
    let in_use = model_deployment::Entity::find()
        .filter(model_deployment::Column::ProviderId.eq(id))
        .count(change.tx())
        .await?;
    if in_use > 0 {
        return Err(ApiError::Conflict(format!(
            "provider is used by {in_use} model deployment(s); delete them first"
        )));
    }
    change
        .delete_or_conflict::<provider_credential::Entity>(
            id,
            // A deployment created concurrently still holds the foreign key.
            "provider is used by model deployments; delete them first",
        )
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

    fn req(v: serde_json::Value) -> CreateProviderRequest {
        let mut v = v;
        v["name"] = serde_json::json!("p");
        serde_json::from_value(v).expect("deserializes")
    }

    fn refused(v: serde_json::Value) -> String {
        match validate_credential(&req(v)) {
            Ok(ok) => panic!("accepted: {ok:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_kind_is_accepted_with_what_it_needs() {
        for kind in ProviderKind::ALL {
            let body = match kind {
                ProviderKind::AzureOpenAi => serde_json::json!({
                    "kind": "azure_openai", "base_url": "https://r.openai.azure.com", "api_key": "k"}),
                ProviderKind::Bedrock => serde_json::json!({
                    "kind": "bedrock", "region": "us-east-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE",
                    "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}),
                ProviderKind::OpenAiCompatible => serde_json::json!({
                    "kind": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}),
                k => serde_json::json!({"kind": k.as_str(), "api_key": "k"}),
            };
            let ok = validate_credential(&req(body)).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
            assert_eq!(ok.kind, kind);
        }
    }

    #[test]
    fn per_kind_rules() {
        let msg = refused(serde_json::json!({"kind": "nope"}));
        assert!(
            msg.starts_with("kind:") && msg.contains("bedrock") && msg.contains("llamacpp"),
            "{msg}"
        );
        for hosted in [
            "openai",
            "anthropic",
            "gemini",
            "mistral",
            "groq",
            "deepseek",
            "together",
            "fireworks",
            "xai",
            "openrouter",
        ] {
            assert!(
                refused(serde_json::json!({"kind": hosted})).starts_with("api_key: is required"),
                "{hosted}"
            );
        }
        assert!(refused(serde_json::json!({"kind": "openai_compatible"})).starts_with("base_url"));
        for local in ["vllm", "ollama", "llamacpp", "mock"] {
            let ok = validate_credential(&req(serde_json::json!({"kind": local}))).unwrap();
            assert!(ok.base_url.is_none() && ok.secret.is_none());
        }
        // Azure: endpoint (https) and key required; api_version defaults and is validated.
        assert!(
            refused(serde_json::json!({"kind": "azure_openai", "api_key": "k"}))
                .starts_with("base_url: is required")
        );
        assert!(refused(serde_json::json!({"kind": "azure_openai", "api_key": "k", "base_url": "http://r.openai.azure.com"})).starts_with("base_url"));
        assert!(refused(serde_json::json!({"kind": "azure_openai", "base_url": "https://r.openai.azure.com"})).starts_with("api_key"));
        assert!(refused(serde_json::json!({"kind": "azure_openai", "api_key": "k", "base_url": "https://r.openai.azure.com", "api_version": "2024&x=1"})).starts_with("api_version"));
        let azure = validate_credential(&req(serde_json::json!({"kind": "azure_openai", "api_key": "k", "base_url": "https://r.openai.azure.com/"}))).unwrap();
        assert_eq!(
            azure.options.get("api_version").map(String::as_str),
            Some(DEFAULT_AZURE_API_VERSION)
        );
        assert_eq!(
            azure.base_url.as_deref(),
            Some("https://r.openai.azure.com")
        );
        // Bedrock: region, key id and secret required; api_key refused; secret is what gets sealed.
        let b = serde_json::json!({"kind": "bedrock", "region": "eu-central-1", "access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "s3cr3t"});
        let ok = validate_credential(&req(b.clone())).unwrap();
        assert_eq!(ok.secret.as_deref(), Some("s3cr3t"));
        assert_eq!(ok.options.len(), 2);
        assert!(!ok.options.values().any(|v| v == "s3cr3t"));
        for (drop, field) in [
            ("region", "region"),
            ("access_key_id", "access_key_id"),
            ("secret_access_key", "secret_access_key"),
        ] {
            let mut body = b.clone();
            body.as_object_mut().unwrap().remove(drop);
            assert!(refused(body).starts_with(field), "{field}");
        }
        for bad in [
            "us_east_1",
            "useast1",
            "US-EAST-1",
            "u-east-1",
            "us-east-",
            "us--1",
        ] {
            let mut body = b.clone();
            body["region"] = serde_json::json!(bad);
            assert!(refused(body).starts_with("region"), "{bad}");
        }
        for good in ["us-gov-west-1", "ap-southeast-2", "cn-north-1"] {
            let mut body = b.clone();
            body["region"] = serde_json::json!(good);
            assert!(validate_credential(&req(body)).is_ok(), "{good}");
        }
        let mut body = b.clone();
        body["access_key_id"] = serde_json::json!("wJalr/XUtn+FEMI");
        assert!(refused(body).starts_with("access_key_id"));
        let mut body = b.clone();
        body["api_key"] = serde_json::json!("k");
        assert!(refused(body).starts_with("api_key: is not used"));
        // Fields of other kinds are refused; so is a generic options object.
        assert!(
            refused(serde_json::json!({"kind": "openai", "api_key": "k", "region": "us-east-1"}))
                .starts_with("region: is only used by kind bedrock")
        );
        assert!(
            refused(
                serde_json::json!({"kind": "openai", "api_key": "k", "api_version": "2024-10-21"})
            )
            .starts_with("api_version")
        );
        assert!(
            refused(
                serde_json::json!({"kind": "openai", "api_key": "k", "options": {"region": "x"}})
            )
            .starts_with("options")
        );
        assert!(
            refused(serde_json::json!({"kind": "openai", "api_key": ""}))
                .starts_with("api_key: must not be empty")
        );
    }
}
