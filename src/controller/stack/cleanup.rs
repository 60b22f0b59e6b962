//! Deletion that loses nothing: databases get a final snapshot unless the policy says
//! otherwise, buckets are kept unless the policy says Delete and they are empty, tables are
//! kept unless the policy says Snapshot (an on-demand backup, available before the table
//! goes) or Delete, and the finalizer goes only once every policy has been carried out.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::Value;

use super::super::{environment, Context, Error};
use super::outputs;
use crate::api::{
    owner_of, reasons, BucketDeletionPolicy, CacheDeletionPolicy, DatabaseDeletionPolicy, StackSpec, StackSpecStatus, TableDeletionPolicy,
    OWNER_TAG,
};
use crate::aws::{AwsClients, BackupState, BucketDeletion};
use crate::controller::reconcile::{finish, Kind, Written};
use crate::core::conditions::Readiness;
use crate::core::requeue::Category;
use crate::core::stack::{final_snapshot_name, DbModify, ResourceKind, TableUpdate};
use crate::core::tenancy;

/// Whether the spec asks for anything to be removed from AWS.
fn needs_aws(stack: &StackSpec) -> bool {
    stack.spec.databases.iter().any(|d| d.deletion_policy != DatabaseDeletionPolicy::Retain)
        || stack.spec.buckets.iter().any(|b| b.deletion_policy == BucketDeletionPolicy::Delete)
        || stack.spec.tables.iter().any(|t| t.deletion_policy != TableDeletionPolicy::Retain)
        || stack.spec.caches.iter().any(|c| c.deletion_policy != CacheDeletionPolicy::Retain)
}

/// Carries out the deletion policies; Err keeps the finalizer (and says why in status).
pub async fn cleanup(stack: Arc<StackSpec>, ctx: &Context) -> Result<Action, Error> {
    outputs::delete(ctx, &stack).await?;
    if !needs_aws(&stack) {
        let s = &stack.spec;
        let names =
            s.databases.iter().map(|d| (ResourceKind::Database, &d.name)).chain(s.buckets.iter().map(|b| (ResourceKind::Bucket, &b.name)));
        let names = names
            .chain(s.tables.iter().map(|t| (ResourceKind::Table, &t.name)))
            .chain(s.caches.iter().map(|c| (ResourceKind::Cache, &c.name)));
        for (kind, name) in names {
            retained(ctx, &stack, kind, name).await;
        }
        return Ok(Action::await_change());
    }
    let env = ctx.stores.environment(&stack.spec.environment).map(|e| e.as_ref().clone());
    let ns = stack.namespace().unwrap_or_default();
    let env = match (tenancy::check(&stack.spec.environment, env.as_ref().map(|e| &e.spec), &ns), env) {
        (Ok(()), Some(env)) => env,
        (Err(e), _) => {
            let message = format!(
                "cannot delete this StackSpec's AWS resources: {e}. Nothing was deleted; restore access, or set every deletionPolicy to Retain to let the StackSpec go"
            );
            return stalled(ctx, &stack, reasons::ENVIRONMENT_NOT_FOUND, message, Category::InvalidSpec).await;
        }
        (Ok(()), None) => return Err(Error::Refused { category: Category::Transient, message: "environment vanished".into() }),
    };
    let aws = ctx.aws.clients(&environment::target(&env)).await?;
    let caller = aws.sts.caller_account().await?;
    if let Err(r) = crate::core::environment::check_account(&env.spec, &caller) {
        return stalled(ctx, &stack, r.reason, r.message, r.category).await;
    }
    let owner = owner_of(stack.as_ref());
    ctx.may_act()?;
    if let Some((reason, message)) = delete_databases(ctx, &stack, &aws, &owner).await? {
        return stalled(ctx, &stack, reason, message, Category::InvalidSpec).await;
    }
    delete_caches(ctx, &stack, &aws, &owner).await?;
    if let Some((reason, message)) = delete_tables(ctx, &stack, &aws, &owner).await? {
        return stalled(ctx, &stack, reason, message, Category::InvalidSpec).await;
    }
    if let Some((reason, message)) = delete_buckets(ctx, &stack, &aws, &owner).await? {
        // Emptying a bucket changes nothing in Kubernetes: recheck at the slow interval.
        return stalled(ctx, &stack, reason, message, Category::Conflict).await;
    }
    Ok(Action::await_change())
}

