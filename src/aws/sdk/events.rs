//! SQS through aws_sdk_sqs and EventBridge through aws_sdk_eventbridge: an Environment's
//! event queue, its rule, the long poll and the heartbeat.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_eventbridge::types::{PutEventsRequestEntry, RuleState, Tag, Target};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, QueueAttributeName};

use super::Adapter;
use crate::aws::{AwsError, Caller, EventQueue, ObservedQueue, ObservedRule, QueueMessage};
use crate::core::events::{HEARTBEAT_SOURCE, HEARTBEAT_TYPE};

adapter!(SdkSqs(aws_sdk_sqs::Client));
adapter!(SdkBridge(aws_sdk_eventbridge::Client));

/// The Environment's queue (SQS) and rule (EventBridge).
pub(super) struct SdkEvents {
    sqs: SdkSqs,
    bridge: SdkBridge,
}

impl SdkEvents {
    pub(super) fn new(conf: &aws_config::SdkConfig, sqs: Caller, bridge: Caller) -> Self {
        SdkEvents { sqs: SdkSqs::new(conf, sqs), bridge: SdkBridge::new(conf, bridge) }
    }
}

/// The id EventBridge knows the queue by among the rule's targets.
const TARGET_ID: &str = "shipshape-queue";

fn invalid(op: &'static str, e: impl std::fmt::Display) -> AwsError {
    AwsError::Invalid { op, message: e.to_string() }
}

