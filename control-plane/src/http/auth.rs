//! Sign-up, sign-in and sessions: `POST /auth/signup`, `/auth/login`, `/auth/refresh`,
//! `/auth/logout`, `/auth/switch`, and `GET /me`.
//!
//! One user may belong to several organizations: `GET /me` lists them (`organizations`, with
//! the role in each), login takes an optional `organization_id`, and `POST /auth/switch`
//! `{"tenant_id": …}` opens a new session in another of the caller's organizations (403 when
//! they are not a member of it).
//!
//! Signing up creates a user, a new organization (tenant) and an owner membership in one
//! transaction. A session (a `sessions` row) is a short-lived access token (JWT naming the
//! session, see `crate::auth`) plus a refresh token that is single-use: refreshing revokes it
//! and returns a new pair in the same session. Presenting a refresh token that was already used
//! revokes every session of that user in that organization, since one of the two holders must
//! be an attacker (OAuth 2.0 Security BCP, refresh token rotation). Logging out closes the
//! session, which cuts off its access tokens at once.
//!
//! Abuse limits (see `crate::throttle`): failed logins lock the account and the client IP for a
//! growing time (429 + `Retry-After`, the right password included); sign-ups are rate-limited
//! per client IP. New passwords must pass `crate::password`.
//!
//! # Cookie sessions (the web console)
//!
//! A browser must not keep a refresh token where scripts can read it. So signup, login,
//! switch, refresh and invitation accept (`POST /invitations/{token}/accept`), sent with the
//! request header `x-switchyard-session: cookie`, answer as usual but hand the refresh token
//! over as a cookie instead of in the body ([`CookieSession`]):
//! - `switchyard_refresh=<token>; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age=<refresh
//!   ttl>`: only ever sent back to `/api/v1/auth/*`, never readable by scripts;
//! - `switchyard_csrf=<random 32 bytes, base64url>; SameSite=Strict; Path=/; Max-Age=<refresh
//!   ttl>`: readable by the console, which echoes it in `x-switchyard-csrf` (double-submit);
//! - `; Secure` on both per `SWITCHYARD_COOKIE_SECURE`: `auto` (default) when the request came
//!   as `x-forwarded-proto: https` or HSTS is configured, or `true` / `false`;
//! - the body's `refresh_token` is `""`.
//!
//! `POST /auth/refresh` without a body token (`{}`) uses the `switchyard_refresh` cookie and
//! requires `x-switchyard-csrf` to equal the `switchyard_csrf` cookie (compared in constant
//! time), else 403 `csrf_failed`; its answer is always in cookie mode, and a 401 clears both
//! cookies (`Max-Age=0`). Rotation and reuse detection are the same as for body tokens.
//! `POST /auth/logout` takes the body token or, without one, the cookie (no CSRF check: the
//! cookies are `SameSite=Strict`, and the worst a forged logout does is sign the user out), and
//! always clears both cookies. A body token always works exactly as before, whatever cookies
//! came with it. The access token is never a cookie: the console keeps it in memory and sends
//! it as `Authorization: Bearer`, so no other endpoint accepts a cookie.
//!
//! Enumeration: login answers a wrong email and a wrong password alike (same status, body and
//! argon2 work; the throttle counts unregistered emails like registered ones). Signup must say
//! that an email is taken (409), since there is no mail round trip to prove ownership; the
//! per-IP sign-up limit bounds how fast that can be used to probe emails.

use axum::Json;
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{AppendHeaders, IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiJson, now, validate};
use crate::auth::{self as authn, AuthUser, Role};
use crate::config::CookieSecure;
use crate::entities::{membership, refresh_token, session, tenant, user};
use crate::error::{ApiError, ResultExt};
use crate::password;
use crate::state::AppState;
use crate::sync::{self, Outboxed};
use crate::throttle::ClientIp;

/// The one message for a failed login, whichever part was wrong (no user enumeration).
const BAD_CREDENTIALS: &str = "invalid email or password";
const BAD_REFRESH: &str = "invalid or expired refresh token";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/signup", post(signup))
        .route("/auth/login", post(login))
        .route("/auth/refresh", post(refresh))
        .route("/auth/logout", post(logout))
        .route("/auth/switch", post(switch_organization))
        .route("/me", get(me))
}