/// An Event saying a resource stays in AWS (its deletionPolicy is Retain).
async fn retained(ctx: &Context, stack: &StackSpec, kind: ResourceKind, name: &str) {
    ctx.event(stack, false, reasons::RETAINED, format!("{} {name} left in AWS (deletionPolicy Retain)", kind.noun())).await;
}

/// A declared resource to delete: None when its policy is Retain (said with an Event), or
/// when AWS does not hold it as this StackSpec's (`mine`).
async fn doomed<T, F, Fut>(
    ctx: &Context,
    stack: &StackSpec,
    (kind, name): (ResourceKind, &str),
    retain: bool,
    found: F,
    mine: impl Fn(&T) -> bool,
) -> Result<Option<T>, Error>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, crate::aws::AwsError>>,
{
    if retain {
        retained(ctx, stack, kind, name).await;
        return Ok(None);
    }
    Ok(found().await?.filter(|x| mine(x)))
}

/// Whether a resource found in AWS is this StackSpec's to delete: it carries the owner tag
/// and is not already going.
fn ours(tags: &BTreeMap<String, String>, owner: &str, going: bool) -> bool {
    tags.get(OWNER_TAG).map(String::as_str) == Some(owner) && !going
}

/// Why a resource with deletion protection on in the spec is not deleted.
fn protected(kind: ResourceKind, name: &str, policy: impl std::fmt::Debug) -> (&'static str, String) {
    let message = format!(
        "{} {name} has deletionProtection on; set deletionProtection: false (shipshape turns it off, then deletes with policy {policy:?}) or deletionPolicy: Retain",
        kind.noun()
    );
    (reasons::DELETION_PROTECTED, message)
}

/// The Event of a deletion: after its final `copy` (a snapshot, a backup) or without one.
async fn deleting(ctx: &Context, stack: &StackSpec, kind: ResourceKind, name: &str, copy: &str, taken: Option<&str>) {
    let (reason, note) = match taken {
        Some(s) => (reasons::SNAPSHOT_TAKEN, format!("deleting {} {name} after final {copy} {s}", kind.noun())),
        None => (reasons::DELETED, format!("deleting {} {name} without a {copy} (deletionPolicy Delete)", kind.noun())),
    };
    ctx.event(stack, false, reason, note).await;
}

async fn delete_databases(
    ctx: &Context,
    stack: &StackSpec,
    aws: &AwsClients,
    owner: &str,
) -> Result<Option<(&'static str, String)>, Error> {
    for d in &stack.spec.databases {
        let retain = d.deletion_policy == DatabaseDeletionPolicy::Retain;
        let found = || aws.rds.describe_db_instance(&d.name);
        let Some(db) =
            doomed(ctx, stack, (ResourceKind::Database, &d.name), retain, found, |db| ours(&db.tags, owner, db.status == "deleting"))
                .await?
        else {
            continue;
        };
        if db.deletion_protection {
            if d.deletion_protection {
                return Ok(Some(protected(ResourceKind::Database, &d.name, d.deletion_policy)));
            }
            // The spec says off: bring AWS to it before deleting.
            aws.rds.modify_db_instance(&d.name, &DbModify { deletion_protection: Some(false), ..Default::default() }).await?;
        }
        let snapshot = (d.deletion_policy == DatabaseDeletionPolicy::Snapshot).then(|| final_snapshot_name(&d.name, Utc::now()));
        aws.rds.delete_db_instance(&d.name, snapshot.as_deref()).await?;
        deleting(ctx, stack, ResourceKind::Database, &d.name, "snapshot", snapshot.as_deref()).await;
    }
    Ok(None)
}

