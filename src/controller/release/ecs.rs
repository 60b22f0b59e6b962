//! ECS services as a release's target: the task definition registered once per content
//! hash, the service created and updated through ECS (rolling, or ECS's own canary, linear
//! and blue/green with shipshape's PAUSE hooks), and its deletion.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use super::round::{self, Decided, Made, Outcome, Seen};
use crate::api::{Environment, LoadBalancerSpec, ServiceRelease, ServiceReleaseStatus, OWNER_TAG};
use crate::aws::{AwsClients, AwsError, LoadBalancer, NativeDeployment, NativeStrategy, ServiceRequest, TaskRequest};
use crate::controller::{Context, Error};
use crate::core::rollout::{self, Config, Effect, Network, StepObs, TaskObs};
use crate::core::taskdef::TaskDefinitionSpec;

/// The ECS calls a decision makes for one service, carried out after it is written.
pub(crate) struct Calls {
    /// The Environment (the service cache's key).
    pub(crate) environment: String,
    /// The cluster.
    pub(crate) cluster: String,
    /// The service.
    pub(crate) service: String,
    /// Each effect with its request.
    pub(crate) requests: Vec<(Effect, ServiceRequest)>,
    /// The tasks of steps before traffic the effects start, by step.
    pub(crate) tasks: BTreeMap<usize, TaskRequest>,
    /// The release's ownership tags (for snapshots).
    pub(crate) tags: BTreeMap<String, String>,
    /// The steps' names, by index (for StopTask's reason).
    pub(crate) step_names: Vec<String>,
}