// === DTOs ===

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
    /// 8 to 128 bytes, and hard to guess: the zxcvbn estimator must rate it at least 3 of 4,
    /// with the email and organization name counted as known words. A few uncommon words
    /// together pass easily; `password`, `12345678` and the like do not.
    #[schema(example = "correct horse battery staple")]
    pub password: String,
    /// Name of the organization (tenant) to create; the new user becomes its owner. To join an
    /// existing organization instead, sign up and then accept its invitation
    /// (`POST /api/v1/invitations/{token}/accept`).
    #[schema(example = "Acme")]
    pub organization: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub id: Uuid,
    pub email: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&user::Model> for UserDto {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email.clone(),
            created_at: u.created_at,
        }
    }
}

/// An organization.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDto {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl From<&tenant::Model> for TenantDto {
    fn from(t: &tenant::Model) -> Self {
        Self {
            id: t.id,
            name: t.name.clone(),
            created_at: t.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SignupResponse {
    pub user: UserDto,
    pub tenant: TenantDto,
    pub role: Role,
    /// Send as `Authorization: Bearer <access_token>`.
    pub access_token: String,
    /// Exchange at `POST /auth/refresh` for a new pair; single use.
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// The organization to sign in to (see `organizations` in `GET /me`); default: the user's
    /// first (oldest) membership.
    #[serde(default)]
    pub organization_id: Option<Uuid>,
}

/// Which organization to switch to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchRequest {
    /// One of the caller's organizations (see `organizations` in `GET /me`).
    pub tenant_id: Uuid,
}

/// A new session (login, accepted invitation) or a rotated one (refresh).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    #[schema(example = 900)]
    pub expires_in: u64,
    /// The organization the tokens act in.
    pub tenant: TenantDto,
    /// The caller's role in it.
    pub role: Role,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The refresh token. Omit it (send `{}`) to use the `switchyard_refresh` cookie of a
    /// cookie session instead (then `x-switchyard-csrf` is required on refresh).
    #[serde(default)]
    pub refresh_token: Option<String>,
}

impl RefreshRequest {
    /// The body's token, when it carries a non-empty one.
    fn token(&self) -> Option<&str> {
        self.refresh_token
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }
}

/// One organization the user belongs to.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationDto {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user: UserDto,
    /// The organization this access token acts in.
    pub tenant: TenantDto,
    pub role: Role,
    /// Every organization the user belongs to, oldest membership first; sign in to another one
    /// with `organization_id` at `POST /auth/login`.
    pub organizations: Vec<OrganizationDto>,
}

// === handlers ===

