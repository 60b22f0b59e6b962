use super::*;
use proptest::prelude::*;
use std::time::Instant;

/// "ECS Deployment State Change", as the ECS documentation shows it (Amazon ECS events,
/// "Deployment state change events").
const DEPLOYMENT_FAILED: &str = r#"{
  "version": "0", "id": "ddca6449-b258-46c0-8653-e0e3aEXAMPLE",
  "detail-type": "ECS Deployment State Change", "source": "aws.ecs",
  "account": "111122223333", "time": "2020-05-23T12:31:14Z", "region": "us-west-2",
  "resources": ["arn:aws:ecs:us-west-2:111122223333:service/default/servicetest"],
  "detail": {"eventType": "ERROR", "eventName": "SERVICE_DEPLOYMENT_FAILED",
    "deploymentId": "ecs-svc/123", "updatedAt": "2020-05-23T11:11:11Z",
    "reason": "ECS deployment circuit breaker: task failed to start."}
}"#;

#[test]
fn a_deployment_state_change_points_at_its_service() {
    let e = parse(DEPLOYMENT_FAILED).unwrap();
    assert_eq!((e.source, e.detail_type), ("aws.ecs", "ECS Deployment State Change"));
    assert_eq!(e.subjects, vec![Subject::Service { cluster: "default".into(), service: "servicetest".into() }]);
    assert_eq!(e.name.as_deref(), Some("SERVICE_DEPLOYMENT_FAILED"));
    assert!(e.time.is_some());
}

#[test]
fn a_cloudtrail_call_points_at_what_it_changed_and_says_who_made_it() {
    let call = |source: &str, params: Value| {
        json!({"source": "aws.x", "detail-type": "AWS API Call via CloudTrail", "time": "2026-12-07T10:00:00Z",
            "detail": {"eventSource": source, "eventName": "X", "userIdentity": {"arn": "arn:aws:iam::111122223333:user/alice"},
                "requestParameters": params}})
        .to_string()
    };
    let e =
        parse(&call("ecs.amazonaws.com", json!({"cluster": "arn:aws:ecs:eu-west-1:111122223333:cluster/prod", "service": "api"}))).unwrap();
    assert_eq!(e.subjects, vec![Subject::Service { cluster: "prod".into(), service: "api".into() }]);
    assert_eq!(e.by.as_deref(), Some("arn:aws:iam::111122223333:user/alice"));
    let e = parse(&call("ecs.amazonaws.com", json!({"service": "arn:aws:ecs:eu-west-1:111122223333:service/prod/api"}))).unwrap();
    assert_eq!(e.subjects, vec![Subject::Service { cluster: "prod".into(), service: "api".into() }]);
    let e = parse(&call("s3.amazonaws.com", json!({"bucketName": "shop-uploads", "VersioningConfiguration": {}}))).unwrap();
    assert_eq!(e.subjects, vec![Subject::Bucket("shop-uploads".into())]);
    let e = parse(&call("rds.amazonaws.com", json!({"dBInstanceIdentifier": "shop-db", "dBInstanceClass": "db.t3.large"}))).unwrap();
    assert_eq!(e.subjects, vec![Subject::Database("shop-db".into())]);
    let e = parse(&call("dynamodb.amazonaws.com", json!({"tableName": "carts"}))).unwrap();
    assert_eq!(e.subjects, vec![Subject::Table("carts".into())]);
    let e = parse(&call("lambda.amazonaws.com", json!({"functionName": "arn:aws:lambda:eu-west-1:111122223333:function:thumbs:live"})))
        .unwrap();
    assert_eq!(e.subjects, vec![Subject::Function("thumbs".into())]);
    let e = parse(&call("elasticache.amazonaws.com", json!({"replicationGroupId": "sessions"}))).unwrap();
    assert_eq!(e.subjects, vec![Subject::Cache("sessions".into())]);
    assert!(
        parse(&call("iam.amazonaws.com", json!({"roleName": "x"}))).unwrap().subjects.is_empty(),
        "a service shipshape does not manage"
    );
}

#[test]
fn task_and_rds_events_and_the_heartbeat() {
    let task = json!({"source": "aws.ecs", "detail-type": "ECS Task State Change",
        "detail": {"clusterArn": "arn:aws:ecs:eu-west-1:111122223333:cluster/prod", "group": "family:api", "lastStatus": "STOPPED"}});
    assert_eq!(parse(&task.to_string()).unwrap().subjects, vec![Subject::Service { cluster: "prod".into(), service: "api".into() }]);
    let rds = json!({"source": "aws.rds", "detail-type": "RDS DB Instance Event", "resources": ["arn:aws:rds:eu-west-1:111122223333:db:shop-db"],
        "detail": {"EventCategories": ["configuration change"], "SourceType": "DB_INSTANCE", "SourceIdentifier": "shop-db"}});
    assert_eq!(parse(&rds.to_string()).unwrap().subjects, vec![Subject::Database("shop-db".into())]);
    let hb = json!({"source": HEARTBEAT_SOURCE, "detail-type": HEARTBEAT_TYPE, "detail": {"environment": "prod"}});
    assert_eq!(parse(&hb.to_string()).unwrap().heartbeat.as_deref(), Some("prod"));
    let forged = json!({"source": "aws.ecs", "detail-type": HEARTBEAT_TYPE, "detail": {"environment": "prod"}});
    assert_eq!(parse(&forged.to_string()).unwrap().heartbeat, None, "only shipshape.dev's heartbeat counts");
}

