//! The one path every tenant-scoped resource takes, so a resource module is its DTOs and its
//! rules, and never writes the tenant filter, the 404, the version bump, the outbox row or the
//! audit call by hand.
//!
//! - [`TenantScoped`]: what a table of per-organization rows declares once (its tenant and id
//!   columns, the noun of its 404, its audit kind, the order lists are in).
//! - Reading: [`scoped`] (the query every read of such a table starts from), [`find`] (one row
//!   by id, `404 "<noun> not found"` when it is missing *or belongs to another organization*:
//!   the two are indistinguishable by design), [`list`] (every row of the caller's
//!   organization, in the resource's total order, so two calls list the same rows in the same
//!   order).
//! - Writing: [`Change`], one transaction for one API call. It finds and deletes rows scoped to
//!   the caller's organization, [`Change::publish_tenant`] bumps `tenants.config_version` and
//!   inserts the outbox row (at most once per change, however many rows changed),
//!   [`Change::publish_key`] does the same for an API key's record, [`Change::audit`] notes who
//!   did what, with the object's snapshots before and after (`AuditNote::before`/`after`). [`Change::commit`] stores the audit events in the same transaction, commits,
//!   waits (bounded) until the data plane has the new records (see `crate::sync`) and logs the
//!   audit events. A handler that returns early drops the change: nothing is committed,
//!   published or audited.
//!
//! No list endpoint of the control API paginates today (an organization has tens of providers,
//! models, teams or routes, not thousands); [`list`] returns everything in a stable order, so
//! keyset pagination on that order can be added later without changing what a page holds.

use std::fmt::Display;

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, Select,
    TransactionTrait, Value,
};
use uuid::Uuid;

use crate::audit::{self, Actor, AuditAction, AuditEvent};
use crate::auth::AuthUser;
use crate::error::{ApiError, ResultExt};
use crate::state::AppState;
use crate::sync::{self, Outboxed};

/// A table whose rows each belong to one organization (tenant).
pub(crate) trait TenantScoped: EntityTrait {
    /// The id as it appears in paths.
    type Id: Into<Value> + Clone + Display + Send + Sync;
    /// What a missing row is called in the 404 message (`"model"` → `model not found`).
    const NOUN: &'static str;
    /// The object kind in audit events: snake_case, stable.
    const KIND: &'static str;
    /// The column holding the owning tenant's id.
    fn tenant_column() -> Self::Column;
    /// The column holding the id.
    fn id_column() -> Self::Column;
    /// `select` in the order lists are in. It must be total (end with a unique column), so a
    /// list is the same on every call and could be paged.
    fn ordered(select: Select<Self>) -> Select<Self>;
}

/// Every row of `tenant_id`: where every read of a tenant-scoped table starts.
pub(crate) fn scoped<E: TenantScoped>(tenant_id: Uuid) -> Select<E> {
    E::find().filter(E::tenant_column().eq(tenant_id))
}

/// The row `id` of `tenant_id`; `404 "<noun> not found"` when there is none (including when
/// `id` belongs to another tenant).
pub(crate) async fn find<E: TenantScoped, C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
    id: E::Id,
) -> Result<E::Model, ApiError> {
    scoped::<E>(tenant_id)
        .filter(E::id_column().eq(id))
        .one(conn)
        .await?
        .ok_or(ApiError::NotFound(E::NOUN))
}

/// Every row of `tenant_id`, in the resource's order.
pub(crate) async fn list<E: TenantScoped, C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
) -> Result<Vec<E::Model>, ApiError> {
    Ok(E::ordered(scoped::<E>(tenant_id)).all(conn).await?)
}

/// The audit event just noted by [`Change::audit`]: add what the object looked like.
pub(crate) struct AuditNote<'c> {
    event: &'c mut AuditEvent,
}

impl AuditNote<'_> {
    /// The object before the change (its API representation; scrubbed of secrets).
    pub(crate) fn before<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        self.event.before = audit::snapshot(value);
        self
    }

    /// The object after the change (its API representation; scrubbed of secrets).
    pub(crate) fn after<T: serde::Serialize + ?Sized>(self, value: &T) -> Self {
        self.event.after = audit::snapshot(value);
        self
    }
}

/// One API call's change to the caller's organization: a transaction plus what to publish and
/// audit once it commits. See the module docs.
pub(crate) struct Change<'a> {
    state: &'a AppState,
    tenant_id: Uuid,
    actor: Actor,
    tx: DatabaseTransaction,
    /// Outbox rows to wait for after commit.
    outbox: Vec<i64>,
    /// Whether the tenant's version was bumped already (once per change is enough).
    tenant_enqueued: bool,
    audit: Vec<AuditEvent>,
}