/// Create an account and its organization.
///
/// The user becomes the organization's owner. Returns a session right away. Sign-ups are
/// limited per client IP (429 with `Retry-After`). An email that is already registered gets
/// 409: without a mail round trip there is no other way to tell the person signing up.
#[utoipa::path(
    post,
    path = "/api/v1/auth/signup",
    tag = "auth",
    request_body = SignupRequest,
    params(("x-switchyard-session" = Option<String>, Header, description = "`cookie`: a cookie session for the web console. The refresh token is set as the HttpOnly cookie `switchyard_refresh` (Path=/api/v1/auth) with a CSRF cookie `switchyard_csrf` (Path=/, readable by scripts), both SameSite=Strict with Max-Age = the refresh token lifetime (Secure per SWITCHYARD_COOKIE_SECURE), and the body's `refresh_token` is empty")),
    responses(
        (status = 201, body = SignupResponse, headers(("set-cookie" = String, description = "With `x-switchyard-session: cookie`: `switchyard_refresh` and `switchyard_csrf`"))),
        (status = 400, description = "Invalid email or organization, or a password that is too short, too long or too easy to guess (the message says why)", body = crate::error::ErrorBody),
        (status = 409, description = "An account with this email already exists", body = crate::error::ErrorBody),
        (status = 429, description = "Too many sign-ups from this client address; see `Retry-After`", body = crate::error::ErrorBody),
    )
)]
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: CookieSession,
    ApiJson(req): ApiJson<SignupRequest>,
) -> Result<(StatusCode, SetCookies, Json<SignupResponse>), ApiError> {
    let email = validate::email(&req.email)?;
    let organization = validate::name("organization", &req.organization)?;
    password::check_blocking(
        req.password.clone(),
        vec![email.clone(), organization.clone()],
    )
    .await?;
    // After validation (a typo costs no allowance), before the argon2 work and the uniqueness
    // check (the one answer that tells whether an email is registered).
    state.throttle.check_signup(ip)?;
    let password_hash = authn::hash_password(req.password).await?;

    let created_at = now();
    let tenant = tenant::Model {
        id: Uuid::new_v4(),
        name: organization,
        config_version: 0,
        created_at,
        allowed_regions: None,
        alert_webhook_url: None,
        alert_webhook_secret: None,
        rpm_limit: None,
        tpm_limit: None,
        usage_retention_days: None,
        store_payloads: false,
        plan: None,
        stripe_customer_id: None,
        stripe_subscription_id: None,
        subscription_status: None,
        payment_failed_at: None,
        suspended_at: None,
        suspension_reason: None,
        suspension_message: None,
        billing_claimed_until: None,
    };
    let user = user::Model {
        id: Uuid::new_v4(),
        email,
        password_hash,
        created_at,
    };
    let tx = state.db.begin().await?;
    user::Entity::insert(user::ActiveModel {
        id: Set(user.id),
        email: Set(user.email.clone()),
        password_hash: Set(user.password_hash.clone()),
        created_at: Set(created_at),
    })
    .exec_without_returning(&tx)
    .await
    .on_unique_violation("an account with this email already exists")?;
    tenant::Entity::insert(tenant::ActiveModel {
        id: Set(tenant.id),
        name: Set(tenant.name.clone()),
        config_version: Set(0),
        created_at: Set(created_at),
        allowed_regions: Set(None),
        alert_webhook_url: Set(None),
        alert_webhook_secret: Set(None),
        rpm_limit: Set(None),
        tpm_limit: Set(None),
        usage_retention_days: Set(None),
        store_payloads: Set(false),
        ..Default::default()
    })
    .exec_without_returning(&tx)
    .await?;
    membership::Entity::insert(membership::ActiveModel {
        tenant_id: Set(tenant.id),
        user_id: Set(user.id),
        role: Set(Role::Owner.as_str().to_owned()),
        created_at: Set(created_at),
    })
    .exec_without_returning(&tx)
    .await?;
    // Publish the (empty) tenant config, so the data plane knows the tenant from the start.
    let outbox_id = sync::enqueue(&tx, Outboxed::Tenant(tenant.id)).await?;
    let (session_id, mut refresh_token) = open_session(&tx, &state, user.id, tenant.id).await?;
    tx.commit().await?;
    state.sync.wait_published(&[outbox_id]).await;
    let set_cookies = cookies.deliver(&mut refresh_token);

    let access = state
        .tokens
        .issue_access(user.id, tenant.id, session_id, Role::Owner)?;
    Ok((
        StatusCode::CREATED,
        set_cookies,
        Json(SignupResponse {
            user: UserDto::from(&user),
            tenant: TenantDto::from(&tenant),
            role: Role::Owner,
            access_token: access.token,
            refresh_token,
            token_type: "Bearer",
            expires_in: access.expires_in,
        }),
    ))
}

