//! The AWS SDK adapters: the only files that import the AWS SDK service crates
//! (`aws_sdk_ecs` in ecs.rs, `aws_sdk_rds` in rds.rs, `aws_sdk_s3` in s3.rs,
//! `aws_sdk_dynamodb` in dynamodb.rs, `aws_sdk_elasticache` in elasticache.rs,
//! `aws_sdk_lambda` in lambda.rs, `aws_sdk_cloudwatch` in cloudwatch.rs, `aws_sdk_cloudwatchlogs`
//! in logs.rs, `aws_sdk_sqs` and `aws_sdk_eventbridge` in events.rs, STS here). Each adapter holds its service's client and
//! the call path; every request goes through [`Adapter::sdk`], its operation named once.

/// An adapter's boilerplate. `adapter!(SdkX(client type))` declares an adapter holding only
/// its client and the caller, with `new` and its [`Adapter`] impl; `adapter!(impl SdkX,
/// client type)` is the impl alone, for an adapter with fields of its own.
macro_rules! adapter {
    ($adapter:ident($client:ty)) => {
        pub(super) struct $adapter {
            client: $client,
            caller: $crate::aws::Caller,
        }

        impl $adapter {
            pub(super) fn new(conf: &aws_config::SdkConfig, caller: $crate::aws::Caller) -> Self {
                $adapter { client: <$client>::new(conf), caller }
            }
        }

        adapter!(impl $adapter, $client);
    };
    (impl $adapter:ty, $client:ty) => {
        impl $crate::aws::sdk::Adapter for $adapter {
            type Client = $client;
            fn parts(&self) -> (&$client, &$crate::aws::Caller) {
                (&self.client, &self.caller)
            }
        }
    };
}

mod cloudwatch;
mod dynamodb;
mod ecs;
mod elasticache;
mod events;
mod lambda;
mod logs;
mod rds;
mod s3;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_config::{retry::RetryConfig, BehaviorVersion, Region};
use aws_sdk_sts::config::http::HttpResponse;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use tokio::sync::Mutex;

use super::{AwsClients, AwsError, AwsProvider, CachedSts, Caller, Sts, Target};
use crate::metrics::Metrics;
use std::time::Duration;

/// What an AWS error means for the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The caller lacks a permission: recheck slowly.
    AccessDenied,
    /// Slow down and retry.
    Throttled,
    /// The thing does not exist.
    NotFound,
    /// Exists, or in a state that forbids the call.
    Conflict,
    /// AWS refuses the request as made: permanent until the spec (or AWS) changes.
    Invalid,
    /// Network, timeout or a failure on AWS's side: retry.
    Transient,
}

