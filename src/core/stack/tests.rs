use super::*;
use crate::api::{reasons, LifecycleRule, StorageClass, Transition, MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG};
use serde_json::json;

use crate::fixtures::{bucket, database as db};

fn owned() -> BTreeMap<String, String> {
    [(MANAGED_BY_TAG, MANAGED_BY), (OWNER_TAG, "car-rental/data"), ("Project", "car-rental")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn live_db() -> ObservedDatabase {
    ObservedDatabase {
        name: "car-rental-db".into(),
        arn: "arn:aws:rds:eu-west-1:123456789012:db:car-rental-db".into(),
        status: "available".into(),
        engine: "postgres".into(),
        engine_version: "16.4".into(),
        instance_class: "db.t4g.micro".into(),
        allocated_storage_gib: 20,
        storage_encrypted: true,
        backup_retention_days: 7,
        master_username: "shipshape".into(),
        tags: owned(),
        ..Default::default()
    }
}

fn live_bucket() -> ObservedBucket {
    ObservedBucket {
        name: "uploads".into(),
        region: "eu-west-1".into(),
        public_access_blocked: true,
        public_access_block_present: true,
        tags: owned(),
        abac: true,
        ..Default::default()
    }
}

fn with<R>(adopt: bool, f: impl FnOnce(&PlanInputs) -> R) -> R {
    let env_tags: BTreeMap<String, String> = [("Project".to_string(), "car-rental".to_string())].into();
    f(&PlanInputs { owner: "car-rental/data", env_tags: &env_tags, region: "eu-west-1", adopt, placement: None })
}

#[test]
fn a_missing_database_is_created_with_ownership_tags() {
    let p = with(false, |c| plan_database(&db(json!({})), None, c));
    assert!(p.create);
    let Call::CreateDatabase { tags, .. } = &p.steps[0] else { panic!() };
    assert_eq!(tags.get(OWNER_TAG).unwrap(), "car-rental/data");
    assert_eq!(tags.get("Project").unwrap(), "car-rental");
}

#[test]
fn a_database_in_its_declared_state_needs_nothing() {
    let p = with(false, |c| plan_database(&db(json!({})), Some(&live_db()), c));
    assert_eq!((p.steps.len(), p.refusal.is_none()), (0, true), "{p:?}");
}

#[test]
fn growing_storage_changing_class_and_retention_is_one_modify() {
    let spec = db(json!({"allocatedStorageGiB": 50, "instanceClass": "db.t4g.small", "backupRetentionDays": 14, "multiAz": true}));
    let p = with(false, |c| plan_database(&spec, Some(&live_db()), c));
    let fields: Vec<_> = p.changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["instanceClass", "allocatedStorageGiB", "multiAz", "backupRetentionDays"]);
    let Call::ModifyDatabase { modify, .. } = &p.steps[0] else { panic!() };
    assert_eq!(modify.allocated_storage_gib, Some(50));
    assert_eq!(modify.instance_class.as_deref(), Some("db.t4g.small"));
    assert_eq!(p.steps.len(), 1);
}

#[test]
fn shrinking_storage_is_refused_naming_the_field_and_changes_nothing() {
    let mut live = live_db();
    live.allocated_storage_gib = 100;
    let spec = db(json!({"allocatedStorageGiB": 50, "instanceClass": "db.t4g.small"}));
    let p = with(false, |c| plan_database(&spec, Some(&live), c));
    let r = p.refusal.unwrap();
    assert_eq!(r.reason, reasons::UNSUPPORTED_CHANGE);
    assert!(r.message.contains("allocatedStorageGiB") && r.message.contains("100") && r.message.contains("50"), "{}", r.message);
    assert!(p.steps.is_empty());
}

#[test]
fn encryption_engine_and_downgrades_are_unsupported() {
    for (spec, field) in [
        (db(json!({"storageEncrypted": false})), "storageEncrypted"),
        (db(json!({"engine": "mysql"})), "engine"),
        (db(json!({"engineVersion": "15.2"})), "engineVersion"),
    ] {
        let p = with(false, |c| plan_database(&spec, Some(&live_db()), c));
        assert!(p.refusal.as_ref().is_some_and(|r| r.message.contains(field)), "{field}: {p:?}");
    }
}

#[test]
fn engine_upgrades_across_a_major_version_say_so() {
    let minor = with(false, |c| plan_database(&db(json!({"engineVersion": "16.6"})), Some(&live_db()), c));
    let major = with(false, |c| plan_database(&db(json!({"engineVersion": "17.1"})), Some(&live_db()), c));
    let flag = |p: &ResourcePlan| match &p.steps[0] {
        Call::ModifyDatabase { modify, .. } => modify.allow_major_version_upgrade,
        _ => panic!(),
    };
    assert!(!flag(&minor));
    assert!(flag(&major));
}

#[test]
fn a_resource_owned_by_another_stack_is_a_conflict_and_an_unowned_one_needs_the_adopt_annotation() {
    let mut theirs = live_db();
    theirs.tags.insert(OWNER_TAG.into(), "other/stack".into());
    let p = with(false, |c| plan_database(&db(json!({})), Some(&theirs), c));
    assert!(p.refusal.unwrap().message.contains("belongs to other/stack"));
    let mut unowned = live_db();
    unowned.tags.clear();
    let refused = with(false, |c| plan_database(&db(json!({})), Some(&unowned), c));
    assert!(refused.refusal.unwrap().message.contains("shipshape.dev/adopt"));
    let adopted = with(true, |c| plan_database(&db(json!({})), Some(&unowned), c));
    assert!(adopted.refusal.is_none());
    assert!(matches!(adopted.steps[0], Call::TagDatabase { .. }), "adoption tags the resource as owned");
}

#[test]
fn a_new_bucket_gets_every_declared_setting() {
    let spec =
        bucket(json!({"versioning": true, "lifecycle": [{"prefix": "tmp/", "expireDays": 7}], "encryption": {"algorithm": "AES256"}}));
    let p = with(false, |c| plan_bucket(&spec, None, c));
    let kinds: Vec<&str> = p
        .steps
        .iter()
        .map(|s| match s {
            Call::CreateBucket { .. } => "create",
            Call::EnableBucketAbac { .. } => "abac",
            Call::TagBucket { .. } => "tags",
            Call::SetVersioning { .. } => "versioning",
            Call::SetEncryption { .. } => "encryption",
            Call::SetPublicAccessBlock { .. } => "block",
            Call::SetLifecycle { .. } => "lifecycle",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["create", "abac", "versioning", "encryption", "block", "lifecycle"]);
    assert_eq!(p.lines(), ["Bucket uploads: create"]);
    // Its tags, ownership included, are in the create request: IAM authorizes the creation
    // by them.
    let Some(Call::CreateBucket { tags, .. }) = p.steps.first() else { panic!() };
    assert_eq!(tags.get("shipshape.dev/owner").map(String::as_str), Some("car-rental/data"));
}

#[test]
fn a_bucket_made_before_abac_gets_it_first_then_only_the_tags_it_lacks() {
    let mut live = live_bucket();
    live.abac = false;
    live.tags.remove("Project");
    let p = with(false, |c| plan_bucket(&bucket(json!({})), Some(&live), c));
    assert_eq!(p.steps[0], Call::EnableBucketAbac { name: "uploads".into() });
    let Some(Call::TagBucket { tags, .. }) = p.steps.get(1) else { panic!("{p:?}") };
    assert_eq!(tags, &BTreeMap::from([("Project".to_string(), "car-rental".to_string())]), "TagResource adds; ownership is not sent again");
}

#[test]
fn bucket_drift_is_planned_per_field_and_foreign_tags_are_kept() {
    let spec = bucket(
        json!({"versioning": true, "lifecycle": [{"prefix": "", "transitions": [{"days": 90, "storageClass": "GLACIER"}, {"days": 30, "storageClass": "STANDARD_IA"}]}]}),
    );
    let mut live = live_bucket();
    live.versioning = Some("Suspended".into());
    live.tags.insert("CostCenter".into(), "7".into());
    live.lifecycle = vec![LifecycleRule {
        prefix: "".into(),
        expire_days: None,
        transitions: vec![
            Transition { days: 30, storage_class: StorageClass::StandardIa },
            Transition { days: 90, storage_class: StorageClass::Glacier },
        ],
    }];
    let p = with(false, |c| plan_bucket(&spec, Some(&live), c));
    let fields: Vec<_> = p.changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["versioning"], "transitions compare in any order: {p:?}");
    live.tags.remove("Project");
    let p = with(false, |c| plan_bucket(&spec, Some(&live), c));
    let Some(Call::TagBucket { tags, .. }) = p.steps.iter().find(|s| matches!(s, Call::TagBucket { .. })) else { panic!() };
    // S3 Control's TagResource adds to the tag set: CostCenter (someone else's) stays.
    assert_eq!(tags.get("CostCenter"), None);
    assert_eq!(tags.get("Project").map(String::as_str), Some("car-rental"));
}

#[test]
fn turning_versioning_off_suspends_it_and_public_access_can_be_opened() {
    let mut live = live_bucket();
    live.versioning = Some("Enabled".into());
    let p = with(false, |c| plan_bucket(&bucket(json!({"versioning": false, "blockPublicAccess": false})), Some(&live), c));
    assert!(p.steps.contains(&Call::SetVersioning { name: "uploads".into(), enabled: false }));
    assert!(p.steps.contains(&Call::SetPublicAccessBlock { name: "uploads".into(), block: false }));
    assert!(p.lines().contains(&"Bucket uploads: update versioning: Enabled -> Suspended".to_string()));
}

#[test]
fn a_stack_plan_with_one_refusal_changes_nothing_and_its_hash_follows_its_content() {
    let mut live = live_db();
    live.allocated_storage_gib = 100;
    let observed = ObservedStack {
        databases: [("car-rental-db".to_string(), Some(live))].into(),
        buckets: Default::default(),
        tables: Default::default(),
        caches: Default::default(),
    };
    let p = with(false, |c| plan(&[db(json!({}))], &[bucket(json!({}))], &[], &observed, c));
    assert!(p.refusal().is_some());
    let a = with(false, |c| plan(&[], &[bucket(json!({}))], &[], &ObservedStack::default(), c));
    let b = with(false, |c| plan(&[], &[bucket(json!({"name": "other"}))], &[], &ObservedStack::default(), c));
    assert_ne!(a.hash(), b.hash());
    assert_eq!(a.hash(), with(false, |c| plan(&[], &[bucket(json!({}))], &[], &ObservedStack::default(), c)).hash());
    assert_eq!(a.hash().len(), 12);
}

#[test]
fn outputs_keys_and_snapshot_names_are_stable() {
    assert_eq!(env_key("car-rental-db"), "CAR_RENTAL_DB");
    let t = chrono::DateTime::parse_from_rfc3339("2026-11-21T23:00:05Z").unwrap().with_timezone(&chrono::Utc);
    assert_eq!(final_snapshot_name("car-rental-db", t), "car-rental-db-final-20261121230005");
}
