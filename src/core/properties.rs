//! Property tests: whatever a user writes (within what the API server stores: right JSON
//! types, any values), whatever AWS reports and whatever a status holds, parsing, planning
//! and the rollout state machine never panic, and a step's output steps again.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::api::{BucketSpec, DatabaseSpec, EnvironmentSpec, ServiceReleaseSpec, ServiceReleaseStatus};
use crate::core::analysis::Verdict;
use crate::core::environment::{self, ObservedCluster};
use crate::core::rollout::{self, Commands, DeploymentObs, Inputs, Network, ServiceObs};
use crate::core::spec;
use crate::core::stack::{self, ObservedBucket, ObservedDatabase, ObservedStack};

/// Text a tenant might put in a duration, a SHA or a name: valid-looking, absurd, empty.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "([0-9]{1,25}(\\.[0-9]{1,25})?(ms|s|m|h)){1,3}",
        "[0-9a-f]{0,45}",
        "\\PC{0,24}",
        Just("99999999999999999999h".to_string()),
        Just(String::new()),
    ]
}

/// Mostly what a user means, sometimes anything.
fn duration() -> impl Strategy<Value = String> {
    prop_oneof![8 => "[1-9][0-9]?s", 2 => "[1-5]m", 1 => text()]
}

fn sha() -> impl Strategy<Value = String> {
    prop_oneof![9 => "[0-9a-f]{7,40}", 1 => text()]
}

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![any::<i32>().prop_map(i64::from), -5i64..200, Just(i64::from(i32::MAX)), Just(i64::from(i32::MIN))]
}

fn extreme() -> impl Strategy<Value = i32> {
    prop_oneof![any::<i32>(), Just(i32::MAX), Just(i32::MIN), Just(0)]
}

/// Around one moment (so deadlines and warmups are sometimes ahead, sometimes past), and
/// now and then anywhere a timestamp can be.
fn time() -> impl Strategy<Value = DateTime<Utc>> {
    const BASE: i64 = 1_800_000_000;
    prop_oneof![9 => BASE - 900..BASE + 900, 1 => -20_000_000_000i64..20_000_000_000i64]
        .prop_map(|s| Utc.timestamp_opt(s, 0).single().unwrap_or_default())
}

prop_compose! {
    fn release_spec()(
        sha in sha(), drift in duration(), deadline in duration(), warmup in duration(), interval in duration(),
        hc in prop_oneof![4 => Just(None), 1 => proptest::option::of(text())], replicas in int(), history in int(), runs in int(), limit in int(), surge in int(), healthy in int(),
        policy in prop_oneof![Just("Hold"), Just("Rollback")], with_analysis in any::<bool>(),
    ) -> Value {
        let mut spec = json!({
            "environment": "prod",
            "image": {"repository": "r", "gitSha": sha},
            "task": {"cpu": 256, "memory": 512},
            "replicas": replicas, "historyLimit": history, "driftInterval": drift,
            "rollout": {"progressDeadline": deadline, "maxSurgePercent": surge, "minHealthyPercent": healthy,
                "onAnalysisUnavailable": policy,
                "analysis": {"warmup": warmup, "interval": interval, "successfulRuns": runs, "failureLimit": limit}},
        });
        if let Some(hc) = hc {
            spec["task"]["healthCheck"] = json!({"command": ["x"], "interval": hc, "timeout": hc, "startPeriod": hc});
        }
        if with_analysis {
            spec["rollout"]["analysis"]["queries"] = json!([{"name": "q", "prometheus": "up", "max": 1.0}]);
        }
        spec
    }
}

prop_compose! {
    fn deployment()(
        td in prop_oneof![3 => Just("td:2"), 1 => Just("td:1"), 1 => Just("td:3"), 1 => Just("")],
        status in prop_oneof![3 => Just("PRIMARY"), 1 => Just("ACTIVE"), 1 => Just("INACTIVE"), 1 => Just("")],
        state in prop_oneof![Just("IN_PROGRESS"), Just("COMPLETED"), Just("FAILED"), Just("?")],
        failed in any::<i32>(),
    ) -> DeploymentObs {
        DeploymentObs { id: format!("d-{td}"), task_definition: td.into(), status: status.into(), rollout_state: state.into(), failed_tasks: failed, updated_at: None }
    }
}

prop_compose! {
    fn service()(
        td in prop_oneof![3 => Just("td:2"), 1 => Just("td:1"), 1 => Just("td:3")],
        count in any::<i32>(), max in proptest::option::of(any::<i32>()), min in proptest::option::of(any::<i32>()),
        deployments in proptest::collection::vec(deployment(), 0..4),
        public in any::<bool>(),
    ) -> ServiceObs {
        ServiceObs {
            arn: "arn".into(), task_definition: td.into(), desired_count: count, maximum_percent: max, minimum_healthy_percent: min,
            deployments, tags: BTreeMap::new(), network: Some(Network::new(vec!["s".into()], vec![], public)),
            canary: None,
            service_deployment: None,
        }
    }
}

