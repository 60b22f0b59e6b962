//! ElastiCache plan: a declared replication group vs what ElastiCache reports → the calls
//! that bring it to its declared state, or the reason it may not change. Pure.
//!
//! ElastiCache's rules the plan follows (ElastiCache API Reference): encryption at rest and
//! in transit and the AUTH token are chosen at creation here (changing them on a running
//! group needs client-side migration steps shipshape does not drive); the engine can go from
//! Redis OSS to Valkey but not back, and versions only up; node type, Multi-AZ, automatic
//! failover, snapshot and maintenance windows change with ModifyReplicationGroup (applied
//! immediately), replicas with IncreaseReplicaCount / DecreaseReplicaCount; every change
//! waits for the group to be `available`. Multi-AZ needs automatic failover, which needs a
//! replica.

use std::collections::BTreeMap;

use crate::api::{reasons, CacheEngine, CacheSpec};

use super::requeue::Category;
use super::stack::{ownership_check, ownership_tags, unsupported, Context, FieldChange, Refusal, ResourcePlan, Step};

/// A replication group as ElastiCache reports it (DescribeReplicationGroups, the primary's
/// DescribeCacheClusters, ListTagsForResource). A field ElastiCache did not report is None
/// and not judged.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedCache {
    /// Replication group id.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// creating, available, modifying, deleting, snapshotting, ...
    pub status: String,
    /// redis or valkey.
    pub engine: Option<String>,
    /// Engine version (from a member cluster).
    pub engine_version: Option<String>,
    /// Node type.
    pub node_type: String,
    /// Member clusters (primary + replicas).
    pub members: Vec<String>,
    /// Multi-AZ enabled.
    pub multi_az: bool,
    /// Automatic failover enabled (or enabling).
    pub automatic_failover: bool,
    /// Encryption at rest.
    pub at_rest_encryption: bool,
    /// Encryption in transit.
    pub transit_encryption: bool,
    /// Whether an AUTH token is set.
    pub auth_token_enabled: bool,
    /// Snapshot retention days.
    pub snapshot_retention_days: i32,
    /// Snapshot window.
    pub snapshot_window: Option<String>,
    /// Maintenance window (from a member cluster).
    pub maintenance_window: Option<String>,
    /// Primary endpoint.
    pub primary_endpoint: Option<(String, i32)>,
    /// Reader endpoint.
    pub reader_endpoint: Option<(String, i32)>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// The typed arguments of one ModifyReplicationGroup call (None: leave as is).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CacheModify {
    /// New node type.
    pub node_type: Option<String>,
    /// New engine (valkey).
    pub engine: Option<String>,
    /// New engine version.
    pub engine_version: Option<String>,
    /// Multi-AZ.
    pub multi_az: Option<bool>,
    /// Automatic failover.
    pub automatic_failover: Option<bool>,
    /// Snapshot retention days.
    pub snapshot_retention_days: Option<i32>,
    /// Snapshot window.
    pub snapshot_window: Option<String>,
    /// Maintenance window.
    pub maintenance_window: Option<String>,
}

/// The ElastiCache name of an engine.
pub fn engine_name(e: CacheEngine) -> &'static str {
    match e {
        CacheEngine::Redis => "redis",
        CacheEngine::Valkey => "valkey",
    }
}

fn version(v: &str) -> Vec<u64> {
    v.split(['.', '-']).map(|p| p.parse().unwrap_or(0)).collect()
}

