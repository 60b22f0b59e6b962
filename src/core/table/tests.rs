use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::api::{MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG};
use crate::core::stack::{Context, Placement};

fn table(extra: serde_json::Value) -> TableSpec {
    let mut v = json!({"name": "users-prod", "partitionKey": {"name": "pk", "type": "S"}, "sortKey": {"name": "sk", "type": "N"}});
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    serde_json::from_value(v).unwrap()
}

fn owned() -> BTreeMap<String, String> {
    [(MANAGED_BY_TAG, MANAGED_BY), (OWNER_TAG, "mobile/data")].iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn ctx<'a>(env_tags: &'a BTreeMap<String, String>, adopt: bool) -> Context<'a> {
    Context { owner: "mobile/data", env_tags, region: "eu-west-1", adopt, placement: None::<&Placement> }
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
            Step::UpdateTable { update, .. } => Some(update),
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
    assert!(matches!(&p.steps[..], [Step::CreateTable { tags, .. }] if tags.get(OWNER_TAG).map(String::as_str) == Some("mobile/data")));
    assert_eq!(p.waiting.as_deref(), Some("CREATING"));
    // Once ACTIVE: point-in-time recovery (on by default) and TTL, in one pass.
    let created = ObservedTable { point_in_time_recovery: false, ttl: None, ..live(&spec) };
    let p = plan_table(&spec, Some(&created), &ctx(&env, false));
    assert_eq!(
        p.steps,
        vec![
            Step::SetPointInTimeRecovery { name: "users-prod".into(), enabled: true },
            Step::SetTtl { name: "users-prod".into(), attribute: "expiresAt".into(), enabled: true }
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
    assert!(matches!(&adopted.steps[..], [Step::TagTable { .. }]));
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
    assert!(p.steps.contains(&Step::SetPointInTimeRecovery { name: "users-prod".into(), enabled: true }));
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
    assert_eq!(p.steps, vec![Step::SetTtl { name: "users-prod".into(), attribute: "exp".into(), enabled: false }]);
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

/// Applies a plan's steps the way DynamoDB does (an UpdateTable leaves the table ACTIVE again
/// by the next pass in this model).
fn apply(spec: &TableSpec, observed: Option<ObservedTable>, p: &ResourcePlan) -> Option<ObservedTable> {
    let mut t = observed;
    for s in &p.steps {
        match s {
            Step::CreateTable { .. } => t = Some(ObservedTable { point_in_time_recovery: false, ttl: None, ..live(spec) }),
            Step::UpdateTable { update, .. } => {
                let t = t.as_mut()?;
                match update {
                    TableUpdate::Billing { billing, capacity, indexes } => {
                        t.billing = *billing;
                        t.capacity = *capacity;
                        for (n, c) in indexes {
                            if let Some(i) = t.indexes.iter_mut().find(|i| &i.name == n) {
                                i.capacity = Some(*c);
                            }
                        }
                    }
                    TableUpdate::CreateIndex { index, capacity } => t.indexes.push(ObservedIndex {
                        name: index.name.clone(),
                        partition_key: Some(index.partition_key.clone()),
                        sort_key: index.sort_key.clone(),
                        projection: index.projection,
                        non_key_attributes: index.non_key_attributes.clone(),
                        capacity: *capacity,
                        status: "ACTIVE".into(),
                    }),
                    TableUpdate::DeleteIndex { name } => t.indexes.retain(|i| &i.name != name),
                    TableUpdate::Stream(v) => t.stream = *v,
                    TableUpdate::Encryption { encryption, kms_key_id } => {
                        t.encryption = *encryption;
                        t.kms_key_arn = kms_key_id.clone();
                    }
                    TableUpdate::DeletionProtection(on) => t.deletion_protection = *on,
                }
            }
            Step::SetPointInTimeRecovery { enabled, .. } => t.as_mut()?.point_in_time_recovery = *enabled,
            Step::SetTtl { attribute, enabled, .. } => {
                t.as_mut()?.ttl = Some((attribute.clone(), if *enabled { "ENABLED" } else { "DISABLED" }.into()))
            }
            Step::TagTable { tags, .. } => t.as_mut()?.tags.extend(tags.clone()),
            _ => {}
        }
    }
    t
}

fn spec_strategy() -> impl Strategy<Value = TableSpec> {
    (
        any::<bool>(),
        proptest::option::of(1i64..100),
        proptest::collection::vec(("[a-c]", any::<bool>()), 0..3),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("exp"), Just("ttl")]),
        prop_oneof![Just("AwsOwned"), Just("AwsManaged")],
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("KEYS_ONLY"), Just("NEW_IMAGE")]),
    )
        .prop_map(|(provisioned, cap, indexes, pitr, ttl, enc, dp, stream)| {
            let mut names: Vec<String> = indexes.iter().map(|(n, _)| format!("idx-{n}")).collect();
            names.dedup();
            table(json!({
                "billing": if provisioned { "Provisioned" } else { "OnDemand" },
                "capacity": cap.map(|c| json!({"read": c, "write": c})).unwrap_or(json!({"read": 1, "write": 1})),
                "globalSecondaryIndexes": names.iter().map(|n| json!({"name": n, "partitionKey": {"name": format!("{n}-k"), "type": "S"}})).collect::<Vec<_>>(),
                "pointInTimeRecovery": pitr, "ttlAttribute": ttl, "encryption": enc, "deletionProtection": dp, "stream": stream,
            }))
        })
}

proptest! {
    /// From any table (another declared state, as left by a previous spec or by hand) the
    /// plan reaches the declared one in a bounded number of passes, never sends two
    /// UpdateTable calls in one pass, and then plans nothing.
    #[test]
    fn any_table_converges_to_its_spec(spec in spec_strategy(), from in spec_strategy(), exists in any::<bool>()) {
        let env = BTreeMap::new();
        let mut observed = exists.then(|| live(&from));
        for _ in 0..12 {
            let p = plan_table(&spec, observed.as_ref(), &ctx(&env, false));
            prop_assert!(p.refusal.is_none(), "{:?}", p.refusal);
            prop_assert!(update_steps(&p).len() <= 1);
            if p.steps.is_empty() && p.waiting.is_none() {
                prop_assert!(p.changes.is_empty());
                return Ok(());
            }
            observed = apply(&spec, observed, &p);
        }
        prop_assert!(false, "did not converge: {:?}", plan_table(&spec, observed.as_ref(), &ctx(&env, false)));
    }
}
