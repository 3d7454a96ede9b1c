//! The audit hook: every change an API call makes to an organization's resources is described
//! by one [`AuditEvent`] (who, what, which object), handed here by
//! [`Change`](crate::http::resource::Change) when it commits.
//!
//! Two calls, on purpose:
//! - [`store`] runs **inside** the change's transaction, just before commit, so a stored audit
//!   trail and the change it describes commit together or not at all. It stores nothing yet: the
//!   governance issue gives it a table. Changing its body is all that takes; every call site is
//!   already in place.
//! - [`log`] runs **after** the commit, so the log only ever shows changes that happened. It
//!   writes one `info` line per event on the `switchyard::audit` target (ids and kinds only:
//!   never a secret, a name or any other value the client sent).

use std::fmt;

use sea_orm::{ConnectionTrait, DbErr};
use uuid::Uuid;

use crate::auth::{AuthUser, Role};

/// What was done to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    Create,
    Update,
    Delete,
    /// Kept but made unusable (API keys, invitations).
    Revoke,
}

impl AuditAction {
    /// The stable snake_case name, as stored and logged.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Create => "create",
            AuditAction::Update => "update",
            AuditAction::Delete => "delete",
            AuditAction::Revoke => "revoke",
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub tenant_id: Uuid,
    pub actor: Actor,
    pub action: AuditAction,
    /// The object's kind, snake_case and stable (`model_deployment`, `route`, `api_key`, …).
    pub object_kind: &'static str,
    /// The object's id (a UUID, or a catalog id).
    pub object_id: String,
}

/// Stores `events` in the transaction `conn` of the change they describe. Nothing is stored
/// yet (see the module docs); the signature is the contract the governance issue fills in.
pub async fn store<C: ConnectionTrait>(conn: &C, events: &[AuditEvent]) -> Result<(), DbErr> {
    let _ = (conn, events);
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