/// Sign in with email and password.
///
/// A wrong email and a wrong password get the same 401, in the same time. After 5 failed
/// attempts for one email within 15 minutes (or 30 from one client address), further attempts
/// are refused with 429 and `Retry-After`, even with the right password, until the wait passes;
/// each further failure doubles the wait, up to 15 minutes. A successful login clears the
/// email's count.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    request_body = LoginRequest,
    params(("x-switchyard-session" = Option<String>, Header, description = "`cookie`: a cookie session for the web console. The refresh token is set as the HttpOnly cookie `switchyard_refresh` (Path=/api/v1/auth) with a CSRF cookie `switchyard_csrf` (Path=/, readable by scripts), both SameSite=Strict with Max-Age = the refresh token lifetime (Secure per SWITCHYARD_COOKIE_SECURE), and the body's `refresh_token` is empty")),
    responses(
        (status = 200, body = TokenResponse, headers(("set-cookie" = String, description = "With `x-switchyard-session: cookie`: `switchyard_refresh` and `switchyard_csrf`"))),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, description = "Wrong email or password", body = crate::error::ErrorBody),
        (status = 403, description = "The user belongs to no organization", body = crate::error::ErrorBody),
        (status = 404, description = "`organization_id` is not one of the user's organizations", body = crate::error::ErrorBody),
        (status = 429, description = "Too many failed attempts for this email or from this client address; see `Retry-After`", body = crate::error::ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    cookies: CookieSession,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<(SetCookies, Json<TokenResponse>), ApiError> {
    // Counted before the password check, refused while locked (see `crate::throttle`).
    let attempt = state.throttle.begin_login(&req.email, ip)?;
    // An address that cannot exist is just a wrong email: same answer, same argon2 cost.
    let email = validate::email(&req.email).ok();
    let found = match &email {
        Some(email) => {
            user::Entity::find()
                .filter(user::Column::Email.eq(email.as_str()))
                .one(&state.db)
                .await?
        }
        None => None,
    };
    let ok = authn::verify_password(
        req.password,
        found.as_ref().map(|u| u.password_hash.clone()),
    )
    .await?;
    let user = match (ok, found) {
        (true, Some(user)) => user,
        _ => return Err(ApiError::Unauthorized(BAD_CREDENTIALS)),
    };
    attempt.succeeded();

    let mut q = membership::Entity::find().filter(membership::Column::UserId.eq(user.id));
    q = match req.organization_id {
        Some(org) => q.filter(membership::Column::TenantId.eq(org)),
        None => q
            .order_by_asc(membership::Column::CreatedAt)
            .order_by_asc(membership::Column::TenantId),
    };
    let membership = match (q.one(&state.db).await?, req.organization_id) {
        (Some(m), _) => m,
        (None, Some(_)) => return Err(ApiError::NotFound("organization")),
        (None, None) => {
            return Err(ApiError::Forbidden(
                "this account does not belong to any organization",
            ));
        }
    };
    let role = parse_role(&membership.role)?;
    let tenant = tenant::Entity::find_by_id(membership.tenant_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::NotFound("organization"))?;
    let tokens = new_session(&state, user.id, &tenant, role).await?;
    Ok(cookies.hand_over(tokens))
}

/// Exchange a refresh token for a new access token and refresh token.
///
/// The presented refresh token is revoked; using it again is refused (401) and ends every
/// session of that user in that organization.
///
/// Cookie sessions (the web console): send `{}` and the `switchyard_refresh` cookie comes
/// along; `x-switchyard-csrf` must then equal the `switchyard_csrf` cookie (else 403
/// `csrf_failed`). The answer sets both cookies again (the refresh token rotated, a new CSRF
/// token) with an empty `refresh_token` in the body; a 401 clears both cookies. A token in the
/// body is used as before, cookies or not.
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    request_body = RefreshRequest,
    params(
        ("x-switchyard-session" = Option<String>, Header, description = "`cookie`: a cookie session for the web console. The refresh token is set as the HttpOnly cookie `switchyard_refresh` (Path=/api/v1/auth) with a CSRF cookie `switchyard_csrf` (Path=/, readable by scripts), both SameSite=Strict with Max-Age = the refresh token lifetime (Secure per SWITCHYARD_COOKIE_SECURE), and the body's `refresh_token` is empty"),
        ("x-switchyard-csrf" = Option<String>, Header, description = "Required when the refresh token comes from the `switchyard_refresh` cookie (no `refresh_token` in the body): the value of the `switchyard_csrf` cookie"),
    ),
    responses(
        (status = 200, body = TokenResponse, headers(("set-cookie" = String, description = "In cookie mode (the token came from the cookie, or `x-switchyard-session: cookie`): `switchyard_refresh` and `switchyard_csrf`"))),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token, or a closed session (in cookie mode, both cookies are cleared)", body = crate::error::ErrorBody),
        (status = 403, description = "`csrf_failed`: the cookie's token was presented without a matching `x-switchyard-csrf` header", body = crate::error::ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    cookies: CookieSession,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Response {
    let (presented, cookies) = match req.token() {
        Some(token) => (token.to_owned(), cookies),
        None => {
            let cookies = CookieSession {
                requested: true,
                ..cookies
            };
            let Some(token) = cookies.refresh.clone() else {
                return (cookies.clear(), ApiError::Unauthorized(BAD_REFRESH)).into_response();
            };
            // Before the token is touched: a forged request must not even rotate it.
            if !cookies.csrf_ok() {
                return ApiError::CsrfFailed.into_response();
            }
            (token, cookies)
        }
    };
    match rotate(&state, &presented).await {
        Ok(tokens) => cookies.hand_over(tokens).into_response(),
        Err(e @ ApiError::Unauthorized(_)) if cookies.requested => {
            (cookies.clear(), e).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Rotates the refresh token `presented` (see [`refresh`]): claims it, detects reuse, and
/// answers a new pair in the same session.
async fn rotate(state: &AppState, presented: &str) -> Result<TokenResponse, ApiError> {
    let hash = authn::hash_refresh_token(presented);
    let at = now();
    let tx = state.db.begin().await?;
    // Claim the token atomically: of two concurrent refreshes with one token, one wins.
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(at))
        .filter(refresh_token::Column::TokenHash.eq(hash.as_str()))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .filter(refresh_token::Column::ExpiresAt.gt(at))
        .exec(&tx)
        .await?
        .rows_affected;
    let row = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash.as_str()))
        .one(&tx)
        .await?;
    let Some(row) = row else {
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    };
    if claimed == 0 {
        // A revoked token whose session is still open was rotated away, so someone else holds
        // its successor: reuse. (A token of a closed session was logged out; presenting it
        // again ends nothing more.)
        let session_open = match row.session_id {
            Some(id) => session::Entity::find_by_id(id)
                .one(&tx)
                .await?
                .is_some_and(|s| s.revoked_at.is_none()),
            None => true,
        };
        if row.revoked_at.is_some() && row.expires_at > at && session_open {
            // Reuse of a rotated token: end every session of this user in this tenant.
            close_sessions_of(&tx, row.user_id, row.tenant_id).await?;
            tx.commit().await?;
            tracing::warn!(user_id = %row.user_id, tenant_id = %row.tenant_id, "refresh token reused; all sessions revoked");
        }
        return Err(ApiError::Unauthorized(BAD_REFRESH));
    }
    let membership = membership::Entity::find_by_id((row.tenant_id, row.user_id))
        .one(&tx)
        .await?
        .ok_or(ApiError::Unauthorized(BAD_REFRESH))?;
    let role = parse_role(&membership.role)?;
    let tenant = tenant::Entity::find_by_id(row.tenant_id)
        .one(&tx)
        .await?
        .ok_or(ApiError::Unauthorized(BAD_REFRESH))?;
    let session_id = match row.session_id {
        Some(id) => {
            let open = session::Entity::find_by_id(id)
                .one(&tx)
                .await?
                .is_some_and(|s| s.revoked_at.is_none());
            if !open {
                return Err(ApiError::Unauthorized(BAD_REFRESH));
            }
            id
        }
        // A token from before sessions existed: it starts one now.
        None => insert_session(&tx, row.user_id, row.tenant_id).await?,
    };
    let refresh_token =
        insert_refresh_token(&tx, state, row.user_id, row.tenant_id, session_id).await?;
    tx.commit().await?;
    let access = state
        .tokens
        .issue_access(row.user_id, row.tenant_id, session_id, role)?;
    Ok(TokenResponse {
        access_token: access.token,
        refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        tenant: TenantDto::from(&tenant),
        role,
    })
}

/// End a session: closes the session the refresh token belongs to.
///
/// Its refresh tokens are revoked and its access tokens are refused from now on (401), not
/// only when they expire. Always 204, also for unknown or already revoked tokens. Without a
/// `refresh_token` in the body (`{}`), the `switchyard_refresh` cookie names the session. Every
/// answer clears the cookie session's cookies.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Logged out", headers(("set-cookie" = String, description = "`switchyard_refresh` and `switchyard_csrf`, cleared (Max-Age=0)"))),
        (status = 400, body = crate::error::ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    cookies: CookieSession,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Response {
    let presented = req.token().map(str::to_owned).or(cookies.refresh.clone());
    let result = match presented {
        Some(token) => end_session(&state, &token).await,
        None => Ok(()),
    };
    match result {
        Ok(()) => (cookies.clear(), StatusCode::NO_CONTENT).into_response(),
        Err(e) => (cookies.clear(), e).into_response(),
    }
}

/// Revokes the refresh token `presented` and closes its session (see [`logout`]).
async fn end_session(state: &AppState, presented: &str) -> Result<(), ApiError> {
    let hash = authn::hash_refresh_token(presented);
    let at = now();
    let tx = state.db.begin().await?;
    let row = refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash.as_str()))
        .one(&tx)
        .await?;
    if let Some(row) = row {
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(at))
            .filter(refresh_token::Column::Id.eq(row.id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(&tx)
            .await?;
        if let Some(session_id) = row.session_id {
            close_session(&tx, session_id).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

/// Switch organization: a new session in another organization the caller belongs to.
///
/// Answers a new access and refresh token pair acting in `tenant_id`, with the caller's role
/// there. The session the call was made with stays open for bearer clients (log it out
/// separately if it is no longer wanted); with `x-switchyard-session: cookie` it is closed,
/// since the new session's refresh cookie replaces its own. 403 when the caller is not a
/// member of `tenant_id` (the same for an organization that does not exist).
#[utoipa::path(
    post,
    path = "/api/v1/auth/switch",
    tag = "auth",
    security(("bearer" = [])),
    request_body = SwitchRequest,
    params(("x-switchyard-session" = Option<String>, Header, description = "`cookie`: a cookie session for the web console. The refresh token is set as the HttpOnly cookie `switchyard_refresh` (Path=/api/v1/auth) with a CSRF cookie `switchyard_csrf` (Path=/, readable by scripts), both SameSite=Strict with Max-Age = the refresh token lifetime (Secure per SWITCHYARD_COOKIE_SECURE), and the body's `refresh_token` is empty")),
    responses(
        (status = 200, body = TokenResponse, headers(("set-cookie" = String, description = "With `x-switchyard-session: cookie`: `switchyard_refresh` and `switchyard_csrf`"))),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "Not a member of that organization", body = crate::error::ErrorBody),
    )
)]
pub async fn switch_organization(
    State(state): State<AppState>,
    auth: AuthUser,
    cookies: CookieSession,
    ApiJson(req): ApiJson<SwitchRequest>,
) -> Result<(SetCookies, Json<TokenResponse>), ApiError> {
    const NOT_MEMBER: &str = "you are not a member of that organization";
    let membership = membership::Entity::find_by_id((req.tenant_id, auth.user_id))
        .one(&state.db)
        .await?
        .ok_or(ApiError::Forbidden(NOT_MEMBER))?;
    let role = parse_role(&membership.role)?;
    let tenant = tenant::Entity::find_by_id(req.tenant_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::Forbidden(NOT_MEMBER))?;
    let tokens = new_session(&state, auth.user_id, &tenant, role).await?;
    if cookies.requested() {
        // The browser's one refresh cookie now belongs to the new session: the old one could
        // never be refreshed again, so it is closed instead of left open until it expires.
        close_session(&state.db, auth.session_id).await?;
    }
    Ok(cookies.hand_over(tokens))
}

/// The caller: user, organization, role, and every organization they belong to.
#[utoipa::path(
    get,
    path = "/api/v1/me",
    tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, body = MeResponse), (status = 401, body = crate::error::ErrorBody))
)]
pub async fn me(
    State(state): State<AppState>,
    auth: AuthUser,
) -> Result<Json<MeResponse>, ApiError> {
    let user = user::Entity::find_by_id(auth.user_id)
        .one(&state.db)
        .await?
        .ok_or(ApiError::Unauthorized("invalid access token"))?;
    let memberships = membership::Entity::find()
        .filter(membership::Column::UserId.eq(auth.user_id))
        .order_by_asc(membership::Column::CreatedAt)
        .order_by_asc(membership::Column::TenantId)
        .all(&state.db)
        .await?;
    let tenants = tenant::Entity::find()
        .filter(tenant::Column::Id.is_in(memberships.iter().map(|m| m.tenant_id)))
        .all(&state.db)
        .await?;
    let current = tenants
        .iter()
        .find(|t| t.id == auth.tenant_id)
        .ok_or(ApiError::Unauthorized("invalid access token"))?;
    let mut organizations = Vec::with_capacity(memberships.len());
    for m in &memberships {
        if let Some(t) = tenants.iter().find(|t| t.id == m.tenant_id) {
            organizations.push(OrganizationDto {
                id: t.id,
                name: t.name.clone(),
                role: parse_role(&m.role)?,
            });
        }
    }
    Ok(Json(MeResponse {
        user: UserDto::from(&user),
        tenant: TenantDto::from(current),
        role: auth.role,
        organizations,
    }))
}

