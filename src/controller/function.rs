//! ServiceReleases whose target is a Lambda function. The rollout state machine is the one
//! ECS releases use, with Lambda's pieces in ECS's places: a version published for the
//! release's content (found again by its description `shipshape <content hash>`, never
//! published twice) is the "task definition", and the alias callers invoke is the
//! "service": moving it to a version is a deployment that completes at once (Lambda shifts
//! every new invocation), and a rollback points it back at the stable version in one call.
//! An alias someone changed (another version, or weighted routing) is drift and put back.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::ResourceExt;
use sha2::{Digest, Sha256};

use super::release::{commands, measure, Outcome, Pending, PAUSED_ANNOTATION};
use super::{stall_for, Context, Error};
use crate::api::{reasons, Environment, FunctionSpec, ServiceRelease, ADOPT_ANNOTATION, MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG};
use crate::aws::{AwsClients, AwsError, FunctionConfig, ObservedAlias, ServiceRequest};
use crate::core::conditions::Readiness;
use crate::core::ownership::{self, Ownership};
use crate::core::requeue::Category;
use crate::core::rollout::{self, Config, DeploymentObs, Network, ServiceObs};

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
) -> Result<Outcome, Error> {
    let fail =
        |e: AwsError| if e.category().is_transient() { Outcome::Transient(e) } else { Outcome::Stalled(stall_for(&e), e.category()) };
    let st = r.status.clone().unwrap_or_default();
    let name = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let owner = crate::api::owner_of(r);
    let mut tags = env.spec.tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), owner.clone());
    let adopt = r.annotations().get(ADOPT_ANNOTATION).map(String::as_str) == Some("true");
    let Some(config) = config(&name, r, f, env.spec.function_role_arn.as_deref(), &outputs) else {
        let message = format!(
            "Lambda function {name} has no execution role: set spec.function.roleArn, or functionRoleArn on Environment {}",
            env.name_any()
        );
        return Ok(Outcome::Stalled(Readiness::Stalled { reason: reasons::INVALID_SPEC, message }, Category::InvalidSpec));
    };
    if let Some((bucket, key)) = &config.s3 {
        if !env.spec.allows_function_code(bucket, key) {
            let declared = if env.spec.function_code_locations.is_empty() {
                "it declares none".to_string()
            } else {
                format!("it declares {}", env.spec.function_code_locations.join(", "))
            };
            let message = format!(
                "Lambda function {name}: code s3://{bucket}/{key} (spec.function.s3) is outside Environment {}'s functionCodeLocations ({declared}); add its location there",
                env.name_any()
            );
            return Ok(Outcome::Stalled(Readiness::Stalled { reason: reasons::INVALID_SPEC, message }, Category::InvalidSpec));
        }
    }
    let description = description(&config);
    let hash = description.trim_start_matches("shipshape ").to_string();

    let function = match aws.lambda.get_function(&name).await {
        Ok(fun) => fun,
        Err(e) => return Ok(fail(e)),
    };
    let what = format!("Lambda function {name}");
    if let Some(fun) = &function {
        match ownership::check(&what, &fun.tags, &owner, adopt, "ServiceRelease") {
            Ownership::Conflict(message) => {
                return Ok(Outcome::Stalled(Readiness::Stalled { reason: reasons::CONFLICT, message }, Category::Conflict))
            }
            Ownership::Adopt => {
                ctx.may_act()?;
                if let Err(e) = aws.lambda.tag_function(&fun.arn, &tags).await {
                    return Ok(fail(e));
                }
                ctx.event(r, false, reasons::ADOPTED, format!("adopted {what} (shipshape.dev/adopt); it now carries owner tag {owner}"))
                    .await;
            }
            Ownership::Ours => {
                let missing = ownership::missing_tags(&tags, &fun.tags);
                if !missing.is_empty() {
                    ctx.may_act()?;
                    if let Err(e) = aws.lambda.tag_function(&fun.arn, &missing).await {
                        return Ok(fail(e));
                    }
                }
            }
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
    let version = match (known, &function) {
        (Some(v), _) => v,
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
                Ok(None) => return Ok(Outcome::Waiting(format!("Lambda function {name} is being created"))),
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
                            return Ok(Outcome::Waiting(format!("Lambda function {name} is being updated")));
                        }
                        return Ok(fail(e));
                    }
                }
                match publish_when_ready(&aws, &name, &description).await {
                    Ok(Some(v)) => v,
                    Ok(None) => return Ok(Outcome::Waiting(format!("Lambda function {name} is being updated"))),
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

    let now = chrono::Utc::now();
    let sha = r.spec.image.git_sha.to_string();
    let stable_version = st.stable_task_definition_arn.as_deref().map(version_of).unwrap_or_default().to_string();
    let vars = [
        ("function", name.clone()),
        ("version", version_of(&version).to_string()),
        ("revision", version_of(&version).to_string()),
        ("stableVersion", stable_version),
        ("alias", f.alias.clone()),
    ];
    let round = if rollout::measurement_due(&st, now, cfg) { Some(measure(r, env, ctx, &aws, &sha, &vars).await) } else { None };
    let verdict_at = Instant::now();
    let cmds = commands(r, &st);
    let frozen = env.spec.freeze || env.metadata.deletion_timestamp.is_some();
    let paused = r.spec.paused || r.annotations().get(PAUSED_ANNOTATION).map(String::as_str) == Some("true");
    let inputs = rollout::Inputs {
        now,
        sha: &sha,
        spec_hash: &hash,
        task_definition: &version,
        replicas: r.spec.replicas,
        deployment_percents: (200, 100),
        service: observed.as_ref(),
        network: &Network::default(),
        paused,
        frozen,
        commands: &cmds,
        round,
        config: cfg,
    };
    let step = rollout::step(&st, &inputs);
    let requests = step
        .effects
        .iter()
        .map(|effect| {
            let req = ServiceRequest {
                cluster: String::new(),
                name: name.clone(),
                task_definition: effect.task_definition().to_string(),
                desired_count: r.spec.replicas,
                subnets: vec![],
                security_groups: vec![],
                assign_public_ip: false,
                maximum_percent: 200,
                minimum_healthy_percent: 100,
                tags: tags.clone(),
                client_token: String::new(),
                load_balancer: None,
                native: None,
            };
            (effect.clone(), req)
        })
        .collect();
    let pending = Pending {
        aws,
        environment: env.name_any(),
        cluster: String::new(),
        service: name.clone(),
        requests,
        verdict_at,
        frozen,
        cfg: cfg.clone(),
        alias: Some(f.alias.clone()),
    };
    Ok(Outcome::Stepped(Box::new(step), Box::new(pending)))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn release(extra: serde_json::Value) -> ServiceRelease {
        let mut spec = serde_json::json!({"environment": "prod", "image": {"gitSha": "3f9c2a1d"},
            "function": {"s3": {"bucket": "builds", "key": "api/{{sha}}.zip"}, "runtime": "nodejs20.x", "handler": "index.handler",
                "roleArn": "arn:aws:iam::123456789012:role/api"}});
        for (k, v) in extra.as_object().unwrap() {
            spec["function"][k] = v.clone();
        }
        ServiceRelease::new("api", serde_json::from_value(spec).unwrap())
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
        assert_eq!(config("api", &own, &f, Some(env_role), &outputs).unwrap().role_arn, "arn:aws:iam::123456789012:role/api");
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
}
