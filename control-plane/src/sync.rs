//! The config outbox: how committed changes reach the data plane.
//!
//! A handler that changes published state does, **in one transaction**: its change, a version
//! bump of the affected record (`api_keys.version` for a key, `tenants.config_version` for
//! anything in a tenant's `TenantConfig`: providers, deployments, routes, the organization's
//! and its teams' region policies, limits and cache settings, budgets, guardrails; see
//! [`bump_tenant_version`]) and an insert into
//! `config_outbox` ([`enqueue`]). After commit it calls [`ConfigSync::wait_published`], which
//! wakes the worker and waits (at most [`WAIT_BUDGET`]) until those outbox rows are gone, so a
//! `DELETE /keys/{id}` that has returned has normally been published already. If Redis is down
//! the handler still succeeds (the change is committed and will be published): it logs a
//! warning and returns after the budget.
//!
//! The worker ([`ConfigSync::spawn_worker`]) reads outbox rows in id order, rebuilds each named
//! record **from the current database state** (so several rows for one record publish it once,
//! at its latest version), hands it to the [`Publisher`], and deletes the rows only after the
//! publish succeeded. On failure it retries with backoff until Redis is back. Because the
//! publisher refuses versions that are not newer, publishing the same record twice, from two
//! control-plane processes, or out of order is harmless.
//!
//! On start the worker first republishes every key and every tenant ([`ConfigSync::publish_all`]),
//! because Redis may have lost its data (or, in-process, the bus starts empty).
//!
//! Handlers do this through `http::resource::Change`, which also audits the change.
//!
//! A key has up to two published records: its current secret, and during a rotation grace the
//! secret before it (same key id, expiring at the end of the grace; see [`key_records`]). Both
//! are published whenever the key is, by the outbox and by the full republish. A secret a
//! rotation ends early (a second rotation during the grace, or a grace of 0) gets a revoked
//! record through its own outbox row ([`Outboxed::RetiredKey`]), so nodes drop it at once.
//!
//! Reading a tenant's record: the version is read *before* the providers, deployments, teams
//! and routes, so the published content is at least as new as the version it carries. A newer
//! change committed in between has its own outbox row and is published again with its higher
//! version.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use shared::config::{
    DeploymentMode, DeploymentRecord, KeyRecord, ProviderKind, ProviderRecord, RetryClass,
    RouteCandidate, RouteRecord, RouteStrategy, RouteTimeouts, TenantConfig,
};
use time::OffsetDateTime;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::entities::{
    api_key, budget, config_outbox, guardrail, model_deployment, provider_credential, route,
    route_candidate, team, tenant,
};
use crate::publish::Publisher;

/// How long a handler waits for its change to be published before answering anyway.
pub const WAIT_BUDGET: Duration = Duration::from_secs(2);
/// Outbox rows handled per pass.
const OUTBOX_BATCH: u64 = 500;
/// Records per page when republishing everything.
const REPUBLISH_PAGE: u64 = 500;
/// With nothing to do, look at the outbox this often anyway: picks up rows another
/// control-plane process committed but could not publish (it may have died).
const IDLE_POLL: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which record an outbox row names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outboxed {
    /// An API key, by id.
    Key(Uuid),
    /// A tenant's `TenantConfig` (providers, deployments, routes, region policies), by tenant id.
    Tenant(Uuid),
    /// A secret API key `key_id` no longer has (replaced by a rotation): published as a revoked
    /// record under its hash (the SHA-256 bytes), so nodes drop it at once.
    RetiredKey { key_id: Uuid, hash: [u8; 32] },
}

