//! Lambda through aws_sdk_lambda.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_lambda::types::{AliasRoutingConfiguration, Architecture, Environment, FunctionCode, PackageType, Runtime};

use super::map_err;
use crate::aws::{AwsError, Caller, FunctionConfig, Lambda, ObservedAlias, ObservedFunction};

pub(super) struct SdkLambda {
    client: aws_sdk_lambda::Client,
    caller: Caller,
}

impl SdkLambda {
    pub(super) fn new(conf: &aws_config::SdkConfig, caller: Caller) -> Self {
        SdkLambda { client: aws_sdk_lambda::Client::new(conf), caller }
    }
}

fn architecture(a: &str) -> Architecture {
    if a == "arm64" {
        Architecture::Arm64
    } else {
        Architecture::X8664
    }
}

fn environment(env: &BTreeMap<String, String>) -> Environment {
    Environment::builder().set_variables(Some(env.iter().map(|(k, v)| (k.clone(), v.clone())).collect())).build()
}

#[async_trait]
impl Lambda for SdkLambda {
    async fn get_function(&self, name: &str) -> Result<Option<ObservedFunction>, AwsError> {
        let out = self
            .caller
            .call("GetFunction", || async {
                self.client.get_function().function_name(name).send().await.map_err(|e| map_err("GetFunction", e))
            })
            .await;
        let out = match out {
            Ok(o) => o,
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(c) = out.configuration() else { return Ok(None) };
        Ok(Some(ObservedFunction {
            arn: c.function_arn().unwrap_or_default().to_string(),
            tags: out.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            description: c.description().unwrap_or_default().to_string(),
            last_update_status: c.last_update_status().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Successful".into()),
            state: c.state().map(|s| s.as_str().to_string()).unwrap_or_else(|| "Active".into()),
            reserved_concurrency: out.concurrency().and_then(|c| c.reserved_concurrent_executions()),
        }))
    }

    async fn create_function(&self, config: &FunctionConfig, description: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let code = match (&config.s3, &config.image) {
            (Some((bucket, key)), _) => FunctionCode::builder().s3_bucket(bucket).s3_key(key).build(),
            (None, image) => FunctionCode::builder().set_image_uri(image.clone()).build(),
        };
        let r = self
            .caller
            .call("CreateFunction", || async {
                self.client
                    .create_function()
                    .function_name(&config.name)
                    .role(&config.role_arn)
                    .code(code.clone())
                    .package_type(if config.s3.is_some() { PackageType::Zip } else { PackageType::Image })
                    .set_runtime(config.runtime.as_deref().map(Runtime::from))
                    .set_handler(config.handler.clone())
                    .memory_size(config.memory)
                    .timeout(config.timeout_seconds)
                    .architectures(architecture(&config.architecture))
                    .environment(environment(&config.env))
                    .description(description)
                    .set_tags(Some(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
                    .send()
                    .await
                    .map_err(|e| map_err("CreateFunction", e))
            })
            .await;
        match r {
            Ok(_) => Ok(()),
            // A retry after a lost answer meets its own function.
            Err(e @ AwsError::Conflict { .. }) => match self.get_function(&config.name).await? {
                Some(f)
                    if f.tags.contains_key(crate::api::OWNER_TAG)
                        && f.tags.get(crate::api::OWNER_TAG) == tags.get(crate::api::OWNER_TAG) =>
                {
                    Ok(())
                }
                _ => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    async fn update_function(&self, config: &FunctionConfig, description: &str) -> Result<(), AwsError> {
        self.caller
            .call("UpdateFunctionCode", || async {
                let req = self.client.update_function_code().function_name(&config.name).architectures(architecture(&config.architecture));
                let req = match (&config.s3, &config.image) {
                    (Some((bucket, key)), _) => req.s3_bucket(bucket).s3_key(key),
                    (None, image) => req.set_image_uri(image.clone()),
                };
                req.send().await.map_err(|e| map_err("UpdateFunctionCode", e))
            })
            .await?;
        // Lambda takes no configuration change while the code update is in progress: a
        // conflict here is retried by the next reconcile (the description still differs).
        self.caller
            .call("UpdateFunctionConfiguration", || async {
                self.client
                    .update_function_configuration()
                    .function_name(&config.name)
                    .role(&config.role_arn)
                    .set_runtime(config.runtime.as_deref().map(Runtime::from))
                    .set_handler(config.handler.clone())
                    .memory_size(config.memory)
                    .timeout(config.timeout_seconds)
                    .environment(environment(&config.env))
                    .description(description)
                    .send()
                    .await
                    .map_err(|e| map_err("UpdateFunctionConfiguration", e))
            })
            .await
            .map(|_| ())
    }

    async fn find_version(&self, name: &str, description: &str) -> Result<Option<String>, AwsError> {
        let mut marker: Option<String> = None;
        // 50 versions a page; a function keeps at most a few hundred in practice.
        for _ in 0..100 {
            let out = self
                .caller
                .call("ListVersionsByFunction", || async {
                    self.client
                        .list_versions_by_function()
                        .function_name(name)
                        .set_marker(marker.clone())
                        .send()
                        .await
                        .map_err(|e| map_err("ListVersionsByFunction", e))
                })
                .await?;
            if let Some(v) = out.versions().iter().find(|v| v.version() != Some("$LATEST") && v.description() == Some(description)) {
                return Ok(v.function_arn().map(String::from));
            }
            match out.next_marker() {
                Some(m) if !m.is_empty() && marker.as_deref() != Some(m) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(None)
    }

    async fn publish_version(&self, name: &str, description: &str) -> Result<String, AwsError> {
        let out = self
            .caller
            .call("PublishVersion", || async {
                self.client
                    .publish_version()
                    .function_name(name)
                    .description(description)
                    .send()
                    .await
                    .map_err(|e| map_err("PublishVersion", e))
            })
            .await?;
        Ok(out.function_arn().unwrap_or_default().to_string())
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ObservedAlias>, AwsError> {
        let out = self
            .caller
            .call("GetAlias", || async {
                self.client.get_alias().function_name(name).name(alias).send().await.map_err(|e| map_err("GetAlias", e))
            })
            .await;
        match out {
            Ok(a) => Ok(Some(ObservedAlias {
                arn: a.alias_arn().unwrap_or_default().to_string(),
                version: a.function_version().unwrap_or_default().to_string(),
                weights: a
                    .routing_config()
                    .and_then(|r| r.additional_version_weights())
                    .map(|w| w.iter().map(|(k, v)| (k.clone(), *v)).collect())
                    .unwrap_or_default(),
            })),
            Err(AwsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn set_alias(&self, name: &str, alias: &str, version: &str, create: bool) -> Result<(), AwsError> {
        if create {
            return self
                .caller
                .call("CreateAlias", || async {
                    self.client
                        .create_alias()
                        .function_name(name)
                        .name(alias)
                        .function_version(version)
                        .send()
                        .await
                        .map_err(|e| map_err("CreateAlias", e))
                })
                .await
                .map(|_| ());
        }
        self.caller
            .call("UpdateAlias", || async {
                self.client
                    .update_alias()
                    .function_name(name)
                    .name(alias)
                    .function_version(version)
                    // All traffic on the version: no weighted routing left behind.
                    .routing_config(AliasRoutingConfiguration::builder().set_additional_version_weights(Some(Default::default())).build())
                    .send()
                    .await
                    .map_err(|e| map_err("UpdateAlias", e))
            })
            .await
            .map(|_| ())
    }

    async fn route_alias(&self, name: &str, alias: &str, stable: &str, version: &str, weight: f64) -> Result<(), AwsError> {
        let weights = std::collections::HashMap::from([(version.to_string(), weight)]);
        self.caller
            .call("UpdateAlias", || async {
                self.client
                    .update_alias()
                    .function_name(name)
                    .name(alias)
                    .function_version(stable)
                    .routing_config(AliasRoutingConfiguration::builder().set_additional_version_weights(Some(weights.clone())).build())
                    .send()
                    .await
                    .map_err(|e| map_err("UpdateAlias", e))
            })
            .await
            .map(|_| ())
    }

    async fn get_provisioned_concurrency(&self, name: &str, qualifier: &str) -> Result<Option<(i32, String)>, AwsError> {
        let out = self
            .caller
            .call("GetProvisionedConcurrencyConfig", || async {
                self.client
                    .get_provisioned_concurrency_config()
                    .function_name(name)
                    .qualifier(qualifier)
                    .send()
                    .await
                    .map_err(|e| map_err("GetProvisionedConcurrencyConfig", e))
            })
            .await;
        match out {
            Ok(c) => Ok(Some((
                c.requested_provisioned_concurrent_executions().unwrap_or(0),
                c.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
            ))),
            Err(AwsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn set_provisioned_concurrency(&self, name: &str, qualifier: &str, n: Option<i32>) -> Result<(), AwsError> {
        match n {
            Some(n) => self
                .caller
                .call("PutProvisionedConcurrencyConfig", || async {
                    self.client
                        .put_provisioned_concurrency_config()
                        .function_name(name)
                        .qualifier(qualifier)
                        .provisioned_concurrent_executions(n)
                        .send()
                        .await
                        .map_err(|e| map_err("PutProvisionedConcurrencyConfig", e))
                })
                .await
                .map(|_| ()),
            None => {
                let r = self
                    .caller
                    .call("DeleteProvisionedConcurrencyConfig", || async {
                        self.client
                            .delete_provisioned_concurrency_config()
                            .function_name(name)
                            .qualifier(qualifier)
                            .send()
                            .await
                            .map_err(|e| map_err("DeleteProvisionedConcurrencyConfig", e))
                    })
                    .await;
                match r {
                    Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn delete_function(&self, name: &str) -> Result<(), AwsError> {
        let r = self
            .caller
            .call("DeleteFunction", || async {
                self.client.delete_function().function_name(name).send().await.map_err(|e| map_err("DeleteFunction", e))
            })
            .await;
        match r {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_reserved_concurrency(&self, name: &str, reserved: Option<i32>) -> Result<(), AwsError> {
        match reserved {
            Some(n) => self
                .caller
                .call("PutFunctionConcurrency", || async {
                    self.client
                        .put_function_concurrency()
                        .function_name(name)
                        .reserved_concurrent_executions(n)
                        .send()
                        .await
                        .map_err(|e| map_err("PutFunctionConcurrency", e))
                })
                .await
                .map(|_| ()),
            None => self
                .caller
                .call("DeleteFunctionConcurrency", || async {
                    self.client
                        .delete_function_concurrency()
                        .function_name(name)
                        .send()
                        .await
                        .map_err(|e| map_err("DeleteFunctionConcurrency", e))
                })
                .await
                .map(|_| ()),
        }
    }

    async fn tag_function(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.caller
            .call("TagResource", || async {
                self.client
                    .tag_resource()
                    .resource(arn)
                    .set_tags(Some(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()))
                    .send()
                    .await
                    .map_err(|e| map_err("TagResource", e))
            })
            .await
            .map(|_| ())
    }
}
