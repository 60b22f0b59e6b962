//! RDS through aws_sdk_rds.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_rds::types::Tag;

use super::map_err;
use crate::api::DatabaseSpec;
use crate::aws::{AwsError, Caller, Rds};
use crate::core::stack::{DbModify, ObservedDatabase};

pub(super) struct SdkRds {
    client: aws_sdk_rds::Client,
    caller: Caller,
}

impl SdkRds {
    pub(super) fn new(conf: &aws_config::SdkConfig, caller: Caller) -> Self {
        SdkRds { client: aws_sdk_rds::Client::new(conf), caller }
    }
}

fn tags_of(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

#[async_trait]
impl Rds for SdkRds {
    async fn describe_db_instance(&self, name: &str) -> Result<Option<ObservedDatabase>, AwsError> {
        let out = self
            .caller
            .call("DescribeDBInstances", || async {
                self.client.describe_db_instances().db_instance_identifier(name).send().await.map_err(|e| map_err("DescribeDBInstances", e))
            })
            .await;
        let out = match out {
            Ok(o) => o,
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(db) = out.db_instances().first() else {
            return Ok(None);
        };
        Ok(Some(ObservedDatabase {
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
            tags: db
                .tag_list()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                .collect(),
        }))
    }

    async fn create_db_instance(&self, spec: &DatabaseSpec, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let engine = serde_json::to_value(spec.engine).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        self.caller
            .call("CreateDBInstance", || async {
                self.client
                    .create_db_instance()
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
                    .set_tags(Some(tags_of(tags)))
                    .send()
                    .await
                    .map_err(|e| map_err("CreateDBInstance", e))
            })
            .await
            .map(|_| ())
    }

    async fn modify_db_instance(&self, name: &str, m: &DbModify) -> Result<(), AwsError> {
        self.caller
            .call("ModifyDBInstance", || async {
                self.client
                    .modify_db_instance()
                    .db_instance_identifier(name)
                    .apply_immediately(true)
                    .set_db_instance_class(m.instance_class.clone())
                    .set_allocated_storage(m.allocated_storage_gib)
                    .set_multi_az(m.multi_az)
                    .set_engine_version(m.engine_version.clone())
                    .allow_major_version_upgrade(m.allow_major_version_upgrade)
                    .set_backup_retention_period(m.backup_retention_days)
                    .set_deletion_protection(m.deletion_protection)
                    .send()
                    .await
                    .map_err(|e| map_err("ModifyDBInstance", e))
            })
            .await
            .map(|_| ())
    }

    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.caller
            .call("AddTagsToResource", || async {
                self.client
                    .add_tags_to_resource()
                    .resource_name(arn)
                    .set_tags(Some(tags_of(tags)))
                    .send()
                    .await
                    .map_err(|e| map_err("AddTagsToResource", e))
            })
            .await
            .map(|_| ())
    }

    async fn delete_db_instance(&self, name: &str, final_snapshot: Option<&str>) -> Result<(), AwsError> {
        self.caller
            .call("DeleteDBInstance", || async {
                self.client
                    .delete_db_instance()
                    .db_instance_identifier(name)
                    .skip_final_snapshot(final_snapshot.is_none())
                    .set_final_db_snapshot_identifier(final_snapshot.map(String::from))
                    .send()
                    .await
                    .map_err(|e| map_err("DeleteDBInstance", e))
            })
            .await
            .map(|_| ())
    }
}
