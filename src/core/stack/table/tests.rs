use std::collections::BTreeMap;

use serde_json::json;

use super::*;
use crate::api::OWNER_TAG;
use crate::core::stack::{ObservedIndex, Placement, PlanInputs};

use crate::fixtures::table;

fn owned() -> BTreeMap<String, String> {
    crate::fixtures::owned_by("mobile/data")
}

fn ctx<'a>(env_tags: &'a BTreeMap<String, String>, adopt: bool) -> PlanInputs<'a> {
    PlanInputs { owner: "mobile/data", env_tags, region: "eu-west-1", adopt, placement: None::<&Placement> }
}

/// The table DynamoDB would hold after creating `spec` and setting PITR and TTL.
fn live(spec: &TableSpec) -> ObservedTable {
    ObservedTable {
        name: spec.name.clone(),
        arn: format!("arn:aws:dynamodb:eu-west-1:123456789012:table/{}", spec.name),
        status: "ACTIVE".into(),
        partition_key: Some(spec.partition_key.clone()),
        sort_key: spec.sort_key.clone(),
        billing: spec.billing,
        capacity: spec.capacity.filter(|_| spec.billing == Billing::Provisioned),
        indexes: spec
            .global_secondary_indexes
            .iter()
            .map(|i| ObservedIndex {
                name: i.name.clone(),
                partition_key: Some(i.partition_key.clone()),
                sort_key: i.sort_key.clone(),
                projection: i.projection,
                non_key_attributes: i.non_key_attributes.clone(),
                capacity: index_capacity(spec, i),
                status: "ACTIVE".into(),
            })
            .collect(),
        point_in_time_recovery: spec.point_in_time_recovery,
        ttl: spec.ttl_attribute.clone().map(|a| (a, "ENABLED".into())),
        encryption: spec.encryption,
        kms_key_arn: spec.kms_key_id.clone(),
        deletion_protection: spec.deletion_protection,
        stream: spec.stream,
        stream_arn: spec.stream.map(|_| "arn:stream".into()),
        tags: owned(),
    }
}