// === sessions ===

/// Opens a session for `user_id` in `tenant` with `role` and returns its tokens.
pub(crate) async fn new_session(
    state: &AppState,
    user_id: Uuid,
    tenant: &tenant::Model,
    role: Role,
) -> Result<TokenResponse, ApiError> {
    let tx = state.db.begin().await?;
    let (session_id, refresh_token) = open_session(&tx, state, user_id, tenant.id).await?;
    tx.commit().await?;
    let access = state
        .tokens
        .issue_access(user_id, tenant.id, session_id, role)?;
    Ok(TokenResponse {
        access_token: access.token,
        refresh_token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        tenant: TenantDto::from(tenant),
        role,
    })
}

/// Inserts a session and its first refresh token; returns the session id and the token's
/// plaintext.
async fn open_session<C: ConnectionTrait>(
    conn: &C,
    state: &AppState,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<(Uuid, String), ApiError> {
    let session_id = insert_session(conn, user_id, tenant_id).await?;
    let token = insert_refresh_token(conn, state, user_id, tenant_id, session_id).await?;
    Ok((session_id, token))
}

async fn insert_session<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<Uuid, ApiError> {
    let id = Uuid::new_v4();
    session::Entity::insert(session::ActiveModel {
        id: Set(id),
        user_id: Set(user_id),
        tenant_id: Set(tenant_id),
        revoked_at: Set(None),
        created_at: Set(now()),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(id)
}

/// Closes one session and revokes its refresh tokens.
pub(crate) async fn close_session<C: ConnectionTrait>(
    conn: &C,
    session_id: Uuid,
) -> Result<(), ApiError> {
    let at = now();
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(at))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(at))
        .filter(refresh_token::Column::SessionId.eq(session_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Closes every session of `user_id` in `tenant_id` and revokes all their refresh tokens
/// (refresh-token reuse, member removal).
pub(crate) async fn close_sessions_of<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    tenant_id: Uuid,
) -> Result<(), ApiError> {
    let at = now();
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(at))
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::TenantId.eq(tenant_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(at))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::TenantId.eq(tenant_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(())
}

/// Stores a new refresh token of `session_id` (hash only) and returns its plaintext.
async fn insert_refresh_token<C: ConnectionTrait>(
    conn: &C,
    state: &AppState,
    user_id: Uuid,
    tenant_id: Uuid,
    session_id: Uuid,
) -> Result<String, ApiError> {
    let (token, hash) = authn::new_refresh_token();
    let created_at = now();
    let ttl =
        time::Duration::try_from(state.tokens.refresh_ttl()).unwrap_or(time::Duration::days(30));
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(Uuid::new_v4()),
        user_id: Set(user_id),
        tenant_id: Set(tenant_id),
        token_hash: Set(hash),
        expires_at: Set(created_at + ttl),
        revoked_at: Set(None),
        created_at: Set(created_at),
        session_id: Set(Some(session_id)),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(token)
}

pub(crate) fn parse_role(s: &str) -> Result<Role, ApiError> {
    Role::parse(s)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("unknown role {s:?} in memberships row")))
}

// === cookie sessions ===

/// Request header asking for a cookie session (value `cookie`).
pub const SESSION_MODE_HEADER: HeaderName = HeaderName::from_static("x-switchyard-session");
/// Request header echoing the `switchyard_csrf` cookie on a cookie refresh.
pub const CSRF_HEADER: HeaderName = HeaderName::from_static("x-switchyard-csrf");
/// The cookie carrying the refresh token (HttpOnly, only sent to `/api/v1/auth`).
pub const REFRESH_COOKIE: &str = "switchyard_refresh";
/// The cookie carrying the CSRF token (readable by the console).
pub const CSRF_COOKIE: &str = "switchyard_csrf";
/// Where the refresh cookie is sent back: the auth endpoints only.
const REFRESH_COOKIE_PATH: &str = "/api/v1/auth";

/// The cookie-session facts of a request (see the module docs): whether the client asked for
/// a cookie session, whether cookies get `Secure`, and the cookies and CSRF header it sent.
#[derive(Debug, Clone)]
pub struct CookieSession {
    /// `x-switchyard-session: cookie` was sent.
    requested: bool,
    /// Whether the cookies set in the answer carry `Secure`.
    secure: bool,
    /// `Max-Age` of the cookies: the refresh token's lifetime, in seconds.
    max_age: u64,
    refresh: Option<String>,
    csrf_cookie: Option<String>,
    csrf_header: Option<String>,
}

impl FromRequestParts<AppState> for CookieSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let headers = &parts.headers;
        let requested = headers
            .get(SESSION_MODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("cookie"));
        let secure = match state.security.cookie_secure {
            CookieSecure::True => true,
            CookieSecure::False => false,
            CookieSecure::Auto => {
                state.security.hsts.is_some()
                    || headers
                        .get("x-forwarded-proto")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.split(',').next())
                        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
            }
        };
        Ok(CookieSession {
            requested,
            secure,
            max_age: state.tokens.refresh_ttl().as_secs(),
            refresh: cookie(headers, REFRESH_COOKIE),
            csrf_cookie: cookie(headers, CSRF_COOKIE),
            csrf_header: headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_owned()),
        })
    }
}

