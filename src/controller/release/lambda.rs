//! Lambda functions as a release's target. The rollout state machine is the one
//! ECS releases use, with Lambda's pieces in ECS's places: a version published for the
//! release's content (found again by its description `shipshape <content hash>`, never
//! published twice) is the "task definition", and the alias callers invoke is the
//! "service": moving it to a version is a deployment that completes at once (Lambda shifts
//! every new invocation), and a rollback points it back at the stable version in one call.
//! An alias someone changed (another version, or weighted routing) is drift and put back.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::round::{self, Decided, Made, Outcome, Seen};
use crate::api::{reasons, Environment, FunctionSpec, ServiceRelease, ServiceReleaseStatus};
use crate::aws::{AwsClients, AwsError, FunctionConfig, ObservedAlias};
use crate::controller::{Context, Error};
use crate::core::rollout::{self, Config, DeploymentObs, Effect, Network, ServiceObs, StepObs, TaskObs};

/// The Lambda calls a decision makes: the alias moved (or created) at a version.
pub(crate) struct Calls {
    /// The function.
    pub(crate) function: String,
    /// The alias callers invoke.
    pub(crate) alias: String,
    /// The effects, each naming a version by its qualified ARN.
    pub(crate) effects: Vec<Effect>,
    /// The payloads of steps before traffic, by step.
    pub(crate) payloads: BTreeMap<usize, String>,
    /// The release's ownership tags (for snapshots).
    pub(crate) tags: BTreeMap<String, String>,
}

/// The state machine keeps each revision in one field per place (`taskDefinitionArn`,
/// `stableTaskDefinitionArn`, the rollout's, the rollback's, each history entry's); a Lambda
/// release's status names them as Lambda does (`functionVersionArn`, ...). This reads a
/// stored status into the machine's fields — a status written before the Lambda names
/// existed, with its versions under the task definition names, reads as it is.
pub(super) fn status_in(s: ServiceReleaseStatus) -> ServiceReleaseStatus {
    rename(s, true)
}

/// The status as a Lambda release stores it: [`status_in`] undone, the versions under the
/// Lambda names only (the task definition names are dropped, so an object written by an
/// older shipshape moves over on its next status write).
pub(super) fn status_out(s: ServiceReleaseStatus) -> ServiceReleaseStatus {
    rename(s, false)
}

/// Moves every revision from the Lambda names to the machine's (`to_machine`) or back.
fn rename(mut s: ServiceReleaseStatus, to_machine: bool) -> ServiceReleaseStatus {
    let mv = |lambda: &mut Option<String>, machine: &mut Option<String>| {
        let (from, into) = if to_machine { (lambda, machine) } else { (machine, lambda) };
        if let Some(v) = from.take() {
            *into = Some(v);
        }
    };
    mv(&mut s.function_version_arn, &mut s.task_definition_arn);
    mv(&mut s.stable_function_version_arn, &mut s.stable_task_definition_arn);
    if let Some(ro) = s.rollout.as_mut() {
        mv(&mut ro.function_version_arn, &mut ro.task_definition_arn);
    }
    if let Some(rb) = s.rollback.as_mut() {
        let mut machine = Some(std::mem::take(&mut rb.task_definition_arn)).filter(|v| !v.is_empty());
        mv(&mut rb.function_version_arn, &mut machine);
        rb.task_definition_arn = machine.unwrap_or_default();
    }
    for h in &mut s.history {
        mv(&mut h.function_version_arn, &mut h.task_definition_arn);
    }
    s
}