async fn delete_caches(ctx: &Context, stack: &StackSpec, aws: &AwsClients, owner: &str) -> Result<(), Error> {
    for c in &stack.spec.caches {
        let retain = c.deletion_policy == CacheDeletionPolicy::Retain;
        let found = || aws.elasticache.describe_cache(&c.name);
        if doomed(ctx, stack, (ResourceKind::Cache, &c.name), retain, found, |g| ours(&g.tags, owner, g.status == "deleting"))
            .await?
            .is_none()
        {
            continue;
        }
        let snapshot = (c.deletion_policy == CacheDeletionPolicy::Snapshot).then(|| final_snapshot_name(&c.name, Utc::now()));
        aws.elasticache.delete_cache(&c.name, snapshot.as_deref()).await?;
        deleting(ctx, stack, ResourceKind::Cache, &c.name, "snapshot", snapshot.as_deref()).await;
    }
    Ok(())
}

async fn delete_tables(ctx: &Context, stack: &StackSpec, aws: &AwsClients, owner: &str) -> Result<Option<(&'static str, String)>, Error> {
    for t in &stack.spec.tables {
        let retain = t.deletion_policy == TableDeletionPolicy::Retain;
        let found = || aws.dynamodb.describe_table(&t.name);
        let Some(table) =
            doomed(ctx, stack, (ResourceKind::Table, &t.name), retain, found, |x| ours(&x.tags, owner, x.status == "DELETING")).await?
        else {
            continue;
        };
        if table.deletion_protection {
            if t.deletion_protection {
                return Ok(Some(protected(ResourceKind::Table, &t.name, t.deletion_policy)));
            }
            aws.dynamodb.update_table(&t.name, &TableUpdate::DeletionProtection(false)).await?;
        }
        let backup = if t.deletion_policy == TableDeletionPolicy::Snapshot {
            match aws.dynamodb.final_backup(&t.name, &final_snapshot_name(&t.name, Utc::now())).await? {
                // DynamoDB refuses to delete a table while its backup is being made.
                BackupState::Creating(name) => {
                    return Err(Error::Refused {
                        category: Category::Transient,
                        message: format!("waiting for backup {name} of table {} before deleting it", t.name),
                    })
                }
                BackupState::Available(name) => Some(name),
            }
        } else {
            None
        };
        aws.dynamodb.delete_table(&t.name).await?;
        deleting(ctx, stack, ResourceKind::Table, &t.name, "backup", backup.as_deref()).await;
    }
    Ok(None)
}

async fn delete_buckets(ctx: &Context, stack: &StackSpec, aws: &AwsClients, owner: &str) -> Result<Option<(&'static str, String)>, Error> {
    let mut kept = vec![];
    for b in &stack.spec.buckets {
        let retain = b.deletion_policy == BucketDeletionPolicy::Retain;
        let found = || aws.s3.describe_bucket(&b.name, crate::aws::BucketReads::BASIC);
        if doomed(ctx, stack, (ResourceKind::Bucket, &b.name), retain, found, |x| ours(&x.tags, owner, false)).await?.is_none() {
            continue;
        }
        match aws.s3.delete_bucket(&b.name).await? {
            BucketDeletion::Deleted => ctx.event(stack, false, reasons::DELETED, format!("deleted empty bucket {}", b.name)).await,
            BucketDeletion::Missing => {}
            BucketDeletion::NotEmpty => kept.push(b.name.clone()),
        }
    }
    if kept.is_empty() {
        return Ok(None);
    }
    Ok(Some((
        reasons::BUCKET_NOT_EMPTY,
        format!(
            "bucket(s) {} still hold objects, so they were not deleted; empty them, or set their deletionPolicy: Retain",
            kept.join(", ")
        ),
    )))
}

/// Says in status why the deletion cannot go on; the error keeps the finalizer (the runtime
/// counts it and looks again by its category).
async fn stalled(ctx: &Context, stack: &StackSpec, reason: &'static str, message: String, category: Category) -> Result<Action, Error> {
    let api = StackSpec::api(ctx.client.clone(), stack);
    let old = stack.status.clone().unwrap_or_default();
    let stored = stack.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let new = StackSpecStatus { observed_generation: stack.metadata.generation, ..old.clone() };
    let readiness = Readiness::Stalled { reason, message: message.clone() };
    let written = Written { previous: &old.conditions, conditions: &old.conditions, stored, status: new, announced: &[], fenced: None };
    finish(ctx, &api, stack, written, (readiness, Action::await_change(), Some(Error::Refused { category, message }))).await
}