#[async_trait]
impl EventQueue for SdkEvents {
    async fn describe_queue(&self, name: &str, account: Option<&str>) -> Result<Option<ObservedQueue>, AwsError> {
        let found = self
            .sqs
            .sdk("GetQueueUrl", |c| c.get_queue_url().queue_name(name).set_queue_owner_aws_account_id(account.map(str::to_string)).send())
            .await;
        let url = match found {
            Ok(o) => o.queue_url().unwrap_or_default().to_string(),
            Err(AwsError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let attrs = self
            .sqs
            .sdk("GetQueueAttributes", |c| {
                c.get_queue_attributes()
                    .queue_url(&url)
                    .attribute_names(QueueAttributeName::QueueArn)
                    .attribute_names(QueueAttributeName::Policy)
                    .send()
            })
            .await?;
        let attributes = attrs.attributes().cloned().unwrap_or_default();
        let tags = self.sqs.sdk("ListQueueTags", |c| c.list_queue_tags().queue_url(&url).send()).await?;
        Ok(Some(ObservedQueue {
            arn: attributes.get(&QueueAttributeName::QueueArn).cloned().unwrap_or_default(),
            policy: attributes.get(&QueueAttributeName::Policy).cloned(),
            tags: tags.tags().map(|t| t.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default(),
            url,
        }))
    }

    async fn create_queue(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<String, AwsError> {
        let tags: HashMap<String, String> = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let out = self
            .sqs
            .sdk("CreateQueue", |c| {
                c.create_queue()
                    .queue_name(name)
                    // Events are hints about now: a day is plenty for a controller restarting.
                    .attributes(QueueAttributeName::MessageRetentionPeriod, "86400")
                    .attributes(QueueAttributeName::ReceiveMessageWaitTimeSeconds, "20")
                    .attributes(QueueAttributeName::VisibilityTimeout, "60")
                    .attributes(QueueAttributeName::SqsManagedSseEnabled, "true")
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        Ok(out.queue_url().unwrap_or_default().to_string())
    }

    async fn set_queue_policy(&self, url: &str, policy: &str) -> Result<(), AwsError> {
        self.sqs
            .sdk("SetQueueAttributes", |c| c.set_queue_attributes().queue_url(url).attributes(QueueAttributeName::Policy, policy).send())
            .await?;
        Ok(())
    }

    async fn delete_queue(&self, url: &str) -> Result<(), AwsError> {
        self.sqs.sdk("DeleteQueue", |c| c.delete_queue().queue_url(url).send()).await?;
        Ok(())
    }

    async fn receive(&self, url: &str, wait: Duration, max: i32) -> Result<Vec<QueueMessage>, AwsError> {
        let wait = i32::try_from(wait.as_secs().min(20)).unwrap_or(20);
        let out = self
            .sqs
            .sdk("ReceiveMessage", |c| {
                c.receive_message().queue_url(url).wait_time_seconds(wait).max_number_of_messages(max.clamp(1, 10)).send()
            })
            .await?;
        Ok(out
            .messages()
            .iter()
            .map(|m| QueueMessage {
                id: m.message_id().unwrap_or_default().to_string(),
                receipt: m.receipt_handle().unwrap_or_default().to_string(),
                body: m.body().unwrap_or_default().to_string(),
            })
            .collect())
    }

    async fn delete_messages(&self, url: &str, handled: &[(String, String)]) -> Result<(), AwsError> {
        for chunk in handled.chunks(10) {
            // Entry ids need only be unique within the batch.
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, (_, receipt))| DeleteMessageBatchRequestEntry::builder().id(format!("m{i}")).receipt_handle(receipt).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| invalid("DeleteMessageBatch", e))?;
            self.sqs
                .sdk("DeleteMessageBatch", |c| c.delete_message_batch().queue_url(url).set_entries(Some(entries.clone())).send())
                .await?;
        }
        Ok(())
    }

    async fn describe_rule(&self, name: &str) -> Result<Option<ObservedRule>, AwsError> {
        match self.bridge.sdk("DescribeRule", |c| c.describe_rule().name(name).send()).await {
            Ok(o) => Ok(Some(ObservedRule {
                arn: o.arn().unwrap_or_default().to_string(),
                pattern: o.event_pattern().map(str::to_string),
                state: o.state().map(|s| s.as_str().to_string()).unwrap_or_default(),
            })),
            Err(AwsError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn rule_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        let out = self.bridge.sdk("ListTagsForResource", |c| c.list_tags_for_resource().resource_arn(arn).send()).await?;
        Ok(out.tags().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
    }

    async fn put_rule(&self, name: &str, pattern: &str, tags: &BTreeMap<String, String>) -> Result<String, AwsError> {
        let tags = tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("PutRule", e))?;
        let out = self
            .bridge
            .sdk("PutRule", |c| {
                c.put_rule()
                    .name(name)
                    .description("shipshape: AWS events for this Environment's releases and stacks")
                    .event_pattern(pattern)
                    .state(RuleState::Enabled)
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await?;
        Ok(out.rule_arn().unwrap_or_default().to_string())
    }

    async fn rule_targets(&self, rule: &str) -> Result<Vec<String>, AwsError> {
        let out = self.bridge.sdk("ListTargetsByRule", |c| c.list_targets_by_rule().rule(rule).send()).await?;
        Ok(out.targets().iter().map(|t| t.arn().to_string()).collect())
    }

    async fn put_target(&self, rule: &str, queue_arn: &str) -> Result<(), AwsError> {
        let target = Target::builder().id(TARGET_ID).arn(queue_arn).build().map_err(|e| invalid("PutTargets", e))?;
        let out = self.bridge.sdk("PutTargets", |c| c.put_targets().rule(rule).targets(target.clone()).send()).await?;
        match out.failed_entries().first() {
            Some(f) => Err(invalid("PutTargets", f.error_message().unwrap_or("the target was refused"))),
            None => Ok(()),
        }
    }

    async fn delete_rule(&self, rule: &str) -> Result<(), AwsError> {
        match self.bridge.sdk("RemoveTargets", |c| c.remove_targets().rule(rule).ids(TARGET_ID).send()).await {
            Ok(_) | Err(AwsError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        match self.bridge.sdk("DeleteRule", |c| c.delete_rule().name(rule).send()).await {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put_heartbeat(&self, environment: &str) -> Result<(), AwsError> {
        let detail = serde_json::json!({ "environment": environment }).to_string();
        let entry = PutEventsRequestEntry::builder().source(HEARTBEAT_SOURCE).detail_type(HEARTBEAT_TYPE).detail(detail).build();
        let out = self.bridge.sdk("PutEvents", |c| c.put_events().entries(entry.clone()).send()).await?;
        match out.entries().first().and_then(|e| e.error_message()) {
            Some(m) => Err(AwsError::Transient { op: "PutEvents", message: m.to_string() }),
            None => Ok(()),
        }
    }
}