/// The function's configuration for this release: code for its SHA, settings, environment
/// (the StackSpec's outputs, then the spec's own variables), the execution role (its own,
/// else the Environment's default); None without a role.
pub fn config(
    name: &str,
    r: &ServiceRelease,
    f: &FunctionSpec,
    default_role: Option<&str>,
    outputs: &BTreeMap<String, String>,
) -> Option<FunctionConfig> {
    let role_arn = f.role_arn.clone().or_else(|| default_role.map(String::from))?;
    let sha = r.spec.image.git_sha.to_string();
    let mut env = outputs.clone();
    env.extend(f.env.clone());
    Some(FunctionConfig {
        name: name.to_string(),
        s3: f.s3.as_ref().map(|s| (s.bucket.clone(), s.key.replace("{{sha}}", &sha))),
        image: f.s3.is_none().then(|| format!("{}:{sha}", r.spec.image.repository)),
        runtime: f.runtime.clone(),
        handler: f.handler.clone(),
        memory: f.memory,
        timeout_seconds: f.timeout_seconds,
        architecture: serde_json::to_value(f.architecture).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        env,
        role_arn,
    })
}

/// The description a version of `config` carries: `shipshape <content hash>`.
pub fn description(config: &FunctionConfig) -> String {
    let json = serde_json::to_vec(config).unwrap_or_default();
    let hash: String = Sha256::digest(json).iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("shipshape {hash}")
}

/// The version number of a qualified function ARN (`...:function:api:7` → `7`).
pub fn version_of(qualified_arn: &str) -> &str {
    qualified_arn.rsplit(':').next().unwrap_or(qualified_arn)
}

/// The alias as the state machine sees a service: one deployment, complete, at the
/// version the alias points at. Weighted routing left on the alias reads as another
/// "task definition", so it is put back like any drift.
fn as_service(alias: &ObservedAlias, function_arn: &str, tags: &BTreeMap<String, String>, replicas: i32) -> ServiceObs {
    let mut at = format!("{function_arn}:{}", alias.version);
    let mut canary = None;
    match alias.weights.iter().next() {
        // One other version with a share (in whole percent, as steps are declared): a step.
        Some((v, w)) if alias.weights.len() == 1 && w.is_finite() && (0.0..=1.0).contains(w) => {
            canary = Some((format!("{function_arn}:{v}"), (w * 100.0).round() as i32));
        }
        Some(_) => {
            let routes: Vec<String> = alias.weights.iter().map(|(v, w)| format!("{v}={w}")).collect();
            at = format!("{at} (weighted: {})", routes.join(","));
        }
        None => {}
    }
    ServiceObs {
        arn: alias.arn.clone(),
        task_definition: at.clone(),
        desired_count: replicas,
        maximum_percent: None,
        minimum_healthy_percent: None,
        deployments: vec![DeploymentObs {
            id: at.clone(),
            task_definition: at,
            status: "PRIMARY".into(),
            rollout_state: "COMPLETED".into(),
            failed_tasks: 0,
            updated_at: None,
        }],
        tags: tags.clone(),
        network: None,
        canary,
        service_deployment: None,
    }
}