impl Outboxed {
    fn kind(self) -> &'static str {
        match self {
            Outboxed::Key(_) => "key",
            Outboxed::Tenant(_) => "tenant",
            Outboxed::RetiredKey { .. } => "retired_key",
        }
    }

    /// `ref_id` as stored: the id, or `<key id>:<hex hash>` for a retired key.
    fn ref_id(self) -> String {
        match self {
            Outboxed::Key(id) | Outboxed::Tenant(id) => id.to_string(),
            Outboxed::RetiredKey { key_id, hash } => format!("{key_id}:{}", hex::encode(hash)),
        }
    }

    /// [`Outboxed::RetiredKey`] from a stored hash (64 hex digits); `None` for anything else.
    pub fn retired_key(key_id: Uuid, key_hash: &str) -> Option<Self> {
        let mut hash = [0u8; 32];
        hex::decode_to_slice(key_hash, &mut hash).ok()?;
        Some(Outboxed::RetiredKey { key_id, hash })
    }

    fn parse(kind: &str, ref_id: &str) -> Option<Self> {
        if kind == "retired_key" {
            let (id, hash) = ref_id.split_once(':')?;
            return Self::retired_key(Uuid::parse_str(id).ok()?, hash);
        }
        let id = Uuid::parse_str(ref_id).ok()?;
        match kind {
            "key" => Some(Outboxed::Key(id)),
            "tenant" => Some(Outboxed::Tenant(id)),
            _ => None,
        }
    }
}

/// Inserts an outbox row for `what`; call inside the transaction that made the change.
/// Returns the row id, to pass to [`ConfigSync::wait_published`] after commit.
pub async fn enqueue<C: ConnectionTrait>(conn: &C, what: Outboxed) -> Result<i64, DbErr> {
    let row = config_outbox::ActiveModel {
        kind: Set(what.kind().to_owned()),
        ref_id: Set(what.ref_id()),
        created_at: Set(OffsetDateTime::now_utc()),
        ..Default::default()
    };
    Ok(config_outbox::Entity::insert(row)
        .exec(conn)
        .await?
        .last_insert_id)
}

/// Bumps `tenants.config_version` and enqueues the tenant; call inside the transaction that
/// changed anything the tenant's `TenantConfig` holds. The row lock this takes also serializes concurrent
/// config changes of one tenant.
pub async fn bump_tenant_version<C: ConnectionTrait>(
    conn: &C,
    tenant_id: Uuid,
) -> Result<i64, DbErr> {
    tenant::Entity::update_many()
        .col_expr(
            tenant::Column::ConfigVersion,
            Expr::col(tenant::Column::ConfigVersion).add(1),
        )
        .filter(tenant::Column::Id.eq(tenant_id))
        .exec(conn)
        .await?;
    enqueue(conn, Outboxed::Tenant(tenant_id)).await
}

/// The key as the data plane sees it (its current secret).
pub fn key_record(row: &api_key::Model) -> KeyRecord {
    KeyRecord {
        key_id: row.id,
        key_hash: row.key_hash.clone(),
        tenant_id: row.tenant_id,
        team_id: row.team_id,
        name: row.name.clone(),
        allowed_models: row.allowed_model_names(),
        expires_at: row.expires_at,
        revoked_at: row.revoked_at,
        version: row.version,
        limits: row.rate_limits(),
        endpoints: row.endpoint_list(),
        allowed_cidrs: row.cidr_list(),
        // Stored as bigint; the API only writes values that fit.
        max_tokens_per_request: row
            .max_tokens_per_request
            .and_then(|n| u32::try_from(n).ok()),
        metadata: row.metadata_map(),
        cache: row.cache_settings(),
    }
}

/// Every record of the key: its current secret, and the secret before its last rotation (same
/// key id, so budgets and limits cover both) while the row keeps it, expiring at the end of
/// its grace (`previous_expires_at`, never later than the key's own expiry).
pub fn key_records(row: &api_key::Model) -> Vec<KeyRecord> {
    let current = key_record(row);
    let mut out = Vec::with_capacity(2);
    if let Some(previous) = &row.previous_key_hash {
        let grace_end = row.previous_expires_at.unwrap_or(row.created_at);
        out.push(KeyRecord {
            key_hash: previous.clone(),
            expires_at: Some(match row.expires_at {
                Some(e) if e < grace_end => e,
                _ => grace_end,
            }),
            ..current.clone()
        });
    }
    out.insert(0, current);
    out
}

