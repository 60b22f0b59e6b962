use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::api::OWNER_TAG;
use crate::core::stack::{Placement, PlanInputs};

use crate::fixtures::cache;

fn owned() -> BTreeMap<String, String> {
    crate::fixtures::owned_by("shop/data")
}

fn ctx<'a>(env_tags: &'a BTreeMap<String, String>, placement: Option<&'a Placement>) -> PlanInputs<'a> {
    PlanInputs { owner: "shop/data", env_tags, region: "eu-west-1", adopt: false, placement }
}

/// The group ElastiCache would hold after creating `spec`.
fn live(spec: &CacheSpec) -> ObservedCache {
    ObservedCache {
        name: spec.name.clone(),
        arn: format!("arn:aws:elasticache:eu-west-1:123456789012:replicationgroup:{}", spec.name),
        status: "available".into(),
        engine: Some(engine_name(spec.engine).into()),
        engine_version: Some(spec.engine_version.clone()),
        node_type: spec.node_type.clone(),
        members: (0..=spec.replicas).map(|i| format!("m{i}")).collect(),
        multi_az: spec.multi_az,
        automatic_failover: spec.replicas > 0,
        at_rest_encryption: spec.at_rest_encryption,
        transit_encryption: spec.transit_encryption,
        auth_token_enabled: spec.auth_token_secret_ref.is_some(),
        snapshot_retention_days: spec.snapshot_retention_days,
        snapshot_window: spec.snapshot_window.clone(),
        maintenance_window: spec.maintenance_window.clone(),
        primary_endpoint: Some(("master".into(), 6379)),
        reader_endpoint: None,
        tags: owned(),
    }
}

/// The shop's Redis of the issue: 3 nodes, encrypted, AUTH, 7-day snapshots 03:00–05:00,
/// Sunday maintenance.
fn shop() -> CacheSpec {
    cache(json!({"replicas": 2, "multiAz": true, "authTokenSecretRef": {"name": "redis-auth", "key": "token"},
        "snapshotRetentionDays": 7, "snapshotWindow": "03:00-05:00", "maintenanceWindow": "sun:05:00-sun:06:00"}))
}

#[test]
fn a_new_cache_goes_into_the_environments_subnet_group() {
    let env = BTreeMap::new();
    let placement = Placement::of("prod", &["subnet-1".into()], &["sg-1".into()]).unwrap();
    let p = plan_cache(&shop(), None, &ctx(&env, Some(&placement)));
    assert!(p.create);
    assert!(matches!(&p.steps[..], [Call::EnsureCacheSubnetGroup { .. }, Call::CreateCache { placement: Some(pl), tags, .. }]
        if pl.subnet_group == "shipshape-prod" && tags.get(OWNER_TAG).map(String::as_str) == Some("shop/data")));
    // The plan names the Secret, never a token.
    assert!(!format!("{p:?}").contains("token\": \""));
}

#[test]
fn a_cache_as_declared_plans_nothing() {
    let env = BTreeMap::new();
    let p = plan_cache(&shop(), Some(&live(&shop())), &ctx(&env, None));
    assert!(p.steps.is_empty() && p.changes.is_empty() && p.refusal.is_none() && p.waiting.is_none(), "{p:?}");
}

#[test]
fn changes_elasticache_makes_only_by_replacement_are_refused() {
    let env = BTreeMap::new();
    let spec = shop();
    for (observed, field) in [
        (ObservedCache { at_rest_encryption: false, ..live(&spec) }, "atRestEncryption"),
        (ObservedCache { transit_encryption: false, ..live(&spec) }, "transitEncryption"),
        (ObservedCache { auth_token_enabled: false, ..live(&spec) }, "authTokenSecretRef"),
        (ObservedCache { engine_version: Some("7.1".into()), ..live(&spec) }, "engineVersion"),
        (ObservedCache { engine: Some("valkey".into()), ..live(&spec) }, "engine"),
    ] {
        let r = plan_cache(&spec, Some(&observed), &ctx(&env, None)).refusal.expect(field);
        assert_eq!(r.reason, reasons::UNSUPPORTED_CHANGE, "{field}");
        assert!(r.message.contains(field), "{}", r.message);
    }
}

#[test]
fn drift_is_put_back_with_one_modification() {
    let env = BTreeMap::new();
    let spec = shop();
    let drifted = ObservedCache {
        snapshot_retention_days: 1,
        snapshot_window: Some("10:00-11:00".into()),
        node_type: "cache.t4g.micro".into(),
        ..live(&spec)
    };
    let p = plan_cache(&spec, Some(&drifted), &ctx(&env, None));
    assert_eq!(
        p.steps,
        vec![Call::ModifyCache {
            name: "shop-redis".into(),
            modify: CacheModify {
                node_type: Some("cache.r6g.large".into()),
                snapshot_retention_days: Some(7),
                snapshot_window: Some("03:00-05:00".into()),
                ..Default::default()
            }
        }]
    );
    // ElastiCache takes no change while it is modifying.
    let busy = ObservedCache { status: "modifying".into(), ..drifted };
    let p = plan_cache(&spec, Some(&busy), &ctx(&env, None));
    assert!(p.steps.is_empty());
    assert_eq!(p.waiting.as_deref(), Some("modifying"));
}

#[test]
fn replicas_come_before_failover_and_failover_goes_before_the_last_replica() {
    let env = BTreeMap::new();
    let single = cache(json!({}));
    let replicated = cache(json!({"replicas": 1, "multiAz": true}));
    // Growing: the replica first (failover needs one), the failover on a later pass.
    let p = plan_cache(&replicated, Some(&live(&single)), &ctx(&env, None));
    assert_eq!(p.steps, vec![Call::SetCacheReplicas { name: "shop-redis".into(), replicas: 1, from: 0 }]);
    assert!(p.waiting.is_some());
    // Shrinking to none: failover and Multi-AZ off first, the replica on a later pass.
    let p = plan_cache(&single, Some(&live(&replicated)), &ctx(&env, None));
    assert!(
        matches!(&p.steps[..], [Call::ModifyCache { modify, .. }] if modify.automatic_failover == Some(false) && modify.multi_az == Some(false))
    );
    assert!(p.waiting.is_some());
}

#[test]
fn redis_moves_to_valkey_and_never_back() {
    let env = BTreeMap::new();
    let valkey = cache(json!({"engine": "valkey", "engineVersion": "8.0"}));
    let p = plan_cache(&valkey, Some(&live(&cache(json!({})))), &ctx(&env, None));
    assert!(matches!(&p.steps[..], [Call::ModifyCache { modify, .. }]
        if modify.engine.as_deref() == Some("valkey") && modify.engine_version.as_deref() == Some("8.0")));
    let back = plan_cache(&cache(json!({"engineVersion": "8.0"})), Some(&live(&valkey)), &ctx(&env, None));
    assert_eq!(back.refusal.map(|r| r.reason), Some(reasons::UNSUPPORTED_CHANGE));
}

#[test]
fn another_owners_cache_is_a_conflict() {
    let env = BTreeMap::new();
    let foreign = ObservedCache { tags: [(OWNER_TAG.to_string(), "other/x".to_string())].into(), ..live(&shop()) };
    assert_eq!(plan_cache(&shop(), Some(&foreign), &ctx(&env, None)).refusal.map(|r| r.reason), Some(reasons::CONFLICT));
}