/// Lambda's part of a release's reconcile, after the Environment, the outputs and the
/// account are checked.
pub(super) async fn converge(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
    cfg: &Config,
    f: &FunctionSpec,
    aws: AwsClients,
    outputs: BTreeMap<String, String>,
) -> Result<Outcome<Calls>, Error> {
    let fail = Outcome::failed;
    let st = r.status.clone().unwrap_or_default();
    let name = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let (owner, tags, adopt) = round::ownership_of(r, env);
    let Some(config) = config(&name, r, f, env.spec.function_role_arn.as_deref(), &outputs) else {
        return Ok(Outcome::invalid(format!(
            "Lambda function {name} has no execution role: set spec.function.roleArn, or functionRoleArn on Environment {}",
            env.name_any()
        )));
    };
    if let Some((bucket, key)) = &config.s3 {
        if !env.spec.allows_function_code(bucket, key) {
            let declared = if env.spec.function_code_locations.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it declares {}", env.spec.function_code_locations.join(", "))
            };
            return Ok(Outcome::invalid(format!(
                "Lambda function {name}: code s3://{bucket}/{key} (spec.function.s3) is outside Environment {}'s functionCodeLocations ({declared}); add its location there",
                env.name_any()
            )));
        }
    }
    let description = description(&config);
    let hash = round::identity(description.trim_start_matches("shipshape "), r);

    let function = match aws.lambda.get_function(&name).await {
        Ok(fun) => fun,
        Err(e) => return Ok(fail(e)),
    };
    let what = format!("Lambda function {name}");
    if let Some(fun) = &function {
        let tag = |add: BTreeMap<String, String>| {
            let (lambda, arn) = (aws.lambda.clone(), fun.arn.clone());
            async move { lambda.tag_function(&arn, &add).await }
        };
        if let Err(stop) = round::claim(ctx, r, &what, &fun.tags, (&owner, &tags, adopt), tag).await? {
            return Ok(stop);
        }
        if fun.reserved_concurrency != f.reserved_concurrency {
            ctx.may_act()?;
            if let Err(e) = aws.lambda.set_reserved_concurrency(&name, f.reserved_concurrency).await {
                return Ok(fail(e));
            }
        }
    }

    // The version of this content: from status, found by its description, or published.
    let known = st
        .rollout
        .as_ref()
        .filter(|ro| ro.spec_hash == hash)
        .and_then(|ro| ro.task_definition_arn.clone())
        .or_else(|| st.stable_task_definition_arn.clone().filter(|_| st.stable_spec_hash.as_deref() == Some(hash.as_str())));
    // A new version that may not start yet (its upstream, an approval, its order, a window)
    // is not even uploaded: the function's code ($LATEST, which unqualified callers and event
    // sources run) stays the stable one. The decision below holds it and says why.
    let nothing_under_way = st.rollout.is_none() && st.rollback.is_none();
    let (judged, _) = round::gate_when_due(r, env, ctx).await;
    let held = known.is_none() && nothing_under_way && judged.as_ref().map_or(true, |h| h.is_some());
    let version = match (known, &function) {
        (Some(v), _) => v,
        (None, _) if held => st.stable_task_definition_arn.clone().unwrap_or_default(),
        (None, None) => {
            ctx.may_act()?;
            if let Err(e) = aws.lambda.create_function(&config, &description, &tags).await {
                return Ok(fail(e));
            }
            if let Some(n) = f.reserved_concurrency {
                if let Err(e) = aws.lambda.set_reserved_concurrency(&name, Some(n)).await {
                    return Ok(fail(e));
                }
            }
            match publish_when_ready(&aws, &name, &description).await {
                Ok(Some(v)) => v,
                Ok(None) => return Ok(Outcome::waiting(reasons::PROGRESSING, format!("Lambda function {name} is being created"))),
                Err(e) => return Ok(fail(e)),
            }
        }
        (None, Some(fun)) => match aws.lambda.find_version(&name, &description).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                ctx.may_act()?;
                if fun.description != description {
                    if let Err(e) = aws.lambda.update_function(&config, &description).await {
                        // Lambda refuses a change while the previous one is in progress.
                        if matches!(e, AwsError::Conflict { .. }) {
                            return Ok(Outcome::waiting(reasons::PROGRESSING, format!("Lambda function {name} is being updated")));
                        }
                        return Ok(fail(e));
                    }
                }
                match publish_when_ready(&aws, &name, &description).await {
                    Ok(Some(v)) => v,
                    Ok(None) => return Ok(Outcome::waiting(reasons::PROGRESSING, format!("Lambda function {name} is being updated"))),
                    Err(e) => return Ok(fail(e)),
                }
            }
            Err(e) => return Ok(fail(e)),
        },
    };

    let alias = match aws.lambda.get_alias(&name, &f.alias).await {
        Ok(a) => a,
        Err(e) => return Ok(fail(e)),
    };
    // Provisioned concurrency lives on the alias (it follows the alias to each new version).
    if alias.is_some() {
        match aws.lambda.get_provisioned_concurrency(&name, &f.alias).await {
            Ok(have) if have.as_ref().map(|(n, _)| *n) != f.provisioned_concurrency => {
                ctx.may_act()?;
                if let Err(e) = aws.lambda.set_provisioned_concurrency(&name, &f.alias, f.provisioned_concurrency).await {
                    return Ok(fail(e));
                }
            }
            Ok(_) => {}
            Err(e) => return Ok(fail(e)),
        }
    }
    let function_arn = version.rsplit_once(':').map(|(base, _)| base.to_string()).unwrap_or_default();
    let observed = alias.as_ref().map(|a| as_service(a, &function_arn, &tags, r.spec.replicas));

    let stable_version = st.stable_task_definition_arn.as_deref().map(version_of).unwrap_or_default().to_string();
    let seen = Seen {
        spec_hash: &hash,
        task_definition: &version,
        service: observed.as_ref(),
        network: &Network::default(),
        deployment_percents: (200, 100),
        vars: vec![
            ("function", name.clone()),
            ("version", version_of(&version).to_string()),
            ("revision", version_of(&version).to_string()),
            ("stableVersion", stable_version),
            ("alias", f.alias.clone()),
        ],
        pre_deploy: match step_seen(&st, &hash, &aws).await {
            Ok(o) => o,
            Err(e) => return Ok(fail(e)),
        },
        jobs: None,
        gate: Some(judged),
    };
    let (decision, verdict_at, frozen) = round::decide(r, env, ctx, &aws, cfg, seen).await;
    let payloads = r
        .spec
        .rollout
        .iter()
        .flat_map(|ro| ro.pre_deploy.iter().enumerate())
        .map(|(i, s)| (i, s.payload.clone().unwrap_or_else(|| "{}".into())))
        .collect();
    let calls = Calls { function: name, alias: f.alias.clone(), effects: decision.effects.clone(), payloads, tags };
    Ok(Outcome::Stepped(Box::new(decision), Box::new(Decided { aws, verdict_at, frozen, cfg: cfg.clone(), calls })))
}