fn update_steps(p: &ResourcePlan) -> Vec<&TableUpdate> {
    p.steps
        .iter()
        .filter_map(|s| match s {
            Call::UpdateTable { update, .. } => Some(update),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_table_is_created_and_waits_to_be_active_for_pitr_and_ttl() {
    let env = BTreeMap::new();
    let spec = table(json!({"ttlAttribute": "expiresAt", "stream": "NEW_AND_OLD_IMAGES"}));
    let p = plan_table(&spec, None, &ctx(&env, false));
    assert!(p.create);
    assert!(matches!(&p.steps[..], [Call::CreateTable { tags, .. }] if tags.get(OWNER_TAG).map(String::as_str) == Some("mobile/data")));
    assert_eq!(p.waiting.as_deref(), Some("CREATING"));
    // Once ACTIVE: point-in-time recovery (on by default) and TTL, in one pass.
    let created = ObservedTable { point_in_time_recovery: false, ttl: None, ..live(&spec) };
    let p = plan_table(&spec, Some(&created), &ctx(&env, false));
    assert_eq!(
        p.steps,
        vec![
            Call::SetPointInTimeRecovery { name: "users-prod".into(), enabled: true },
            Call::SetTtl { name: "users-prod".into(), attribute: "expiresAt".into(), enabled: true }
        ]
    );
    assert_eq!(p.waiting, None);
}

#[test]
fn a_table_as_declared_plans_nothing() {
    let env = BTreeMap::new();
    let spec = table(json!({"billing": "Provisioned", "capacity": {"read": 5, "write": 5},
        "globalSecondaryIndexes": [{"name": "byEmail", "partitionKey": {"name": "email", "type": "S"}}],
        "ttlAttribute": "exp", "encryption": "AwsManaged", "deletionProtection": true, "stream": "KEYS_ONLY"}));
    let p = plan_table(&spec, Some(&live(&spec)), &ctx(&env, false));
    assert!(p.steps.is_empty() && p.changes.is_empty() && p.refusal.is_none() && p.waiting.is_none(), "{p:?}");
}

#[test]
fn key_schema_changes_are_refused() {
    let env = BTreeMap::new();
    let spec = table(json!({}));
    for observed in [
        ObservedTable { partition_key: Some(KeyAttribute { name: "id".into(), type_: AttributeType::S }), ..live(&spec) },
        ObservedTable { sort_key: None, ..live(&spec) },
        ObservedTable { sort_key: Some(KeyAttribute { name: "sk".into(), type_: AttributeType::S }), ..live(&spec) },
    ] {
        let p = plan_table(&spec, Some(&observed), &ctx(&env, false));
        let r = p.refusal.expect("refused");
        assert_eq!(r.reason, reasons::UNSUPPORTED_CHANGE);
        assert!(r.message.contains("key schema is fixed"), "{}", r.message);
        assert!(p.steps.is_empty());
    }
}

#[test]
fn another_owners_table_is_a_conflict_unless_adopted() {
    let env = BTreeMap::new();
    let spec = table(json!({}));
    let foreign = ObservedTable { tags: [(OWNER_TAG.to_string(), "other/x".to_string())].into(), ..live(&spec) };
    assert_eq!(plan_table(&spec, Some(&foreign), &ctx(&env, false)).refusal.map(|r| r.reason), Some(reasons::CONFLICT));
    let unowned = ObservedTable { tags: BTreeMap::new(), ..live(&spec) };
    assert_eq!(plan_table(&spec, Some(&unowned), &ctx(&env, false)).refusal.map(|r| r.reason), Some(reasons::CONFLICT));
    let adopted = plan_table(&spec, Some(&unowned), &ctx(&env, true));
    assert!(adopted.refusal.is_none());
    assert!(matches!(&adopted.steps[..], [Call::TagTable { .. }]));
}

#[test]
fn drift_is_put_back_one_update_table_at_a_time() {
    let env = BTreeMap::new();
    let spec = table(json!({"deletionProtection": true, "ttlAttribute": "exp"}));
    let drifted = ObservedTable {
        deletion_protection: false,
        billing: Billing::Provisioned,
        capacity: Some(Capacity { read: 1, write: 1 }),
        point_in_time_recovery: false,
        ttl: None,
        ..live(&spec)
    };
    let p = plan_table(&spec, Some(&drifted), &ctx(&env, false));
    let fields: Vec<&str> = p.changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["billing", "deletionProtection", "pointInTimeRecovery", "ttlAttribute"]);
    // DynamoDB takes one UpdateTable, then the table is UPDATING: billing first, the rest later.
    assert_eq!(update_steps(&p), [&TableUpdate::Billing { billing: Billing::OnDemand, capacity: None, indexes: vec![] }]);
    assert_eq!(p.waiting.as_deref(), Some("UPDATING"));
    assert!(p.steps.contains(&Call::SetPointInTimeRecovery { name: "users-prod".into(), enabled: true }));
    // While UPDATING, nothing more goes to UpdateTable.
    let updating = ObservedTable { status: "UPDATING".into(), billing: Billing::OnDemand, capacity: None, ..drifted };
    let p = plan_table(&spec, Some(&updating), &ctx(&env, false));
    assert!(update_steps(&p).is_empty());
    assert_eq!(p.waiting.as_deref(), Some("UPDATING"));
}

#[test]
fn indexes_are_created_and_removed_and_their_keys_are_fixed() {
    let env = BTreeMap::new();
    let spec = table(json!({"globalSecondaryIndexes": [{"name": "byEmail", "partitionKey": {"name": "email", "type": "S"}}]}));
    let without = ObservedTable { indexes: vec![], ..live(&spec) };
    let p = plan_table(&spec, Some(&without), &ctx(&env, false));
    assert!(matches!(update_steps(&p)[..], [TableUpdate::CreateIndex { index, capacity: None }] if index.name == "byEmail"));
    let mut extra = live(&spec);
    extra.indexes.push(ObservedIndex { name: "old".into(), status: "ACTIVE".into(), ..Default::default() });
    let p = plan_table(&spec, Some(&extra), &ctx(&env, false));
    assert_eq!(update_steps(&p), [&TableUpdate::DeleteIndex { name: "old".into() }]);
    let mut changed = live(&spec);
    changed.indexes[0].partition_key = Some(KeyAttribute { name: "mail".into(), type_: AttributeType::S });
    let r = plan_table(&spec, Some(&changed), &ctx(&env, false)).refusal.expect("refused");
    assert!(r.message.contains("keys and projection are fixed"), "{}", r.message);
}

#[test]
fn a_stream_changes_its_view_type_by_turning_off_first() {
    let env = BTreeMap::new();
    let spec = table(json!({"stream": "NEW_IMAGE"}));
    let observed = ObservedTable { stream: Some(StreamView::KeysOnly), ..live(&spec) };
    let p = plan_table(&spec, Some(&observed), &ctx(&env, false));
    assert_eq!(update_steps(&p), [&TableUpdate::Stream(None)]);
    assert_eq!(p.waiting.as_deref(), Some("UPDATING"));
    let off = ObservedTable { stream: None, ..observed };
    assert_eq!(update_steps(&plan_table(&spec, Some(&off), &ctx(&env, false))), [&TableUpdate::Stream(Some(StreamView::NewImage))]);
}

#[test]
fn a_new_ttl_attribute_turns_the_old_one_off_first() {
    let env = BTreeMap::new();
    let spec = table(json!({"ttlAttribute": "expiresAt"}));
    let observed = ObservedTable { ttl: Some(("exp".into(), "ENABLED".into())), ..live(&spec) };
    let p = plan_table(&spec, Some(&observed), &ctx(&env, false));
    assert_eq!(p.steps, vec![Call::SetTtl { name: "users-prod".into(), attribute: "exp".into(), enabled: false }]);
    assert!(p.waiting.is_some());
    let disabling = ObservedTable { ttl: Some(("exp".into(), "DISABLING".into())), ..live(&spec) };
    assert!(plan_table(&spec, Some(&disabling), &ctx(&env, false)).steps.is_empty());
}

#[test]
fn an_attribute_declared_with_two_types_is_invalid() {
    let env = BTreeMap::new();
    let spec = table(json!({"globalSecondaryIndexes": [{"name": "bySk", "partitionKey": {"name": "sk", "type": "S"}}]}));
    let r = plan_table(&spec, None, &ctx(&env, false)).refusal.expect("refused");
    assert_eq!(r.reason, reasons::INVALID_SPEC);
    assert!(r.message.contains("declared both N and S"), "{}", r.message);
}