/// The ECS part of a release's reconcile, after the Environment, the outputs and the account
/// are checked. `rollout_critical`: a rollout in flight reads the service afresh.
pub(crate) async fn converge(
    r: &ServiceRelease,
    env: &Environment,
    ctx: &Context,
    cfg: &Config,
    aws: AwsClients,
    outputs: BTreeMap<String, String>,
    rollout_critical: bool,
) -> Result<Outcome<Calls>, Error> {
    let st = r.status.clone().unwrap_or_default();
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let cluster = env.spec.ecs_cluster.name.clone();
    let (owner, tags, adopt) = round::ownership_of(r, env);

    // Whose the service is decides everything else: no ECS write before it is known ours.
    // A rollout in flight reads afresh; a drift check takes an answer younger than half its
    // interval (one a batched call of a neighbour brought in).
    // While a step before traffic runs the service is not what changes: a recent answer does.
    let before_traffic =
        st.rollout.as_ref().and_then(|ro| ro.pre_deploy.last()).is_some_and(|s| s.phase == "Running" || s.phase == "Snapshotting");
    // A release whose new SHA waits is woken by every change of what it waits on (at 1,000
    // chains, thousands of wakes a minute): it reads its service as a drift check does, an
    // answer younger than half its interval doing, so waiting costs no more AWS reads than
    // being stable. The pass that starts it decides on such an answer too; the rollout it
    // starts reads afresh from then on.
    let waiting = st.rollout.is_none() && st.rollback.is_none() && st.waiting.is_some();
    let max_age = if rollout_critical && !before_traffic && !waiting { Duration::ZERO } else { cfg.drift_interval / 2 };
    let mut observed = match ctx.services.describe(aws.ecs.clone(), &env.name_any(), &cluster, &service, max_age).await {
        Ok(o) => o,
        Err(e) => return Ok(Outcome::failed(e)),
    };
    if let Some(svc) = observed.as_mut() {
        let what = format!("ECS service {service} in cluster {cluster}");
        let arn = svc.arn.clone();
        let tag = |add: BTreeMap<String, String>| {
            let ecs = aws.ecs.clone();
            async move { ecs.tag_resource(&arn, &add).await }
        };
        match round::claim(ctx, r, &what, &svc.tags, (&owner, &tags, adopt), tag).await? {
            Err(stop) => return Ok(stop),
            Ok(added) if !added.is_empty() => {
                svc.tags.extend(added);
                ctx.services.forget(&env.name_any(), &cluster, &service);
            }
            Ok(_) => {}
        }
    }

    let (load_balancer, native) = match wiring(r, env, cfg, &service) {
        Ok(w) => w,
        Err(message) => return Ok(Outcome::invalid(message)),
    };
    let Some(td) = TaskDefinitionSpec::new(&service, &r.spec, &outputs, &env.spec.region) else {
        return Ok(Outcome::invalid("spec.task is missing: an ECS release needs it".into()));
    };
    let hash = td.hash();
    let identity = round::identity(&hash, r);
    // A revision registered for this content is remembered for a while: a release waiting
    // on its promotion or a window looks at its gate many times before it starts, and the
    // family's listing is a read the Environment's budget shares.
    let remembered = (env.name_any(), td.family.clone(), hash.clone(), owner.clone());
    let found = match ctx.task_definitions.get(&remembered) {
        Some(arn) => Ok(Known::Registered(arn)),
        None => known_task_definition(&aws, &st, &td, (&hash, &identity), &owner).await,
    };
    let td_arn = match found {
        Ok(Known::Registered(arn)) => {
            ctx.task_definitions.put(remembered, &arn);
            arn
        }
        Ok(Known::Missing { newest_tags }) => {
            // A family is account-wide: releases of the same service name in two clusters of
            // one account share it, each deploying only revisions with its own owner tag. A
            // family someone manages by hand (no owner tag) gets no revision of ours unless
            // adopted.
            if newest_tags.is_some_and(|tags| !tags.contains_key(OWNER_TAG)) && !adopt {
                return Ok(Outcome::conflict(format!(
                    "task definition family {} already exists and is not managed by shipshape; to adopt it, annotate the ServiceRelease with shipshape.dev/adopt: \"true\"",
                    td.family
                )));
            }
            ctx.may_act()?;
            match aws.ecs.register_task_definition(&td, &hash, &tags).await {
                Ok(arn) => {
                    ctx.task_definitions.put(remembered, &arn);
                    arn
                }
                Err(e) => return Ok(Outcome::failed(e)),
            }
        }
        Err(e) => return Ok(Outcome::failed(e)),
    };
    if let Err(message) = snapshots_known(r, ctx) {
        return Ok(Outcome::invalid(message));
    }
    let pre_deploy = match observe_step(r, &st, ctx, &aws, (&env.name_any(), &cluster), &hash, &td).await {
        Ok(o) => o,
        Err(e) => return Ok(Outcome::failed(e)),
    };
    let network = env.spec.network.clone().unwrap_or_default();
    let desired_network = Network::new(network.subnets.clone(), network.security_groups.clone(), network.assign_public_ip);
    let ro = r.spec.rollout.clone();
    let percents =
        (100 + ro.as_ref().map(|r| r.max_surge_percent).unwrap_or(100), ro.as_ref().map(|r| r.min_healthy_percent).unwrap_or(100));
    // {{revision}}: the task definition revision being judged.
    let revision = td_arn.rsplit(':').next().unwrap_or_default().to_string();
    let seen = Seen {
        spec_hash: &identity,
        task_definition: &td_arn,
        service: observed.as_ref(),
        network: &desired_network,
        deployment_percents: percents,
        vars: vec![("revision", revision)],
        pre_deploy,
        jobs: Some(super::checks::JobTarget {
            cluster: cluster.clone(),
            task_definition: td_arn.clone(),
            container: service.clone(),
            subnets: network.subnets.clone(),
            security_groups: network.security_groups.clone(),
            assign_public_ip: network.assign_public_ip,
            tags: tags.clone(),
            log_group: td.log_group.clone(),
        }),
        gate: None,
    };
    let (decision, verdict_at, frozen) = round::decide(r, env, ctx, &aws, cfg, seen).await;
    let token = client_token(r, &hash);
    let judged = decision.status.rollout.as_ref().and_then(|r| r.task_definition_arn.clone());
    let requests = decision
        .effects
        .iter()
        .map(|effect| {
            let req = ServiceRequest {
                cluster: cluster.clone(),
                name: service.clone(),
                task_definition: effect.task_definition().to_string(),
                desired_count: r.spec.replicas,
                subnets: network.subnets.clone(),
                security_groups: network.security_groups.clone(),
                assign_public_ip: network.assign_public_ip,
                maximum_percent: percents.0,
                minimum_healthy_percent: percents.1,
                tags: tags.clone(),
                client_token: token.clone(),
                load_balancer: load_balancer.clone(),
                native: native.as_ref().map(|n| NativeDeployment {
                    // Pauses only on the deployment of a rollout being judged.
                    pause_hooks: matches!(effect, Effect::UpdateService { .. }) && judged.as_deref() == Some(effect.task_definition()),
                    ..n.clone()
                }),
            };
            (effect.clone(), req)
        })
        .collect();
    let steps = r.spec.rollout.as_ref().map(|ro| ro.pre_deploy.clone()).unwrap_or_default();
    let tasks = decision
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::RunTask { step, task_definition } => Some((*step, task_definition)),
            _ => None,
        })
        .filter_map(|(i, td)| {
            let rollout = decision.status.rollout.as_ref()?;
            let (started_by, client_token) = step_tokens(r, rollout, i);
            Some((
                i,
                TaskRequest {
                    cluster: cluster.clone(),
                    task_definition: td.clone(),
                    container: service.clone(),
                    command: steps.get(i)?.command.clone(),
                    started_by,
                    client_token,
                    subnets: network.subnets.clone(),
                    security_groups: network.security_groups.clone(),
                    assign_public_ip: network.assign_public_ip,
                    tags: tags.clone(),
                },
            ))
        })
        .collect();
    let step_names = steps.iter().map(|s| s.name.clone()).collect();
    let calls = Calls { environment: env.name_any(), cluster, service, requests, tasks, tags, step_names };
    Ok(Outcome::Stepped(Box::new(decision), Box::new(Decided { aws, verdict_at, frozen, cfg: cfg.clone(), calls })))
}