#[test]
fn what_is_not_an_event_is_refused_with_a_reason() {
    for body in ["", "[]", "{}", "{\"source\": 1}", "{\"source\": \"aws.ecs\"}", "not json"] {
        assert!(parse(body).is_err(), "{body:?}");
    }
    assert!(parse(&"x".repeat(MAX_BODY + 1)).is_err());
    let odd = json!({"source": "my.app", "detail-type": "Order Placed"});
    let e = parse(&odd.to_string()).unwrap();
    assert_eq!((e.source, e.detail_type, e.subjects.len()), ("other", "other", 0), "labels stay bounded");
}

#[test]
fn names_fit_sqs_and_eventbridge() {
    assert_eq!(resource_name("prod"), "shipshape-prod");
    assert_eq!(resource_name("eu.prod"), "shipshape-eu-prod");
    let long = "a".repeat(253);
    let n = resource_name(&long);
    assert!(n.len() <= 64 && n != resource_name(&"a".repeat(252)));
    assert_eq!(queue_of_arn("arn:aws:sqs:eu-west-1:111122223333:my-events"), Some(("my-events", "111122223333")));
    assert_eq!(queue_of_arn("arn:aws:sns:eu-west-1:111122223333:x"), None);
}

#[test]
fn the_policy_lets_only_the_rule_send_and_the_pattern_covers_the_heartbeat() {
    let p: Value = serde_json::from_str(&queue_policy("arn:q", "arn:r")).unwrap();
    assert_eq!(p["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"], "arn:r");
    assert_eq!(p["Statement"][0]["Action"], "sqs:SendMessage");
    let pattern: Value = serde_json::from_str(&rule_pattern()).unwrap();
    assert!(pattern["source"].as_array().unwrap().iter().any(|s| s == HEARTBEAT_SOURCE));
    assert!(same_json(&rule_pattern(), &pattern.to_string()));
    assert!(!same_json("{}", "not json"));
}

#[test]
fn an_environments_own_rule_matches_only_its_cluster_and_its_heartbeat() {
    let p: Value = serde_json::from_str(&rule_pattern_for("prod", "prod-cluster")).unwrap();
    let alts = p["$or"].as_array().unwrap();
    let text = p.to_string();
    assert!(text.contains("arn:aws:ecs:*:*:service/prod-cluster/*") && text.contains("arn:aws:ecs:*:*:cluster/prod-cluster"));
    let beat = alts.iter().find(|a| a["source"][0] == HEARTBEAT_SOURCE).unwrap();
    assert_eq!(beat["detail"]["environment"], json!(["prod"]));
    // Every ECS alternative names the cluster; the other sources are not cluster-bound.
    for a in alts.iter().filter(|a| a["source"] == json!(["aws.ecs"])) {
        assert!(a.to_string().contains("prod-cluster"), "{a}");
    }
    assert!(!text.contains("\"exists\""), "a call naming no cluster is about `default`, not this one");
    assert!(rule_pattern_for("e", "default").contains("\"exists\":false"));
}

#[test]
fn flow_is_trusted_only_while_the_heartbeat_and_the_queue_answer() {
    let t0 = Instant::now();
    let at = |s: u64| t0 + Duration::from_secs(s);
    assert_eq!(flow(at(10), t0, None, Some(at(9))), Flow::Starting);
    assert_eq!(flow(at(60), t0, None, Some(at(59))), Flow::Stopped, "no heartbeat ever came back");
    assert_eq!(flow(at(60), t0, Some(at(50)), Some(at(59))), Flow::Flowing);
    assert_eq!(flow(at(100), t0, Some(at(50)), Some(at(99))), Flow::Stopped, "the heartbeat stopped (rule disabled)");
    assert_eq!(flow(at(100), t0, Some(at(90)), Some(at(50))), Flow::Stopped, "the queue stopped answering");
}

proptest! {
    #[test]
    fn any_body_is_parsed_or_refused_never_a_panic(body in ".{0,400}") {
        let _ = parse(&body);
    }

    #[test]
    fn any_json_event_keeps_its_labels_bounded(source in "[a-z.]{0,12}", dt in "[A-Za-z ]{0,30}", r in proptest::collection::vec(".{0,80}", 0..5), detail in ".{0,60}") {
        let body = json!({"source": source, "detail-type": dt, "resources": r, "detail": {"eventSource": detail, "requestParameters": {"service": detail}}}).to_string();
        if let Ok(e) = parse(&body) {
            prop_assert!(SOURCES.contains(&e.source) || e.source == "other");
            prop_assert!(DETAIL_TYPES.contains(&e.detail_type) || e.detail_type == "other");
        }
    }

    #[test]
    fn an_environments_rule_pattern_fits_eventbridge(env in "[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?", cluster in "[A-Za-z0-9_-]{1,255}") {
        let p = rule_pattern_for(&env, &cluster);
        prop_assert!(p.len() <= MAX_PATTERN, "{} characters", p.len());
        prop_assert!(same_json(&p, &p));
    }

    #[test]
    fn any_service_arn_names_its_cluster_and_service(cluster in "[a-zA-Z0-9_-]{1,20}", service in "[a-zA-Z0-9_-]{1,20}") {
        let arn = format!("arn:aws:ecs:eu-west-1:111122223333:service/{cluster}/{service}");
        prop_assert_eq!(service_arn(&arn), Some(Subject::Service { cluster, service }));
    }
}
