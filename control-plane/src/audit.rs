//! The audit log: every change an API call makes to an organization is described by one
//! [`AuditEvent`] (who, what, which object, and JSON snapshots of the object before and after),
//! handed here by [`Change`](crate::http::resource::Change) when it commits (or, for the few
//! changes made outside a `Change`, by the handler in its own transaction).
//!
//! Two calls, on purpose:
//! - [`store`] runs **inside** the change's transaction, just before commit, so a stored audit
//!   trail and the change it describes commit together or not at all. It writes one
//!   `audit_events` row per event; `GET /api/v1/audit` (`crate::http::audit`) reads them.
//! - [`log`] runs **after** the commit, so the log only ever shows changes that happened. It
//!   writes one `info` line per event on the `switchyard::audit` target (ids and kinds only:
//!   never a secret, a name or any other value the client sent).
//!
//! # Snapshots never hold secrets
//!
//! `before`/`after` are the API representations (the response DTOs) of the object, which by
//! construction never carry a provider API key, a key hash, a plaintext key, a token or a
//! webhook secret. As a second line of defence, [`scrub`] replaces the value of any field whose
//! name says it is a secret ([`is_secret_field`]: `key`, `api_key`, `secret`, `token`,
//! `password`, `*_secret`, `*_token`, `*_hash`, `*_sealed`, …) with `"[redacted]"` before a
//! snapshot is stored, at any depth.

use std::fmt;

use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{ConnectionTrait, DbErr, EntityTrait};
use uuid::Uuid;

use crate::auth::{AuthUser, Role};
use crate::entities::audit_event;

/// What was done to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    /// Kept but made unusable (API keys, invitations).
    Revoke,
    /// A new secret for the same object (API keys).
    Rotate,
}

impl AuditAction {
    /// The stable snake_case name, as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Revoke => "revoke",
            AuditAction::Rotate => "rotate",
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acted: a signed-in user, in one organization, through one session, with a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Actor {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub role: Role,
}

impl From<&AuthUser> for Actor {
    fn from(auth: &AuthUser) -> Self {
        Self {
            user_id: auth.user_id,
            session_id: auth.session_id,
            role: auth.role,
        }
    }
}

/// One change to one object of one organization.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub tenant_id: Uuid,
    pub actor: Actor,
    pub action: AuditAction,
    /// The object's kind, snake_case and stable (`model_deployment`, `route`, `api_key`, …).
    pub object_kind: &'static str,
    /// The object's id (a UUID, or a catalog id).
    pub object_id: String,
    /// The object as the API showed it before the change (`None` for a creation).
    pub before: Option<serde_json::Value>,
    /// The object as the API shows it after the change (`None` for a deletion).
    pub after: Option<serde_json::Value>,
}

/// A snapshot of `value` for `before`/`after`: its JSON form, scrubbed (see the module docs).
pub fn snapshot<T: serde::Serialize + ?Sized>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok().map(scrub)
}

/// Whether a JSON field name names a secret (see the module docs).
pub fn is_secret_field(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "key" | "api_key" | "secret" | "token" | "password" | "authorization"
    ) || ["_secret", "_token", "_hash", "_sealed", "_password", "_key"]
        .iter()
        .any(|suffix| n.ends_with(suffix))
}

/// `value` with the value of every secret-named field (at any depth) replaced by
/// `"[redacted]"`.
pub fn scrub(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if is_secret_field(&k) && !v.is_null() && !v.is_boolean() {
                        Value::String("[redacted]".to_owned())
                    } else {
                        scrub(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(scrub).collect()),
        other => other,
    }
}

/// Stores `events` in the transaction `conn` of the change they describe, one `audit_events`
/// row each, with their snapshots scrubbed once more.
pub async fn store<C: ConnectionTrait>(conn: &C, events: &[AuditEvent]) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    let at = crate::http::now();
    let rows = events.iter().map(|e| audit_event::ActiveModel {
        id: NotSet,
        tenant_id: Set(e.tenant_id),
        actor_user_id: Set(e.actor.user_id),
        actor_session_id: Set(e.actor.session_id),
        actor_role: Set(e.actor.role.as_str().to_owned()),
        action: Set(e.action.as_str().to_owned()),
        object_kind: Set(e.object_kind.to_owned()),
        object_id: Set(e.object_id.clone()),
        before: Set(e.before.clone().map(scrub)),
        after: Set(e.after.clone().map(scrub)),
        created_at: Set(at),
    });
    audit_event::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Logs `events` once their change has committed.
pub fn log(events: &[AuditEvent]) {
    for e in events {
        tracing::info!(
            target: "switchyard::audit",
            tenant_id = %e.tenant_id,
            actor_user_id = %e.actor.user_id,
            actor_session_id = %e.actor.session_id,
            actor_role = e.actor.role.as_str(),
            action = e.action.as_str(),
            object_kind = e.object_kind,
            object_id = %e.object_id,
            "audit"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_never_reach_a_snapshot() {
        let v = json!({
            "id": "p1", "name": "openai", "has_api_key": true, "api_key": "sk-live",
            "nested": {"webhook_secret": "whsec", "token": "t", "key_hash": "ab", "keys": 3},
            "list": [{"key": "sk-sy-x", "prefix": "sk-sy-Ab…"}],
            "options": {"access_key_id": "AKIA", "region": "eu"},
        });
        let s = scrub(v);
        assert_eq!(s["api_key"], "[redacted]");
        assert_eq!(s["has_api_key"], true);
        assert_eq!(s["nested"]["webhook_secret"], "[redacted]");
        assert_eq!(s["nested"]["token"], "[redacted]");
        assert_eq!(s["nested"]["key_hash"], "[redacted]");
        assert_eq!(s["nested"]["keys"], 3);
        assert_eq!(s["list"][0]["key"], "[redacted]");
        assert_eq!(s["list"][0]["prefix"], "sk-sy-Ab…");
        assert_eq!(s["options"]["region"], "eu");
    }
}
