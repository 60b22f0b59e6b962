//! ECS through aws_sdk_ecs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName, Tag};

use super::map_err;
use crate::aws::{AwsError, Caller, Ecs, NewCluster};
use crate::core::environment::ObservedCluster;

pub(super) struct SdkEcs {
    client: aws_sdk_ecs::Client,
    caller: Caller,
}

impl SdkEcs {
    pub(super) fn new(conf: &aws_config::SdkConfig, caller: Caller) -> Self {
        SdkEcs {
            client: aws_sdk_ecs::Client::new(conf),
            caller,
        }
    }
}

fn tags_of(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

#[async_trait]
impl Ecs for SdkEcs {
    async fn describe_cluster(&self, name: &str) -> Result<Option<ObservedCluster>, AwsError> {
        let out = self
            .caller
            .call("DescribeClusters", || async {
                self.client
                    .describe_clusters()
                    .clusters(name)
                    .include(ClusterField::Tags)
                    .include(ClusterField::Settings)
                    .send()
                    .await
                    .map_err(|e| map_err("DescribeClusters", e))
            })
            .await?;
        let Some(c) = out.clusters().first() else {
            return Ok(None);
        };
        Ok(Some(ObservedCluster {
            arn: c.cluster_arn().unwrap_or_default().to_string(),
            status: c.status().unwrap_or_default().to_string(),
            tags: c
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect(),
            capacity_providers: c.capacity_providers().to_vec(),
            container_insights: c
                .settings()
                .iter()
                .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
                .and_then(|s| s.value().map(String::from)),
        }))
    }

    async fn create_cluster(&self, cluster: &NewCluster) -> Result<String, AwsError> {
        let out = self
            .caller
            .call("CreateCluster", || async {
                let mut req = self
                    .client
                    .create_cluster()
                    .cluster_name(&cluster.name)
                    .set_tags(Some(tags_of(&cluster.tags)));
                if !cluster.capacity_providers.is_empty() {
                    req = req.set_capacity_providers(Some(cluster.capacity_providers.clone()));
                }
                if let Some(v) = &cluster.container_insights {
                    req = req.settings(
                        ClusterSetting::builder()
                            .name(ClusterSettingName::ContainerInsights)
                            .value(v)
                            .build(),
                    );
                }
                req.send().await.map_err(|e| map_err("CreateCluster", e))
            })
            .await?;
        Ok(out
            .cluster()
            .and_then(|c| c.cluster_arn())
            .unwrap_or_default()
            .to_string())
    }

    async fn tag_resource(
        &self,
        arn: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), AwsError> {
        self.caller
            .call("TagResource", || async {
                self.client
                    .tag_resource()
                    .resource_arn(arn)
                    .set_tags(Some(tags_of(tags)))
                    .send()
                    .await
                    .map_err(|e| map_err("TagResource", e))
            })
            .await
            .map(|_| ())
    }

    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.caller
            .call("UntagResource", || async {
                self.client
                    .untag_resource()
                    .resource_arn(arn)
                    .set_tag_keys(Some(keys.to_vec()))
                    .send()
                    .await
                    .map_err(|e| map_err("UntagResource", e))
            })
            .await
            .map(|_| ())
    }

    async fn put_capacity_providers(
        &self,
        cluster: &str,
        providers: &[String],
    ) -> Result<(), AwsError> {
        self.caller
            .call("PutClusterCapacityProviders", || async {
                self.client
                    .put_cluster_capacity_providers()
                    .cluster(cluster)
                    .set_capacity_providers(Some(providers.to_vec()))
                    .set_default_capacity_provider_strategy(Some(vec![]))
                    .send()
                    .await
                    .map_err(|e| map_err("PutClusterCapacityProviders", e))
            })
            .await
            .map(|_| ())
    }

    async fn set_container_insights(&self, cluster: &str, value: &str) -> Result<(), AwsError> {
        self.caller
            .call("UpdateClusterSettings", || async {
                self.client
                    .update_cluster_settings()
                    .cluster(cluster)
                    .settings(
                        ClusterSetting::builder()
                            .name(ClusterSettingName::ContainerInsights)
                            .value(value)
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(|e| map_err("UpdateClusterSettings", e))
            })
            .await
            .map(|_| ())
    }

    async fn delete_cluster(&self, cluster: &str) -> Result<(), AwsError> {
        self.caller
            .call("DeleteCluster", || async {
                self.client
                    .delete_cluster()
                    .cluster(cluster)
                    .send()
                    .await
                    .map_err(|e| map_err("DeleteCluster", e))
            })
            .await
            .map(|_| ())
    }
}
