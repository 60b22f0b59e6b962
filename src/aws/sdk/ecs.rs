//! ECS through aws_sdk_ecs.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AdvancedConfiguration, AssignPublicIp, AwsVpcConfiguration, CanaryConfiguration, ClusterField, ClusterSetting, ClusterSettingName,
    Compatibility, ContainerDefinition, DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentLifecycleHook,
    DeploymentLifecycleHookAction, DeploymentLifecycleHookStage, DeploymentLifecycleHookStatus, DeploymentLifecycleHookTargetType,
    DeploymentLifecycleHookTimeoutConfiguration, DeploymentStrategy, HealthCheck, KeyValuePair, LaunchType, LinearConfiguration,
    LogConfiguration, LogDriver, NetworkConfiguration, NetworkMode, PortMapping, PropagateTags, Secret, ServiceField, SortOrder,
    StopServiceDeploymentStopType, Tag, TaskDefinitionField, TaskDefinitionStatus, TransportProtocol,
};
use aws_sdk_ecs::types::{ContainerOverride, DesiredStatus, TaskOverride};

use super::Adapter;
use crate::api::OWNER_TAG;
use crate::aws::{AwsError, Caller, Ecs, FamilyLookup, NativeStrategy, NewCluster, ServiceRequest, Tags, TaskRequest};
use crate::core::environment::ObservedCluster;
use crate::core::rollout::{DeploymentObs, Network, ServiceDeploymentObs, ServiceObs, TaskObs};
use crate::core::taskdef::{TaskDefinitionSpec, SPEC_HASH_TAG};

pub(super) struct SdkEcs {
    client: aws_sdk_ecs::Client,
    caller: Caller,
    /// Service revision ARN → its task definition (a revision never changes), so a drift
    /// check of a traffic-shifting service reads its deployment without describing the
    /// revision again.
    revisions: std::sync::Mutex<BTreeMap<String, String>>,
}

adapter!(impl SdkEcs, aws_sdk_ecs::Client);

impl SdkEcs {
    pub(super) fn new(conf: &aws_config::SdkConfig, caller: Caller) -> Self {
        SdkEcs { client: aws_sdk_ecs::Client::new(conf), caller, revisions: Default::default() }
    }

    /// A task definition (an ARN, or a family for its newest revision) with its tags.
    async fn describe_task_definition(
        &self,
        id: &str,
    ) -> Result<aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionOutput, AwsError> {
        let op = "DescribeTaskDefinition";
        self.sdk(op, |c| c.describe_task_definition().task_definition(id).include(TaskDefinitionField::Tags).send()).await
    }
}

fn tags_of(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect()
}

fn network_configuration(op: &'static str, r: &ServiceRequest) -> Result<NetworkConfiguration, AwsError> {
    awsvpc(op, &r.subnets, &r.security_groups, r.assign_public_ip)
}

/// An awsvpc network configuration (Fargate's).
fn awsvpc(op: &'static str, subnets: &[String], security_groups: &[String], public_ip: bool) -> Result<NetworkConfiguration, AwsError> {
    let vpc = AwsVpcConfiguration::builder()
        .set_subnets(Some(subnets.to_vec()))
        .set_security_groups(Some(security_groups.to_vec()))
        .assign_public_ip(if public_ip { AssignPublicIp::Enabled } else { AssignPublicIp::Disabled })
        .build()
        .map_err(|e| AwsError::Invalid { op, message: e.to_string() })?;
    Ok(NetworkConfiguration::builder().awsvpc_configuration(vpc).build())
}

/// ECS's answer to DescribeTaskDefinition of a family without revisions.
/// Pages of ListTaskDefinitions read for one family, and revisions described, at most.
const MAX_FAMILY_PAGES: usize = 10;
const MAX_REVISIONS_DESCRIBED: usize = 10;

/// The family of a task definition ARN (`…:task-definition/FAMILY:REVISION`).
fn family_of(arn: &str) -> Option<&str> {
    let (_, rest) = arn.rsplit_once("task-definition/")?;
    Some(rest.rsplit_once(':').map_or(rest, |(family, _)| family))
}

fn no_such_task_definition(e: &AwsError) -> bool {
    matches!(e, AwsError::NotFound { .. })
        || matches!(e, AwsError::Invalid { message, .. } if message.contains("Unable to describe task definition"))
}

