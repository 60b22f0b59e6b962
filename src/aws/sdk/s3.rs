//! S3 through aws_sdk_s3.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_s3::types::{
    AbacStatus, BucketAbacStatus, BucketLifecycleConfiguration, BucketLocationConstraint, BucketVersioningStatus,
    CreateBucketConfiguration, ExpirationStatus, LifecycleExpiration, LifecycleRule as SdkRule, LifecycleRuleFilter,
    PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration,
    ServerSideEncryptionRule, Tag, Transition as SdkTransition, TransitionStorageClass,
};

use super::Adapter;
use crate::api::{BucketEncryption, EncryptionAlgorithm, LifecycleRule, StorageClass, Transition};
use std::sync::Arc;

use crate::aws::{AwsError, BucketDeletion, BucketReads, Caller, Sts, S3};
use crate::core::stack::{storage_class_name, ObservedBucket};

pub(super) struct SdkS3 {
    client: aws_sdk_s3::Client,
    /// S3 Control: bucket tags once ABAC is on.
    control: aws_sdk_s3control::Client,
    /// The account (S3 Control names it in every request).
    sts: Arc<dyn Sts>,
    caller: Caller,
}

adapter!(impl SdkS3, aws_sdk_s3::Client);

/// S3 Control's endpoint when an emulator's endpoint is configured: its own rules would put
/// the account id in front of the emulator's host (`123456789012.127.0.0.1`).
#[derive(Debug)]
struct EmulatorEndpoint(String);

impl aws_sdk_s3control::config::endpoint::ResolveEndpoint for EmulatorEndpoint {
    fn resolve_endpoint<'a>(
        &'a self,
        _: &'a aws_sdk_s3control::config::endpoint::Params,
    ) -> aws_sdk_s3control::config::endpoint::EndpointFuture<'a> {
        aws_sdk_s3control::config::endpoint::EndpointFuture::ready(Ok(aws_sdk_s3control::config::endpoint::Endpoint::builder()
            .url(self.0.clone())
            .build()))
    }
}

impl SdkS3 {
    pub(super) fn new(conf: &aws_config::SdkConfig, path_style: bool, sts: Arc<dyn Sts>, caller: Caller) -> Self {
        let cfg = aws_sdk_s3::config::Builder::from(conf).force_path_style(path_style).build();
        let mut control = aws_sdk_s3control::config::Builder::from(conf);
        if let Some(url) = conf.endpoint_url() {
            control = control.endpoint_resolver(EmulatorEndpoint(url.to_string()));
        }
        SdkS3 { client: aws_sdk_s3::Client::from_conf(cfg), control: aws_sdk_s3control::Client::from_conf(control.build()), sts, caller }
    }
}

fn invalid(op: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Invalid { op, message: e.to_string() }
}

