//! DynamoDB through aws_sdk_dynamodb.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BackupStatus, BillingMode, CreateGlobalSecondaryIndexAction, DeleteGlobalSecondaryIndexAction,
    GlobalSecondaryIndex, GlobalSecondaryIndexUpdate, KeySchemaElement, KeyType, PointInTimeRecoverySpecification,
    PointInTimeRecoveryStatus, Projection as SdkProjection, ProjectionType, ProvisionedThroughput, ScalarAttributeType, SseSpecification,
    SseStatus, SseType, StreamSpecification, StreamViewType, Tag, TimeToLiveSpecification, UpdateGlobalSecondaryIndexAction,
};

use super::Adapter;
use crate::api::{
    AttributeType, Billing, Capacity, IndexSpec, KeyAttribute, Projection, StreamView, TableEncryption, TableSpec, OWNER_TAG,
};
use crate::aws::{AwsError, BackupState, Dynamo};
use crate::core::stack::ObservedIndex;
use crate::core::stack::{ObservedTable, TableUpdate};
use crate::core::table::{attribute_definitions, index_capacity};

adapter!(SdkDynamo(aws_sdk_dynamodb::Client));

/// A request that could not be built (a required field missing): the spec's fault.
fn built<T>(op: &'static str, r: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, AwsError> {
    r.map_err(|e| AwsError::Invalid { op, message: e.to_string() })
}

fn key_schema(op: &'static str, partition: &KeyAttribute, sort: Option<&KeyAttribute>) -> Result<Vec<KeySchemaElement>, AwsError> {
    let mut keys = vec![built(op, KeySchemaElement::builder().attribute_name(&partition.name).key_type(KeyType::Hash).build())?];
    if let Some(s) = sort {
        keys.push(built(op, KeySchemaElement::builder().attribute_name(&s.name).key_type(KeyType::Range).build())?);
    }
    Ok(keys)
}

fn scalar(t: AttributeType) -> ScalarAttributeType {
    match t {
        AttributeType::S => ScalarAttributeType::S,
        AttributeType::N => ScalarAttributeType::N,
        AttributeType::B => ScalarAttributeType::B,
    }
}

fn definitions(op: &'static str, spec: &TableSpec) -> Result<Vec<AttributeDefinition>, AwsError> {
    let defs = attribute_definitions(spec).map_err(|message| AwsError::Invalid { op, message })?;
    defs.into_iter()
        .map(|(name, t)| built(op, AttributeDefinition::builder().attribute_name(name).attribute_type(scalar(t)).build()))
        .collect()
}

fn throughput(op: &'static str, c: Capacity) -> Result<ProvisionedThroughput, AwsError> {
    built(op, ProvisionedThroughput::builder().read_capacity_units(c.read).write_capacity_units(c.write).build())
}

fn projection(i: &IndexSpec) -> SdkProjection {
    let p = SdkProjection::builder();
    match i.projection {
        Projection::All => p.projection_type(ProjectionType::All).build(),
        Projection::KeysOnly => p.projection_type(ProjectionType::KeysOnly).build(),
        Projection::Include => {
            p.projection_type(ProjectionType::Include).set_non_key_attributes(Some(i.non_key_attributes.clone())).build()
        }
    }
}

fn stream_view(v: StreamView) -> StreamViewType {
    match v {
        StreamView::KeysOnly => StreamViewType::KeysOnly,
        StreamView::NewImage => StreamViewType::NewImage,
        StreamView::OldImage => StreamViewType::OldImage,
        StreamView::NewAndOldImages => StreamViewType::NewAndOldImages,
    }
}

fn stream_spec(op: &'static str, v: Option<StreamView>) -> Result<StreamSpecification, AwsError> {
    built(op, StreamSpecification::builder().stream_enabled(v.is_some()).set_stream_view_type(v.map(stream_view)).build())
}

fn sse(encryption: TableEncryption, key: Option<&str>) -> SseSpecification {
    match encryption {
        TableEncryption::AwsOwned => SseSpecification::builder().enabled(false).build(),
        TableEncryption::AwsManaged => SseSpecification::builder().enabled(true).sse_type(SseType::Kms).build(),
        TableEncryption::CustomerKey => {
            SseSpecification::builder().enabled(true).sse_type(SseType::Kms).set_kms_master_key_id(key.map(String::from)).build()
        }
    }
}

