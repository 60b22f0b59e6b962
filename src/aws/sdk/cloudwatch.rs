//! CloudWatch alarms through aws_sdk_cloudwatch (RPCv2-CBOR on the wire).

use async_trait::async_trait;

use super::Adapter;
use crate::aws::{AwsError, CloudWatch};

adapter!(SdkCloudWatch(aws_sdk_cloudwatch::Client));

#[async_trait]
impl CloudWatch for SdkCloudWatch {
    async fn alarm_states(&self, names: &[String]) -> Result<Vec<(String, String)>, AwsError> {
        let mut out = vec![];
        // DescribeAlarms takes at most 100 names.
        for chunk in names.chunks(100) {
            let page =
                self.sdk("DescribeAlarms", |c| c.describe_alarms().set_alarm_names(Some(chunk.to_vec())).max_records(100).send()).await?;
            for a in page.metric_alarms() {
                let state = a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default();
                out.push((a.alarm_name().unwrap_or_default().to_string(), state));
            }
            for a in page.composite_alarms() {
                let state = a.state_value().map(|s| s.as_str().to_string()).unwrap_or_default();
                out.push((a.alarm_name().unwrap_or_default().to_string(), state));
            }
        }
        Ok(out)
    }
}