prop_compose! {
    /// A status as anyone able to write it could leave it (within its JSON types).
    fn status()(
        phase in prop_oneof![4 => Just("Analyzing"), 2 => Just("Progressing"), 1 => Just("Pending"), 1 => Just("Healthy"), 1 => Just("RollingBack"), 1 => Just("RolledBack"), 1 => Just("Failed"), 1 => Just("Paused")],
        started in time(), deployed in proptest::option::of(time()), measured in proptest::option::of(time()), since in proptest::option::of(time()),
        failures in extreme(), successes in extreme(), extension in any::<i64>(), attempts in extreme(),
        with_rollout in proptest::bool::weighted(0.8), with_rollback in proptest::bool::weighted(0.2), with_stable in any::<bool>(),
        spec_hash in prop_oneof![4 => Just("h2"), 1 => Just("h1")], history in 0usize..12,
    ) -> Value {
        let mut st = json!({"phase": phase, "currentSha": "bbbbbbb"});
        if with_stable {
            st["stableSha"] = json!("aaaaaaa");
            st["stableTaskDefinitionArn"] = json!("td:1");
            st["stableSpecHash"] = json!("h1");
        }
        if with_rollout {
            st["rollout"] = json!({"sha": "bbbbbbb", "startedAt": started, "specHash": spec_hash, "taskDefinitionArn": "td:2",
                "failures": failures, "successes": successes, "deployedAt": deployed, "lastMeasuredAt": measured,
                "unavailableSince": since, "deadlineExtensionSeconds": extension});
        }
        if with_rollback {
            st["rollback"] = json!({"taskDefinitionArn": "td:1", "reason": "r", "trigger": "analysis", "requestedAt": started, "failedAttempts": attempts});
        }
        st["history"] = Value::Array((0..history).map(|i| json!({"sha": format!("{i:07}"), "outcome": "Promoted", "startedAt": started})).collect());
        st
    }
}

fn verdict() -> impl Strategy<Value = Option<Verdict>> {
    proptest::option::of(prop_oneof![
        Just(Verdict::Pass),
        Just(Verdict::Fail("f".into())),
        Just(Verdict::Inconclusive("i".into())),
        Just(Verdict::Invalid("q".into())),
        Just(Verdict::Unavailable("u".into())),
    ])
}

/// How many generated cases reached the state machine (so the property is not vacuous).
static STEPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