/// Every AWS error code shipshape knows, and what it means. The table is the documentation:
/// each row is tested (`every_known_code_is_classified_as_the_table_says`).
pub const ERROR_CODES: &[(&str, Kind)] = &[
    ("AccessDenied", Kind::AccessDenied),
    ("AccessDeniedException", Kind::AccessDenied),
    ("UnauthorizedOperation", Kind::AccessDenied),
    ("UnrecognizedClientException", Kind::AccessDenied),
    ("InvalidClientTokenId", Kind::AccessDenied),
    ("ExpiredToken", Kind::AccessDenied),
    ("ExpiredTokenException", Kind::AccessDenied),
    ("AllAccessDisabled", Kind::AccessDenied),
    ("KMSKeyNotAccessibleFault", Kind::AccessDenied),
    ("Throttling", Kind::Throttled),
    ("ThrottlingException", Kind::Throttled),
    ("TooManyRequestsException", Kind::Throttled),
    ("RequestLimitExceeded", Kind::Throttled),
    ("SlowDown", Kind::Throttled),
    ("RequestThrottled", Kind::Throttled),
    ("ClusterNotFoundException", Kind::NotFound),
    ("ServiceNotFoundException", Kind::NotFound),
    ("ServiceNotActiveException", Kind::NotFound),
    ("ResourceNotFoundException", Kind::NotFound),
    ("NotFoundException", Kind::NotFound),
    ("NotFound", Kind::NotFound),
    ("NoSuchBucket", Kind::NotFound),
    ("NoSuchKey", Kind::NotFound),
    ("DBInstanceNotFound", Kind::NotFound),
    ("DBInstanceNotFoundFault", Kind::NotFound),
    ("DBSubnetGroupNotFoundFault", Kind::NotFound),
    ("DBSnapshotNotFound", Kind::NotFound),
    ("TableNotFoundException", Kind::NotFound),
    ("ReplicationGroupNotFoundFault", Kind::NotFound),
    ("ReplicationGroupNotFound", Kind::NotFound),
    ("CacheClusterNotFound", Kind::NotFound),
    ("CacheClusterNotFoundFault", Kind::NotFound),
    ("CacheSubnetGroupNotFoundFault", Kind::NotFound),
    ("QueueDoesNotExist", Kind::NotFound),
    ("AWS.SimpleQueueService.NonExistentQueue", Kind::NotFound),
    ("QueueNameExists", Kind::Conflict),
    // S3's "this configuration is not set" answers.
    ("ServerSideEncryptionConfigurationNotFoundError", Kind::NotFound),
    ("NoSuchPublicAccessBlockConfiguration", Kind::NotFound),
    ("NoSuchLifecycleConfiguration", Kind::NotFound),
    ("NoSuchTagSet", Kind::NotFound),
    ("ClusterContainsServicesException", Kind::Conflict),
    ("ClusterContainsTasksException", Kind::Conflict),
    ("ClusterContainsContainerInstancesException", Kind::Conflict),
    ("ResourceInUseException", Kind::Conflict),
    ("TableInUseException", Kind::Conflict),
    ("ResourceConflictException", Kind::Conflict),
    ("PreconditionFailedException", Kind::Conflict),
    ("ReplicationGroupAlreadyExists", Kind::Conflict),
    ("ReplicationGroupAlreadyExistsFault", Kind::Conflict),
    ("CacheSubnetGroupAlreadyExists", Kind::Conflict),
    ("CacheSubnetGroupAlreadyExistsFault", Kind::Conflict),
    ("InvalidReplicationGroupState", Kind::Conflict),
    ("InvalidReplicationGroupStateFault", Kind::Conflict),
    ("SnapshotAlreadyExistsFault", Kind::Conflict),
    ("BackupInUseException", Kind::Conflict),
    ("ContinuousBackupsUnavailableException", Kind::Conflict),
    ("UpdateInProgressException", Kind::Conflict),
    ("InvalidDBInstanceState", Kind::Conflict),
    ("InvalidDBInstanceStateFault", Kind::Conflict),
    ("DBInstanceAlreadyExists", Kind::Conflict),
    ("DBInstanceAlreadyExistsFault", Kind::Conflict),
    ("DBSubnetGroupAlreadyExists", Kind::Conflict),
    ("DBSubnetGroupAlreadyExistsFault", Kind::Conflict),
    ("BucketAlreadyExists", Kind::Conflict),
    ("BucketAlreadyOwnedByYou", Kind::Conflict),
    ("BucketNotEmpty", Kind::Conflict),
    ("OperationAborted", Kind::Conflict),
    ("InvalidBucketState", Kind::Conflict),
    ("InvalidParameterException", Kind::Invalid),
    ("InvalidParameterValueException", Kind::Invalid),
    ("CodeStorageExceededException", Kind::Invalid),
    ("ClientException", Kind::Invalid),
    ("ValidationException", Kind::Invalid),
    ("ValidationError", Kind::Invalid),
    ("InvalidParameterValue", Kind::Invalid),
    ("InvalidParameterCombination", Kind::Invalid),
    ("InvalidRequest", Kind::Invalid),
    ("MalformedXML", Kind::Invalid),
    ("InvalidBucketName", Kind::Invalid),
    ("StorageQuotaExceeded", Kind::Invalid),
    ("InstanceQuotaExceeded", Kind::Invalid),
    ("LimitExceededException", Kind::Invalid),
    ("PlatformUnknownException", Kind::Invalid),
    ("PlatformTaskDefinitionIncompatibilityException", Kind::Invalid),
    ("UnsupportedFeatureException", Kind::Invalid),
    ("InvalidSubnet", Kind::Invalid),
    ("InvalidVPCNetworkStateFault", Kind::Invalid),
    ("DBSubnetGroupDoesNotCoverEnoughAZs", Kind::Invalid),
    ("DBSubnetQuotaExceededFault", Kind::Invalid),
    ("StorageTypeNotSupported", Kind::Invalid),
    ("InvalidDBSubnetGroupStateFault", Kind::Invalid),
    ("InternalError", Kind::Transient),
    ("InternalFailure", Kind::Transient),
    ("ServerException", Kind::Transient),
    ("ServiceUnavailable", Kind::Transient),
    ("ServiceUnavailableException", Kind::Transient),
    ("RequestTimeout", Kind::Transient),
    ("RequestTimeoutException", Kind::Transient),
];

