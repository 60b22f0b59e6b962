//! The AWS SDK adapters: the only files that import the AWS SDK service crates
//! (`aws_sdk_ecs` in ecs.rs, `aws_sdk_rds` in rds.rs, `aws_sdk_s3` in s3.rs, STS here).

mod ecs;
mod rds;
mod s3;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{retry::RetryConfig, BehaviorVersion, Region};
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;

use super::{AwsClients, AwsError, AwsProvider, Caller, Sts, Target};
use crate::metrics::Metrics;

/// Maps an SDK error to a domain error by its AWS error code and HTTP status.
pub(crate) fn map_err<E, R>(op: &'static str, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = match &err {
        SdkError::ServiceError(ctx) => (ctx.err().code().unwrap_or("").to_string(), ctx.err().message().unwrap_or("").to_string()),
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => return AwsError::Transient { op, message: format!("{err}") },
        other => (other.code().unwrap_or("").to_string(), format!("{}", aws_sdk_sts::error::DisplayErrorContext(other))),
    };
    let message = match (code.is_empty(), message.is_empty()) {
        (_, true) => code.clone(),
        (true, false) => message,
        (false, false) => format!("{code}: {message}"),
    };
    match code.as_str() {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" | "UnrecognizedClientException" | "InvalidClientTokenId" | "ExpiredToken" | "AllAccessDisabled" => {
            AwsError::AccessDenied { op, message }
        }
        "Throttling" | "ThrottlingException" | "TooManyRequestsException" | "RequestLimitExceeded" | "SlowDown" | "RequestThrottled" => AwsError::Throttled { op, message },
        "ClusterNotFoundException" | "ResourceNotFoundException" | "NotFoundException" | "NotFound"
        | "NoSuchBucket"
        | "DBInstanceNotFound"
        | "DBInstanceNotFoundFault"
        // S3's "this configuration is not set" answers.
        | "ServerSideEncryptionConfigurationNotFoundError"
        | "NoSuchPublicAccessBlockConfiguration"
        | "NoSuchLifecycleConfiguration"
        | "NoSuchTagSet" => {
            AwsError::NotFound { op, message }
        }
        "ClusterContainsServicesException"
        | "ClusterContainsTasksException"
        | "ClusterContainsContainerInstancesException"
        | "ResourceInUseException"
        | "UpdateInProgressException"
        | "InvalidDBInstanceState"
        | "InvalidDBInstanceStateFault"
        | "DBInstanceAlreadyExists"
        | "BucketAlreadyExists"
        | "BucketAlreadyOwnedByYou"
        | "BucketNotEmpty"
        | "OperationAborted" => AwsError::Conflict { op, message },
        "InvalidParameterException"
        | "ClientException"
        | "ValidationException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidRequest"
        | "MalformedXML"
        | "InvalidBucketName"
        | "StorageQuotaExceeded"
        | "InstanceQuotaExceeded" => AwsError::Invalid { op, message },
        _ => AwsError::Transient { op, message },
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
                self.client.get_caller_identity().send().await.map_err(|e| map_err("GetCallerIdentity", e))
            })
            .await?;
        Ok(out.account().unwrap_or_default().to_string())
    }
}

/// Builds SDK clients from the standard credential chain (IRSA in a cluster), one set per
/// Environment, honouring `AWS_ENDPOINT_URL` through the SDK's own configuration.
pub struct SdkProvider {
    endpoint: Option<String>,
    metrics: Metrics,
    per_second: u32,
    cache: Mutex<HashMap<Target, AwsClients>>,
}

impl SdkProvider {
    /// A provider allowing `per_second` calls per environment and service.
    pub fn new(metrics: Metrics, per_second: u32) -> Self {
        SdkProvider { endpoint: None, metrics, per_second, cache: Mutex::new(HashMap::new()) }
    }

    /// A provider whose clients all go to `endpoint` (an emulator), whatever the environment says.
    pub fn with_endpoint(metrics: Metrics, per_second: u32, endpoint: &str) -> Self {
        SdkProvider { endpoint: Some(endpoint.to_string()), ..Self::new(metrics, per_second) }
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
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).region(region.clone()).retry_config(RetryConfig::disabled());
        if let Some(url) = &self.endpoint {
            loader = loader.endpoint_url(url);
        }
        if let Some(role) = &target.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(role).session_name("shipshape").region(region).build().await;
            loader = loader.credentials_provider(provider);
        }
        let conf = loader.load().await;
        // Emulators on localhost need path-style S3 addressing (TESTING.md).
        let path_style =
            self.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let caller = |service| Caller::new(service, self.per_second, self.metrics.clone());
        let clients = AwsClients {
            ecs: Arc::new(ecs::SdkEcs::new(&conf, caller("ecs"))),
            rds: Arc::new(rds::SdkRds::new(&conf, caller("rds"))),
            s3: Arc::new(s3::SdkS3::new(&conf, path_style, caller("s3"))),
            sts: Arc::new(SdkSts { client: aws_sdk_sts::Client::new(&conf), caller: caller("sts") }),
        };
        cache.insert(target.clone(), clients.clone());
        Ok(clients)
    }
}