impl Calls {
    /// Makes the calls in order. A rollback refused by ECS makes sure its stable task
    /// definition is ACTIVE (registering its content again if it was deregistered) and tries
    /// once more. Returns the task definition a rollback uses (also when ECS then refuses
    /// the rollback, so a retry does not register it again) and the outcome.
    pub(crate) async fn execute(&self, aws: &AwsClients) -> (Made, Result<(), AwsError>) {
        let mut rollback_to = None;
        let mut started = vec![];
        let mut unplaced = vec![];
        for (effect, req) in &self.requests {
            let done = match effect {
                Effect::CreateService { .. } => self.create(aws, req).await,
                Effect::UpdateService { .. } => aws.ecs.update_service(req).await,
                Effect::RollBack { task_definition } => {
                    // The rollback call first, with nothing before it; only when ECS refuses
                    // it is the stable task definition checked (and registered again if it
                    // was deregistered: ECS refuses INACTIVE revisions with a ClientException).
                    rollback_to = Some(task_definition.clone());
                    let to = |td: &str| ServiceRequest { task_definition: td.to_string(), ..req.clone() };
                    match aws.ecs.update_service(&to(task_definition)).await {
                        Err(refused @ AwsError::Invalid { .. }) => match aws.ecs.ensure_task_definition_active(task_definition).await {
                            Ok(active) if active != *task_definition => {
                                rollback_to = Some(active.clone());
                                aws.ecs.update_service(&to(&active)).await
                            }
                            Ok(_) => Err(refused),
                            Err(e) => Err(e),
                        },
                        other => other,
                    }
                }
                // An ECS service's steps are ECS's own (Resume): never a Shift.
                Effect::Shift { .. } => {
                    Err(AwsError::Invalid { op: "UpdateService", message: "an ECS service's traffic is shifted by ECS".into() })
                }
                Effect::Resume { deployment, hook, rollback, .. } => {
                    match aws.ecs.continue_deployment(deployment, hook, *rollback).await {
                        // No longer waiting (an earlier attempt whose answer was lost, or ECS's
                        // own timeout): nothing left to continue.
                        Err(AwsError::Invalid { .. } | AwsError::Conflict { .. }) if !rollback => Ok(()),
                        other => other,
                    }
                }
                Effect::Halt { deployment, hook, task_definition } => {
                    rollback_to = Some(task_definition.clone());
                    let halted = match hook {
                        Some(hook) => aws.ecs.continue_deployment(deployment, hook, true).await,
                        None => aws.ecs.stop_deployment(deployment).await,
                    };
                    match halted {
                        // The deployment is over (finished, or stopped by an earlier attempt):
                        // the service is pointed back at the stable revision instead.
                        Err(AwsError::Invalid { .. } | AwsError::Conflict { .. } | AwsError::NotFound { .. }) => {
                            aws.ecs.update_service(&ServiceRequest { task_definition: task_definition.clone(), ..req.clone() }).await
                        }
                        other => other,
                    }
                }
                Effect::RunTask { step, .. } => match self.tasks.get(step) {
                    Some(task) => match aws.ecs.run_task(task).await {
                        Ok(arn) => {
                            started.push((*step, arn));
                            Ok(())
                        }
                        // Placed nowhere: a step that cannot run fails (next round), not retried.
                        Err(AwsError::Invalid { message, .. }) if message.starts_with(crate::aws::NOT_PLACED) => {
                            unplaced.push((*step, message));
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                    None => Err(AwsError::Invalid { op: "RunTask", message: format!("no step {step} before traffic in the spec") }),
                },
                Effect::StopTask { task, .. } => {
                    let name = self.step_names.last().cloned().unwrap_or_default();
                    let why = format!("shipshape: preDeploy step {name} timed out");
                    match aws.ecs.stop_task(&self.cluster, task, &why).await {
                        // Stopped already.
                        Err(AwsError::NotFound { .. }) => Ok(()),
                        other => other,
                    }
                }
                Effect::PruneSnapshots { database, keep, newest, .. } => {
                    // Housekeeping: a failure leaves an old snapshot, never stops a step.
                    if let Err(e) = super::round::prune_snapshots(aws, database, *keep, newest, &self.tags).await {
                        tracing::warn!(error = %e, "pruning snapshots before steps");
                    }
                    Ok(())
                }
                Effect::Snapshot { database, name, .. } => match aws.rds.create_snapshot(database, name, &self.tags).await {
                    // Asked for before (an answer lost): it is being taken. Any other refusal
                    // (an instance stopped or being modified: InvalidDBInstanceState) is an error.
                    Err(AwsError::Conflict { message, .. } | AwsError::Invalid { message, .. }) if message.contains("AlreadyExists") => {
                        Ok(())
                    }
                    other => other,
                },
            };
            if let Err(e) = done {
                return (Made { rollback_to, started, unplaced, invoked: vec![] }, Err(e));
            }
        }
        (Made { rollback_to, started, unplaced, invoked: vec![] }, Ok(()))
    }

    /// CreateService; a create retried after a lost answer that finds the service with our
    /// owner tag is a success.
    async fn create(&self, aws: &AwsClients, req: &ServiceRequest) -> Result<(), AwsError> {
        match aws.ecs.create_service(req).await {
            Err(e @ (AwsError::Invalid { .. } | AwsError::Conflict { .. })) => {
                let existing = aws.ecs.describe_services(&req.cluster, std::slice::from_ref(&req.name)).await?;
                let ours = existing.iter().any(|(_, s)| s.tags.get(OWNER_TAG) == req.tags.get(OWNER_TAG));
                if ours {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

/// The task definition already registered for this content hash, if any: from status, or
/// found by its hash tag in ECS.
async fn known_task_definition(
    aws: &AwsClients,
    st: &ServiceReleaseStatus,
    td: &TaskDefinitionSpec,
    (hash, identity): (&str, &str),
    owner: &str,
) -> Result<Known, AwsError> {
    if let Some(arn) = st.rollout.as_ref().filter(|r| r.spec_hash == identity).and_then(|r| r.task_definition_arn.clone()) {
        return Ok(Known::Registered(arn));
    }
    if st.stable_spec_hash.as_deref() == Some(identity) {
        if let Some(arn) = &st.stable_task_definition_arn {
            return Ok(Known::Registered(arn.clone()));
        }
    }
    let family = aws.ecs.find_task_definition(&td.family, hash, owner).await?;
    match family.found {
        Some(arn) => Ok(Known::Registered(arn)),
        None => Ok(Known::Missing { newest_tags: family.newest_tags }),
    }
}

/// A task definition for a spec: registered already, or not (with the tags of its family's
/// newest revision, None when the family has none).
enum Known {
    Registered(String),
    Missing { newest_tags: Option<BTreeMap<String, String>> },
}

/// The release's load balancer (its own fields, else the Environment's) and ECS strategy,
/// or what is missing.
fn wiring(
    r: &ServiceRelease,
    env: &Environment,
    cfg: &Config,
    service: &str,
) -> Result<(Option<LoadBalancer>, Option<NativeDeployment>), String> {
    let defaults = env.spec.load_balancer.as_ref();
    let lb = match (&r.spec.load_balancer, cfg.native) {
        (Some(own), _) => Some(own.or(defaults)),
        (None, true) => Some(LoadBalancerSpec::default().or(defaults)),
        (None, false) => None,
    };
    let Some(lb) = lb else { return Ok((None, None)) };
    let port = r.spec.task.as_ref().and_then(|t| t.port);
    let mut missing = vec![];
    let need = |v: &Option<String>, field: &str, missing: &mut Vec<String>| {
        if v.is_none() {
            missing.push(format!("loadBalancer.{field}"));
        }
    };
    need(&lb.target_group_arn, "targetGroupArn", &mut missing);
    if cfg.native {
        need(&lb.alternate_target_group_arn, "alternateTargetGroupArn", &mut missing);
        need(&lb.production_listener_rule, "productionListenerRule", &mut missing);
        need(&lb.role_arn, "roleArn", &mut missing);
    }
    if port.is_none() {
        missing.push("task.port".into());
    }
    if !missing.is_empty() {
        let what = if cfg.native { "a canary, linear or blueGreen strategy on ECS" } else { "a load balancer" };
        return Err(format!(
            "{what} needs {} (in the ServiceRelease, or loadBalancer defaults in Environment {})",
            missing.join(", "),
            env.name_any()
        ));
    }
    let strategy = r.spec.rollout.as_ref().and_then(|ro| ro.strategy.as_ref()).and_then(|s| {
        if let Some(c) = &s.canary {
            Some(NativeStrategy::Canary(f64::from(c.percent)))
        } else if let Some(l) = &s.linear {
            Some(NativeStrategy::Linear(f64::from(l.step_percent)))
        } else {
            s.blue_green.as_ref().map(|_| NativeStrategy::BlueGreen)
        }
    });
    // ECS rolls back by itself when a pause outlives the longest a step may take (its bake,
    // then the progress deadline); a rollout held on purpose (onFailure: Pause) waits the
    // most ECS allows, 24 hours.
    let longest = cfg.steps.iter().map(|s| s.bake).max().unwrap_or_default().saturating_add(cfg.progress_deadline);
    let minutes = i32::try_from(longest.as_secs().div_ceil(60)).unwrap_or(i32::MAX).saturating_add(5);
    let hook_timeout_minutes = if cfg.on_failure == crate::api::FailurePolicy::Pause { 1440 } else { minutes.clamp(10, 1440) };
    let native = strategy.filter(|_| cfg.native).map(|strategy| NativeDeployment { strategy, pause_hooks: false, hook_timeout_minutes });
    let lb = LoadBalancer {
        target_group: lb.target_group_arn.unwrap_or_default(),
        alternate_target_group: lb.alternate_target_group_arn,
        production_listener_rule: lb.production_listener_rule,
        test_listener_rule: lb.test_listener_rule,
        role_arn: lb.role_arn,
        container_name: service.to_string(),
        container_port: port.unwrap_or(80),
    };
    Ok((Some(lb), native))
}

/// CreateService's idempotency token for this release and spec: a create retried after a
/// lost answer is the same request (36 characters at most, as ECS allows).
fn client_token(r: &ServiceRelease, spec_hash: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{spec_hash}", r.uid().unwrap_or_default()));
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// The tags of the release's service, None when it is gone (a deleted release checks whose it
/// is before deleting it).
pub(crate) async fn tags_of(aws: &AwsClients, env: &Environment, service: &str) -> Result<Option<BTreeMap<String, String>>, AwsError> {
    let cluster = env.spec.ecs_cluster.name.clone();
    Ok(aws.ecs.describe_services(&cluster, &[service.to_string()]).await?.into_iter().find(|(n, _)| n == service).map(|(_, s)| s.tags))
}

/// ECS's `startedBy` and idempotency token of step `i` of a rollout: derived from the release,
/// its spec and when the rollout began, so a restarted controller finds the step's task again
/// and a retried rollout of the same spec runs its steps anew.
fn step_tokens(r: &ServiceRelease, rollout: &crate::api::RolloutStatus, i: usize) -> (String, String) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{}/{}/{i}", r.uid().unwrap_or_default(), rollout.spec_hash, rollout.started_at.to_rfc3339()));
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    (format!("shipshape-{hex}-{i}"), hex)
}

/// Every `snapshot` of a step names a database of the release's StackSpec.
fn snapshots_known(r: &ServiceRelease, ctx: &Context) -> Result<(), String> {
    let steps = r.spec.rollout.as_ref().map(|ro| ro.pre_deploy.as_slice()).unwrap_or_default();
    for (i, step) in steps.iter().enumerate() {
        let Some(db) = &step.snapshot else { continue };
        let field = format!("spec.rollout.preDeploy[{i}].snapshot");
        let Some(stack) = &r.spec.stack else {
            return Err(format!("{field}: database {db} needs spec.stack, the StackSpec that has it"));
        };
        let ns = r.namespace().unwrap_or_default();
        let has = ctx.stores.stack(&ns, stack).is_some_and(|s| s.spec.databases.iter().any(|d| d.name == *db));
        if !has {
            return Err(format!("{field}: StackSpec {ns}/{stack} has no database {db}"));
        }
    }
    Ok(())
}

/// What AWS reports of the step before traffic under way: its snapshot's status, or its task
/// (found by ARN, else by `startedBy`) with the last lines of its output once it stopped.
async fn observe_step(
    r: &ServiceRelease,
    st: &ServiceReleaseStatus,
    ctx: &Context,
    aws: &AwsClients,
    (environment, cluster): (&str, &str),
    hash: &str,
    td: &TaskDefinitionSpec,
) -> Result<Option<StepObs>, AwsError> {
    // The stored rollout's (a superseded one's too: its running step ends first).
    let _ = hash;
    let Some(rollout) = st.rollout.as_ref() else { return Ok(None) };
    let Some((i, step)) = rollout.pre_deploy.iter().enumerate().next_back() else { return Ok(None) };
    match step.phase.as_str() {
        "Snapshotting" => {
            let name = step.snapshot.clone().unwrap_or_default();
            Ok(Some(StepObs::Snapshot(aws.rds.snapshot_status(&name).await?)))
        }
        "Running" if step.task_arn.is_none() && step.reason.as_deref().is_some_and(|r| r.starts_with(crate::aws::NOT_PLACED)) => {
            Ok(Some(StepObs::Task(Some(TaskObs {
                arn: "(none)".into(),
                last_status: "STOPPED".into(),
                stop_code: Some("NotPlaced".into()),
                stopped_reason: step.reason.clone(),
                ..TaskObs::default()
            }))))
        }
        "Running" => {
            let (started_by, _) = step_tokens(r, rollout, i);
            // Known: read with the cluster's other tasks; else found by its startedBy.
            let mut task = match step.task_arn.as_deref() {
                Some(arn) => ctx.tasks.describe(aws.ecs.clone(), environment, cluster, arn).await?,
                None => aws.ecs.find_task(cluster, None, &started_by).await?,
            };
            if let Some(t) = task.as_mut() {
                // The awslogs driver's stream: prefix/container/task id.
                let id = t.arn.rsplit('/').next().unwrap_or_default().to_string();
                t.log_stream = td.log_group.as_ref().map(|_| format!("{}/{}/{id}", td.family, td.family));
                if let (true, Some(group), Some(stream)) = (t.last_status == "STOPPED", &td.log_group, &t.log_stream) {
                    t.log_tail = match aws.logs.tail(group, stream, rollout::LOG_LINES).await {
                        Ok(lines) => lines,
                        Err(e) => vec![format!("(its output could not be read: {e})")],
                    };
                    for line in t.log_tail.iter_mut() {
                        *line = line.chars().take(rollout::LOG_LINE_CHARS).collect();
                    }
                    let excess = t.log_tail.len().saturating_sub(rollout::LOG_LINES);
                    t.log_tail.drain(..excess);
                }
            }
            Ok(Some(StepObs::Task(task)))
        }
        _ => Ok(None),
    }
}
