//! Who is calling: passwords, access tokens (JWT), refresh tokens, roles, and the [`AuthUser`]
//! extractor.
//!
//! - Passwords are hashed with argon2id (argon2 crate defaults) on the blocking pool, so a
//!   burst of logins cannot stall the async workers.
//! - Access tokens are short-lived HS256 JWTs with `sub` (user id), `tid` (tenant id), `sid`
//!   (session id), `role`, `iat`, `exp` and `iss`. They are not trusted alone: [`AuthUser`]
//!   re-reads the session and the membership on every request, so logging out, removing a
//!   member or changing their role takes effect at once, not when the token expires. The role in
//!   the token is informational.
//! - A session (`sessions` row) starts at signup or login and survives refreshes; every refresh
//!   token belongs to one. Refresh tokens are 256 random bits, handed out once and stored as
//!   SHA-256 only.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::EntityTrait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::entities::{membership, session};
use crate::error::ApiError;
use crate::state::AppState;

/// The `iss` claim of every token we issue.
const ISSUER: &str = "switchyard-control-plane";
/// Clock skew tolerated on `exp`. Small: the issuer and verifier share a clock (or NTP).
const LEEWAY_SECS: u64 = 5;

/// A member's role in a tenant, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including granting the owner role.
    Owner,
    /// Everything except granting or removing owners.
    Admin,
    /// Reads everything, creates and revokes API keys.
    Member,
    /// Reads only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "owner" => Some(Role::Owner),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    /// Providers, models, teams, members.
    pub fn can_manage(self) -> bool {
        matches!(self, Role::Owner | Role::Admin)
    }

    /// Creating and revoking API keys.
    pub fn can_write_keys(self) -> bool {
        !matches!(self, Role::Viewer)
    }
}

/// JWT claims of an access token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: Uuid,
    /// Tenant id.
    pub tid: Uuid,
    /// Session id: the token is valid only while this session is open (logout closes it).
    pub sid: Uuid,
    /// Role when the token was issued (informational; the membership row decides).
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
}

/// Signs and checks access tokens; mints refresh tokens. Built once at start.
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    access_ttl: Duration,
    refresh_ttl: Duration,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("access_ttl", &self.access_ttl)
            .field("refresh_ttl", &self.refresh_ttl)
            .finish_non_exhaustive()
    }
}

/// A freshly issued access token.
pub struct AccessToken {
    pub token: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl TokenService {
    pub fn new(secret: &[u8], access_ttl: Duration, refresh_ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        // `sid` is required by `Claims` itself: tokens minted before sessions existed fail to
        // decode and are refused, which only forces a new login.
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            access_ttl,
            refresh_ttl,
        }
    }

    pub fn refresh_ttl(&self) -> Duration {
        self.refresh_ttl
    }

    pub fn issue_access(
        &self,
        user_id: Uuid,
        tenant_id: Uuid,
        session_id: Uuid,
        role: Role,
    ) -> Result<AccessToken, ApiError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let ttl = i64::try_from(self.access_ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            sub: user_id,
            tid: tenant_id,
            sid: session_id,
            role,
            iat: now,
            exp: now.saturating_add(ttl),
            iss: ISSUER.to_owned(),
        };
        self.sign(&claims).map(|token| AccessToken {
            token,
            expires_in: self.access_ttl.as_secs(),
        })
    }

    /// Signs arbitrary claims (tests use it to build expired tokens).
    pub fn sign(&self, claims: &Claims) -> Result<String, ApiError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .context("signing an access token")
            .map_err(ApiError::Internal)
    }

    /// Checks signature, issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthorized("access token has expired")
                }
                _ => ApiError::Unauthorized("invalid access token"),
            })
    }
}

/// A new refresh token: the plaintext (returned once) and its SHA-256 (stored).
pub fn new_refresh_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes[..]);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_refresh_token(&token);
    (token, hash)
}

/// Lowercase hex SHA-256 of a presented refresh token.
pub fn hash_refresh_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Hashes a password with argon2id on the blocking pool.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
    })
    .await
    .context("password hashing task")?
    .map_err(ApiError::Internal)
}

/// Verifies a password against a stored PHC string on the blocking pool. With `None` (unknown
/// email) it verifies against a fixed dummy hash, so both paths cost the same argon2 work and
/// response times do not reveal which emails are registered.
pub async fn verify_password(password: String, stored: Option<String>) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let argon = Argon2::default();
        match stored {
            Some(hash) => argon
                .verify_password(password.as_bytes(), hash.as_str())
                .is_ok(),
            None => {
                let _ = argon.verify_password(password.as_bytes(), dummy_hash());
                false
            }
        }
    })
    .await
    .context("password verification task")
    .map_err(ApiError::Internal)
}