#[async_trait]
impl Ecs for SdkEcs {
    async fn describe_cluster(&self, name: &str) -> Result<Option<ObservedCluster>, AwsError> {
        let out = self
            .sdk("DescribeClusters", |c| {
                c.describe_clusters().clusters(name).include(ClusterField::Tags).include(ClusterField::Settings).send()
            })
            .await?;
        let Some(c) = out.clusters().first() else {
            return Ok(None);
        };
        Ok(Some(ObservedCluster {
            arn: c.cluster_arn().unwrap_or_default().to_string(),
            status: c.status().unwrap_or_default().to_string(),
            tags: c.tags().iter().map(|t| (t.key().unwrap_or_default().to_string(), t.value().unwrap_or_default().to_string())).collect(),
            capacity_providers: c.capacity_providers().to_vec(),
            container_insights: c
                .settings()
                .iter()
                .find(|s| s.name() == Some(&ClusterSettingName::ContainerInsights))
                .and_then(|s| s.value().map(String::from)),
        }))
    }

    async fn create_cluster(&self, cluster: &NewCluster) -> Result<String, AwsError> {
        let out = self
            .sdk("CreateCluster", |c| {
                let mut req = c.create_cluster().cluster_name(&cluster.name).set_tags(Some(tags_of(&cluster.tags)));
                if !cluster.capacity_providers.is_empty() {
                    req = req.set_capacity_providers(Some(cluster.capacity_providers.clone()));
                }
                if let Some(v) = &cluster.container_insights {
                    req = req.settings(ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value(v).build());
                }
                req.send()
            })
            .await?;
        Ok(out.cluster().and_then(|c| c.cluster_arn()).unwrap_or_default().to_string())
    }