/// Plans one cache.
pub fn plan_cache(spec: &CacheSpec, observed: Option<&ObservedCache>, ctx: &Context) -> ResourcePlan {
    let mut plan = ResourcePlan::new("Cache", &spec.name);
    let name = spec.name.clone();
    let invalid = |message: &str| Refusal {
        reason: reasons::INVALID_SPEC,
        message: format!("Cache {name}: {message}"),
        category: Category::InvalidSpec,
    };
    if spec.multi_az && spec.replicas < 1 {
        plan.refusal = Some(invalid("multiAz needs at least one replica to fail over to"));
        return plan;
    }
    if spec.auth_token_secret_ref.is_some() && !spec.transit_encryption {
        plan.refusal = Some(invalid("an AUTH token needs transitEncryption: true"));
        return plan;
    }
    let tags = ownership_tags(ctx, &spec.tags);
    let Some(c) = observed else {
        plan.create = true;
        if let Some(p) = ctx.placement {
            plan.steps.push(Step::EnsureCacheSubnetGroup { placement: p.clone(), tags: super::stack::placement_tags(ctx, p) });
        }
        plan.steps.push(Step::CreateCache { spec: spec.clone(), tags, placement: ctx.placement.cloned() });
        return plan;
    };
    if let Some(r) = ownership_check("Cache", &name, &c.tags, ctx) {
        plan.refusal = Some(r);
        return plan;
    }
    let refuse = |field: &str, from: String, to: String, why: &str| unsupported("Cache", &name, field, from, to, why);
    let engine = engine_name(spec.engine);
    if c.engine.as_deref() == Some("valkey") && spec.engine == CacheEngine::Redis {
        plan.refusal = Some(refuse("engine", "valkey".into(), "redis".into(), "ElastiCache moves Redis OSS to Valkey, never back"));
        return plan;
    }
    if let Some(v) = c.engine_version.as_deref().filter(|v| version(&spec.engine_version) < version(v)) {
        plan.refusal = Some(refuse("engineVersion", v.to_string(), spec.engine_version.clone(), "ElastiCache never downgrades an engine"));
        return plan;
    }
    const AT_CREATION: &str = "fixed at creation by shipshape (changing it on a running cache needs client changes); create a new cache";
    if c.at_rest_encryption != spec.at_rest_encryption {
        plan.refusal = Some(refuse("atRestEncryption", c.at_rest_encryption.to_string(), spec.at_rest_encryption.to_string(), AT_CREATION));
        return plan;
    }
    if c.transit_encryption != spec.transit_encryption {
        plan.refusal =
            Some(refuse("transitEncryption", c.transit_encryption.to_string(), spec.transit_encryption.to_string(), AT_CREATION));
        return plan;
    }
    let wants_auth = spec.auth_token_secret_ref.is_some();
    if c.auth_token_enabled != wants_auth {
        plan.refusal = Some(refuse("authTokenSecretRef", c.auth_token_enabled.to_string(), wants_auth.to_string(), AT_CREATION));
        return plan;
    }

    let mut m = CacheModify::default();
    let mut change = |field: &'static str, from: String, to: String| plan.changes.push(FieldChange { field, from, to });
    if let Some(e) = c.engine.as_deref().filter(|e| *e != engine) {
        change("engine", e.to_string(), engine.to_string());
        m.engine = Some(engine.to_string());
        m.engine_version = Some(spec.engine_version.clone());
    }
    if let Some(v) = c.engine_version.as_deref().filter(|v| version(&spec.engine_version) > version(v)) {
        change("engineVersion", v.to_string(), spec.engine_version.clone());
        m.engine_version = Some(spec.engine_version.clone());
    }
    if c.node_type != spec.node_type {
        change("nodeType", c.node_type.clone(), spec.node_type.clone());
        m.node_type = Some(spec.node_type.clone());
    }
    let failover = spec.replicas > 0;
    if c.automatic_failover != failover {
        change("automaticFailover", c.automatic_failover.to_string(), failover.to_string());
        m.automatic_failover = Some(failover);
    }
    if c.multi_az != spec.multi_az {
        change("multiAz", c.multi_az.to_string(), spec.multi_az.to_string());
        m.multi_az = Some(spec.multi_az);
    }
    if c.snapshot_retention_days != spec.snapshot_retention_days {
        change("snapshotRetentionDays", c.snapshot_retention_days.to_string(), spec.snapshot_retention_days.to_string());
        m.snapshot_retention_days = Some(spec.snapshot_retention_days);
    }
    if let Some(w) = spec.snapshot_window.as_ref().filter(|w| c.snapshot_window.as_ref() != Some(*w)) {
        change("snapshotWindow", c.snapshot_window.clone().unwrap_or_default(), w.clone());
        m.snapshot_window = Some(w.clone());
    }
    if let Some(w) = spec.maintenance_window.as_ref().filter(|w| c.maintenance_window.as_ref().is_some_and(|o| o != *w)) {
        change("maintenanceWindow", c.maintenance_window.clone().unwrap_or_default(), w.clone());
        m.maintenance_window = Some(w.clone());
    }
    let replicas = i32::try_from(c.members.len()).unwrap_or(i32::MAX).saturating_sub(1).max(0);
    let resize = (!c.members.is_empty() && replicas != spec.replicas).then_some(spec.replicas);
    if let Some(to) = resize {
        change("replicas", replicas.to_string(), to.to_string());
    }
    if m != CacheModify::default() || resize.is_some() {
        let modify = m != CacheModify::default();
        if c.status != "available" {
            // ElastiCache refuses changes until the group is available again.
            plan.waiting = Some(c.status.clone());
        } else if let Some(to) = resize.filter(|to| *to > replicas) {
            // Replicas first: automatic failover and Multi-AZ need one to exist.
            plan.steps.push(Step::SetCacheReplicas { name: name.clone(), replicas: to, from: replicas });
            if modify {
                plan.waiting = Some("modifying".into());
            }
        } else if modify {
            // Failover off before the last replica goes: the modification first.
            plan.steps.push(Step::ModifyCache { name: name.clone(), modify: m });
            if resize.is_some() {
                plan.waiting = Some("modifying".into());
            }
        } else if let Some(to) = resize {
            plan.steps.push(Step::SetCacheReplicas { name: name.clone(), replicas: to, from: replicas });
        }
    }
    let missing = super::ownership::missing_tags(&tags, &c.tags);
    if !missing.is_empty() {
        plan.changes.push(FieldChange {
            field: "tags",
            from: super::stack::join_keys(&c.tags, &missing),
            to: super::stack::join(&missing),
        });
        plan.steps.push(Step::TagCache { arn: c.arn.clone(), tags: missing });
    }
    plan
}

#[cfg(test)]
mod tests;
