//! DescribeServices batching and the per-Environment DescribeDBInstances listing, against
//! the in-memory AWS fakes (call counts).

use std::time::Duration;

use shipshape::api::DatabaseSpec;
use shipshape::aws::{AwsProvider, Target};
use shipshape::controller::batch::ServiceReader;
use shipshape::controller::listing::DatabaseReader;
use shipshape_testkit::fakes;

#[tokio::test]
async fn reads_of_25_services_in_one_window_cost_3_calls() {
    let aws = fakes::FakeAws::new();
    let clients = aws.clients(&Target { environment: "e".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
    for i in 0..25 {
        let req = fakes::service_request("c", &format!("s{i}"), "td:1");
        clients.ecs.create_service(&req).await.unwrap();
    }
    let reader = ServiceReader::start();
    let reads = (0..25).map(|i| {
        let (reader, ecs) = (reader.clone(), clients.ecs.clone());
        async move { reader.describe(ecs, "e", "c", &format!("s{i}"), Duration::ZERO).await }
    });
    let results = futures::future::join_all(reads).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|s| s.is_some())));
    assert_eq!(aws.count("DescribeServices"), 3);
    assert!(reader.describe(clients.ecs.clone(), "e", "c", "missing", Duration::ZERO).await.unwrap().is_none());
    // The first call was filled up with other services; a drift check accepting answers
    // a minute old reads nothing at all.
    let before = aws.count("DescribeServices");
    assert!(reader.describe(clients.ecs.clone(), "e", "c", "s7", Duration::from_secs(60)).await.unwrap().is_some());
    assert_eq!(aws.count("DescribeServices"), before);
}

fn db(name: &str) -> DatabaseSpec {
    shipshape::fixtures::database(serde_json::json!({ "name": name }))
}

#[tokio::test]
async fn drift_checks_of_250_databases_share_one_listing_of_3_pages() {
    let aws = fakes::FakeAws::new();
    let clients = aws.clients(&Target { environment: "e".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
    for i in 0..250 {
        clients.rds.create_db_instance(&db(&format!("db{i}")), &Default::default(), None).await.unwrap();
    }
    let reader = DatabaseReader::default();
    let minute = Duration::from_secs(60);
    let before = aws.count("DescribeDBInstances");
    let reads = (0..250).map(|i| {
        let (reader, rds) = (reader.clone(), clients.rds.clone());
        async move { reader.describe(rds.as_ref(), "e", &format!("db{i}"), minute).await }
    });
    let results = futures::future::join_all(reads).await;
    assert!(results.iter().all(|r| r.as_ref().is_ok_and(|d| d.is_some())));
    assert_eq!(aws.count("DescribeDBInstances") - before, 3, "one listing, 100 per page");
    // Absent from a fresh listing: absent, without another call.
    assert!(reader.describe(clients.rds.as_ref(), "e", "gone", minute).await.unwrap().is_none());
    assert_eq!(aws.count("DescribeDBInstances") - before, 3);
    // A database shipshape changed is read alone until a newer listing.
    reader.changed("e", "db7").await;
    assert!(reader.describe(clients.rds.as_ref(), "e", "db7", minute).await.unwrap().is_some());
    assert_eq!(aws.count("DescribeDBInstances") - before, 4);
    assert!(reader.describe(clients.rds.as_ref(), "e", "db8", minute).await.unwrap().is_some());
    assert_eq!(aws.count("DescribeDBInstances") - before, 4, "the others still come from the listing");
    // Zero age: always afresh.
    reader.describe(clients.rds.as_ref(), "e", "db8", Duration::ZERO).await.unwrap();
    assert_eq!(aws.count("DescribeDBInstances") - before, 5);
}
