//! RDS databases: a declared database vs what RDS reports → the calls that bring it to its
//! declared state, or the reason it may not change. Pure.

use std::collections::BTreeMap;

use crate::api::{reasons, DatabaseSpec};
use crate::core::requeue::Category;

use super::plan::{
    add_missing_tags, differs, ownership_check, ownership_tags, placement_tags, unsupported, version, Call, DbModify, FieldChange,
    ObservedDatabase, PlanInputs, Refusal, ResourceKind, ResourcePlan,
};

fn major(engine: &str, v: &str) -> Vec<u64> {
    let parts = version(v);
    let n = if engine == "postgres" && parts.first().is_some_and(|m| *m >= 10) { 1 } else { 2 };
    parts.into_iter().take(n).collect()
}

/// Plans one database.
pub fn plan_database(spec: &DatabaseSpec, observed: Option<&ObservedDatabase>, ctx: &PlanInputs) -> ResourcePlan {
    let mut plan = ResourcePlan::new(ResourceKind::Database, &spec.name);
    let tags = ownership_tags(ctx, &BTreeMap::new());
    if !spec.manage_master_user_password {
        plan.refusal = Some(Refusal {
            reason: reasons::INVALID_SPEC,
            message: format!("Database {}: shipshape never handles database passwords; keep manageMasterUserPassword: true so RDS keeps it in Secrets Manager", spec.name),
            category: Category::InvalidSpec,
        });
        return plan;
    }
    let Some(db) = observed else {
        plan.create = true;
        if let Some(p) = ctx.placement {
            // The Environment's subnet group carries the Environment's own tags.
            plan.steps.push(Call::EnsureSubnetGroup { placement: p.clone(), tags: placement_tags(ctx, p) });
        }
        plan.steps.push(Call::CreateDatabase { spec: spec.clone(), tags, placement: ctx.placement.cloned() });
        return plan;
    };
    if let Some(r) = ownership_check(ResourceKind::Database, &spec.name, &db.tags, ctx) {
        plan.refusal = Some(r);
        return plan;
    }
    let engine = serde_json::to_value(spec.engine).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let refuse = |field: &str, from: String, to: String, why: &str| unsupported(ResourceKind::Database, &spec.name, field, from, to, why);
    if !db.engine.is_empty() && db.engine != engine {
        plan.refusal =
            Some(refuse("engine", db.engine.clone(), engine, "RDS cannot change an instance's engine; create a new database and migrate"));
        return plan;
    }
    if spec.allocated_storage_gib < db.allocated_storage_gib {
        plan.refusal = Some(refuse(
            "allocatedStorageGiB",
            db.allocated_storage_gib.to_string(),
            spec.allocated_storage_gib.to_string(),
            "RDS storage can only grow",
        ));
        return plan;
    }
    if spec.storage_encrypted != db.storage_encrypted {
        plan.refusal = Some(refuse(
            "storageEncrypted",
            db.storage_encrypted.to_string(),
            spec.storage_encrypted.to_string(),
            "encryption is fixed at creation; restore a snapshot into a new instance",
        ));
        return plan;
    }
    if !db.master_username.is_empty() && spec.master_username != db.master_username {
        plan.refusal = Some(refuse(
            "masterUsername",
            db.master_username.clone(),
            spec.master_username.clone(),
            "the master user name is fixed at creation",
        ));
        return plan;
    }
    if version(&spec.engine_version) < version(&db.engine_version) {
        plan.refusal =
            Some(refuse("engineVersion", db.engine_version.clone(), spec.engine_version.clone(), "RDS never downgrades an engine"));
        return plan;
    }
    let mut m = DbModify::default();
    let changes = &mut plan.changes;
    differs(changes, "instanceClass", (&db.instance_class, &spec.instance_class), &mut m.instance_class);
    if spec.allocated_storage_gib > db.allocated_storage_gib {
        differs(changes, "allocatedStorageGiB", (&db.allocated_storage_gib, &spec.allocated_storage_gib), &mut m.allocated_storage_gib);
    }
    differs(changes, "multiAz", (&db.multi_az, &spec.multi_az), &mut m.multi_az);
    if version(&spec.engine_version) > version(&db.engine_version) {
        m.allow_major_version_upgrade = major(&engine, &spec.engine_version) != major(&engine, &db.engine_version);
        differs(changes, "engineVersion", (&db.engine_version, &spec.engine_version), &mut m.engine_version);
    }
    differs(changes, "backupRetentionDays", (&db.backup_retention_days, &spec.backup_retention_days), &mut m.backup_retention_days);
    differs(changes, "deletionProtection", (&db.deletion_protection, &spec.deletion_protection), &mut m.deletion_protection);
    differs(changes, "publiclyAccessible", (&db.publicly_accessible, &spec.publicly_accessible), &mut m.publicly_accessible);
    // Security groups follow the Environment's (the subnet group is fixed at creation).
    if let Some(p) = ctx.placement.filter(|p| !p.security_groups.is_empty() && p.security_groups != db.vpc_security_groups) {
        changes.push(FieldChange { field: "securityGroups", from: db.vpc_security_groups.join(","), to: p.security_groups.join(",") });
        m.vpc_security_groups = Some(p.security_groups.clone());
    }
    if m != DbModify::default() {
        if db.status == "available" {
            plan.steps.push(Call::ModifyDatabase { name: spec.name.clone(), modify: m });
        } else {
            // RDS refuses changes until the instance is available again.
            plan.waiting = Some(db.status.clone());
        }
    }
    add_missing_tags(&mut plan, &tags, &db.tags, |tags| Call::TagDatabase { name: spec.name.clone(), arn: db.arn.clone(), tags });
    plan
}
