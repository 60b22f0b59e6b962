//! RDS through aws_sdk_rds.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_rds::types::{DbInstance, Tag};

use super::Adapter;
use crate::api::DatabaseSpec;
use crate::api::OWNER_TAG;
use crate::aws::{AwsError, Rds, Tags};
use crate::core::stack::{DbModify, ObservedDatabase, Placement};

adapter!(SdkRds(aws_sdk_rds::Client));

impl SdkRds {
    /// Whether the instance exists and carries `owner` as its owner tag.
    async fn owned_by(&self, name: &str, owner: Option<&String>) -> Result<bool, AwsError> {
        let observed = self.describe_db_instance(name).await?;
        Ok(owner.is_some() && observed.is_some_and(|db| db.tags.get(OWNER_TAG) == owner))
    }
}

/// What shipshape reads of a DB instance.
fn observed(db: &DbInstance) -> ObservedDatabase {
    ObservedDatabase {
        name: db.db_instance_identifier().unwrap_or_default().to_string(),
        arn: db.db_instance_arn().unwrap_or_default().to_string(),
        status: db.db_instance_status().unwrap_or_default().to_string(),
        engine: db.engine().unwrap_or_default().to_string(),
        engine_version: db.engine_version().unwrap_or_default().to_string(),
        instance_class: db.db_instance_class().unwrap_or_default().to_string(),
        allocated_storage_gib: db.allocated_storage().unwrap_or_default(),
        multi_az: db.multi_az().unwrap_or_default(),
        storage_encrypted: db.storage_encrypted().unwrap_or_default(),
        backup_retention_days: db.backup_retention_period().unwrap_or_default(),
        deletion_protection: db.deletion_protection().unwrap_or_default(),
        master_username: db.master_username().unwrap_or_default().to_string(),
        master_secret_arn: db.master_user_secret().and_then(|s| s.secret_arn()).map(String::from),
        endpoint: db.endpoint().and_then(|e| e.address()).map(String::from),
        port: db.endpoint().and_then(|e| e.port()),
        tags: db.tag_list().iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect(),
        publicly_accessible: db.publicly_accessible().unwrap_or_default(),
        vpc_security_groups: {
            let mut sgs: Vec<String> =
                db.vpc_security_groups().iter().filter_map(|g| g.vpc_security_group_id().map(String::from)).collect();
            sgs.sort();
            sgs
        },
        subnet_group: db.db_subnet_group().and_then(|g| g.db_subnet_group_name()).map(String::from),
    }
}