/// Turns "this configuration does not exist" answers into None.
fn absent<T>(r: Result<T, AwsError>, codes: &[&str]) -> Result<Option<T>, AwsError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(AwsError::NotFound { .. }) => Ok(None),
        Err(AwsError::Transient { message, .. } | AwsError::Invalid { message, .. }) if codes.iter().any(|c| message.contains(c)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn storage_class(name: &str) -> Option<StorageClass> {
    [
        StorageClass::StandardIa,
        StorageClass::OnezoneIa,
        StorageClass::IntelligentTiering,
        StorageClass::GlacierIr,
        StorageClass::Glacier,
        StorageClass::DeepArchive,
    ]
    .into_iter()
    .find(|c| storage_class_name(*c) == name)
}

#[async_trait]
impl S3 for SdkS3 {
    async fn describe_bucket(&self, name: &str, reads: BucketReads) -> Result<Option<ObservedBucket>, AwsError> {
        let head = self.sdk("HeadBucket", |c| c.head_bucket().bucket(name).send()).await;
        let Some(head) = absent(head, &[])? else {
            return Ok(None);
        };
        // HeadBucket answers with the region (x-amz-bucket-region); GetBucketLocation only
        // when an endpoint leaves it out.
        let region = match head.bucket_region() {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => {
                let location = self.sdk("GetBucketLocation", |c| c.get_bucket_location().bucket(name).send()).await?;
                match location.location_constraint().map(|l| l.as_str()) {
                    None | Some("") => "us-east-1".to_string(),
                    Some(r) => r.to_string(),
                }
            }
        };
        let versioning = self
            .sdk("GetBucketVersioning", |c| c.get_bucket_versioning().bucket(name).send())
            .await?
            .status()
            .map(|s| s.as_str().to_string());
        let encryption = if !reads.encryption {
            None
        } else {
            absent(
                self.sdk("GetBucketEncryption", |c| c.get_bucket_encryption().bucket(name).send()).await,
                &["ServerSideEncryptionConfigurationNotFoundError"],
            )?
            .and_then(|o| {
                let rule = o.server_side_encryption_configuration()?.rules().first()?.apply_server_side_encryption_by_default()?.clone();
                let algorithm = match rule.sse_algorithm() {
                    ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse => EncryptionAlgorithm::AwsKms,
                    _ => EncryptionAlgorithm::Aes256,
                };
                Some(BucketEncryption { algorithm, kms_key_id: rule.kms_master_key_id().map(String::from) })
            })
        };
        let block = absent(
            self.sdk("GetPublicAccessBlock", |c| c.get_public_access_block().bucket(name).send()).await,
            &["NoSuchPublicAccessBlockConfiguration"],
        )?;
        let (present, blocked) = match block.as_ref().and_then(|b| b.public_access_block_configuration()) {
            None => (false, false),
            Some(c) => (
                true,
                c.block_public_acls().unwrap_or(false)
                    && c.ignore_public_acls().unwrap_or(false)
                    && c.block_public_policy().unwrap_or(false)
                    && c.restrict_public_buckets().unwrap_or(false),
            ),
        };
        let lifecycle = if !reads.lifecycle {
            vec![]
        } else {
            absent(
                self.sdk("GetBucketLifecycleConfiguration", |c| c.get_bucket_lifecycle_configuration().bucket(name).send()).await,
                &["NoSuchLifecycleConfiguration"],
            )?
            .map(|o| {
                o.rules()
                    .iter()
                    .map(|r| LifecycleRule {
                    #[allow(deprecated)] // moto and older buckets still use the rule-level prefix
                    prefix: r.filter().and_then(|f| f.prefix()).or(r.prefix()).unwrap_or_default().to_string(),
                    expire_days: r.expiration().and_then(|e| e.days()),
                    transitions: r
                        .transitions()
                        .iter()
                        .filter_map(|t| Some(Transition { days: t.days()?, storage_class: storage_class(t.storage_class()?.as_str())? }))
                        .collect(),
                })
                    .collect()
            })
            .unwrap_or_default()
        };
        let abac = self.sdk("GetBucketAbac", |c| c.get_bucket_abac().bucket(name).send()).await?.abac_status().and_then(|s| s.status())
            == Some(&BucketAbacStatus::Enabled);
        let tags = absent(self.sdk("GetBucketTagging", |c| c.get_bucket_tagging().bucket(name).send()).await, &["NoSuchTagSet"])?
            .map(|o| o.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
            .unwrap_or_default();
        Ok(Some(ObservedBucket {
            name: name.to_string(),
            region,
            versioning,
            encryption,
            public_access_blocked: blocked,
            public_access_block_present: present,
            lifecycle,
            tags,
            abac,
        }))
    }

    async fn create_bucket(&self, name: &str, region: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let set = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("CreateBucket", e))?;
        let mut config = CreateBucketConfiguration::builder().set_tags(Some(set).filter(|s| !s.is_empty()));
        if region != "us-east-1" {
            config = config.location_constraint(BucketLocationConstraint::from(region));
        }
        let config = Some(config.build());
        let r = self.sdk("CreateBucket", |c| c.create_bucket().bucket(name).set_create_bucket_configuration(config.clone()).send()).await;
        match r {
            // Created by an earlier attempt whose answer was lost: fine.
            Err(AwsError::Conflict { message, .. }) if message.contains("BucketAlreadyOwnedByYou") => Ok(()),
            Err(AwsError::Transient { message, .. }) if message.contains("BucketAlreadyOwnedByYou") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn enable_abac(&self, name: &str) -> Result<(), AwsError> {
        let status = AbacStatus::builder().status(BucketAbacStatus::Enabled).build();
        self.sdk("PutBucketAbac", |c| c.put_bucket_abac().bucket(name).abac_status(status.clone()).send()).await.map(|_| ())
    }

    async fn put_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        let op = "TagResource";
        let set = tags
            .iter()
            .map(|(k, v)| aws_sdk_s3control::types::Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(op, e))?;
        let account = self.sts.caller_account().await?;
        let arn = format!("arn:aws:s3:::{name}");
        self.sdk(op, |_| self.control.tag_resource().account_id(&account).resource_arn(&arn).set_tags(Some(set.clone())).send())
            .await
            .map(|_| ())
    }

    async fn put_versioning(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        let status = if enabled { BucketVersioningStatus::Enabled } else { BucketVersioningStatus::Suspended };
        let config = aws_sdk_s3::types::VersioningConfiguration::builder().status(status).build();
        self.sdk("PutBucketVersioning", |c| c.put_bucket_versioning().bucket(name).versioning_configuration(config.clone()).send())
            .await
            .map(|_| ())
    }

    async fn put_encryption(&self, name: &str, encryption: &BucketEncryption) -> Result<(), AwsError> {
        let algorithm = match encryption.algorithm {
            EncryptionAlgorithm::Aes256 => ServerSideEncryption::Aes256,
            EncryptionAlgorithm::AwsKms => ServerSideEncryption::AwsKms,
        };
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(algorithm)
            .set_kms_master_key_id(encryption.kms_key_id.clone())
            .build()
            .map_err(|e| invalid("PutBucketEncryption", e))?;
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build())
            .build()
            .map_err(|e| invalid("PutBucketEncryption", e))?;
        self.sdk("PutBucketEncryption", |c| {
            c.put_bucket_encryption().bucket(name).server_side_encryption_configuration(config.clone()).send()
        })
        .await
        .map(|_| ())
    }

    async fn set_public_access_block(&self, name: &str, block: bool) -> Result<(), AwsError> {
        if !block {
            return self.sdk("DeletePublicAccessBlock", |c| c.delete_public_access_block().bucket(name).send()).await.map(|_| ());
        }
        let config = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        self.sdk("PutPublicAccessBlock", |c| {
            c.put_public_access_block().bucket(name).public_access_block_configuration(config.clone()).send()
        })
        .await
        .map(|_| ())
    }

    async fn put_lifecycle(&self, name: &str, rules: &[LifecycleRule]) -> Result<(), AwsError> {
        let op = "PutBucketLifecycleConfiguration";
        let mut sdk_rules = vec![];
        for (i, r) in rules.iter().enumerate() {
            let transitions = r
                .transitions
                .iter()
                .map(|t| {
                    SdkTransition::builder()
                        .days(t.days)
                        .storage_class(TransitionStorageClass::from(storage_class_name(t.storage_class)))
                        .build()
                })
                .collect();
            let rule = SdkRule::builder()
                .id(format!("shipshape-{i}"))
                .filter(LifecycleRuleFilter::builder().prefix(&r.prefix).build())
                .status(ExpirationStatus::Enabled)
                .set_expiration(r.expire_days.map(|d| LifecycleExpiration::builder().days(d).build()))
                .set_transitions(Some(transitions))
                .build()
                .map_err(|e| invalid(op, e))?;
            sdk_rules.push(rule);
        }
        let config = BucketLifecycleConfiguration::builder().set_rules(Some(sdk_rules)).build().map_err(|e| invalid(op, e))?;
        self.sdk(op, |c| c.put_bucket_lifecycle_configuration().bucket(name).lifecycle_configuration(config.clone()).send())
            .await
            .map(|_| ())
    }

    async fn delete_bucket(&self, name: &str) -> Result<BucketDeletion, AwsError> {
        let r = self.sdk("DeleteBucket", |c| c.delete_bucket().bucket(name).send()).await;
        match r {
            Ok(_) => Ok(BucketDeletion::Deleted),
            Err(AwsError::NotFound { .. }) => Ok(BucketDeletion::Missing),
            Err(AwsError::Conflict { message, .. }) if message.contains("not empty") || message.contains("BucketNotEmpty") => {
                Ok(BucketDeletion::NotEmpty)
            }
            Err(e) => Err(e),
        }
    }
}
