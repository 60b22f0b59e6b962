//! ElastiCache through aws_sdk_elasticache.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_elasticache::types::{AutomaticFailoverStatus, MultiAzStatus, Tag};

use super::Adapter;
use crate::api::{CacheSpec, OWNER_TAG};
use crate::aws::{AwsError, ElastiCache, Tags};
use crate::core::cache::engine_name;
use crate::core::stack::{CacheModify, ObservedCache, Placement};

adapter!(SdkElastiCache(aws_sdk_elasticache::Client));

fn tags_of(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

#[async_trait]
impl ElastiCache for SdkElastiCache {
    async fn describe_cache(&self, name: &str) -> Result<Option<ObservedCache>, AwsError> {
        let out = self.sdk("DescribeReplicationGroups", |c| c.describe_replication_groups().replication_group_id(name).send()).await;
        let group = match out {
            Ok(o) => match o.replication_groups().first() {
                Some(g) => g.clone(),
                None => return Ok(None),
            },
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let endpoint =
            |e: Option<&aws_sdk_elasticache::types::Endpoint>| e.and_then(|e| Some((e.address()?.to_string(), e.port().unwrap_or(6379))));
        let node_group = group.node_groups().first();
        let mut observed = ObservedCache {
            name: name.to_string(),
            arn: group.arn().unwrap_or_default().to_string(),
            status: group.status().unwrap_or_default().to_string(),
            engine: group.engine().map(String::from),
            engine_version: None,
            node_type: group.cache_node_type().unwrap_or_default().to_string(),
            members: group.member_clusters().to_vec(),
            multi_az: group.multi_az() == Some(&MultiAzStatus::Enabled),
            automatic_failover: matches!(
                group.automatic_failover(),
                Some(AutomaticFailoverStatus::Enabled | AutomaticFailoverStatus::Enabling)
            ),
            at_rest_encryption: group.at_rest_encryption_enabled().unwrap_or(false),
            transit_encryption: group.transit_encryption_enabled().unwrap_or(false),
            auth_token_enabled: group.auth_token_enabled().unwrap_or(false),
            snapshot_retention_days: group.snapshot_retention_limit().unwrap_or(0),
            snapshot_window: group.snapshot_window().map(String::from),
            maintenance_window: None,
            primary_endpoint: endpoint(node_group.and_then(|g| g.primary_endpoint())),
            reader_endpoint: endpoint(node_group.and_then(|g| g.reader_endpoint())),
            tags: BTreeMap::new(),
        };
        // The version and maintenance window live on the member clusters.
        if let Some(member) = observed.members.first().cloned() {
            let cluster = self.sdk("DescribeCacheClusters", |c| c.describe_cache_clusters().cache_cluster_id(&member).send()).await;
            match cluster {
                Ok(o) => {
                    if let Some(c) = o.cache_clusters().first() {
                        observed.engine_version = c.engine_version().map(String::from);
                        observed.maintenance_window = c.preferred_maintenance_window().map(String::from);
                        observed.engine = observed.engine.or_else(|| c.engine().map(String::from));
                    }
                }
                // A member being replaced: judged without its fields this time.
                Err(AwsError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !observed.arn.is_empty() {
            let arn = observed.arn.clone();
            let tags = self.sdk("ListTagsForResource", |c| c.list_tags_for_resource().resource_name(&arn).send()).await?;
            observed.tags = tags
                .tag_list()
                .iter()
                .map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string()))
                .collect();
        }
        Ok(Some(observed))
    }

    async fn ensure_cache_subnet_group(&self, placement: &Placement, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let name = placement.subnet_group.as_str();
        let found = self
            .sdk("DescribeCacheSubnetGroups", |c| c.describe_cache_subnet_groups().cache_subnet_group_name(name).send())
            .await
            .map(|o| {
                o.cache_subnet_groups()
                    .first()
                    .map(|g| g.subnets().iter().filter_map(|s| s.subnet_identifier().map(String::from)).collect())
            });
        let create = |description: String| async move {
            self.sdk("CreateCacheSubnetGroup", |c| {
                c.create_cache_subnet_group()
                    .cache_subnet_group_name(name)
                    .cache_subnet_group_description(&description)
                    .set_subnet_ids(Some(placement.subnets.clone()))
                    .set_tags(Some(tags_of(tags)))
                    .send()
            })
            .await
            .map(|_| ())
        };
        let modify = || async {
            self.sdk("ModifyCacheSubnetGroup", |c| {
                c.modify_cache_subnet_group().cache_subnet_group_name(name).set_subnet_ids(Some(placement.subnets.clone())).send()
            })
            .await
            .map(|_| ())
        };
        super::ensure_subnet_group(placement, found, create, modify).await
    }

    async fn create_cache(&self, spec: &CacheSpec, tags: &Tags, placement: Option<&Placement>, auth: Option<&str>) -> Result<(), AwsError> {
        let failover = spec.replicas > 0;
        let r = self
            .sdk("CreateReplicationGroup", |c| {
                c.create_replication_group()
                    .replication_group_id(&spec.name)
                    .replication_group_description(format!("shipshape: {}", tags.get(OWNER_TAG).map(String::as_str).unwrap_or("")))
                    .engine(engine_name(spec.engine))
                    .engine_version(&spec.engine_version)
                    .cache_node_type(&spec.node_type)
                    .num_cache_clusters(spec.replicas.saturating_add(1))
                    .automatic_failover_enabled(failover)
                    .multi_az_enabled(spec.multi_az)
                    .at_rest_encryption_enabled(spec.at_rest_encryption)
                    .transit_encryption_enabled(spec.transit_encryption)
                    .set_auth_token(auth.map(String::from))
                    .snapshot_retention_limit(spec.snapshot_retention_days)
                    .set_snapshot_window(spec.snapshot_window.clone())
                    .set_preferred_maintenance_window(spec.maintenance_window.clone())
                    .set_cache_subnet_group_name(placement.map(|p| p.subnet_group.clone()))
                    .set_security_group_ids(placement.map(|p| p.security_groups.clone()).filter(|g| !g.is_empty()))
                    .set_tags(Some(tags_of(tags)))
                    .send()
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // A retry after a lost answer meets its own group.
            Err(e @ AwsError::Conflict { .. }) => match self.describe_cache(&spec.name).await? {
                Some(c) if tags.contains_key(OWNER_TAG) && c.tags.get(OWNER_TAG) == tags.get(OWNER_TAG) => Ok(()),
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn modify_cache(&self, name: &str, m: &CacheModify) -> Result<(), AwsError> {
        self.sdk("ModifyReplicationGroup", |c| {
            c.modify_replication_group()
                .replication_group_id(name)
                .apply_immediately(true)
                .set_cache_node_type(m.node_type.clone())
                .set_engine(m.engine.clone())
                .set_engine_version(m.engine_version.clone())
                .set_multi_az_enabled(m.multi_az)
                .set_automatic_failover_enabled(m.automatic_failover)
                .set_snapshot_retention_limit(m.snapshot_retention_days)
                .set_snapshot_window(m.snapshot_window.clone())
                .set_preferred_maintenance_window(m.maintenance_window.clone())
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn set_cache_replicas(&self, name: &str, replicas: i32, current: i32) -> Result<(), AwsError> {
        if replicas > current {
            self.sdk("IncreaseReplicaCount", |c| {
                c.increase_replica_count().replication_group_id(name).new_replica_count(replicas).apply_immediately(true).send()
            })
            .await
            .map(|_| ())
        } else {
            self.sdk("DecreaseReplicaCount", |c| {
                c.decrease_replica_count().replication_group_id(name).new_replica_count(replicas).apply_immediately(true).send()
            })
            .await
            .map(|_| ())
        }
    }

    async fn tag_cache(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.sdk("AddTagsToResource", |c| c.add_tags_to_resource().resource_name(arn).set_tags(Some(tags_of(tags))).send())
            .await
            .map(|_| ())
    }

    async fn delete_cache(&self, name: &str, final_snapshot: Option<&str>) -> Result<(), AwsError> {
        let r = self
            .sdk("DeleteReplicationGroup", |c| {
                c.delete_replication_group()
                    .replication_group_id(name)
                    .set_final_snapshot_identifier(final_snapshot.map(String::from))
                    .send()
            })
            .await;
        match r {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