fn tags_of(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

#[async_trait]
impl Rds for SdkRds {
    async fn describe_db_instance(&self, name: &str) -> Result<Option<ObservedDatabase>, AwsError> {
        let out = self.sdk("DescribeDBInstances", |c| c.describe_db_instances().db_instance_identifier(name).send()).await;
        let out = match out {
            Ok(o) => o,
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(out.db_instances().first().map(observed))
    }

    async fn list_db_instances(&self) -> Result<Vec<ObservedDatabase>, AwsError> {
        let mut all = vec![];
        let mut marker: Option<String> = None;
        // At most 1,000 pages of 100: an account holds far fewer (the default quota is 40).
        for _ in 0..1000 {
            let out =
                self.sdk("DescribeDBInstances", |c| c.describe_db_instances().max_records(100).set_marker(marker.clone()).send()).await?;
            all.extend(out.db_instances().iter().map(observed));
            match out.marker() {
                Some(m) if !m.is_empty() && marker.as_deref() != Some(m) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(all)
    }

    async fn ensure_db_subnet_group(&self, placement: &Placement, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let name = placement.subnet_group.as_str();
        let found =
            self.sdk("DescribeDBSubnetGroups", |c| c.describe_db_subnet_groups().db_subnet_group_name(name).send()).await.map(|o| {
                o.db_subnet_groups().first().map(|g| g.subnets().iter().filter_map(|s| s.subnet_identifier().map(String::from)).collect())
            });
        let create = |description: String| async move {
            self.sdk("CreateDBSubnetGroup", |c| {
                c.create_db_subnet_group()
                    .db_subnet_group_name(name)
                    .db_subnet_group_description(&description)
                    .set_subnet_ids(Some(placement.subnets.clone()))
                    .set_tags(Some(tags_of(tags)))
                    .send()
            })
            .await
            .map(|_| ())
        };
        let modify = || async {
            self.sdk("ModifyDBSubnetGroup", |c| {
                c.modify_db_subnet_group().db_subnet_group_name(name).set_subnet_ids(Some(placement.subnets.clone())).send()
            })
            .await
            .map(|_| ())
        };
        super::ensure_subnet_group(placement, found, create, modify).await
    }

    async fn create_db_instance(&self, spec: &DatabaseSpec, tags: &Tags, placement: Option<&Placement>) -> Result<(), AwsError> {
        let engine = serde_json::to_value(spec.engine).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let r = self
            .sdk("CreateDBInstance", |c| {
                c.create_db_instance()
                    .db_instance_identifier(&spec.name)
                    .engine(&engine)
                    .engine_version(&spec.engine_version)
                    .db_instance_class(&spec.instance_class)
                    .allocated_storage(spec.allocated_storage_gib)
                    .multi_az(spec.multi_az)
                    .storage_encrypted(spec.storage_encrypted)
                    .backup_retention_period(spec.backup_retention_days)
                    .deletion_protection(spec.deletion_protection)
                    .master_username(&spec.master_username)
                    .manage_master_user_password(true)
                    .publicly_accessible(spec.publicly_accessible)
                    .set_db_subnet_group_name(placement.map(|p| p.subnet_group.clone()))
                    .set_vpc_security_group_ids(placement.map(|p| p.security_groups.clone()).filter(|g| !g.is_empty()))
                    .set_tags(Some(tags_of(tags)))
                    .send()
            })
            .await;
        match r {
            // A retried create meeting its own earlier success: the instance carries our owner tag.
            Err(AwsError::Conflict { .. }) if self.owned_by(&spec.name, tags.get(OWNER_TAG)).await? => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn modify_db_instance(&self, name: &str, m: &DbModify) -> Result<(), AwsError> {
        self.sdk("ModifyDBInstance", |c| {
            c.modify_db_instance()
                .db_instance_identifier(name)
                .apply_immediately(true)
                .set_db_instance_class(m.instance_class.clone())
                .set_allocated_storage(m.allocated_storage_gib)
                .set_multi_az(m.multi_az)
                .set_engine_version(m.engine_version.clone())
                .allow_major_version_upgrade(m.allow_major_version_upgrade)
                .set_backup_retention_period(m.backup_retention_days)
                .set_deletion_protection(m.deletion_protection)
                .set_publicly_accessible(m.publicly_accessible)
                .set_vpc_security_group_ids(m.vpc_security_groups.clone())
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.sdk("AddTagsToResource", |c| c.add_tags_to_resource().resource_name(arn).set_tags(Some(tags_of(tags))).send())
            .await
            .map(|_| ())
    }

    async fn create_snapshot(&self, db: &str, name: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let tags: Vec<Tag> = tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        let op = "CreateDBSnapshot";
        self.sdk(op, |c| c.create_db_snapshot().db_instance_identifier(db).db_snapshot_identifier(name).set_tags(Some(tags.clone())).send())
            .await
            .map(|_| ())
    }

    async fn list_snapshots(
        &self,
        db: &str,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>, BTreeMap<String, String>)>, AwsError> {
        let op = "DescribeDBSnapshots";
        let out =
            self.sdk(op, |c| c.describe_db_snapshots().db_instance_identifier(db).snapshot_type("manual").max_records(100).send()).await?;
        let mut all: Vec<_> = out
            .db_snapshots()
            .iter()
            .map(|s| {
                let created = s.snapshot_create_time().and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos()));
                let tags = s
                    .tag_list()
                    .iter()
                    .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                    .collect();
                (s.db_snapshot_identifier().unwrap_or_default().to_string(), created, tags)
            })
            .collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        Ok(all)
    }

    async fn delete_snapshot(&self, name: &str) -> Result<(), AwsError> {
        match self.sdk("DeleteDBSnapshot", |c| c.delete_db_snapshot().db_snapshot_identifier(name).send()).await {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn snapshot_status(&self, name: &str) -> Result<Option<String>, AwsError> {
        match self.sdk("DescribeDBSnapshots", |c| c.describe_db_snapshots().db_snapshot_identifier(name).send()).await {
            Ok(out) => Ok(out.db_snapshots().first().and_then(|s| s.status()).map(String::from)),
            Err(AwsError::NotFound { .. }) => Ok(None),
            Err(AwsError::Invalid { message, .. }) if message.contains("DBSnapshotNotFound") => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete_db_instance(&self, name: &str, final_snapshot: Option<&str>) -> Result<(), AwsError> {
        self.sdk("DeleteDBInstance", |c| {
            c.delete_db_instance()
                .db_instance_identifier(name)
                .skip_final_snapshot(final_snapshot.is_none())
                .set_final_db_snapshot_identifier(final_snapshot.map(String::from))
                .send()
        })
        .await
        .map(|_| ())
    }
}
