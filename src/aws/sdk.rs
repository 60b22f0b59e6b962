//! The AWS SDK adapter: the only file that imports the AWS SDK service crates.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{retry::RetryConfig, BehaviorVersion, Region};
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::types::{ClusterField, ClusterSetting, ClusterSettingName, Tag};
use tokio::sync::Mutex;

use super::{AwsClients, AwsError, AwsProvider, Caller, Ecs, NewCluster, Sts, Target};
use crate::core::environment::ObservedCluster;
use crate::metrics::Metrics;

/// Maps an SDK error to a domain error by its AWS error code and HTTP status.
fn map_err<E, R>(op: &'static str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = match &err {
        SdkError::ServiceError(ctx) => (
            ctx.err().code().unwrap_or("").to_string(),
            ctx.err().message().unwrap_or("").to_string(),
        ),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return AwsError::Transient {
                op,
                message: format!("{err}"),
            }
        }
        other => (
            other.code().unwrap_or("").to_string(),
            format!("{}", aws_sdk_ecs::error::DisplayErrorContext(other)),
        ),
    };
    let message = if message.is_empty() {
        code.clone()
    } else {
        message
    };
    match code.as_str() {
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "ExpiredToken" => AwsError::AccessDenied { op, message },
        "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "RequestLimitExceeded"
        | "SlowDown"
        | "RequestThrottled" => AwsError::Throttled { op, message },
        "ClusterNotFoundException" | "ResourceNotFoundException" | "NotFoundException" => {
            AwsError::NotFound { op, message }
        }
        "ClusterContainsServicesException"
        | "ClusterContainsTasksException"
        | "ClusterContainsContainerInstancesException"
        | "ResourceInUseException"
        | "UpdateInProgressException" => AwsError::Conflict { op, message },
        "InvalidParameterException"
        | "ClientException"
        | "ValidationException"
        | "InvalidParameterValue" => AwsError::Invalid { op, message },
        _ => AwsError::Transient {
            op,
            message: format!("{code} {message}").trim().to_string(),
        },
    }
}

struct SdkEcs {
    client: aws_sdk_ecs::Client,
    caller: Caller,
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

struct SdkSts {
    client: aws_sdk_sts::Client,
    caller: Caller,
}

#[async_trait]
impl Sts for SdkSts {
    async fn caller_account(&self) -> Result<String, AwsError> {
        let out = self
            .caller
            .call("GetCallerIdentity", || async {
                self.client
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| map_err("GetCallerIdentity", e))
            })
            .await?;
        Ok(out.account().unwrap_or_default().to_string())
    }
}

/// Builds SDK clients from the standard credential chain (IRSA in a cluster), one set per
/// Environment, honouring `AWS_ENDPOINT_URL` through the SDK's own configuration.
pub struct SdkProvider {
    metrics: Metrics,
    per_second: u32,
    cache: Mutex<HashMap<Target, AwsClients>>,
}

impl SdkProvider {
    /// A provider allowing `per_second` calls per environment and service.
    pub fn new(metrics: Metrics, per_second: u32) -> Self {
        SdkProvider {
            metrics,
            per_second,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl AwsProvider for SdkProvider {
    async fn clients(&self, target: &Target) -> Result<AwsClients, AwsError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.get(target) {
            return Ok(c.clone());
        }
        // A changed region or role makes a new entry; drop the environment's old one.
        cache.retain(|t, _| t.environment != target.environment);
        let region = Region::new(target.region.clone());
        // Retries happen in `Caller`, where they are rate limited and counted.
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(region.clone())
            .retry_config(RetryConfig::disabled());
        if let Some(role) = &target.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("shipshape")
                .region(region)
                .build()
                .await;
            loader = loader.credentials_provider(provider);
        }
        let conf = loader.load().await;
        let clients = AwsClients {
            ecs: Arc::new(SdkEcs {
                client: aws_sdk_ecs::Client::new(&conf),
                caller: Caller::new("ecs", self.per_second, self.metrics.clone()),
            }),
            sts: Arc::new(SdkSts {
                client: aws_sdk_sts::Client::new(&conf),
                caller: Caller::new("sts", self.per_second, self.metrics.clone()),
            }),
        };
        cache.insert(target.clone(), clients.clone());
        Ok(clients)
    }
}