/// What an error code (and the HTTP status, when there was an answer) means. A code not in
/// [`ERROR_CODES`] is judged by its status: 4xx is AWS refusing the request as made
/// (permanent: retrying the same request cannot succeed), 429 a throttle, 408 and 5xx
/// transient, no status (network, timeout) transient.
pub fn classify(code: &str, status: Option<u16>) -> Kind {
    if let Some((_, kind)) = ERROR_CODES.iter().find(|(c, _)| *c == code) {
        return *kind;
    }
    match status {
        Some(429) => Kind::Throttled,
        Some(408) => Kind::Transient,
        Some(403) => Kind::AccessDenied,
        Some(404) => Kind::NotFound,
        Some(400..=499) => Kind::Invalid,
        _ => Kind::Transient,
    }
}

/// One service's SDK client and the call path its requests go through.
pub(super) trait Adapter {
    /// The service's SDK client.
    type Client;

    /// The client and the caller (rate limiter, retries, metrics).
    fn parts(&self) -> (&Self::Client, &Caller);

    /// The one way an adapter calls AWS: `f` builds the request on the client and sends it,
    /// anew for each attempt; `op` is named once, for the rate limiter, the retries, the
    /// metrics (`Caller::call`) and the error (`map_err`).
    async fn sdk<T, E, F, Fut>(&self, op: &'static str, f: F) -> Result<T, AwsError>
    where
        F: Fn(&Self::Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let (client, caller) = self.parts();
        caller
            .call(op, || {
                let sent = f(client);
                async move { sent.await.map_err(|e| map_err(op, e)) }
            })
            .await
    }
}

/// A subnet group as RDS and ElastiCache both keep them for an Environment (`placement`):
/// `found` is its subnets when it exists; a missing one is created (with the description
/// `create` is given; a conflict is an earlier attempt's or another StackSpec's group), one
/// whose subnets differ gets the Environment's.
pub(super) async fn ensure_subnet_group<C, M>(
    placement: &crate::core::stack::Placement,
    found: Result<Option<Vec<String>>, AwsError>,
    create: impl FnOnce(String) -> C,
    modify: impl FnOnce() -> M,
) -> Result<(), AwsError>
where
    C: std::future::Future<Output = Result<(), AwsError>>,
    M: std::future::Future<Output = Result<(), AwsError>>,
{
    let have = match found {
        Ok(have) => have,
        Err(AwsError::NotFound { .. }) => None,
        Err(e) => return Err(e),
    };
    let Some(mut have) = have else {
        let description = format!("shipshape: the subnets of Environment {}", placement.subnet_group.trim_start_matches("shipshape-"));
        return match create(description).await {
            Err(AwsError::Conflict { .. }) => Ok(()),
            other => other,
        };
    };
    let mut want = placement.subnets.clone();
    have.sort();
    want.sort();
    if have == want {
        return Ok(());
    }
    modify().await
}

/// Maps an SDK error to a domain error by its AWS error code and HTTP status.
pub(crate) fn map_err<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message, status) = match &err {
        SdkError::ServiceError(ctx) => {
            (ctx.err().code().unwrap_or("").to_string(), ctx.err().message().unwrap_or("").to_string(), Some(ctx.raw().status().as_u16()))
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => return AwsError::Transient { op, message: format!("{err}") },
        SdkError::ResponseError(ctx) => {
            (String::new(), format!("{}", aws_sdk_sts::error::DisplayErrorContext(&err)), Some(ctx.raw().status().as_u16()))
        }
        other => (other.code().unwrap_or("").to_string(), format!("{}", aws_sdk_sts::error::DisplayErrorContext(other)), None),
    };
    // What AWS says can be long (S3 returns whole XML bodies): status messages stay short.
    let message: String = match (code.is_empty(), message.is_empty()) {
        (_, true) => code.clone(),
        (true, false) => message,
        (false, false) => format!("{code}: {message}"),
    }
    .chars()
    .take(500)
    .collect();
    match classify(&code, status) {
        Kind::AccessDenied => AwsError::AccessDenied { op, message },
        Kind::Throttled => AwsError::Throttled { op, message },
        Kind::NotFound => AwsError::NotFound { op, message },
        Kind::Conflict => AwsError::Conflict { op, message },
        Kind::Invalid => AwsError::Invalid { op, message },
        Kind::Transient => AwsError::Transient { op, message },
    }
}

