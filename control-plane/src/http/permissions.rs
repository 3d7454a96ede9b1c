//! The permission matrix: the minimum role of every control-plane operation, in one table
//! ([`PERMISSIONS`]) that both the enforcement and the documentation read, so they cannot drift.
//!
//! - Enforcement: [`enforce`] is a route layer on every `/api/v1` route. It looks the request's
//!   method and matched path template up in the table; for a role-gated operation it
//!   authenticates the caller ([`AuthUser`], which re-reads the session and membership), answers
//!   403 when the caller's role is below the minimum, and hands the authenticated caller to the
//!   handler through the request extensions (the handler's `AuthUser` extractor takes it from
//!   there, so authentication happens once). An operation missing from the table is refused
//!   (500, logged) as soon as its handler asks who the caller is: deny by default. (A method
//!   the path does not have still gets the router's 405.)
//! - Documentation: [`markdown_table`] renders the table; README.md holds it between
//!   `<!-- permissions:begin -->` and `<!-- permissions:end -->`, and the `permissions` test
//!   fails when the README differs (`UPDATE_README=1` rewrites it).
//! - Tests: `control-plane/tests/permissions.rs` reads every operation of the committed OpenAPI
//!   spec, checks each is in this table, and calls each one with every role: a role below the
//!   minimum gets 403, a role at or above it never does.
//!
//! Roles, most to least powerful: owner > admin > member > viewer. Handlers add finer rules
//! on top of the minimum (they answer 403 too): only an owner grants, changes or removes the
//! owner role; the last owner cannot be removed or demoted (409); a `member` sees, creates,
//! changes, rotates and revokes only the keys of their own teams (and keys they created).
//! Only owners manage billing (checkout, portal); owners and admins read it. Only owners may
//! delete the organization: that operation does not exist yet.

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{AuthUser, Role};
use crate::error::ApiError;
use crate::state::AppState;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No credentials needed.
    Public,
    /// Any signed-in user, whatever their role (operations on the caller's own account).
    SignedIn,
    /// A member of the organization with at least this role.
    AtLeast(Role),
}

impl Access {
    /// Whether `role` may call an operation with this access (a signed-in caller).
    pub fn allows(self, role: Role) -> bool {
        match self {
            Access::Public | Access::SignedIn => true,
            Access::AtLeast(min) => rank(role) >= rank(min),
        }
    }

    /// How the README names it.
    pub fn label(self) -> &'static str {
        match self {
            Access::Public => "public",
            Access::SignedIn => "any signed-in user",
            Access::AtLeast(Role::Owner) => "owner",
            Access::AtLeast(Role::Admin) => "admin",
            Access::AtLeast(Role::Member) => "member",
            Access::AtLeast(Role::Viewer) => "viewer",
        }
    }
}

/// Owner 3, admin 2, member 1, viewer 0.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Owner => 3,
        Role::Admin => 2,
        Role::Member => 1,
        Role::Viewer => 0,
    }
}

/// One operation: method and path template exactly as in the OpenAPI spec.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
    /// A short note for the README (finer rules the handler adds).
    pub note: &'static str,
}

const fn op(
    method: &'static str,
    path: &'static str,
    access: Access,
    note: &'static str,
) -> Permission {
    Permission {
        method,
        path,
        access,
        note,
    }
}

use Access::{AtLeast, Public, SignedIn};
const ADMIN: Access = AtLeast(Role::Admin);
const MEMBER: Access = AtLeast(Role::Member);
const VIEWER: Access = AtLeast(Role::Viewer);