    async fn tag_resource(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.sdk("TagResource", |c| c.tag_resource().resource_arn(arn).set_tags(Some(tags_of(tags))).send()).await.map(|_| ())
    }

    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.sdk("UntagResource", |c| c.untag_resource().resource_arn(arn).set_tag_keys(Some(keys.to_vec())).send()).await.map(|_| ())
    }

    async fn put_capacity_providers(&self, cluster: &str, providers: &[String]) -> Result<(), AwsError> {
        self.sdk("PutClusterCapacityProviders", |c| {
            c.put_cluster_capacity_providers()
                .cluster(cluster)
                .set_capacity_providers(Some(providers.to_vec()))
                .set_default_capacity_provider_strategy(Some(vec![]))
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn set_container_insights(&self, cluster: &str, value: &str) -> Result<(), AwsError> {
        self.sdk("UpdateClusterSettings", |c| {
            c.update_cluster_settings()
                .cluster(cluster)
                .settings(ClusterSetting::builder().name(ClusterSettingName::ContainerInsights).value(value).build())
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn delete_cluster(&self, cluster: &str) -> Result<(), AwsError> {
        self.sdk("DeleteCluster", |c| c.delete_cluster().cluster(cluster).send()).await.map(|_| ())
    }

    async fn find_task_definition(&self, family: &str, spec_hash: &str, owner: &str) -> Result<FamilyLookup, AwsError> {
        let ours = |tags: &BTreeMap<String, String>| {
            tags.get(SPEC_HASH_TAG).map(String::as_str) == Some(spec_hash) && tags.get(OWNER_TAG).map(String::as_str) == Some(owner)
        };
        // The family's newest ACTIVE revision first (DescribeTaskDefinition of a bare family):
        // one call for a new family, and usually the answer.
        let newest = match self.describe_task_definition(family).await {
            Ok(out) => out,
            Err(e) if no_such_task_definition(&e) => return Ok(FamilyLookup::default()),
            Err(e) => return Err(e),
        };
        let newest_tags = tag_map(newest.tags());
        let newest_arn = newest.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string();
        if ours(&newest_tags) && !newest_arn.is_empty() {
            return Ok(FamilyLookup { found: Some(newest_arn), newest_tags: Some(newest_tags) });
        }
        // Older revisions: ListTaskDefinitions matches a family *prefix* ("api" also lists
        // "api-worker"), ascending by family then revision, so this family's revisions come
        // first; keep its own ARNs and look at the newest few.
        let mut revisions: Vec<String> = vec![];
        let mut token: Option<String> = None;
        for _ in 0..MAX_FAMILY_PAGES {
            let page = self
                .sdk("ListTaskDefinitions", |c| {
                    c.list_task_definitions()
                        .family_prefix(family)
                        .sort(SortOrder::Asc)
                        .max_results(100)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            revisions.extend(page.task_definition_arns().iter().filter(|arn| family_of(arn) == Some(family)).cloned());
            // Past this family once seen (other families follow it): done. Families that
            // sort before it (an endpoint ordering by ARN puts "api-x:1" before "api:1") are
            // paged through.
            let past = !revisions.is_empty() && page.task_definition_arns().last().is_some_and(|arn| family_of(arn) != Some(family));
            match page.next_token() {
                Some(t) if !past && !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        for arn in revisions.iter().rev().filter(|arn| **arn != newest_arn).take(MAX_REVISIONS_DESCRIBED) {
            let out = self.describe_task_definition(arn).await?;
            if ours(&tag_map(out.tags())) {
                return Ok(FamilyLookup { found: Some(arn.clone()), newest_tags: Some(newest_tags) });
            }
        }
        Ok(FamilyLookup { found: None, newest_tags: Some(newest_tags) })
    }

    async fn register_task_definition(&self, td: &TaskDefinitionSpec, spec_hash: &str, tags: &Tags) -> Result<String, AwsError> {
        let op = "RegisterTaskDefinition";
        let invalid = |e: &dyn std::fmt::Display| AwsError::Invalid { op, message: e.to_string() };
        let secrets = td
            .secrets
            .iter()
            .map(|s| Secret::builder().name(&s.name).value_from(&s.value_from).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        let health = match &td.health_check {
            None => None,
            Some(h) => {
                let secs = |d: &Option<crate::api::GoDuration>| d.as_ref().and_then(|d| i32::try_from(d.parsed().ok()?.as_secs()).ok());
                Some(
                    HealthCheck::builder()
                        .set_command(Some(h.command.clone()))
                        .set_interval(secs(&h.interval))
                        .set_timeout(secs(&h.timeout))
                        .set_retries(h.retries)
                        .set_start_period(secs(&h.start_period))
                        .build()
                        .map_err(|e| invalid(&e))?,
                )
            }
        };
        let logs = td.log_group.as_ref().map(|g| {
            // awslogs needs the region (ECS refuses the task otherwise).
            LogConfiguration::builder()
                .log_driver(LogDriver::Awslogs)
                .options("awslogs-group", g)
                .options("awslogs-region", td.log_region.as_deref().unwrap_or_default())
                .options("awslogs-stream-prefix", &td.family)
                .build()
        });
        let logs = match logs {
            Some(l) => Some(l.map_err(|e| invalid(&e))?),
            None => None,
        };
        let container = ContainerDefinition::builder()
            .name(&td.family)
            .image(&td.image)
            .essential(true)
            .set_port_mappings(td.port.map(|p| vec![PortMapping::builder().container_port(p).protocol(TransportProtocol::Tcp).build()]))
            .set_command((!td.command.is_empty()).then(|| td.command.clone()))
            .set_environment(Some(td.env.iter().map(|(k, v)| KeyValuePair::builder().name(k).value(v).build()).collect()))
            .set_secrets((!secrets.is_empty()).then_some(secrets))
            .set_health_check(health)
            .set_log_configuration(logs)
            .build();
        let mut all_tags = tags.clone();
        all_tags.insert(SPEC_HASH_TAG.into(), spec_hash.into());
        let out = self
            .sdk(op, |c| {
                c.register_task_definition()
                    .family(&td.family)
                    .requires_compatibilities(Compatibility::Fargate)
                    .network_mode(NetworkMode::Awsvpc)
                    .cpu(td.cpu.to_string())
                    .memory(td.memory.to_string())
                    .set_execution_role_arn(td.execution_role_arn.clone())
                    .set_task_role_arn(td.task_role_arn.clone())
                    .container_definitions(container.clone())
                    .set_tags(Some(tags_of(&all_tags)))
                    .send()
            })
            .await?;
        Ok(out.task_definition().and_then(|t| t.task_definition_arn()).unwrap_or_default().to_string())
    }

    async fn describe_services(&self, cluster: &str, names: &[String]) -> Result<Vec<(String, ServiceObs)>, AwsError> {
        let mut out = vec![];
        for chunk in names.chunks(10) {
            let resp = self
                .sdk("DescribeServices", |c| {
                    c.describe_services().cluster(cluster).set_services(Some(chunk.to_vec())).include(ServiceField::Tags).send()
                })
                .await?;
            let current: Vec<String> = resp
                .services()
                .iter()
                .filter(|s| shifts_traffic(s) && s.status() != Some("INACTIVE"))
                .filter_map(|s| s.current_service_deployment().map(String::from))
                .collect();
            let deployments = if current.is_empty() { vec![] } else { self.service_deployments(&current).await? };
            for s in resp.services() {
                if s.status() == Some("INACTIVE") {
                    continue;
                }
                let service_deployment = s
                    .current_service_deployment()
                    .filter(|_| shifts_traffic(s))
                    .and_then(|arn| deployments.iter().find(|d| d.arn == arn))
                    .cloned();
                let deployments = s
                    .deployments()
                    .iter()
                    .map(|d| DeploymentObs {
                        id: d.id().unwrap_or_default().to_string(),
                        task_definition: d.task_definition().unwrap_or_default().to_string(),
                        status: d.status().unwrap_or_default().to_string(),
                        rollout_state: d.rollout_state().map(|r| r.as_str().to_string()).unwrap_or_default(),
                        failed_tasks: d.failed_tasks(),
                        updated_at: d.updated_at().and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
                    })
                    .collect();
                out.push((
                    s.service_name().unwrap_or_default().to_string(),
                    ServiceObs {
                        arn: s.service_arn().unwrap_or_default().to_string(),
                        task_definition: s.task_definition().unwrap_or_default().to_string(),
                        desired_count: s.desired_count(),
                        maximum_percent: s.deployment_configuration().and_then(|c| c.maximum_percent()),
                        minimum_healthy_percent: s.deployment_configuration().and_then(|c| c.minimum_healthy_percent()),
                        deployments,
                        tags: tag_map(s.tags()),
                        network: s.network_configuration().and_then(|n| n.awsvpc_configuration()).map(|v| {
                            Network::new(
                                v.subnets().to_vec(),
                                v.security_groups().to_vec(),
                                v.assign_public_ip() == Some(&AssignPublicIp::Enabled),
                            )
                        }),
                        canary: None,
                        service_deployment,
                    },
                ));
            }
        }
        Ok(out)
    }

    async fn ensure_task_definition_active(&self, arn: &str) -> Result<String, AwsError> {
        let out = self.describe_task_definition(arn).await?;
        let Some(td) = out.task_definition() else {
            return Err(AwsError::NotFound { op: "DescribeTaskDefinition", message: format!("task definition {arn}") });
        };
        if td.status() == Some(&TaskDefinitionStatus::Active) {
            return Ok(arn.to_string());
        }
        // Deregistered: ECS still describes it, and refuses to point a service at it
        // (ECS developer guide, "Deregistering an Amazon ECS task definition revision").
        // The same content as a new revision is the same release.
        let op = "RegisterTaskDefinition";
        let registered = self
            .sdk(op, |c| {
                c.register_task_definition()
                    .set_family(td.family().map(String::from))
                    .set_container_definitions(Some(td.container_definitions().to_vec()))
                    .set_cpu(td.cpu().map(String::from))
                    .set_memory(td.memory().map(String::from))
                    .set_network_mode(td.network_mode().cloned())
                    .set_requires_compatibilities(Some(td.requires_compatibilities().to_vec()))
                    .set_execution_role_arn(td.execution_role_arn().map(String::from))
                    .set_task_role_arn(td.task_role_arn().map(String::from))
                    .set_volumes(Some(td.volumes().to_vec()))
                    .set_runtime_platform(td.runtime_platform().cloned())
                    .set_tags((!out.tags().is_empty()).then(|| out.tags().to_vec()))
                    .send()
            })
            .await?;
        registered
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .map(String::from)
            .ok_or_else(|| AwsError::Invalid { op, message: "no task definition ARN in the answer".into() })
    }

    async fn create_service(&self, r: &ServiceRequest) -> Result<(), AwsError> {
        let op = "CreateService";
        let network = network_configuration(op, r)?;
        self.sdk(op, |c| {
            c.create_service()
                .cluster(&r.cluster)
                .service_name(&r.name)
                .task_definition(&r.task_definition)
                .desired_count(r.desired_count)
                .launch_type(LaunchType::Fargate)
                .network_configuration(network.clone())
                .deployment_configuration(deployment_configuration(r))
                .set_load_balancers(load_balancers(r))
                .propagate_tags(PropagateTags::Service)
                .set_tags(Some(tags_of(&r.tags)))
                .client_token(&r.client_token)
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn update_service(&self, r: &ServiceRequest) -> Result<(), AwsError> {
        let network = network_configuration("UpdateService", r)?;
        self.sdk("UpdateService", |c| {
            c.update_service()
                .cluster(&r.cluster)
                .service(&r.name)
                .task_definition(&r.task_definition)
                .desired_count(r.desired_count)
                .network_configuration(network.clone())
                .deployment_configuration(deployment_configuration(r))
                .set_load_balancers(load_balancers(r))
                .send()
        })
        .await
        .map(|_| ())
    }

    async fn delete_service(&self, cluster: &str, name: &str) -> Result<(), AwsError> {
        // "you must update the service to a desired task count of 0 ... before you can delete
        // it" (ECS API Reference, DeleteService; or force, which shipshape does not use).
        let scaled = self.sdk("UpdateService", |c| c.update_service().cluster(cluster).service(name).desired_count(0).send()).await;
        match scaled {
            Ok(_) => {}
            Err(AwsError::NotFound { .. }) => return Ok(()),
            Err(AwsError::Invalid { message, .. }) if message.contains("ServiceNotActive") || message.contains("ServiceNotFound") => {
                return Ok(())
            }
            Err(e) => return Err(e),
        }
        let r = self.sdk("DeleteService", |c| c.delete_service().cluster(cluster).service(name).send()).await;
        match r {
            Ok(_) | Err(AwsError::NotFound { .. }) => Ok(()),
            Err(AwsError::Invalid { message, .. }) if message.contains("ServiceNotActive") || message.contains("ServiceNotFound") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn continue_deployment(&self, deployment: &str, hook: &str, rollback: bool) -> Result<(), AwsError> {
        let op = "ContinueServiceDeployment";
        let action = if rollback { DeploymentLifecycleHookAction::Rollback } else { DeploymentLifecycleHookAction::Continue };
        self.sdk(op, |c| c.continue_service_deployment().service_deployment_arn(deployment).hook_id(hook).action(action.clone()).send())
            .await
            .map(|_| ())
    }

    async fn run_task(&self, r: &TaskRequest) -> Result<String, AwsError> {
        let op = "RunTask";
        let network = awsvpc(op, &r.subnets, &r.security_groups, r.assign_public_ip)?;
        let overrides = TaskOverride::builder()
            .container_overrides(ContainerOverride::builder().name(&r.container).set_command(Some(r.command.clone())).build())
            .build();
        let out = self
            .sdk(op, |c| {
                c.run_task()
                    .cluster(&r.cluster)
                    .task_definition(&r.task_definition)
                    .launch_type(LaunchType::Fargate)
                    .count(1)
                    .network_configuration(network.clone())
                    .overrides(overrides.clone())
                    .started_by(&r.started_by)
                    .client_token(&r.client_token)
                    .set_tags(Some(tags_of(&r.tags)))
                    .send()
            })
            .await?;
        if let Some(task) = out.tasks().first().and_then(|t| t.task_arn()) {
            return Ok(task.to_string());
        }
        // ECS answers 200 with `failures` when it cannot place the task.
        let why = out
            .failures()
            .iter()
            .map(|f| [f.reason(), f.detail()].into_iter().flatten().collect::<Vec<_>>().join(": "))
            .collect::<Vec<_>>()
            .join("; ");
        Err(AwsError::Invalid { op, message: format!("{}{why}", crate::aws::NOT_PLACED) })
    }

    async fn find_task(&self, cluster: &str, arn: Option<&str>, started_by: &str) -> Result<Option<TaskObs>, AwsError> {
        let arn = match arn {
            Some(a) => Some(a.to_string()),
            None => {
                let mut found = None;
                // startedBy with the desired status: running first, then stopped.
                for desired in [DesiredStatus::Running, DesiredStatus::Stopped] {
                    let op = "ListTasks";
                    let out = self
                        .sdk(op, |c| {
                            c.list_tasks().cluster(cluster).started_by(started_by).desired_status(desired.clone()).max_results(10).send()
                        })
                        .await?;
                    if let Some(a) = out.task_arns().first() {
                        found = Some(a.clone());
                        break;
                    }
                }
                found
            }
        };
        let Some(arn) = arn else { return Ok(None) };
        Ok(self.describe_tasks(cluster, std::slice::from_ref(&arn)).await?.into_iter().next())
    }

    async fn describe_tasks(&self, cluster: &str, arns: &[String]) -> Result<Vec<TaskObs>, AwsError> {
        if arns.is_empty() {
            return Ok(vec![]);
        }
        let out = self.sdk("DescribeTasks", |c| c.describe_tasks().cluster(cluster).set_tasks(Some(arns.to_vec())).send()).await?;
        Ok(out
            .tasks()
            .iter()
            .map(|t| {
                let container = t.containers().first();
                TaskObs {
                    arn: t.task_arn().unwrap_or_default().to_string(),
                    last_status: t.last_status().unwrap_or_default().to_string(),
                    exit_code: container.and_then(|c| c.exit_code()),
                    stop_code: t.stop_code().map(|c| c.as_str().to_string()),
                    stopped_reason: t.stopped_reason().map(String::from).or(container.and_then(|c| c.reason()).map(String::from)),
                    log_stream: None,
                    log_tail: vec![],
                    created_at: t.created_at().and_then(|d| chrono::DateTime::from_timestamp(d.secs(), d.subsec_nanos())),
                }
            })
            .collect())
    }

    async fn stop_task(&self, cluster: &str, task: &str, reason: &str) -> Result<(), AwsError> {
        let reason: String = reason.chars().take(255).collect();
        self.sdk("StopTask", |c| c.stop_task().cluster(cluster).task(task).reason(&reason).send()).await.map(|_| ())
    }

    async fn stop_deployment(&self, deployment: &str) -> Result<(), AwsError> {
        let op = "StopServiceDeployment";
        self.sdk(op, |c| {
            c.stop_service_deployment().service_deployment_arn(deployment).stop_type(StopServiceDeploymentStopType::Rollback).send()
        })
        .await
        .map(|_| ())
    }
}

impl SdkEcs {
    /// The current service deployments of `arns` (at most 20 per call, as ECS allows), with
    /// the task definition of each one's target revision.
    async fn service_deployments(&self, arns: &[String]) -> Result<Vec<ServiceDeploymentObs>, AwsError> {
        let mut out = vec![];
        for chunk in arns.chunks(20) {
            let op = "DescribeServiceDeployments";
            let resp = self.sdk(op, |c| c.describe_service_deployments().set_service_deployment_arns(Some(chunk.to_vec())).send()).await?;
            let known = |arn: &str| self.revisions.lock().ok().and_then(|m| m.get(arn).cloned());
            let revisions: Vec<String> = resp
                .service_deployments()
                .iter()
                .filter_map(|d| d.target_service_revision()?.arn().map(String::from))
                .filter(|arn| known(arn).is_none())
                .collect();
            if !revisions.is_empty() {
                let op = "DescribeServiceRevisions";
                let revs =
                    self.sdk(op, |c| c.describe_service_revisions().set_service_revision_arns(Some(revisions.clone())).send()).await?;
                if let Ok(mut known) = self.revisions.lock() {
                    if known.len() > 10_000 {
                        known.clear();
                    }
                    for r in revs.service_revisions() {
                        if let (Some(arn), Some(td)) = (r.service_revision_arn(), r.task_definition()) {
                            known.insert(arn.to_string(), td.to_string());
                        }
                    }
                }
            }
            for d in resp.service_deployments() {
                let target = d.target_service_revision();
                let weight = target
                    .and_then(|t| t.requested_production_traffic_weight())
                    .filter(|w| w.is_finite() && (0.0..=100.0).contains(w))
                    .map(|w| w.round() as i32);
                let paused_hook = d
                    .lifecycle_hook_details()
                    .iter()
                    .find(|h| h.status() == Some(&DeploymentLifecycleHookStatus::AwaitingAction))
                    .and_then(|h| h.hook_id().map(String::from));
                out.push(ServiceDeploymentObs {
                    arn: d.service_deployment_arn().unwrap_or_default().to_string(),
                    status: d.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                    reason: d.status_reason().map(String::from),
                    stage: d.lifecycle_stage().map(|s| s.as_str().to_string()),
                    task_definition: target.and_then(|t| t.arn()).and_then(known).unwrap_or_default(),
                    weight,
                    paused_hook,
                });
            }
        }
        Ok(out)
    }
}

/// Surge and availability from the spec; ECS's circuit breaker on as a second line of
/// defence (without its own rollback: shipshape decides, from status, what stable is). A
/// traffic-shifting strategy with its bakes at 0 (shipshape's bakes run at its pauses) and,
/// for a rollout it judges, its PAUSE hooks (an empty list otherwise, replacing earlier ones).
fn deployment_configuration(r: &ServiceRequest) -> DeploymentConfiguration {
    let mut c = DeploymentConfiguration::builder()
        .maximum_percent(r.maximum_percent)
        .minimum_healthy_percent(r.minimum_healthy_percent)
        .deployment_circuit_breaker(DeploymentCircuitBreaker::builder().enable(true).rollback(false).build());
    // A release without a strategy rolls, also after one had a strategy.
    let Some(n) = &r.native else { return c.strategy(DeploymentStrategy::Rolling).build() };
    c = c.bake_time_in_minutes(0);
    c = match n.strategy {
        NativeStrategy::Canary(percent) => c
            .strategy(DeploymentStrategy::Canary)
            .canary_configuration(CanaryConfiguration::builder().canary_percent(percent).canary_bake_time_in_minutes(0).build()),
        NativeStrategy::Linear(step) => c
            .strategy(DeploymentStrategy::Linear)
            .linear_configuration(LinearConfiguration::builder().step_percent(step).step_bake_time_in_minutes(0).build()),
        NativeStrategy::BlueGreen => c.strategy(DeploymentStrategy::BlueGreen),
    };
    let hooks = n.pause_hooks.then(|| {
        DeploymentLifecycleHook::builder()
            .target_type(DeploymentLifecycleHookTargetType::Pause)
            .lifecycle_stages(DeploymentLifecycleHookStage::PreProductionTrafficShift)
            .lifecycle_stages(DeploymentLifecycleHookStage::PostProductionTrafficShift)
            .timeout_configuration(
                DeploymentLifecycleHookTimeoutConfiguration::builder()
                    .timeout_in_minutes(n.hook_timeout_minutes.clamp(1, 1440))
                    .action(DeploymentLifecycleHookAction::Rollback)
                    .build(),
            )
            .build()
    });
    c.set_lifecycle_hooks(Some(hooks.into_iter().collect())).build()
}

/// The service's load balancer, with the alternate target group, listener rules and role
/// of a traffic-shifting strategy.
fn load_balancers(r: &ServiceRequest) -> Option<Vec<aws_sdk_ecs::types::LoadBalancer>> {
    let lb = r.load_balancer.as_ref()?;
    let advanced = (r.native.is_some() && lb.alternate_target_group.is_some()).then(|| {
        AdvancedConfiguration::builder()
            .set_alternate_target_group_arn(lb.alternate_target_group.clone())
            .set_production_listener_rule(lb.production_listener_rule.clone())
            .set_test_listener_rule(lb.test_listener_rule.clone())
            .set_role_arn(lb.role_arn.clone())
            .build()
    });
    Some(vec![aws_sdk_ecs::types::LoadBalancer::builder()
        .target_group_arn(&lb.target_group)
        .container_name(&lb.container_name)
        .container_port(lb.container_port)
        .set_advanced_configuration(advanced)
        .build()])
}

/// Whether a service deploys with a traffic-shifting strategy of ECS's.
fn shifts_traffic(s: &aws_sdk_ecs::types::Service) -> bool {
    matches!(
        s.deployment_configuration().and_then(|c| c.strategy()),
        Some(DeploymentStrategy::Canary | DeploymentStrategy::Linear | DeploymentStrategy::BlueGreen)
    )
}

#[cfg(test)]
mod tests {
    use super::family_of;

    #[test]
    fn a_family_is_read_from_its_arn_exactly() {
        assert_eq!(family_of("arn:aws:ecs:eu-west-1:123456789012:task-definition/api:7"), Some("api"));
        assert_eq!(family_of("arn:aws:ecs:eu-west-1:123456789012:task-definition/api-worker:12"), Some("api-worker"));
        assert_eq!(family_of("arn:aws:ecs:eu-west-1:123456789012:task-definition/svc1"), Some("svc1"));
        assert_eq!(family_of("not-an-arn"), None);
    }
}