adapter!(SdkSts(aws_sdk_sts::Client));

#[async_trait]
impl Sts for SdkSts {
    async fn caller_account(&self) -> Result<String, AwsError> {
        let out = self.sdk("GetCallerIdentity", |c| c.get_caller_identity().send()).await?;
        Ok(out.account().unwrap_or_default().to_string())
    }

    async fn caller_arn(&self) -> Result<Option<String>, AwsError> {
        let out = self.sdk("GetCallerIdentity", |c| c.get_caller_identity().send()).await?;
        Ok(out.arn().map(str::to_string))
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
        let loader = || {
            let l = aws_config::defaults(BehaviorVersion::latest()).region(region.clone()).retry_config(RetryConfig::disabled());
            match &self.endpoint {
                Some(url) => l.endpoint_url(url),
                None => l,
            }
        };
        let mut conf = loader().load().await;
        if let Some(role) = &target.role_arn {
            // The role is assumed with the controller's own credentials, through the same
            // endpoint (an emulator's STS in tests).
            let provider = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("shipshape")
                .region(region.clone())
                .configure(&conf)
                .build()
                .await;
            conf = loader().credentials_provider(provider).load().await;
        }
        // Emulators on localhost need path-style S3 addressing (docs/testing.md).
        let path_style =
            self.endpoint.is_some() || std::env::var_os("AWS_ENDPOINT_URL").is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        let caller = |service| Caller::new(service, self.per_second, self.metrics.clone());
        // The caller identity changes only with the credentials (refreshed hourly at most).
        let sts: Arc<dyn Sts> = Arc::new(CachedSts::new(Arc::new(SdkSts::new(&conf, caller("sts"))), Duration::from_secs(600)));
        let clients = AwsClients {
            ecs: Arc::new(ecs::SdkEcs::new(&conf, caller("ecs"))),
            rds: Arc::new(rds::SdkRds::new(&conf, caller("rds"))),
            s3: Arc::new(s3::SdkS3::new(&conf, path_style, sts.clone(), caller("s3"))),
            dynamodb: Arc::new(dynamodb::SdkDynamo::new(&conf, caller("dynamodb"))),
            elasticache: Arc::new(elasticache::SdkElastiCache::new(&conf, caller("elasticache"))),
            lambda: Arc::new(lambda::SdkLambda::new(&conf, caller("lambda"))),
            credentials: conf.credentials_provider(),
            cloudwatch: Arc::new(cloudwatch::SdkCloudWatch::new(&conf, caller("cloudwatch"))),
            logs: Arc::new(logs::SdkLogs::new(&conf, caller("logs"))),
            events: Arc::new(events::SdkEvents::new(&conf, caller("sqs"), caller("events"))),
            sts,
        };
        cache.insert(target.clone(), clients.clone());
        Ok(clients)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_is_classified_as_the_table_says() {
        for (code, kind) in ERROR_CODES {
            for status in [None, Some(400), Some(500)] {
                assert_eq!(classify(code, status), *kind, "{code} {status:?}");
            }
        }
        let mut codes: Vec<&str> = ERROR_CODES.iter().map(|(c, _)| *c).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), ERROR_CODES.len(), "each code once");
    }

    /// Unknown codes used to be retried forever as transient; a 4xx is AWS refusing the
    /// request as made, so it is permanent (Stalled, no hot loop).
    #[test]
    fn unknown_codes_are_judged_by_their_status() {
        assert_eq!(classify("SomeNewValidationFault", Some(400)), Kind::Invalid);
        assert_eq!(classify("SomethingMissing", Some(404)), Kind::NotFound);
        assert_eq!(classify("Nope", Some(403)), Kind::AccessDenied);
        assert_eq!(classify("", Some(429)), Kind::Throttled);
        assert_eq!(classify("InternalServerError", Some(500)), Kind::Transient);
        assert_eq!(classify("", Some(503)), Kind::Transient);
        assert_eq!(classify("", None), Kind::Transient);
    }

    #[test]
    fn the_errors_named_in_the_trust_issue_are_permanent() {
        for code in ["ServiceNotFoundException", "ServiceNotActiveException", "DBSubnetGroupNotFoundFault"] {
            assert_ne!(classify(code, Some(400)), Kind::Transient, "{code}");
        }
    }
}
