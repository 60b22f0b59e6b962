//! Lambda through aws_sdk_lambda.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_lambda::operation::RequestId;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{
    AliasRoutingConfiguration, Architecture, Environment, FunctionCode, InvocationType, LogType, PackageType, Runtime,
};

use super::Adapter;
use crate::aws::{AwsError, FunctionConfig, Invoked, Lambda, ObservedAlias, ObservedFunction};

adapter!(SdkLambda(aws_sdk_lambda::Client));

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
    async fn invoke(&self, name: &str, qualifier: &str, payload: &str) -> Result<Invoked, AwsError> {
        let out = self
            .sdk("Invoke", |c| {
                c.invoke()
                    .function_name(name)
                    .qualifier(qualifier)
                    .invocation_type(InvocationType::RequestResponse)
                    .log_type(LogType::Tail)
                    .payload(Blob::new(payload.as_bytes()))
                    .send()
            })
            .await?;
        let log = out.log_result().map(|l| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, l).unwrap_or_default());
        let log_tail = log
            .map(|l| String::from_utf8_lossy(&l).lines().filter(|l| !l.trim().is_empty()).map(String::from).collect::<Vec<_>>())
            .unwrap_or_default();
        Ok(Invoked {
            request_id: out.request_id().map(String::from),
            function_error: out.function_error().map(String::from),
            payload: out.payload().map(|p| String::from_utf8_lossy(p.as_ref()).chars().take(1000).collect()).unwrap_or_default(),
            log_tail,
        })
    }

    async fn get_function(&self, name: &str) -> Result<Option<ObservedFunction>, AwsError> {
        let out = self.sdk("GetFunction", |c| c.get_function().function_name(name).send()).await;
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
            .sdk("CreateFunction", |c| {
                c.create_function()
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
        self.sdk("UpdateFunctionCode", |c| {
            let req = c.update_function_code().function_name(&config.name).architectures(architecture(&config.architecture));
            let req = match (&config.s3, &config.image) {
                (Some((bucket, key)), _) => req.s3_bucket(bucket).s3_key(key),
                (None, image) => req.set_image_uri(image.clone()),
            };
            req.send()
        })
        .await?;
        // Lambda takes no configuration change while the code update is in progress: a
        // conflict here is retried by the next reconcile (the description still differs).
        self.sdk("UpdateFunctionConfiguration", |c| {
            c.update_function_configuration()
                .function_name(&config.name)
                .role(&config.role_arn)
                .set_runtime(config.runtime.as_deref().map(Runtime::from))
                .set_handler(config.handler.clone())
                .memory_size(config.memory)
                .timeout(config.timeout_seconds)
                .environment(environment(&config.env))
                .description(description)
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn find_version(&self, name: &str, description: &str) -> Result<Option<String>, AwsError> {
        let mut marker: Option<String> = None;
        // 50 versions a page; a function keeps at most a few hundred in practice.
        for _ in 0..100 {
            let out = self
                .sdk("ListVersionsByFunction", |c| c.list_versions_by_function().function_name(name).set_marker(marker.clone()).send())
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
        let out = self.sdk("PublishVersion", |c| c.publish_version().function_name(name).description(description).send()).await?;
        Ok(out.function_arn().unwrap_or_default().to_string())
    }

    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ObservedAlias>, AwsError> {
        let out = self.sdk("GetAlias", |c| c.get_alias().function_name(name).name(alias).send()).await;
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
                .sdk("CreateAlias", |c| c.create_alias().function_name(name).name(alias).function_version(version).send())
                .await
                .map(|_| ());
        }
        self.sdk("UpdateAlias", |c| {
            c.update_alias()
                .function_name(name)
                .name(alias)
                .function_version(version)
                // All traffic on the version: no weighted routing left behind.
                .routing_config(AliasRoutingConfiguration::builder().set_additional_version_weights(Some(Default::default())).build())
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn route_alias(&self, name: &str, alias: &str, stable: &str, version: &str, weight: f64) -> Result<(), AwsError> {
        let weights = std::collections::HashMap::from([(version.to_string(), weight)]);
        self.sdk("UpdateAlias", |c| {
            c.update_alias()
                .function_name(name)
                .name(alias)
                .function_version(stable)
                .routing_config(AliasRoutingConfiguration::builder().set_additional_version_weights(Some(weights.clone())).build())
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn get_provisioned_concurrency(&self, name: &str, qualifier: &str) -> Result<Option<(i32, String)>, AwsError> {
        let out = self
            .sdk("GetProvisionedConcurrencyConfig", |c| {
                c.get_provisioned_concurrency_config().function_name(name).qualifier(qualifier).send()
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
                .sdk("PutProvisionedConcurrencyConfig", |c| {
                    c.put_provisioned_concurrency_config()
                        .function_name(name)
                        .qualifier(qualifier)
                        .provisioned_concurrent_executions(n)
                        .send()
                })
                .await
                .map(|_| ()),
            None => {
                let r = self
                    .sdk("DeleteProvisionedConcurrencyConfig", |c| {
                        c.delete_provisioned_concurrency_config().function_name(name).qualifier(qualifier).send()
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
        let r = self.sdk("DeleteFunction", |c| c.delete_function().function_name(name).send()).await;
        match r {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn set_reserved_concurrency(&self, name: &str, reserved: Option<i32>) -> Result<(), AwsError> {
        match reserved {
            Some(n) => self
                .sdk("PutFunctionConcurrency", |c| {
                    c.put_function_concurrency().function_name(name).reserved_concurrent_executions(n).send()
                })
                .await
                .map(|_| ()),
            None => self.sdk("DeleteFunctionConcurrency", |c| c.delete_function_concurrency().function_name(name).send()).await.map(|_| ()),
        }
    }

    async fn tag_function(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.sdk("TagResource", |c| {
            c.tag_resource().resource(arn).set_tags(Some(tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect())).send()
        })
        .await
        .map(|_| ())
    }
}