/// The `Set-Cookie` headers of an answer (none for body-token clients).
pub type SetCookies = AppendHeaders<Vec<(HeaderName, HeaderValue)>>;

impl CookieSession {
    /// Hands `refresh_token` over: in cookie mode, moves it into the refresh cookie (with a
    /// fresh CSRF cookie) and leaves `""` in its place; otherwise leaves it and sets nothing.
    fn deliver(&self, refresh_token: &mut String) -> SetCookies {
        if !self.requested {
            return AppendHeaders(Vec::new());
        }
        let token = std::mem::take(refresh_token);
        let mut csrf = [0u8; 32];
        rand::fill(&mut csrf[..]);
        self.set_cookies(&token, &URL_SAFE_NO_PAD.encode(csrf), self.max_age)
    }

    /// Whether the caller asked for cookie mode (`x-switchyard-session: cookie`).
    pub(crate) fn requested(&self) -> bool {
        self.requested
    }

    /// The answer of a new or rotated session: the tokens, with the refresh token moved into
    /// the cookies in cookie mode.
    pub(crate) fn hand_over(&self, mut tokens: TokenResponse) -> (SetCookies, Json<TokenResponse>) {
        let set = self.deliver(&mut tokens.refresh_token);
        (set, Json(tokens))
    }

    /// `Set-Cookie` headers that delete both cookies.
    fn clear(&self) -> SetCookies {
        self.set_cookies("", "", 0)
    }