/// Every control-plane operation and who may call it.
pub const PERMISSIONS: &[Permission] = &[
    op("GET", "/healthz", Public, ""),
    op("GET", "/readyz", Public, ""),
    op(
        "GET",
        "/api/v1/meta",
        Public,
        "version, gateway URL, optional features",
    ),
    op(
        "POST",
        "/api/v1/auth/signup",
        Public,
        "throttled per client IP",
    ),
    op(
        "POST",
        "/api/v1/auth/login",
        Public,
        "throttled per account and client IP",
    ),
    op(
        "POST",
        "/api/v1/auth/refresh",
        Public,
        "needs a refresh token (body, or cookie + `x-switchyard-csrf`)",
    ),
    op(
        "POST",
        "/api/v1/auth/logout",
        Public,
        "needs a refresh token (body or cookie); clears the session cookies",
    ),
    op(
        "POST",
        "/api/v1/auth/switch",
        SignedIn,
        "403 unless the caller belongs to the organization",
    ),
    op(
        "GET",
        "/api/v1/me",
        SignedIn,
        "lists every organization of the caller",
    ),
    op("GET", "/api/v1/members", VIEWER, ""),
    op(
        "POST",
        "/api/v1/members",
        ADMIN,
        "inviting an owner needs owner",
    ),
    op(
        "PATCH",
        "/api/v1/members/{user_id}",
        ADMIN,
        "granting or changing the owner role needs owner; the last owner cannot be demoted",
    ),
    op(
        "DELETE",
        "/api/v1/members/{user_id}",
        ADMIN,
        "removing an owner needs owner; the last owner cannot be removed",
    ),
    op("GET", "/api/v1/invitations", ADMIN, ""),
    op(
        "POST",
        "/api/v1/invitations",
        ADMIN,
        "inviting an owner needs owner",
    ),
    op(
        "DELETE",
        "/api/v1/invitations/{id}",
        ADMIN,
        "an owner invitation needs owner",
    ),
    op(
        "POST",
        "/api/v1/invitations/{token}/accept",
        SignedIn,
        "the invitee's email only",
    ),
    op("GET", "/api/v1/organization", VIEWER, ""),
    op("PATCH", "/api/v1/organization", ADMIN, ""),
    op("GET", "/api/v1/teams", VIEWER, ""),
    op("POST", "/api/v1/teams", ADMIN, ""),
    op("GET", "/api/v1/teams/{id}", VIEWER, ""),
    op("PATCH", "/api/v1/teams/{id}", ADMIN, ""),
    op("DELETE", "/api/v1/teams/{id}", ADMIN, ""),
    op("GET", "/api/v1/teams/{id}/members", VIEWER, ""),
    op("POST", "/api/v1/teams/{id}/members", ADMIN, ""),
    op("DELETE", "/api/v1/teams/{id}/members/{user_id}", ADMIN, ""),
    op(
        "GET",
        "/api/v1/keys",
        VIEWER,
        "members see their teams' keys and their own",
    ),
    op(
        "POST",
        "/api/v1/keys",
        MEMBER,
        "members: only for one of their teams",
    ),
    op(
        "GET",
        "/api/v1/keys/{id}",
        VIEWER,
        "members: their teams' keys and their own",
    ),
    op(
        "PATCH",
        "/api/v1/keys/{id}",
        MEMBER,
        "members: their teams' keys and their own",
    ),
    op(
        "DELETE",
        "/api/v1/keys/{id}",
        MEMBER,
        "members: their teams' keys and their own",
    ),
    op(
        "POST",
        "/api/v1/keys/{id}/rotate",
        MEMBER,
        "members: their teams' keys and their own",
    ),
    op("GET", "/api/v1/providers", VIEWER, ""),
    op("POST", "/api/v1/providers", ADMIN, ""),
    op("GET", "/api/v1/providers/{id}", VIEWER, ""),
    op("DELETE", "/api/v1/providers/{id}", ADMIN, ""),
    op("GET", "/api/v1/models", VIEWER, ""),
    op("POST", "/api/v1/models", ADMIN, ""),
    op("GET", "/api/v1/models/{id}", VIEWER, ""),
    op("DELETE", "/api/v1/models/{id}", ADMIN, ""),
    op("GET", "/api/v1/routes", VIEWER, ""),
    op("POST", "/api/v1/routes", ADMIN, ""),
    op("GET", "/api/v1/routes/{id}", VIEWER, ""),
    op("PATCH", "/api/v1/routes/{id}", ADMIN, ""),
    op("DELETE", "/api/v1/routes/{id}", ADMIN, ""),
    op("GET", "/api/v1/catalog", VIEWER, ""),
    op("POST", "/api/v1/catalog", ADMIN, ""),
    op("GET", "/api/v1/catalog/{id}", VIEWER, ""),
    op("PUT", "/api/v1/catalog/{id}", ADMIN, ""),
    op("DELETE", "/api/v1/catalog/{id}", ADMIN, ""),
    op("GET", "/api/v1/usage", VIEWER, ""),
    op("GET", "/api/v1/analytics/timeseries", VIEWER, ""),
    op("GET", "/api/v1/analytics/breakdown", VIEWER, ""),
    op("GET", "/api/v1/usage/export", VIEWER, ""),
    op("GET", "/api/v1/requests", VIEWER, ""),
    op("GET", "/api/v1/requests/{id}", VIEWER, ""),
    op("GET", "/api/v1/budgets", VIEWER, ""),
    op("POST", "/api/v1/budgets", ADMIN, ""),
    op("GET", "/api/v1/budgets/{id}", VIEWER, ""),
    op("PATCH", "/api/v1/budgets/{id}", ADMIN, ""),
    op("DELETE", "/api/v1/budgets/{id}", ADMIN, ""),
    op("GET", "/api/v1/guardrails", VIEWER, ""),
    op("POST", "/api/v1/guardrails", ADMIN, ""),
    op("GET", "/api/v1/guardrails/{id}", VIEWER, ""),
    op("PATCH", "/api/v1/guardrails/{id}", ADMIN, ""),
    op("DELETE", "/api/v1/guardrails/{id}", ADMIN, ""),
    op("GET", "/api/v1/alerts", ADMIN, ""),
    op("POST", "/api/v1/organization/webhook-secret", ADMIN, ""),
    op("GET", "/api/v1/audit", ADMIN, ""),
    op("GET", "/api/v1/billing", ADMIN, ""),
    op("POST", "/api/v1/billing/checkout", AtLeast(Role::Owner), ""),
    op("POST", "/api/v1/billing/portal", AtLeast(Role::Owner), ""),
    op(
        "POST",
        "/api/v1/billing/webhook",
        Public,
        "authenticated by its Stripe-Signature",
    ),
];