#[test]
fn the_release_property_reaches_the_state_machine_often() {
    any_release_spec_status_and_observation_steps_without_panicking();
    let n = STEPPED.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n >= 200, "only {n} of 1000 generated cases reached the state machine");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Any spec: validated or refused with a message, never a panic; and a valid one's
    /// settings drive the state machine from any status and observation, step after step.
    #[test]
    fn any_release_spec_status_and_observation_steps_without_panicking(
        spec in release_spec(), status in status(), svc in proptest::option::of(service()),
        now in time(), verdicts in proptest::collection::vec(verdict(), 1..5),
        paused in any::<bool>(), frozen in any::<bool>(), rollback_cmd in any::<bool>(), promote_cmd in any::<bool>(),
        held in any::<bool>(),
    ) {
        let Ok(spec) = serde_json::from_value::<ServiceReleaseSpec>(spec) else { return Ok(()) };
        let cfg = match spec::release(&spec, Duration::from_secs(60)) {
            Ok(cfg) => cfg,
            Err(e) => {
                prop_assert!(!e.0.is_empty());
                return Ok(());
            }
        };
        let Ok(mut st) = serde_json::from_value::<ServiceReleaseStatus>(status) else { return Ok(()) };
        STEPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let commands = Commands {
            retry: None,
            rollback: rollback_cmd.then(|| "now".to_string()),
            promote: promote_cmd.then(|| "now".to_string()),
        };
        let network = Network::default();
        for (i, v) in verdicts.into_iter().enumerate() {
            let _ = rollout::measurement_due(&st, now, &cfg);
            let inputs = Inputs {
                now: now + chrono::Duration::seconds(i as i64 * 7),
                sha: "bbbbbbb",
                spec_hash: "h2",
                task_definition: "td:2",
                replicas: spec.replicas,
                deployment_percents: (200, 100),
                service: svc.as_ref(),
                network: &network,
                paused,
                frozen,
                hold: held.then(|| crate::core::promotion::Hold {
                    reason: crate::api::reasons::WAITING_FOR_UPSTREAM,
                    message: "soaking".into(),
                    until: None,
                    upstream: None,
                }),
                commands: &commands,
                round: v.map(|v| (v, vec![])),
                config: &cfg,
                pre_deploy: None,
            };
            let step = rollout::step(&st, &inputs);
            prop_assert!(step.status.history.len() <= cfg.history_limit.max(st.history.len()));
            if held && st.rollout.is_none() {
                // A held SHA never starts: no rollout begins, no traffic moves to it.
                prop_assert!(step.status.rollout.is_none() || step.status.rollout.as_ref().is_some_and(|r| r.sha != "bbbbbbb"));
            }
            if let Some(td) = step.effects.iter().find_map(|e| match e {
                rollout::Effect::RollBack { task_definition } => Some(task_definition.clone()),
                _ => None,
            }) {
                st = rollout::rollback_accepted(&step.status, &td, now, cfg.history_limit).0;
            } else {
                st = step.status;
            }
        }
    }

    /// Any databases and buckets against anything AWS reports: a plan (or a refusal),
    /// never a panic; and its hash and lines render.
    #[test]
    fn any_stack_against_any_observation_plans_without_panicking(
        names in proptest::collection::vec("[a-z][a-z0-9-]{0,8}", 1..4),
        storage in int(), retention in int(), obs_storage in any::<i32>(), obs_retention in any::<i32>(),
        version in text(), obs_version in text(), expire in proptest::option::of(int()), days in int(),
        exists in any::<bool>(), owner in prop_oneof![Just(None), Just(Some("t/data")), Just(Some("other/x"))],
        status in prop_oneof![Just("available"), Just("modifying"), Just("")], adopt in any::<bool>(),
    ) {
        let dbs: Vec<DatabaseSpec> = names.iter().filter_map(|n| serde_json::from_value(json!({
            "name": n, "engine": "postgres", "engineVersion": version, "instanceClass": "db.t4g.micro",
            "allocatedStorageGiB": storage, "backupRetentionDays": retention}))
            .ok()).collect();
        let buckets: Vec<BucketSpec> = names.iter().filter_map(|n| serde_json::from_value(json!({
            "name": format!("{n}-b"), "lifecycle": [{"prefix": "", "expireDays": expire, "transitions": [{"days": days, "storageClass": "GLACIER"}]}]}))
            .ok()).collect();
        let tags: BTreeMap<String, String> = owner.map(|o| [(crate::api::OWNER_TAG.to_string(), o.to_string())].into()).unwrap_or_default();
        let mut observed = ObservedStack::default();
        for d in &dbs {
            observed.databases.insert(d.name.clone(), exists.then(|| ObservedDatabase {
                name: d.name.clone(), status: status.into(), engine: "postgres".into(), engine_version: obs_version.clone(),
                allocated_storage_gib: obs_storage, backup_retention_days: obs_retention, tags: tags.clone(), ..Default::default()
            }));
        }
        for b in &buckets {
            observed.buckets.insert(b.name.clone(), exists.then(|| ObservedBucket { name: b.name.clone(), tags: tags.clone(), ..Default::default() }));
        }
        let env_tags = BTreeMap::new();
        let placement = stack::Placement::of("prod", &["subnet-1".into()], &["sg-1".into()]);
        let ctx = stack::PlanInputs { owner: "t/data", env_tags: &env_tags, region: "eu-west-1", adopt, placement: placement.as_ref() };
        let plan = stack::plan(&dbs, &buckets, &[], &observed, &ctx);
        let _ = (plan.hash(), plan.lines(), plan.refusal(), plan.is_noop());
    }

    /// Any Environment against any cluster: a plan or a refusal, never a panic.
    #[test]
    fn any_environment_against_any_cluster_plans_without_panicking(
        drift in text(), account in "[0-9]{0,14}", insights in prop_oneof![Just("enabled"), Just("disabled"), Just("x")],
        exists in any::<bool>(), status in prop_oneof![Just("ACTIVE"), Just("INACTIVE"), Just("")], owner in proptest::option::of("[a-z]{0,5}"),
        caller in "[0-9]{0,14}", providers in proptest::collection::vec("[A-Z_]{0,8}", 0..3),
    ) {
        let Ok(spec) = serde_json::from_value::<EnvironmentSpec>(json!({
            "region": "eu-west-1", "accountId": account, "driftInterval": drift,
            "ecsCluster": {"name": "c", "create": true, "capacityProviders": providers}})) else { return Ok(()) };
        let _ = spec::drift_interval(spec.drift_interval.as_ref(), Duration::from_secs(60));
        let tags: BTreeMap<String, String> = owner.map(|o| [(crate::api::OWNER_TAG.to_string(), o)].into()).unwrap_or_default();
        let observed = environment::ObservedEnvironment {
            caller_account: caller,
            cluster: exists.then(|| ObservedCluster { arn: "arn".into(), status: status.into(), tags, capacity_providers: vec![], container_insights: Some(insights.into()) }),
        };
        let _ = environment::plan(&spec, "prod", &observed, &["Team".into()]);
    }
}