    fn set_cookies(&self, refresh: &str, csrf: &str, max_age: u64) -> SetCookies {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookies = [
            format!(
                "{REFRESH_COOKIE}={refresh}; HttpOnly; SameSite=Strict; Path={REFRESH_COOKIE_PATH}; Max-Age={max_age}{secure}"
            ),
            format!("{CSRF_COOKIE}={csrf}; SameSite=Strict; Path=/; Max-Age={max_age}{secure}"),
        ];
        // Both values are base64url (or empty): always a valid header value.
        AppendHeaders(
            cookies
                .into_iter()
                .filter_map(|c| HeaderValue::from_str(&c).ok())
                .map(|v| (SET_COOKIE, v))
                .collect(),
        )
    }

    /// Whether the CSRF header matches the CSRF cookie (both present, compared in constant
    /// time).
    fn csrf_ok(&self) -> bool {
        match (&self.csrf_cookie, &self.csrf_header) {
            (Some(cookie), Some(header)) if !cookie.is_empty() => {
                shared::crypto::constant_time_eq(cookie.as_bytes(), header.as_bytes())
            }
            _ => false,
        }
    }
}

/// The value of cookie `name` in the request's `Cookie` headers. Browsers send the cookie with
/// the most specific path first, so the first non-empty one wins.
fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        .find(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn session(requested: bool, secure: bool) -> CookieSession {
        CookieSession {
            requested,
            secure,
            max_age: 3600,
            refresh: None,
            csrf_cookie: Some("abc".to_owned()),
            csrf_header: Some("abc".to_owned()),
        }
    }

    #[test]
    fn cookie_mode_moves_the_refresh_token_into_an_http_only_cookie() {
        let mut token = "tok".to_owned();
        let AppendHeaders(headers) = session(true, true).deliver(&mut token);
        assert_eq!(token, "");
        assert_eq!(
            headers[0].1,
            "switchyard_refresh=tok; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age=3600; Secure"
        );
        let csrf = headers[1].1.to_str().expect("ascii");
        assert!(csrf.starts_with("switchyard_csrf="), "{csrf}");
        assert!(
            csrf.ends_with("; SameSite=Strict; Path=/; Max-Age=3600; Secure"),
            "{csrf}"
        );
        assert!(!csrf.contains("HttpOnly"), "{csrf}");

        let mut token = "tok".to_owned();
        let AppendHeaders(headers) = session(false, true).deliver(&mut token);
        assert!(headers.is_empty());
        assert_eq!(token, "tok");

        let AppendHeaders(cleared) = session(false, false).clear();
        assert_eq!(
            cleared[0].1,
            "switchyard_refresh=; HttpOnly; SameSite=Strict; Path=/api/v1/auth; Max-Age=0"
        );
        assert_eq!(
            cleared[1].1,
            "switchyard_csrf=; SameSite=Strict; Path=/; Max-Age=0"
        );
    }

    #[test]
    fn cookies_are_read_by_name_and_csrf_compared_exactly() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; switchyard_refresh=r1; switchyard_csrf=c1"),
        );
        assert_eq!(cookie(&headers, REFRESH_COOKIE).as_deref(), Some("r1"));
        assert_eq!(cookie(&headers, CSRF_COOKIE).as_deref(), Some("c1"));
        assert_eq!(cookie(&headers, "missing"), None);
        let mut s = session(true, false);
        assert!(s.csrf_ok());
        s.csrf_header = Some("abd".to_owned());
        assert!(!s.csrf_ok());
        s.csrf_header = None;
        assert!(!s.csrf_ok());
    }
}