/// A valid argon2id hash (of a random password) with the default parameters, computed once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let (random, _) = new_refresh_token();
        Argon2::default()
            .hash_password(random.as_bytes())
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// The authenticated caller: a user acting in one tenant with the role their membership has now.
///
/// Rejections are `401 unauthorized` in our error shape: missing header, wrong scheme, bad
/// signature, expired token, a session that was closed (logout, refresh-token reuse) or a
/// membership that no longer exists. There is deliberately no
/// `Option<AuthUser>`: every route either requires auth or does not use it, and an optional
/// extractor would silently treat a bad token as "anonymous".
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub tenant_id: Uuid,
    /// The session the access token belongs to.
    pub session_id: Uuid,
    pub role: Role,
}

impl AuthUser {
    /// Owner or admin.
    pub fn require_manage(&self) -> Result<(), ApiError> {
        if self.role.can_manage() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this action needs the owner or admin role",
            ))
        }
    }

    /// Anyone but a viewer.
    pub fn require_key_writer(&self) -> Result<(), ApiError> {
        if self.role.can_write_keys() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("viewers cannot change API keys"))
        }
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    /// The caller the permission layer (`crate::http::permissions::enforce`) already
    /// authenticated, or authenticates now.
    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(auth) = parts.extensions.get::<AuthUser>() {
            return Ok(*auth);
        }
        if parts
            .extensions
            .get::<crate::http::permissions::Unlisted>()
            .is_some()
        {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "{} {} is missing from the permission table",
                parts.method,
                parts.uri.path()
            )));
        }
        Self::authenticate(parts, state).await
    }
}

impl AuthUser {
    /// Authenticates the request: bearer token, open session, current membership and role.
    pub async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or(ApiError::Unauthorized("missing Authorization header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized(
                "Authorization header must be `Bearer <access token>`",
            ))?;
        let claims = state.tokens.verify(token)?;
        let open_session = session::Entity::find_by_id(claims.sid)
            .one(&state.db)
            .await?
            .is_some_and(|s| {
                s.revoked_at.is_none() && s.user_id == claims.sub && s.tenant_id == claims.tid
            });
        if !open_session {
            return Err(ApiError::Unauthorized("invalid access token"));
        }
        let membership = membership::Entity::find_by_id((claims.tid, claims.sub))
            .one(&state.db)
            .await?
            .ok_or(ApiError::Unauthorized("invalid access token"))?;
        let role = Role::parse(&membership.role).ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!("unknown role in memberships row"))
        })?;
        Ok(AuthUser {
            user_id: claims.sub,
            tenant_id: claims.tid,
            session_id: claims.sid,
            role,
        })
    }
}

/// Shared, immutable token service.
pub type Tokens = Arc<TokenService>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn service() -> TokenService {
        TokenService::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let s = service();
        let (u, t, sid) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let tok = s.issue_access(u, t, sid, Role::Admin).expect("issued");
        let claims = s.verify(&tok.token).expect("valid");
        assert_eq!(
            (claims.sub, claims.tid, claims.sid, claims.role),
            (u, t, sid, Role::Admin)
        );
        let other = TokenService::new(
            b"another-secret-another-secret-xx",
            Duration::from_secs(60),
            Duration::from_secs(1),
        );
        assert!(other.verify(&tok.token).is_err());
    }

    #[test]
    fn expired_tokens_are_refused() {
        let s = service();
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let claims = Claims {
            sub: Uuid::new_v4(),
            tid: Uuid::new_v4(),
            sid: Uuid::new_v4(),
            role: Role::Owner,
            iat: now - 3600,
            exp: now - 60,
            iss: ISSUER.to_owned(),
        };
        let tok = s.sign(&claims).expect("signed");
        let err = s.verify(&tok).expect_err("expired");
        assert_eq!(err.to_string(), "access token has expired");
    }

    #[test]
    fn refresh_tokens_are_random_and_hashed() {
        let (a, ha) = new_refresh_token();
        let (b, _) = new_refresh_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(ha, hash_refresh_token(&a));
        assert_eq!(ha.len(), 64);
    }

    #[test]
    fn roles() {
        assert!(Role::Owner.can_manage() && Role::Admin.can_manage());
        assert!(!Role::Member.can_manage() && Role::Member.can_write_keys());
        assert!(!Role::Viewer.can_write_keys());
        for r in [Role::Owner, Role::Admin, Role::Member, Role::Viewer] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
    }
}