/// The revoked record of a secret key `row` no longer has (see [`Outboxed::RetiredKey`]).
pub fn retired_key_record(row: &api_key::Model, key_hash: String) -> KeyRecord {
    KeyRecord {
        key_hash,
        revoked_at: Some(
            row.revoked_at
                .or(row.rotated_at)
                .unwrap_or_else(OffsetDateTime::now_utc),
        ),
        ..key_record(row)
    }
}

fn provider_record(row: &provider_credential::Model) -> Option<ProviderRecord> {
    let Some(kind) = ProviderKind::parse(&row.kind) else {
        // Only hand-edited data (or a newer control plane's kind during a rolling deploy).
        tracing::warn!(provider_id = %row.id, kind = %row.kind, "skipping provider of unknown kind");
        return None;
    };
    Some(ProviderRecord {
        id: row.id,
        name: row.name.clone(),
        kind,
        base_url: row.base_url.clone(),
        api_key_sealed: row.api_key_sealed.clone(),
        options: row.option_map(),
    })
}

fn deployment_record(row: &model_deployment::Model) -> DeploymentRecord {
    DeploymentRecord {
        id: row.id,
        // Stored as bigint; the API only writes values that fit.
        context_window: row.context_window.and_then(|n| u32::try_from(n).ok()),
        capabilities: row.capability_list(),
        rpm_limit: row.rpm_limit.and_then(|n| u32::try_from(n).ok()),
        tpm_limit: row.tpm_limit.and_then(|n| u64::try_from(n).ok()),
        name: row.name.clone(),
        provider_id: row.provider_id,
        upstream_model: row.upstream_model.clone(),
        input_price_micros_per_mtok: row.input_price_micros_per_mtok,
        output_price_micros_per_mtok: row.output_price_micros_per_mtok,
        region: row.region.clone(),
        cached_input_price_micros_per_mtok: row.cached_input_price_micros_per_mtok,
        // Stored as bigint; the API only writes values that fit.
        max_output_tokens: row.max_output_tokens.and_then(|n| u32::try_from(n).ok()),
        catalog_id: row.catalog_id.clone(),
        // The API only stores known modes; anything else is treated as the default (chat).
        mode: DeploymentMode::parse(&row.mode).unwrap_or_default(),
    }
}

/// The route as the data plane sees it: `candidates` are the route's rows in position order.
/// `None` for a route whose strategy this version does not know (only hand-edited data, or a
/// newer control plane's during a rolling deploy): publishing it with a guessed strategy would
/// route differently from what was configured.
pub(crate) fn route_record(
    row: &route::Model,
    candidates: &[route_candidate::Model],
) -> Option<RouteRecord> {
    let Some(strategy) = parse_wire::<RouteStrategy>(&row.strategy) else {
        tracing::warn!(route_id = %row.id, strategy = %row.strategy, "skipping route of unknown strategy");
        return None;
    };
    let ms = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok());
    Some(RouteRecord {
        id: row.id,
        name: row.name.clone(),
        strategy,
        candidates: candidates
            .iter()
            .map(|c| RouteCandidate {
                deployment_id: c.deployment_id,
                weight: c.weight.and_then(|w| u32::try_from(w).ok()),
                priority: c.priority,
            })
            .collect(),
        allowed_regions: row.region_policy(),
        max_attempts: row.max_attempts.and_then(|n| u32::try_from(n).ok()),
        // A malformed list (never written by the API) reads as unset: the gateway's default.
        retry_on: row
            .retry_on
            .as_ref()
            .and_then(|v| serde_json::from_value::<Vec<RetryClass>>(v.clone()).ok()),
        timeouts: RouteTimeouts {
            connect_ms: ms(row.connect_timeout_ms),
            first_token_ms: ms(row.first_token_timeout_ms),
            total_ms: ms(row.total_timeout_ms),
        },
        hedge_after_ms: ms(row.hedge_after_ms),
        sticky: row.sticky,
        cache: row.cache_settings(),
    })
}