/// The entry for `method` + `path` (a template as in the spec; parameter names may differ,
/// as the router names one position once). `HEAD` is looked up as `GET` (axum answers it
/// with the GET handler).
pub fn lookup(method: &Method, path: &str) -> Option<&'static Permission> {
    let method = if method == Method::HEAD {
        "GET"
    } else {
        method.as_str()
    };
    PERMISSIONS
        .iter()
        .find(|p| p.method == method && same_template(p.path, path))
}

/// Whether two path templates are equal once their `{parameter}` names are ignored.
pub fn same_template(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    a.len() == b.len()
        && a.iter().zip(&b).all(|(x, y)| {
            x == y
                || (x.starts_with('{')
                    && x.ends_with('}')
                    && y.starts_with('{')
                    && y.ends_with('}'))
        })
}

/// Marks a request whose operation is not in [`PERMISSIONS`]; `AuthUser` refuses it (500).
#[derive(Debug, Clone, Copy)]
pub struct Unlisted;

/// The route layer enforcing [`PERMISSIONS`] (see the module docs).
pub async fn enforce(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let Some(permission) = template
        .as_deref()
        .and_then(|t| lookup(request.method(), t))
    else {
        // Either a method this path does not have (the router answers 405 next), or an
        // operation someone forgot to list: then the handler's `AuthUser` extractor sees the
        // mark and refuses, so an unlisted operation is never served to a signed-in caller.
        let mut request = request;
        request.extensions_mut().insert(Unlisted);
        return next.run(request).await;
    };
    if permission.access == Access::Public {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let auth = match AuthUser::authenticate(&mut parts, &state).await {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    if !permission.access.allows(auth.role) {
        return ApiError::Forbidden(forbidden_message(permission.access)).into_response();
    }
    parts.extensions.insert(auth);
    next.run(Request::from_parts(parts, body)).await
}

fn forbidden_message(access: Access) -> &'static str {
    match access {
        Access::AtLeast(Role::Owner) => "this action needs the owner role",
        Access::AtLeast(Role::Admin) => "this action needs the owner or admin role",
        Access::AtLeast(Role::Member) => "viewers can only read",
        _ => "this action is not allowed for your role",
    }
}

/// The README's permission table (markdown), generated from [`PERMISSIONS`].
pub fn markdown_table() -> String {
    let mark = |access: Access, role: Role| if access.allows(role) { "✓" } else { "—" };
    let mut out = String::from(
        "| Operation | Minimum | owner | admin | member | viewer | Notes |\n| --- | --- | :-: | :-: | :-: | :-: | --- |\n",
    );
    for p in PERMISSIONS {
        let cells = if p.access == Access::Public {
            ["✓"; 4]
        } else {
            [
                mark(p.access, Role::Owner),
                mark(p.access, Role::Admin),
                mark(p.access, Role::Member),
                mark(p.access, Role::Viewer),
            ]
        };
        out.push_str(&format!(
            "| `{} {}` | {} | {} | {} | {} | {} | {} |\n",
            p.method,
            p.path,
            p.access.label(),
            cells[0],
            cells[1],
            cells[2],
            cells[3],
            p.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_listed_once() {
        for (i, p) in PERMISSIONS.iter().enumerate() {
            assert!(
                !PERMISSIONS[..i]
                    .iter()
                    .any(|q| q.method == p.method && q.path == p.path),
                "{} {} listed twice",
                p.method,
                p.path
            );
        }
    }

    #[test]
    fn roles_are_ordered() {
        assert!(ADMIN.allows(Role::Owner) && ADMIN.allows(Role::Admin));
        assert!(!ADMIN.allows(Role::Member) && !MEMBER.allows(Role::Viewer));
        assert!(VIEWER.allows(Role::Viewer) && SignedIn.allows(Role::Viewer));
        assert!(!AtLeast(Role::Owner).allows(Role::Admin));
        assert!(same_template(
            "/api/v1/invitations/{id}/accept",
            "/api/v1/invitations/{token}/accept"
        ));
        assert!(!same_template("/api/v1/keys/{id}", "/api/v1/keys"));
        assert_eq!(
            lookup(&Method::HEAD, "/api/v1/keys").map(|p| p.access),
            Some(VIEWER)
        );
    }
}
