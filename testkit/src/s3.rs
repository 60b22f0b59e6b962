//! S3 bucket tagging and ABAC as AWS has them since 2025-11, which moto 5.2.1 lacks:
//! - CreateBucket with `CreateBucketConfiguration.Tags` creates the bucket with those tags
//!   (moto creates it without them: the proxy puts them with moto's PutBucketTagging);
//! - PutBucketAbac / GetBucketAbac (moto routes PutBucketAbac to CreateBucket): "By default,
//!   ABAC is disabled for all Amazon S3 general purpose buckets" ("Enabling ABAC in general
//!   purpose buckets", S3 user guide); the proxy keeps each bucket's status;
//! - once ABAC is on, "you must use the TagResource and UntagResource actions to manage tags
//!   on your buckets. You can no longer use the PutBucketTagging and DeleteBucketTagging
//!   actions" (PutBucketAbac, S3 API reference): the proxy refuses those (400 InvalidRequest:
//!   the exact code is not documented);
//! - S3 Control TagResource / UntagResource / ListTagsForResource on `arn:aws:s3:::BUCKET`
//!   (`/v20180820/tags/{ResourceArn}`), kept in moto's bucket tag set.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// ABAC status per bucket name (bucket names are global).
fn abac() -> std::sync::MutexGuard<'static, HashMap<String, bool>> {
    static M: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    M.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether ABAC is on for `bucket`.
pub fn abac_enabled(bucket: &str) -> bool {
    abac().get(bucket).copied().unwrap_or(false)
}

/// Forgets a deleted bucket's status.
pub fn forget(bucket: &str) {
    abac().remove(bucket);
}

fn xml(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert("content-type", axum::http::HeaderValue::from_static("application/xml"));
    r
}

/// S3's error answer.
pub fn error(status: u16, code: &str, message: &str) -> Response {
    xml(
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>proxy</RequestId></Error>"),
    )
}

/// The bucket of a path-style request.
pub fn bucket_of(path: &str) -> String {
    path.trim_start_matches('/').split('/').next().unwrap_or_default().to_string()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A PutBucketTagging body.
pub fn tagging_body(tags: &BTreeMap<String, String>) -> String {
    let set: String = tags.iter().map(|(k, v)| format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", escape(k), escape(v))).collect();
    format!("<Tagging xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><TagSet>{set}</TagSet></Tagging>")
}

/// Answers PutBucketAbac / GetBucketAbac for an existing bucket (the caller checked that it
/// exists); None for other operations.
pub fn answer_abac(operation: &str, bucket: &str, body: &[u8]) -> Option<Response> {
    match operation {
        "PutBucketAbac" => {
            let text = String::from_utf8_lossy(body);
            let on = text.contains("<Status>Enabled</Status>");
            if !on && !text.contains("<Status>Disabled</Status>") {
                return Some(error(
                    400,
                    "MalformedXML",
                    "The XML you provided was not well-formed or did not validate against our published schema",
                ));
            }
            abac().insert(bucket.to_string(), on);
            Some(StatusCode::OK.into_response())
        }
        "GetBucketAbac" => {
            let status = if abac_enabled(bucket) { "Enabled" } else { "Disabled" };
            Some(xml(
                StatusCode::OK,
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><AbacStatus><Status>{status}</Status></AbacStatus>"),
            ))
        }
        _ => None,
    }
}

/// The S3 Control tagging operation of a request path, if it is one.
pub fn control_operation(method: &str, path: &str) -> Option<&'static str> {
    if !path.starts_with("/v20180820/tags/") {
        return None;
    }
    Some(match method {
        "POST" => "TagResource",
        "DELETE" => "UntagResource",
        _ => "ListTagsForResource",
    })
}

/// The bucket an S3 Control tags path names (`/v20180820/tags/arn:aws:s3:::BUCKET`).
pub fn control_bucket(path: &str) -> Option<String> {
    let arn = path.strip_prefix("/v20180820/tags/")?;
    let arn = url::form_urlencoded::parse(format!("a={}", arn.replace('+', "%2B")).as_bytes()).next()?.1.into_owned();
    arn.strip_prefix("arn:aws:s3:::").map(|b| b.trim_end_matches('/').to_string())
}

/// The tags of an S3 Control TagResource body (`<Tags><Tag><Key>..`), or the keys of an
/// UntagResource query (`tagKeys=a&tagKeys=b`).
pub fn control_tags(body: &[u8]) -> BTreeMap<String, String> {
    crate::gate::xml_tags(&String::from_utf8_lossy(body))
}

/// The S3 Control answer listing `tags`.
pub fn list_answer(tags: &BTreeMap<String, String>) -> Response {
    let set: String = tags.iter().map(|(k, v)| format!("<Tag><Key>{}</Key><Value>{}</Value></Tag>", escape(k), escape(v))).collect();
    xml(
        StatusCode::OK,
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListTagsForResourceResult><Tags>{set}</Tags></ListTagsForResourceResult>"),
    )
}

/// The TagKeys of an UntagResource request.
pub fn untag_keys(query: &str) -> Vec<String> {
    url::form_urlencoded::parse(query.as_bytes()).filter(|(k, _)| k == "tagKeys").map(|(_, v)| v.into_owned()).collect()
}

/// Headers for a call the proxy makes to moto's S3 as the request's caller.
pub fn s3_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let (key, region) = crate::gate::scope(headers);
    vec![(
        "authorization".into(),
        format!("AWS4-HMAC-SHA256 Credential={key}/20260101/{region}/s3/aws4_request, SignedHeaders=host, Signature=x"),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_control_paths_name_their_bucket_and_operation() {
        assert_eq!(control_operation("POST", "/v20180820/tags/arn:aws:s3:::b"), Some("TagResource"));
        assert_eq!(control_operation("DELETE", "/v20180820/tags/arn%3Aaws%3As3%3A%3A%3Ab"), Some("UntagResource"));
        assert_eq!(control_bucket("/v20180820/tags/arn%3Aaws%3As3%3A%3A%3Amy-bucket"), Some("my-bucket".into()));
        assert_eq!(untag_keys("tagKeys=a&tagKeys=b"), vec!["a", "b"]);
    }

    #[test]
    fn abac_is_off_until_enabled() {
        assert!(!abac_enabled("abac-test-bucket"));
        answer_abac("PutBucketAbac", "abac-test-bucket", b"<AbacStatus><Status>Enabled</Status></AbacStatus>");
        assert!(abac_enabled("abac-test-bucket"));
        forget("abac-test-bucket");
        assert!(!abac_enabled("abac-test-bucket"));
    }
}