/// Parses a wire name (a serde unit variant) such as `least_busy`.
pub(crate) fn parse_wire<T: serde::de::DeserializeOwned>(name: &str) -> Option<T> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

/// Builds the published configs of `tenants` (already read, so their versions come first) with
/// one query per kind of record for all of them. Deployments and providers are in creation order, which is the
/// order routing sees them in; routes are in name order, their candidates in the route's order.
async fn tenant_configs(
    db: &DatabaseConnection,
    tenants: &[tenant::Model],
) -> Result<Vec<TenantConfig>, DbErr> {
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.id).collect();
    let providers = provider_credential::Entity::find()
        .filter(provider_credential::Column::TenantId.is_in(ids.clone()))
        .order_by_asc(provider_credential::Column::CreatedAt)
        .order_by_asc(provider_credential::Column::Id)
        .all(db)
        .await?;
    let deployments = model_deployment::Entity::find()
        .filter(model_deployment::Column::TenantId.is_in(ids.clone()))
        .order_by_asc(model_deployment::Column::CreatedAt)
        .order_by_asc(model_deployment::Column::Id)
        .all(db)
        .await?;
    let pinned_teams = team::Entity::find()
        .filter(team::Column::TenantId.is_in(ids.clone()))
        .filter(team::Column::AllowedRegions.is_not_null())
        .all(db)
        .await?;
    let routes = route::Entity::find()
        .filter(route::Column::TenantId.is_in(ids))
        .order_by_asc(route::Column::Name)
        .order_by_asc(route::Column::Id)
        .all(db)
        .await?;
    let mut candidates: HashMap<Uuid, Vec<route_candidate::Model>> = HashMap::new();
    for chunk in routes.chunks(REPUBLISH_PAGE as usize) {
        let rows = route_candidate::Entity::find()
            .filter(route_candidate::Column::RouteId.is_in(chunk.iter().map(|r| r.id)))
            .order_by_asc(route_candidate::Column::RouteId)
            .order_by_asc(route_candidate::Column::Position)
            .all(db)
            .await?;
        for c in rows {
            candidates.entry(c.route_id).or_default().push(c);
        }
    }
    let mut by_tenant: HashMap<Uuid, TenantConfig> = tenants
        .iter()
        .map(|t| {
            (
                t.id,
                TenantConfig {
                    tenant_id: t.id,
                    version: t.config_version,
                    routes: Vec::new(),
                    allowed_regions: t.region_policy(),
                    team_regions: Default::default(),
                    budgets: Vec::new(),
                    limits: Default::default(),
                    team_limits: Default::default(),
                    suspension: crate::billing::suspension::of_row(t),
                    store_payloads: t.store_payloads,
                    deployments: vec![],
                    providers: vec![],
                    team_cache: Default::default(),
                    guardrails: Vec::new(),
                },
            )
        })
        .collect();
    for p in &providers {
        if let (Some(cfg), Some(rec)) = (by_tenant.get_mut(&p.tenant_id), provider_record(p)) {
            cfg.providers.push(rec);
        }
    }
    for d in &deployments {
        if let Some(cfg) = by_tenant.get_mut(&d.tenant_id) {
            cfg.deployments.push(deployment_record(d));
        }
    }
    for t in &pinned_teams {
        if let (Some(cfg), Some(regions)) = (by_tenant.get_mut(&t.tenant_id), t.region_policy()) {
            cfg.team_regions.insert(t.id, regions);
        }
    }
    // --- Rate limits (governance): the organization's and its teams' rpm/tpm limits. ---
    {
        let ids: Vec<Uuid> = tenants.iter().map(|t| t.id).collect();
        let limited_teams = team::Entity::find()
            .filter(team::Column::TenantId.is_in(ids))
            .filter(
                Condition::any()
                    .add(team::Column::RpmLimit.is_not_null())
                    .add(team::Column::TpmLimit.is_not_null()),
            )
            .all(db)
            .await?;
        for t in tenants {
            if let Some(cfg) = by_tenant.get_mut(&t.id) {
                cfg.limits = t.rate_limits();
            }
        }
        for t in &limited_teams {
            if let Some(cfg) = by_tenant.get_mut(&t.tenant_id) {
                cfg.team_limits.insert(t.id, t.rate_limits());
            }
        }
    }
    // Budgets (`TenantConfig.budgets`), oldest first; one with a scope or period this version
    // does not know (only hand-edited data) is left out.
    let budgets = budget::Entity::find()
        .filter(budget::Column::TenantId.is_in(tenants.iter().map(|t| t.id)))
        .order_by_asc(budget::Column::CreatedAt)
        .order_by_asc(budget::Column::Id)
        .all(db)
        .await?;
    for b in &budgets {
        if let (Some(cfg), Some(rec)) = (by_tenant.get_mut(&b.tenant_id), b.record()) {
            cfg.budgets.push(rec);
        }
    }
    // Response-cache settings of teams (`TenantConfig.team_cache`: only teams with one).
    let cached_teams = team::Entity::find()
        .filter(team::Column::TenantId.is_in(tenants.iter().map(|t| t.id)))
        .filter(team::Column::Cache.is_not_null())
        .all(db)
        .await?;
    for t in &cached_teams {
        if let (Some(cfg), Some(cache)) = (by_tenant.get_mut(&t.tenant_id), t.cache_settings()) {
            cfg.team_cache.insert(t.id, cache);
        }
    }
    // Guardrails (`TenantConfig.guardrails`), oldest first; one this version cannot read (only
    // hand-edited data) is left out, as a budget is.
    let guardrails = guardrail::Entity::find()
        .filter(guardrail::Column::TenantId.is_in(tenants.iter().map(|t| t.id)))
        .order_by_asc(guardrail::Column::CreatedAt)
        .order_by_asc(guardrail::Column::Id)
        .all(db)
        .await?;
    for g in &guardrails {
        let Some(cfg) = by_tenant.get_mut(&g.tenant_id) else {
            continue;
        };
        match g.record() {
            Some(rec) => cfg.guardrails.push(rec),
            None => {
                tracing::warn!(guardrail_id = %g.id, "skipping a guardrail this version cannot read")
            }
        }
    }
    for r in &routes {
        let rows = candidates.get(&r.id).map(Vec::as_slice).unwrap_or_default();
        if let (Some(cfg), Some(rec)) = (by_tenant.get_mut(&r.tenant_id), route_record(r, rows)) {
            cfg.routes.push(rec);
        }
    }
    Ok(tenants
        .iter()
        .filter_map(|t| by_tenant.remove(&t.id))
        .collect())
}