impl<'a> Change<'a> {
    /// Opens the transaction for a change by `auth` to its organization.
    pub(crate) async fn begin(state: &'a AppState, auth: &AuthUser) -> Result<Self, ApiError> {
        Ok(Self {
            state,
            tenant_id: auth.tenant_id,
            actor: Actor::from(auth),
            tx: state.db.begin().await?,
            outbox: Vec::new(),
            tenant_enqueued: false,
            audit: Vec::new(),
        })
    }

    /// The transaction, for the resource's own statements.
    pub(crate) fn tx(&self) -> &DatabaseTransaction {
        &self.tx
    }

    /// [`find`] inside the transaction.
    pub(crate) async fn find<E: TenantScoped>(&self, id: E::Id) -> Result<E::Model, ApiError> {
        find::<E, _>(&self.tx, self.tenant_id, id).await
    }

    /// Deletes the row `id` of this organization (404 when there is none) and audits it; the
    /// returned note takes the `before` snapshot. A row still referenced by a foreign key is a
    /// 409 saying the object is still in use.
    pub(crate) async fn delete<E: TenantScoped>(
        &mut self,
        id: E::Id,
    ) -> Result<AuditNote<'_>, ApiError> {
        let in_use = format!("{} is still in use", E::NOUN);
        self.delete_or_conflict::<E>(id, &in_use).await
    }

    /// [`Change::delete`] with the 409 message for a row still referenced by a foreign key.
    pub(crate) async fn delete_or_conflict<E: TenantScoped>(
        &mut self,
        id: E::Id,
        in_use: &str,
    ) -> Result<AuditNote<'_>, ApiError> {
        let deleted = E::delete_many()
            .filter(E::tenant_column().eq(self.tenant_id))
            .filter(E::id_column().eq(id.clone()))
            .exec(&self.tx)
            .await
            .on_foreign_key_violation(in_use)?
            .rows_affected;
        if deleted == 0 {
            return Err(ApiError::NotFound(E::NOUN));
        }
        Ok(self.audit::<E>(AuditAction::Delete, &id))
    }

    /// Bumps the organization's config version and enqueues its record, once per change:
    /// call it after (or before) every write that changes what `TenantConfig` holds.
    pub(crate) async fn publish_tenant(&mut self) -> Result<(), ApiError> {
        if !self.tenant_enqueued {
            let id = sync::bump_tenant_version(&self.tx, self.tenant_id).await?;
            self.outbox.push(id);
            self.tenant_enqueued = true;
        }
        Ok(())
    }

    /// Enqueues the record of API key `key_id` (whose `version` the caller bumped).
    pub(crate) async fn publish_key(&mut self, key_id: Uuid) -> Result<(), ApiError> {
        let id = sync::enqueue(&self.tx, Outboxed::Key(key_id)).await?;
        self.outbox.push(id);
        Ok(())
    }

    /// Enqueues a revoked record for `key_hash`, a secret API key `key_id` no longer has
    /// (rotation): nodes that still hold it as the key's previous secret drop it.
    pub(crate) async fn publish_retired_key(
        &mut self,
        key_id: Uuid,
        key_hash: &str,
    ) -> Result<(), ApiError> {
        let Some(what) = Outboxed::retired_key(key_id, key_hash) else {
            return Err(ApiError::Internal(anyhow::anyhow!(
                "a stored key hash is not 64 hex digits"
            )));
        };
        let id = sync::enqueue(&self.tx, what).await?;
        self.outbox.push(id);
        Ok(())
    }

    /// Notes that the actor did `action` to the object `id` of resource `E`; the returned note
    /// takes the object's `before`/`after` snapshots (its API representation, see
    /// `crate::audit`).
    pub(crate) fn audit<E: TenantScoped>(
        &mut self,
        action: AuditAction,
        id: &E::Id,
    ) -> AuditNote<'_> {
        self.audit_kind(action, E::KIND, id)
    }

    /// [`Change::audit`] for an object that is not a [`TenantScoped`] row (the organization, a
    /// member, a team membership).
    pub(crate) fn audit_kind(
        &mut self,
        action: AuditAction,
        object_kind: &'static str,
        id: &dyn Display,
    ) -> AuditNote<'_> {
        self.audit.push(AuditEvent {
            tenant_id: self.tenant_id,
            actor: self.actor,
            action,
            object_kind,
            object_id: id.to_string(),
            before: None,
            after: None,
        });
        let len = self.audit.len();
        AuditNote {
            event: &mut self.audit[len - 1],
        }
    }

    /// Stores the audit events, commits, waits (at most `sync::WAIT_BUDGET`) until what was
    /// enqueued is published, and logs the audit events.
    pub(crate) async fn commit(self) -> Result<(), ApiError> {
        audit::store(&self.tx, &self.audit).await?;
        self.tx.commit().await?;
        self.state.sync.wait_published(&self.outbox).await;
        audit::log(&self.audit);
        Ok(())
    }
}
