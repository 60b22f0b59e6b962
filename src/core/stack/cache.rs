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

use crate::api::{reasons, CacheEngine, CacheSpec};

use super::plan::{
    add_missing_tags, differs, ownership_check, ownership_tags, unsupported, version, CacheModify, Call, FieldChange, ObservedCache,
    PlanInputs, Refusal, ResourceKind, ResourcePlan,
};
use crate::core::requeue::Category;

/// The ElastiCache name of an engine.
pub fn engine_name(e: CacheEngine) -> &'static str {
    match e {
        CacheEngine::Redis => "redis",
        CacheEngine::Valkey => "valkey",
    }
}

/// Plans one cache.
pub fn plan_cache(spec: &CacheSpec, observed: Option<&ObservedCache>, ctx: &PlanInputs) -> ResourcePlan {
    let mut plan = ResourcePlan::new(ResourceKind::Cache, &spec.name);
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
            plan.steps.push(Call::EnsureCacheSubnetGroup { placement: p.clone(), tags: super::plan::placement_tags(ctx, p) });
        }
        plan.steps.push(Call::CreateCache { spec: spec.clone(), tags, placement: ctx.placement.cloned() });
        return plan;
    };
    if let Some(r) = ownership_check(ResourceKind::Cache, &name, &c.tags, ctx) {
        plan.refusal = Some(r);
        return plan;
    }
    let refuse = |field: &str, from: String, to: String, why: &str| unsupported(ResourceKind::Cache, &name, field, from, to, why);
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
    let changes = &mut plan.changes;
    if let Some(e) = c.engine.as_deref().filter(|e| *e != engine) {
        changes.push(FieldChange { field: "engine", from: e.to_string(), to: engine.to_string() });
        m.engine = Some(engine.to_string());
        m.engine_version = Some(spec.engine_version.clone());
    }
    if let Some(v) = c.engine_version.as_deref().filter(|v| version(&spec.engine_version) > version(v)) {
        changes.push(FieldChange { field: "engineVersion", from: v.to_string(), to: spec.engine_version.clone() });
        m.engine_version = Some(spec.engine_version.clone());
    }
    differs(changes, "nodeType", (&c.node_type, &spec.node_type), &mut m.node_type);
    differs(changes, "automaticFailover", (&c.automatic_failover, &(spec.replicas > 0)), &mut m.automatic_failover);
    differs(changes, "multiAz", (&c.multi_az, &spec.multi_az), &mut m.multi_az);
    differs(changes, "snapshotRetentionDays", (&c.snapshot_retention_days, &spec.snapshot_retention_days), &mut m.snapshot_retention_days);
    if let Some(w) = spec.snapshot_window.as_ref().filter(|w| c.snapshot_window.as_ref() != Some(*w)) {
        changes.push(FieldChange { field: "snapshotWindow", from: c.snapshot_window.clone().unwrap_or_default(), to: w.clone() });
        m.snapshot_window = Some(w.clone());
    }
    if let Some(w) = spec.maintenance_window.as_ref().filter(|w| c.maintenance_window.as_ref().is_some_and(|o| o != *w)) {
        changes.push(FieldChange { field: "maintenanceWindow", from: c.maintenance_window.clone().unwrap_or_default(), to: w.clone() });
        m.maintenance_window = Some(w.clone());
    }
    let replicas = i32::try_from(c.members.len()).unwrap_or(i32::MAX).saturating_sub(1).max(0);
    let resize = (!c.members.is_empty() && replicas != spec.replicas).then_some(spec.replicas);
    if let Some(to) = resize {
        changes.push(FieldChange { field: "replicas", from: replicas.to_string(), to: to.to_string() });
    }
    if m != CacheModify::default() || resize.is_some() {
        let modify = m != CacheModify::default();
        if c.status != "available" {
            // ElastiCache refuses changes until the group is available again.
            plan.waiting = Some(c.status.clone());
        } else if let Some(to) = resize.filter(|to| *to > replicas) {
            // Replicas first: automatic failover and Multi-AZ need one to exist.
            plan.steps.push(Call::SetCacheReplicas { name: name.clone(), replicas: to, from: replicas });
            if modify {
                plan.waiting = Some("modifying".into());
            }
        } else if modify {
            // Failover off before the last replica goes: the modification first.
            plan.steps.push(Call::ModifyCache { name: name.clone(), modify: m });
            if resize.is_some() {
                plan.waiting = Some("modifying".into());
            }
        } else if let Some(to) = resize {
            plan.steps.push(Call::SetCacheReplicas { name: name.clone(), replicas: to, from: replicas });
        }
    }
    add_missing_tags(&mut plan, &tags, &c.tags, |tags| Call::TagCache { arn: c.arn.clone(), tags });
    plan
}

#[cfg(test)]
mod tests;