fn key_of(elements: &[KeySchemaElement], defs: &[AttributeDefinition], kind: KeyType) -> Option<KeyAttribute> {
    let name = elements.iter().find(|k| *k.key_type() == kind)?.attribute_name().to_string();
    let type_ = match defs.iter().find(|d| d.attribute_name() == name)?.attribute_type() {
        ScalarAttributeType::N => AttributeType::N,
        ScalarAttributeType::B => AttributeType::B,
        _ => AttributeType::S,
    };
    Some(KeyAttribute { name, type_ })
}

/// Provisioned capacity, or None for on demand (DynamoDB reports 0/0 there).
fn capacity_of(read: Option<i64>, write: Option<i64>) -> Option<Capacity> {
    match (read.unwrap_or(0), write.unwrap_or(0)) {
        (0, 0) => None,
        (read, write) => Some(Capacity { read, write }),
    }
}

#[async_trait]
impl Dynamo for SdkDynamo {
    async fn describe_table(&self, name: &str) -> Result<Option<ObservedTable>, AwsError> {
        let out = self.sdk("DescribeTable", |c| c.describe_table().table_name(name).send()).await;
        let table = match out {
            Ok(o) => match o.table {
                Some(t) => t,
                None => return Ok(None),
            },
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let defs = table.attribute_definitions();
        let billing = match table.billing_mode_summary().and_then(|b| b.billing_mode()) {
            Some(BillingMode::PayPerRequest) => Billing::OnDemand,
            // Tables created before on-demand existed report no summary: provisioned.
            _ => Billing::Provisioned,
        };
        let pt = table.provisioned_throughput();
        let mut observed = ObservedTable {
            name: name.to_string(),
            arn: table.table_arn().unwrap_or_default().to_string(),
            status: table.table_status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            partition_key: key_of(table.key_schema(), defs, KeyType::Hash),
            sort_key: key_of(table.key_schema(), defs, KeyType::Range),
            billing,
            capacity: capacity_of(pt.and_then(|p| p.read_capacity_units()), pt.and_then(|p| p.write_capacity_units())),
            indexes: table
                .global_secondary_indexes()
                .iter()
                .map(|g| {
                    let p = g.projection();
                    let mut non_key: Vec<String> = p.map(|p| p.non_key_attributes().to_vec()).unwrap_or_default();
                    non_key.sort();
                    let gpt = g.provisioned_throughput();
                    ObservedIndex {
                        name: g.index_name().unwrap_or_default().to_string(),
                        partition_key: key_of(g.key_schema(), defs, KeyType::Hash),
                        sort_key: key_of(g.key_schema(), defs, KeyType::Range),
                        projection: match p.and_then(|p| p.projection_type()) {
                            Some(ProjectionType::KeysOnly) => Projection::KeysOnly,
                            Some(ProjectionType::Include) => Projection::Include,
                            _ => Projection::All,
                        },
                        non_key_attributes: non_key,
                        capacity: capacity_of(gpt.and_then(|p| p.read_capacity_units()), gpt.and_then(|p| p.write_capacity_units())),
                        status: g.index_status().map(|s| s.as_str().to_string()).unwrap_or_else(|| "ACTIVE".into()),
                    }
                })
                .collect(),
            point_in_time_recovery: false,
            ttl: None,
            encryption: TableEncryption::AwsOwned,
            kms_key_arn: None,
            deletion_protection: table.deletion_protection_enabled().unwrap_or(false),
            stream: table.stream_specification().filter(|s| s.stream_enabled()).and_then(|s| s.stream_view_type()).map(|v| match v {
                StreamViewType::KeysOnly => StreamView::KeysOnly,
                StreamViewType::NewImage => StreamView::NewImage,
                StreamViewType::OldImage => StreamView::OldImage,
                _ => StreamView::NewAndOldImages,
            }),
            stream_arn: table.latest_stream_arn().map(String::from),
            tags: BTreeMap::new(),
        };
        if let Some(s) = table.sse_description() {
            if matches!(s.status(), Some(SseStatus::Enabled | SseStatus::Enabling | SseStatus::Updating))
                && s.sse_type() == Some(&SseType::Kms)
            {
                observed.encryption = TableEncryption::AwsManaged;
                observed.kms_key_arn = s.kms_master_key_arn().map(String::from);
            }
        }
        if observed.stream.is_none() {
            observed.stream_arn = None;
        }
        let backups = self.sdk("DescribeContinuousBackups", |c| c.describe_continuous_backups().table_name(name).send()).await;
        match backups {
            Ok(b) => {
                observed.point_in_time_recovery = b
                    .continuous_backups_description()
                    .and_then(|d| d.point_in_time_recovery_description())
                    .and_then(|p| p.point_in_time_recovery_status())
                    == Some(&PointInTimeRecoveryStatus::Enabled)
            }
            // Gone between the two reads.
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let ttl = self.sdk("DescribeTimeToLive", |c| c.describe_time_to_live().table_name(name).send()).await;
        match ttl {
            Ok(t) => {
                observed.ttl = t.time_to_live_description().and_then(|d| {
                    Some((d.attribute_name()?.to_string(), d.time_to_live_status().map(|s| s.as_str().to_string()).unwrap_or_default()))
                })
            }
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        }
        let arn = observed.arn.clone();
        let mut token: Option<String> = None;
        // A table holds at most 50 tags: one page, a second at most.
        for _ in 0..10 {
            let out =
                self.sdk("ListTagsOfResource", |c| c.list_tags_of_resource().resource_arn(&arn).set_next_token(token.clone()).send()).await;
            let out = match out {
                Ok(o) => o,
                Err(AwsError::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            observed.tags.extend(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())));
            match out.next_token() {
                Some(t) if !t.is_empty() && token.as_deref() != Some(t) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(Some(observed))
    }

    async fn create_table(&self, spec: &TableSpec, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        const OP: &str = "CreateTable";
        let defs = definitions(OP, spec)?;
        let keys = key_schema(OP, &spec.partition_key, spec.sort_key.as_ref())?;
        let provisioned = spec.billing == Billing::Provisioned;
        let table_pt = match spec.capacity.filter(|_| provisioned) {
            Some(c) => Some(throughput(OP, c)?),
            None => None,
        };
        let mut indexes = vec![];
        for i in &spec.global_secondary_indexes {
            let pt = match index_capacity(spec, i) {
                Some(c) => Some(throughput(OP, c)?),
                None => None,
            };
            indexes.push(built(
                OP,
                GlobalSecondaryIndex::builder()
                    .index_name(&i.name)
                    .set_key_schema(Some(key_schema(OP, &i.partition_key, i.sort_key.as_ref())?))
                    .projection(projection(i))
                    .set_provisioned_throughput(pt)
                    .build(),
            )?);
        }
        let tag_list: Vec<Tag> = tags.iter().map(|(k, v)| built(OP, Tag::builder().key(k).value(v).build())).collect::<Result<_, _>>()?;
        let stream = match spec.stream {
            Some(v) => Some(stream_spec(OP, Some(v))?),
            None => None,
        };
        let r = self
            .sdk(OP, |c| {
                c.create_table()
                    .table_name(&spec.name)
                    .set_attribute_definitions(Some(defs.clone()))
                    .set_key_schema(Some(keys.clone()))
                    .billing_mode(if provisioned { BillingMode::Provisioned } else { BillingMode::PayPerRequest })
                    .set_provisioned_throughput(table_pt.clone())
                    .set_global_secondary_indexes((!indexes.is_empty()).then(|| indexes.clone()))
                    .set_stream_specification(stream.clone())
                    .sse_specification(sse(spec.encryption, spec.kms_key_id.as_deref()))
                    .deletion_protection_enabled(spec.deletion_protection)
                    .set_tags(Some(tag_list.clone()))
                    .send()
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // A retry after a lost answer meets its own table.
            Err(e @ AwsError::Conflict { .. }) => match self.describe_table(&spec.name).await? {
                Some(t) if t.tags.get(OWNER_TAG) == tags.get(OWNER_TAG) && tags.contains_key(OWNER_TAG) => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn update_table(&self, name: &str, update: &TableUpdate) -> Result<(), AwsError> {
        const OP: &str = "UpdateTable";
        let mut req = self.client.update_table().table_name(name);
        match update {
            TableUpdate::Billing { billing, capacity, indexes } => {
                req = req.billing_mode(match billing {
                    Billing::OnDemand => BillingMode::PayPerRequest,
                    Billing::Provisioned => BillingMode::Provisioned,
                });
                if let Some(c) = capacity {
                    req = req.provisioned_throughput(throughput(OP, *c)?);
                }
                for (index, c) in indexes {
                    let action = built(
                        OP,
                        UpdateGlobalSecondaryIndexAction::builder().index_name(index).provisioned_throughput(throughput(OP, *c)?).build(),
                    )?;
                    req = req.global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().update(action).build());
                }
            }
            TableUpdate::CreateIndex { index, capacity } => {
                let mut defs = vec![];
                for k in [Some(&index.partition_key), index.sort_key.as_ref()].into_iter().flatten() {
                    defs.push(built(OP, AttributeDefinition::builder().attribute_name(&k.name).attribute_type(scalar(k.type_)).build())?);
                }
                let pt = match capacity {
                    Some(c) => Some(throughput(OP, *c)?),
                    None => None,
                };
                let action = built(
                    OP,
                    CreateGlobalSecondaryIndexAction::builder()
                        .index_name(&index.name)
                        .set_key_schema(Some(key_schema(OP, &index.partition_key, index.sort_key.as_ref())?))
                        .projection(projection(index))
                        .set_provisioned_throughput(pt)
                        .build(),
                )?;
                req = req
                    .set_attribute_definitions(Some(defs))
                    .global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().create(action).build());
            }
            TableUpdate::DeleteIndex { name: index } => {
                let action = built(OP, DeleteGlobalSecondaryIndexAction::builder().index_name(index).build())?;
                req = req.global_secondary_index_updates(GlobalSecondaryIndexUpdate::builder().delete(action).build());
            }
            TableUpdate::Stream(v) => req = req.stream_specification(stream_spec(OP, *v)?),
            TableUpdate::Encryption { encryption, kms_key_id } => req = req.sse_specification(sse(*encryption, kms_key_id.as_deref())),
            TableUpdate::DeletionProtection(on) => req = req.deletion_protection_enabled(*on),
        }
        self.sdk(OP, |_| req.clone().send()).await.map(|_| ())
    }

    async fn set_point_in_time_recovery(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        const OP: &str = "UpdateContinuousBackups";
        let spec = built(OP, PointInTimeRecoverySpecification::builder().point_in_time_recovery_enabled(enabled).build())?;
        self.sdk(OP, |c| c.update_continuous_backups().table_name(name).point_in_time_recovery_specification(spec.clone()).send())
            .await
            .map(|_| ())
    }

    async fn set_ttl(&self, name: &str, attribute: &str, enabled: bool) -> Result<(), AwsError> {
        const OP: &str = "UpdateTimeToLive";
        let spec = built(OP, TimeToLiveSpecification::builder().enabled(enabled).attribute_name(attribute).build())?;
        self.sdk(OP, |c| c.update_time_to_live().table_name(name).time_to_live_specification(spec.clone()).send()).await.map(|_| ())
    }

    async fn tag_table(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        const OP: &str = "TagResource";
        let list: Vec<Tag> = tags.iter().map(|(k, v)| built(OP, Tag::builder().key(k).value(v).build())).collect::<Result<_, _>>()?;
        self.sdk(OP, |c| c.tag_resource().resource_arn(arn).set_tags(Some(list.clone())).send()).await.map(|_| ())
    }

    async fn final_backup(&self, table: &str, name: &str) -> Result<BackupState, AwsError> {
        let listed = self.sdk("ListBackups", |c| c.list_backups().table_name(table).send()).await?;
        let prefix = format!("{table}-final-");
        let existing = listed
            .backup_summaries()
            .iter()
            .filter(|b| b.backup_name().is_some_and(|n| n.starts_with(&prefix)))
            .find(|b| b.backup_status() != Some(&BackupStatus::Deleted));
        if let Some(b) = existing {
            let found = b.backup_name().unwrap_or_default().to_string();
            return Ok(if b.backup_status() == Some(&BackupStatus::Available) {
                BackupState::Available(found)
            } else {
                BackupState::Creating(found)
            });
        }
        let created = self.sdk("CreateBackup", |c| c.create_backup().table_name(table).backup_name(name).send()).await?;
        let status = created.backup_details().map(|d| d.backup_status().clone());
        Ok(if status == Some(BackupStatus::Available) { BackupState::Available(name.into()) } else { BackupState::Creating(name.into()) })
    }

    async fn delete_table(&self, name: &str) -> Result<(), AwsError> {
        let r = self.sdk("DeleteTable", |c| c.delete_table().table_name(name).send()).await;
        match r {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