/// Handle to the outbox worker; cheap to clone, lives in the app state.
#[derive(Clone)]
pub struct ConfigSync {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    publisher: Publisher,
    /// Wakes the worker after a commit.
    wake: Notify,
    /// Counts finished worker passes, so waiters know when to look again.
    passes: watch::Sender<u64>,
}

impl std::fmt::Debug for ConfigSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigSync")
            .field("publisher", &self.inner.publisher)
            .finish_non_exhaustive()
    }
}

impl ConfigSync {
    pub fn new(db: DatabaseConnection, publisher: Publisher) -> Self {
        let (passes, _) = watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                db,
                publisher,
                wake: Notify::new(),
                passes,
            }),
        }
    }

    /// Wakes the worker and waits until the outbox rows `ids` have been published, for at most
    /// [`WAIT_BUDGET`]. Returns whether they were. Never fails the caller: the change is
    /// committed either way and the worker keeps retrying.
    pub async fn wait_published(&self, ids: &[i64]) -> bool {
        if ids.is_empty() {
            return true;
        }
        let mut passes = self.inner.passes.subscribe();
        passes.borrow_and_update();
        self.inner.wake.notify_one();
        let deadline = tokio::time::Instant::now() + WAIT_BUDGET;
        loop {
            tokio::select! {
                changed = passes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
            match self.outbox_contains(ids).await {
                Ok(false) => return true,
                Ok(true) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the config outbox");
                    break;
                }
            }
        }
        tracing::warn!(
            outbox_ids = ?ids,
            "change committed but not yet published to the data plane; it will be retried"
        );
        false
    }

    async fn outbox_contains(&self, ids: &[i64]) -> Result<bool, DbErr> {
        let n = config_outbox::Entity::find()
            .filter(config_outbox::Column::Id.is_in(ids.iter().copied()))
            .count(&self.inner.db)
            .await?;
        Ok(n > 0)
    }

    /// Starts the worker: republishes everything first (retrying until it succeeds) when
    /// `republish_first` is set, then publishes outbox rows as they come. Stops when
    /// `shutdown` flips to true; rows left behind are published on the next start.
    pub fn spawn_worker(
        &self,
        republish_first: bool,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut backoff = BACKOFF_START;
            if republish_first {
                loop {
                    match this.publish_all().await {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "republishing all config failed");
                            if sleep_or_shutdown(backoff, &mut shutdown).await {
                                return;
                            }
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
                backoff = BACKOFF_START;
            }
            loop {
                let wait = match this.drain().await {
                    Ok(()) => {
                        backoff = BACKOFF_START;
                        IDLE_POLL
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), retry_in = ?backoff, "publishing config changes failed");
                        let wait = backoff;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        wait
                    }
                };
                tokio::select! {
                    () = this.inner.wake.notified() => {}
                    stop = sleep_or_shutdown(wait, &mut shutdown) => if stop { return },
                }
                if *shutdown.borrow() {
                    return;
                }
            }
        })
    }

    /// Runs passes until the outbox is empty or a publish fails.
    async fn drain(&self) -> anyhow::Result<()> {
        loop {
            let result = self.pass().await;
            self.inner.passes.send_modify(|n| *n = n.wrapping_add(1));
            if result? < OUTBOX_BATCH {
                return Ok(());
            }
        }
    }

    /// One pass: read a batch of outbox rows, publish each named record once, delete the rows
    /// of every record that was published. Returns how many rows were read. Stops at the first
    /// publish failure (the backend is most likely down; the rest would fail too).
    async fn pass(&self) -> anyhow::Result<u64> {
        let db = &self.inner.db;
        let rows = config_outbox::Entity::find()
            .order_by_asc(config_outbox::Column::Id)
            .limit(OUTBOX_BATCH)
            .all(db)
            .await
            .context("reading the config outbox")?;
        let fetched = rows.len() as u64;
        let mut groups: BTreeMap<Outboxed, Vec<i64>> = BTreeMap::new();
        let mut malformed = Vec::new();
        for row in rows {
            match Outboxed::parse(&row.kind, &row.ref_id) {
                Some(what) => groups.entry(what).or_default().push(row.id),
                None => malformed.push(row.id),
            }
        }
        if !malformed.is_empty() {
            tracing::error!(outbox_ids = ?malformed, "dropping malformed config outbox rows");
            delete_rows(db, malformed).await?;
        }
        for (what, ids) in groups {
            self.publish_one(what).await?;
            delete_rows(db, ids).await?;
        }
        Ok(fetched)
    }

    /// Publishes the current state of one record. A record that no longer exists has nothing to
    /// publish (keys and tenants are never deleted by the API, so this is only hand-edited data).
    async fn publish_one(&self, what: Outboxed) -> anyhow::Result<()> {
        let db = &self.inner.db;
        match what {
            Outboxed::Key(id) => {
                let Some(row) = api_key::Entity::find_by_id(id).one(db).await? else {
                    tracing::warn!(key_id = %id, "outbox names a key that does not exist");
                    return Ok(());
                };
                for record in key_records(&row) {
                    self.inner
                        .publisher
                        .publish_key(&record)
                        .await
                        .with_context(|| format!("publishing key {id}"))?;
                }
                Ok(())
            }
            Outboxed::RetiredKey { key_id, hash } => {
                let Some(row) = api_key::Entity::find_by_id(key_id).one(db).await? else {
                    tracing::warn!(%key_id, "outbox names a key that does not exist");
                    return Ok(());
                };
                self.inner
                    .publisher
                    .publish_key(&retired_key_record(&row, hex::encode(hash)))
                    .await
                    .with_context(|| format!("publishing a retired secret of key {key_id}"))
            }
            Outboxed::Tenant(id) => {
                let Some(row) = tenant::Entity::find_by_id(id).one(db).await? else {
                    tracing::warn!(tenant_id = %id, "outbox names a tenant that does not exist");
                    return Ok(());
                };
                for config in tenant_configs(db, std::slice::from_ref(&row)).await? {
                    self.inner
                        .publisher
                        .publish_tenant(&config)
                        .await
                        .with_context(|| format!("publishing tenant {id}"))?;
                }
                Ok(())
            }
        }
    }

    /// Republishes every key and every tenant, page by page (keyset pagination on id).
    pub async fn publish_all(&self) -> anyhow::Result<()> {
        let db = &self.inner.db;
        let publisher = &self.inner.publisher;
        let (mut keys, mut tenants) = (0usize, 0usize);
        let mut after: Option<Uuid> = None;
        loop {
            let mut q = api_key::Entity::find()
                .order_by_asc(api_key::Column::Id)
                .limit(REPUBLISH_PAGE);
            if let Some(last) = after {
                q = q.filter(api_key::Column::Id.gt(last));
            }
            let page = q.all(db).await.context("reading api keys")?;
            for row in &page {
                for record in key_records(row) {
                    publisher
                        .publish_key(&record)
                        .await
                        .with_context(|| format!("publishing key {}", row.id))?;
                }
            }
            keys += page.len();
            match page.last() {
                Some(last) if page.len() as u64 == REPUBLISH_PAGE => after = Some(last.id),
                _ => break,
            }
        }
        let mut after: Option<Uuid> = None;
        loop {
            let mut q = tenant::Entity::find()
                .order_by_asc(tenant::Column::Id)
                .limit(REPUBLISH_PAGE);
            if let Some(last) = after {
                q = q.filter(tenant::Column::Id.gt(last));
            }
            let page = q.all(db).await.context("reading tenants")?;
            for config in tenant_configs(db, &page)
                .await
                .context("reading tenant config")?
            {
                publisher
                    .publish_tenant(&config)
                    .await
                    .with_context(|| format!("publishing tenant {}", config.tenant_id))?;
            }
            tenants += page.len();
            match page.last() {
                Some(last) if page.len() as u64 == REPUBLISH_PAGE => after = Some(last.id),
                _ => break,
            }
        }
        tracing::info!(keys, tenants, "republished all config");
        Ok(())
    }
}

async fn delete_rows(db: &DatabaseConnection, ids: Vec<i64>) -> anyhow::Result<()> {
    config_outbox::Entity::delete_many()
        .filter(config_outbox::Column::Id.is_in(ids))
        .exec(db)
        .await
        .context("deleting published outbox rows")?;
    Ok(())
}

/// Sleeps for `d`; returns true early if shutdown was requested.
async fn sleep_or_shutdown(d: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        // Ok: shutdown requested; Err: the sender is gone, which also means stop.
        _ = shutdown.wait_for(|stop| *stop) => true,
    }
}