impl Calls {
    /// The alias created at, or moved to, each effect's version (with no weighted routing
    /// left), a rollback included. Returns the version a rollback points at and the outcome.
    pub(crate) async fn execute(&self, aws: &AwsClients) -> (Made, Result<(), AwsError>) {
        let (name, alias) = (&self.function, &self.alias);
        let mut rollback_to = None;
        let mut invoked = vec![];
        for effect in &self.effects {
            let version = version_of(effect.task_definition());
            let done = match effect {
                Effect::CreateService { .. } => match aws.lambda.set_alias(name, alias, version, true).await {
                    // Made by an earlier attempt whose answer was lost: point it.
                    Err(AwsError::Conflict { .. }) => aws.lambda.set_alias(name, alias, version, false).await,
                    other => other,
                },
                Effect::UpdateService { .. } => aws.lambda.set_alias(name, alias, version, false).await,
                Effect::RollBack { task_definition } => {
                    rollback_to = Some(task_definition.clone());
                    aws.lambda.set_alias(name, alias, version, false).await
                }
                Effect::Shift { stable, weight, .. } => {
                    let share = f64::from(*weight) / 100.0;
                    aws.lambda.route_alias(name, alias, version_of(stable), version, share).await
                }
                Effect::Resume { .. } | Effect::Halt { .. } => {
                    Err(AwsError::Invalid { op: "UpdateAlias", message: "a Lambda alias has no ECS service deployment".into() })
                }
                // A step before traffic: the new version invoked synchronously, once.
                Effect::RunTask { step, .. } => {
                    let payload = self.payloads.get(step).map(String::as_str).unwrap_or("{}");
                    aws.lambda.invoke(name, version, payload).await.map(|out| invoked.push((*step, out)))
                }
                // An invocation is over when its call returns: nothing to stop.
                Effect::StopTask { .. } => Ok(()),
                Effect::PruneSnapshots { database, keep, newest, .. } => {
                    // Housekeeping: a failure leaves an old snapshot, never stops a step.
                    if let Err(e) = round::prune_snapshots(aws, database, *keep, newest, &self.tags).await {
                        tracing::warn!(error = %e, "pruning snapshots before steps");
                    }
                    Ok(())
                }
                Effect::Snapshot { database, name: snapshot, .. } => match aws.rds.create_snapshot(database, snapshot, &self.tags).await {
                    Err(AwsError::Conflict { message, .. } | AwsError::Invalid { message, .. }) if message.contains("AlreadyExists") => {
                        Ok(())
                    }
                    other => other,
                },
            };
            if let Err(e) = done {
                return (Made { rollback_to, started: vec![], unplaced: vec![], invoked }, Err(e));
            }
        }
        (Made { rollback_to, started: vec![], unplaced: vec![], invoked }, Ok(()))
    }
}

