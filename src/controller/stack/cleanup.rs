//! Deletion that loses nothing: databases get a final snapshot unless the policy says
//! otherwise, buckets are kept unless the policy says Delete and they are empty, tables are
//! kept unless the policy says Snapshot (an on-demand backup, available before the table
//! goes) or Delete, and the finalizer goes only once every policy has been carried out.

use std::sync::Arc;

use chrono::Utc;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use serde_json::Value;

use super::super::{environment, Context, Error};
use super::{finish, outputs, CONTROLLER};
use crate::api::{
    owner_of, reasons, BucketDeletionPolicy, CacheDeletionPolicy, DatabaseDeletionPolicy, StackSpec, StackSpecStatus, TableDeletionPolicy,
    OWNER_TAG,
};
use crate::aws::{AwsClients, BackupState, BucketDeletion};
use crate::core::conditions::Readiness;
use crate::core::requeue::Category;
use crate::core::stack::{final_snapshot_name, DbModify, TableUpdate};
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
        for d in &stack.spec.databases {
            ctx.event(stack.as_ref(), false, reasons::RETAINED, format!("database {} left in AWS (deletionPolicy Retain)", d.name)).await;
        }
        for b in &stack.spec.buckets {
            ctx.event(stack.as_ref(), false, reasons::RETAINED, format!("bucket {} left in AWS (deletionPolicy Retain)", b.name)).await;
        }
        for t in &stack.spec.tables {
            ctx.event(stack.as_ref(), false, reasons::RETAINED, format!("table {} left in AWS (deletionPolicy Retain)", t.name)).await;
        }
        for c in &stack.spec.caches {
            ctx.event(stack.as_ref(), false, reasons::RETAINED, format!("cache {} left in AWS (deletionPolicy Retain)", c.name)).await;
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

async fn delete_databases(
    ctx: &Context,
    stack: &StackSpec,
    aws: &AwsClients,
    owner: &str,
) -> Result<Option<(&'static str, String)>, Error> {
    for d in &stack.spec.databases {
        if d.deletion_policy == DatabaseDeletionPolicy::Retain {
            ctx.event(stack, false, reasons::RETAINED, format!("database {} left in AWS (deletionPolicy Retain)", d.name)).await;
            continue;
        }
        let Some(db) = aws.rds.describe_db_instance(&d.name).await? else {
            continue;
        };
        if db.tags.get(OWNER_TAG).map(String::as_str) != Some(owner) || db.status == "deleting" {
            continue;
        }
        if db.deletion_protection {
            if d.deletion_protection {
                return Ok(Some((
                    reasons::DELETION_PROTECTED,
                    format!(
                        "database {} has deletionProtection on; set deletionProtection: false (shipshape turns it off, then deletes with policy {:?}) or deletionPolicy: Retain",
                        d.name, d.deletion_policy
                    ),
                )));
            }
            // The spec says off: bring AWS to it before deleting.
            aws.rds.modify_db_instance(&d.name, &DbModify { deletion_protection: Some(false), ..Default::default() }).await?;
        }
        let snapshot = (d.deletion_policy == DatabaseDeletionPolicy::Snapshot).then(|| final_snapshot_name(&d.name, Utc::now()));
        aws.rds.delete_db_instance(&d.name, snapshot.as_deref()).await?;
        let note = match &snapshot {
            Some(s) => format!("deleting database {} after final snapshot {s}", d.name),
            None => format!("deleting database {} without a snapshot (deletionPolicy Delete)", d.name),
        };
        let reason = if snapshot.is_some() { reasons::SNAPSHOT_TAKEN } else { reasons::DELETED };
        ctx.event(stack, false, reason, note).await;
    }
    Ok(None)
}

async fn delete_caches(ctx: &Context, stack: &StackSpec, aws: &AwsClients, owner: &str) -> Result<(), Error> {
    for c in &stack.spec.caches {
        if c.deletion_policy == CacheDeletionPolicy::Retain {
            ctx.event(stack, false, reasons::RETAINED, format!("cache {} left in AWS (deletionPolicy Retain)", c.name)).await;
            continue;
        }
        let Some(cache) = aws.elasticache.describe_cache(&c.name).await? else {
            continue;
        };
        if cache.tags.get(OWNER_TAG).map(String::as_str) != Some(owner) || cache.status == "deleting" {
            continue;
        }
        let snapshot = (c.deletion_policy == CacheDeletionPolicy::Snapshot).then(|| final_snapshot_name(&c.name, Utc::now()));
        aws.elasticache.delete_cache(&c.name, snapshot.as_deref()).await?;
        let (reason, note) = match &snapshot {
            Some(s) => (reasons::SNAPSHOT_TAKEN, format!("deleting cache {} after final snapshot {s}", c.name)),
            None => (reasons::DELETED, format!("deleting cache {} without a snapshot (deletionPolicy Delete)", c.name)),
        };
        ctx.event(stack, false, reason, note).await;
    }
    Ok(())
}

async fn delete_tables(ctx: &Context, stack: &StackSpec, aws: &AwsClients, owner: &str) -> Result<Option<(&'static str, String)>, Error> {
    for t in &stack.spec.tables {
        if t.deletion_policy == TableDeletionPolicy::Retain {
            ctx.event(stack, false, reasons::RETAINED, format!("table {} left in AWS (deletionPolicy Retain)", t.name)).await;
            continue;
        }
        let Some(table) = aws.dynamodb.describe_table(&t.name).await? else {
            continue;
        };
        if table.tags.get(OWNER_TAG).map(String::as_str) != Some(owner) || table.status == "DELETING" {
            continue;
        }
        if table.deletion_protection {
            if t.deletion_protection {
                return Ok(Some((
                    reasons::DELETION_PROTECTED,
                    format!(
                        "table {} has deletionProtection on; set deletionProtection: false (shipshape turns it off, then deletes with policy {:?}) or deletionPolicy: Retain",
                        t.name, t.deletion_policy
                    ),
                )));
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
        let (reason, note) = match &backup {
            Some(b) => (reasons::SNAPSHOT_TAKEN, format!("deleting table {} after final backup {b}", t.name)),
            None => (reasons::DELETED, format!("deleting table {} without a backup (deletionPolicy Delete)", t.name)),
        };
        ctx.event(stack, false, reason, note).await;
    }
    Ok(None)
}

async fn delete_buckets(ctx: &Context, stack: &StackSpec, aws: &AwsClients, owner: &str) -> Result<Option<(&'static str, String)>, Error> {
    let mut kept = vec![];
    for b in &stack.spec.buckets {
        if b.deletion_policy == BucketDeletionPolicy::Retain {
            ctx.event(stack, false, reasons::RETAINED, format!("bucket {} left in AWS (deletionPolicy Retain)", b.name)).await;
            continue;
        }
        let Some(observed) = aws.s3.describe_bucket(&b.name, crate::aws::BucketReads::BASIC).await? else {
            continue;
        };
        if observed.tags.get(OWNER_TAG).map(String::as_str) != Some(owner) {
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

async fn stalled(ctx: &Context, stack: &StackSpec, reason: &'static str, message: String, category: Category) -> Result<Action, Error> {
    ctx.metrics.errors.with_label_values(&[CONTROLLER, category.label()]).inc();
    let api: Api<StackSpec> = Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    let old = stack.status.clone().unwrap_or_default();
    let old_value = stack.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
    let new = StackSpecStatus { observed_generation: stack.metadata.generation, ..old.clone() };
    let readiness = Readiness::Stalled { reason, message: message.clone() };
    finish(ctx, &api, stack, old, old_value, new, readiness, Action::await_change(), Some(Error::Refused { category, message })).await
}
