//! CloudWatch Logs through aws_sdk_cloudwatchlogs: the last lines of a step's task output.

use async_trait::async_trait;

use super::Adapter;
use crate::aws::{AwsError, Logs};

adapter!(SdkLogs(aws_sdk_cloudwatchlogs::Client));

#[async_trait]
impl Logs for SdkLogs {
    async fn tail(&self, group: &str, stream: &str, lines: usize) -> Result<Vec<String>, AwsError> {
        let limit = i32::try_from(lines.clamp(1, 100)).unwrap_or(10);
        // From the end (startFromHead false): the newest `limit` events, oldest first.
        let out = self
            .sdk("GetLogEvents", |c| {
                c.get_log_events().log_group_name(group).log_stream_name(stream).start_from_head(false).limit(limit).send()
            })
            .await?;
        Ok(out.events().iter().filter_map(|e| e.message()).map(String::from).collect())
    }
}
