//! StackSpec plans carried out against the in-memory AWS (testkit::fakes, the one model of
//! how DynamoDB and ElastiCache apply a change): from any state shipshape could have left, a
//! table or a cache reaches its declared state in a few passes of observe → plan → execute,
//! never sending a call AWS refuses (two UpdateTable calls in one pass, failover without a
//! replica, the last replica removed under failover), and then plans nothing.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;
use shipshape::api::{CacheSpec, StackSpec, TableSpec};
use shipshape::aws::{AwsClients, AwsProvider, Target};
use shipshape::controller::{execute_stack_plan, observe_stack, plan_stack};
use shipshape::core::stack::{Call, StackPlan};
use shipshape::fixtures;
use shipshape_testkit::fakes::FakeAws;

fn stack(tables: Vec<TableSpec>, caches: Vec<CacheSpec>) -> StackSpec {
    let mut spec = fixtures::stack_spec(json!({}));
    spec.tables = tables;
    spec.caches = caches;
    fixtures::stack("team", "data", spec)
}

fn updates(p: &StackPlan) -> usize {
    p.resources.iter().flat_map(|r| &r.steps).filter(|s| matches!(s, Call::UpdateTable { .. })).count()
}

/// Runs passes of observe → plan → execute of `target` until it plans nothing (Ok(passes)),
/// or says why not.
async fn converge(aws: &AwsClients, target: &StackSpec, passes: usize) -> Result<usize, String> {
    let env = fixtures::environment("prod", fixtures::environment_spec(json!({"allowedNamespaces": ["team"]})));
    for pass in 1..=passes {
        let observed = observe_stack(target, aws).await.map_err(|e| e.to_string())?;
        let p = plan_stack(target, &env, &observed);
        if let Some(r) = p.resources.iter().find_map(|r| r.refusal.as_ref()) {
            return Err(format!("refused: {r:?}"));
        }
        if updates(&p) > 1 {
            return Err(format!("two UpdateTable calls in one pass: {p}"));
        }
        if p.resources.iter().all(|r| r.steps.is_empty() && r.waiting.is_none()) {
            return match p.resources.iter().find(|r| !r.changes.is_empty()) {
                Some(r) => Err(format!("changes shown with nothing to do: {:?}", r.changes)),
                None => Ok(pass),
            };
        }
        execute_stack_plan(&p, aws, &BTreeMap::new()).await.map_err(|e| format!("AWS refused a call of {p}: {e}"))?;
    }
    Err(format!("did not converge in {passes} passes"))
}

/// `from` made (when given), then `to` declared: Ok once `to` is reached.
fn from_then_to(from: Option<StackSpec>, to: StackSpec, passes: usize) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let fake = FakeAws::new();
        let aws = fake.clients(&Target { environment: "prod".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
        if let Some(from) = from {
            converge(&aws, &from, passes).await.map_err(|e| format!("making the starting state: {e}"))?;
        }
        converge(&aws, &to, passes).await.map(|_| ())
    })
}

fn table_strategy() -> impl Strategy<Value = TableSpec> {
    (
        any::<bool>(),
        proptest::option::of(1i64..100),
        proptest::collection::vec(("[a-c]", any::<bool>()), 0..3),
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("exp"), Just("ttl")]),
        prop_oneof![Just("AwsOwned"), Just("AwsManaged")],
        any::<bool>(),
        proptest::option::of(prop_oneof![Just("KEYS_ONLY"), Just("NEW_IMAGE")]),
    )
        .prop_map(|(provisioned, cap, indexes, pitr, ttl, enc, dp, stream)| {
            let mut names: Vec<String> = indexes.iter().map(|(n, _)| format!("idx-{n}")).collect();
            names.sort();
            names.dedup();
            fixtures::table(json!({
                "billing": if provisioned { "Provisioned" } else { "OnDemand" },
                "capacity": cap.map(|c| json!({"read": c, "write": c})).unwrap_or(json!({"read": 1, "write": 1})),
                "globalSecondaryIndexes": names.iter().map(|n| json!({"name": n, "partitionKey": {"name": format!("{n}-k"), "type": "S"}})).collect::<Vec<_>>(),
                "pointInTimeRecovery": pitr, "ttlAttribute": ttl, "encryption": enc, "deletionProtection": dp, "stream": stream,
            }))
        })
}

fn cache_strategy() -> impl Strategy<Value = CacheSpec> {
    (0i32..4, any::<bool>(), 0i32..10, prop_oneof![Just("cache.t4g.micro"), Just("cache.r6g.large")], proptest::option::of(Just("03:00-05:00")))
        .prop_map(|(replicas, multi_az, days, node, window)| {
            fixtures::cache(json!({"replicas": replicas, "multiAz": multi_az && replicas > 0, "snapshotRetentionDays": days, "nodeType": node, "snapshotWindow": window}))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any table, from nothing or from another declared state (a previous spec, or by hand),
    /// reaches its spec one UpdateTable a pass.
    #[test]
    fn any_table_converges_to_its_spec(to in table_strategy(), from in table_strategy(), exists in any::<bool>()) {
        let from = exists.then(|| stack(vec![from], vec![]));
        prop_assert_eq!(from_then_to(from, stack(vec![to], vec![]), 12), Ok(()));
    }

    /// Any replication group shipshape could have made reaches its spec in a few passes, in
    /// an order ElastiCache accepts.
    #[test]
    fn any_cache_converges_to_its_spec(to in cache_strategy(), from in cache_strategy()) {
        prop_assert_eq!(from_then_to(Some(stack(vec![], vec![from])), stack(vec![], vec![to]), 6), Ok(()));
    }
}
