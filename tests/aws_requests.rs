//! The AWS test proxy's front door (testkit/src/gate.rs), on requests signed as shipshape:
//! one that AWS's API model refuses is refused with the service's validation error, one that
//! deploy/iam-policy.json does not allow gets AccessDenied, and both are kept as violations
//! (an e2e test whose controller sent one fails when its proxy is dropped). Requests signed
//! with the tests' own key pass unchecked: they are "someone else".

mod support;

use serde_json::json;
use support::{ecs_call, moto_ecs, proxy, unique};

async fn ecs(proxy: &str, key: &str, op: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
    let r = ecs_call(proxy, key, op, body).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_aws_would_refuse_is_refused_and_kept_as_a_violation() {
    let p = proxy().await;
    let cluster = unique("gate");
    // Someone else's cluster and service (the tests' own key: not checked).
    moto_ecs("CreateCluster", json!({"clusterName": cluster})).await;
    let (status, _) = ecs(&p.url(), "test", "DescribeClusters", json!({"clusters": [cluster]})).await;
    assert_eq!(status, 200);
    assert!(p.violations().is_empty());

    // Invalid for ECS's model: an enum value ECS does not have.
    let (status, body) = ecs(
        &p.url(),
        "shipshape",
        "UpdateService",
        json!({"cluster": cluster, "service": "api", "deploymentConfiguration": {"strategy": "SIDEWAYS"}}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["message"].as_str().unwrap_or("").contains("SIDEWAYS"), "{body}");
    // Valid, but on a cluster shipshape does not own: IAM says no.
    let (status, body) = ecs(&p.url(), "shipshape", "DeleteCluster", json!({"cluster": cluster})).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["__type"], "AccessDeniedException");
    assert!(body["message"].as_str().unwrap_or("").contains("ecs:DeleteCluster"), "{body}");
    // A read is fine.
    let (status, _) = ecs(&p.url(), "shipshape", "DescribeClusters", json!({"clusters": [cluster]})).await;
    assert_eq!(status, 200);

    let v = p.take_violations();
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(!v[0].denied && v[0].operation == "ecs:UpdateService" && v[0].reason.contains("strategy"), "{v:?}");
    assert!(v[1].denied && v[1].reason.starts_with("ecs:DeleteCluster"), "{v:?}");
    let still = moto_ecs("DescribeClusters", json!({"clusters": [cluster]})).await;
    assert_eq!(still["clusters"][0]["status"], "ACTIVE", "the refused delete never reached moto");
}