/// The function's tags, None when it is gone (a deleted release checks whose it is before
/// deleting it).
pub(crate) async fn tags_of(aws: &AwsClients, function: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    Ok(aws.lambda.get_function(function).await?.map(|f| f.tags))
}

/// Publishes $LATEST once Lambda has finished updating it (None: still updating; the
/// reconcile comes back).
async fn publish_when_ready(aws: &AwsClients, name: &str, description: &str) -> Result<Option<String>, AwsError> {
    for attempt in 0..3 {
        let Some(fun) = aws.lambda.get_function(name).await? else { return Ok(None) };
        if fun.state == "Active" && fun.last_update_status == "Successful" {
            return aws.lambda.publish_version(name, description).await.map(Some);
        }
        if fun.last_update_status == "Failed" || fun.state == "Failed" {
            return Err(AwsError::Invalid {
                op: "PublishVersion",
                message: format!("Lambda could not update function {name} (state {}, last update {})", fun.state, fun.last_update_status),
            });
        }
        if attempt < 2 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(None)
}

/// What AWS reports of a Lambda release's step before traffic under way: its snapshot's
/// status, or its invocation's outcome as status recorded it (a stopped "task": exit 0, or 1
/// for a function error); an invocation made whose outcome was never recorded is lost.
async fn step_seen(st: &ServiceReleaseStatus, hash: &str, aws: &AwsClients) -> Result<Option<StepObs>, AwsError> {
    // The stored rollout's (a superseded one's too: its running step ends first).
    let _ = hash;
    let Some(ro) = st.rollout.as_ref() else { return Ok(None) };
    let Some(step) = ro.pre_deploy.last() else { return Ok(None) };
    match step.phase.as_str() {
        "Snapshotting" => Ok(Some(StepObs::Snapshot(aws.rds.snapshot_status(step.snapshot.as_deref().unwrap_or_default()).await?))),
        "Running" => Ok(Some(match step.exit_code {
            Some(code) => StepObs::Task(Some(TaskObs {
                arn: format!("invocation {}", step.request_id.clone().unwrap_or_default()),
                last_status: "STOPPED".into(),
                exit_code: Some(code),
                stopped_reason: step.reason.clone(),
                log_tail: step.log_tail.clone(),
                ..TaskObs::default()
            })),
            None => StepObs::Lost,
        })),
        _ => Ok(None),
    }
}

/// The last lines of an invocation's log, as status keeps them.
pub(crate) fn tail(lines: &[String]) -> Vec<String> {
    let from = lines.len().saturating_sub(rollout::LOG_LINES);
    lines.iter().skip(from).map(|l| l.chars().take(rollout::LOG_LINE_CHARS).collect()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(function: serde_json::Value) -> ServiceRelease {
        crate::fixtures::release("team", "api", crate::fixtures::function_release_spec(function))
    }

    #[test]
    fn the_code_key_carries_the_sha_and_the_description_the_content() {
        let r = release(serde_json::json!({}));
        let f = r.spec.function.clone().unwrap();
        let outputs = BTreeMap::from([("DB_HOST".to_string(), "db".to_string())]);
        let c = config("api", &r, &f, None, &outputs).unwrap();
        assert_eq!(c.s3, Some(("builds".into(), "api/3f9c2a1d.zip".into())));
        assert_eq!(c.env.get("DB_HOST").map(String::as_str), Some("db"));
        assert_eq!((c.memory, c.timeout_seconds, c.architecture.as_str()), (128, 3, "x86_64"));
        let d = description(&c);
        assert!(d.starts_with("shipshape ") && d.len() == "shipshape ".len() + 16, "{d}");
        assert_eq!(d, description(&config("api", &r, &f, None, &outputs).unwrap()), "equal content, equal description");
        let bigger = release(serde_json::json!({"memory": 1024}));
        assert_ne!(d, description(&config("api", &bigger, bigger.spec.function.as_ref().unwrap(), None, &outputs).unwrap()));
    }

    #[test]
    fn the_role_is_the_functions_own_else_the_environments_default() {
        let outputs = BTreeMap::new();
        let env_role = "arn:aws:iam::123456789012:role/env-default";
        let own = release(serde_json::json!({}));
        let f = own.spec.function.clone().unwrap();
        assert_eq!(
            config("api", &own, &f, Some(env_role), &outputs).unwrap().role_arn,
            "arn:aws:iam::123456789012:role/shipshape/lambda/api"
        );
        let none = release(serde_json::json!({"roleArn": null}));
        let f = none.spec.function.clone().unwrap();
        assert_eq!(config("api", &none, &f, Some(env_role), &outputs).unwrap().role_arn, env_role);
        assert!(config("api", &none, &f, None, &outputs).is_none(), "no role at all: nothing to deploy with");
    }

    #[test]
    fn weighted_routing_on_the_alias_reads_as_drift() {
        let plain = ObservedAlias { arn: "arn:alias".into(), version: "3".into(), weights: BTreeMap::new() };
        let svc = as_service(&plain, "arn:fn", &BTreeMap::new(), 1);
        assert_eq!(svc.task_definition, "arn:fn:3");
        assert_eq!(svc.deployments[0].rollout_state, "COMPLETED");
        let step = ObservedAlias { weights: BTreeMap::from([("4".to_string(), 0.1)]), ..plain.clone() };
        let svc = as_service(&step, "arn:fn", &BTreeMap::new(), 1);
        assert_eq!((svc.task_definition.as_str(), svc.canary), ("arn:fn:3", Some(("arn:fn:4".to_string(), 10))), "a traffic step");
        let weighted = ObservedAlias { weights: BTreeMap::from([("2".to_string(), 0.1), ("4".to_string(), 0.2)]), ..plain };
        assert_ne!(as_service(&weighted, "arn:fn", &BTreeMap::new(), 1).task_definition, "arn:fn:3", "no step has two");
        assert_eq!(version_of("arn:aws:lambda:eu-west-1:123456789012:function:api:7"), "7");
    }

    #[test]
    fn versions_are_stored_under_lambda_names_and_old_statuses_read_as_they_are() {
        let v = |n: u32| format!("arn:aws:lambda:eu-west-1:123456789012:function:api:{n}");
        let old: ServiceReleaseStatus = serde_json::from_value(serde_json::json!({
            "phase": "RollingBack", "taskDefinitionArn": v(3), "stableTaskDefinitionArn": v(2),
            "rollout": {"sha": "bbbbbbb", "startedAt": "2026-12-01T00:00:00Z", "taskDefinitionArn": v(3)},
            "rollback": {"taskDefinitionArn": v(2), "reason": "r", "trigger": "analysis", "requestedAt": "2026-12-01T00:01:00Z"},
            "history": [{"sha": "aaaaaaa", "taskDefinitionArn": v(2), "outcome": "Promoted", "startedAt": "2026-11-30T00:00:00Z"}]
        }))
        .unwrap();
        let machine = status_in(old.clone());
        assert_eq!(machine, old, "a status written by an older shipshape reads as it is");
        let stored = serde_json::to_value(status_out(machine.clone())).unwrap();
        assert!(!stored.to_string().contains("askDefinitionArn"), "{stored}");
        assert_eq!(stored["functionVersionArn"], v(3));
        assert_eq!(stored["stableFunctionVersionArn"], v(2));
        assert_eq!(stored["rollout"]["functionVersionArn"], v(3));
        assert_eq!(stored["rollback"]["functionVersionArn"], v(2));
        assert_eq!(stored["history"][0]["functionVersionArn"], v(2));
        let again: ServiceReleaseStatus = serde_json::from_value(stored).unwrap();
        assert_eq!(status_in(again), machine, "written and read back, nothing lost");
    }
}
