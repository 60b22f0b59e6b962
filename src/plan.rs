//! `shipshape plan -f PATH`: what the controller would change in AWS for these manifests,
//! from live (read-only) observations. Exit 0: nothing would change; 2: something would;
//! 1: error — like `terraform plan -detailed-exitcode`.

use std::io::Read;
use std::path::Path;

use kube::ResourceExt;
use serde::Deserialize;

use crate::api::{owner_of, Environment, StackSpec};
use crate::aws::AwsProvider;
use crate::controller::{environment_target, observe_stack, plan_stack};
use crate::core::environment::{self as env_plan, ObservedEnvironment};

/// The manifests `plan` understands.
#[derive(Default)]
pub struct Manifests {
    /// Environments.
    pub environments: Vec<Environment>,
    /// StackSpecs.
    pub stacks: Vec<StackSpec>,
}

/// Reads YAML manifests from a file, a directory (`*.yaml`, `*.yml`) or `-` (stdin).
pub fn read(path: &str) -> anyhow::Result<Manifests> {
    let mut texts = vec![];
    if path == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        texts.push(s);
    } else if Path::new(path).is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
            .collect();
        files.sort();
        for f in files {
            texts.push(std::fs::read_to_string(f)?);
        }
    } else {
        texts.push(std::fs::read_to_string(path)?);
    }
    let mut m = Manifests::default();
    for text in texts {
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = serde_yaml::Value::deserialize(doc)?;
            let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
            match kind {
                "Environment" => m.environments.push(serde_yaml::from_value(value)?),
                "StackSpec" => {
                    let mut s: StackSpec = serde_yaml::from_value(value)?;
                    if s.metadata.namespace.is_none() {
                        s.metadata.namespace = Some("default".into());
                    }
                    m.stacks.push(s)
                }
                _ => {}
            }
        }
    }
    Ok(m)
}

/// Plans everything in `m`, writing a report; returns whether anything would change.
pub async fn run(m: &Manifests, aws: &dyn AwsProvider, out: &mut impl std::io::Write) -> anyhow::Result<bool> {
    let mut changes = false;
    for env in &m.environments {
        let clients = aws.clients(&environment_target(env)).await?;
        let caller = clients.sts.caller_account().await?;
        let cluster = clients.ecs.describe_cluster(&env.spec.ecs_cluster.name).await?;
        writeln!(out, "Environment {} ({}):", env.name_any(), env.spec.region)?;
        match env_plan::plan(&env.spec, &owner_of(env), &ObservedEnvironment { caller_account: caller, cluster }, &[]) {
            Err(r) => {
                changes = true;
                writeln!(out, "  unsupported: {} ({})", r.message, r.reason)?;
            }
            Ok(steps) if steps.is_empty() => writeln!(out, "  EcsCluster {}: no changes", env.spec.ecs_cluster.name)?,
            Ok(steps) => {
                changes = true;
                for s in steps {
                    writeln!(out, "  EcsCluster {}: {}", env.spec.ecs_cluster.name, describe(&s))?;
                }
            }
        }
    }
    for stack in &m.stacks {
        let key = format!("{}/{}", stack.namespace().unwrap_or_default(), stack.name_any());
        let env = m.environments.iter().find(|e| e.name_any() == stack.spec.environment).ok_or_else(|| {
            anyhow::anyhow!(
                "StackSpec {key} names environment `{}`, which is not among the manifests; pass its file too",
                stack.spec.environment
            )
        })?;
        let clients = aws.clients(&environment_target(env)).await?;
        let observed = observe_stack(stack, &clients).await?;
        let p = plan_stack(stack, env, &observed);
        writeln!(out, "StackSpec {key} (environment {}):", env.name_any())?;
        for r in &p.resources {
            let lines = r.lines();
            if lines.is_empty() {
                writeln!(out, "  {} {}: no changes", r.kind, r.name)?;
            }
            for l in lines {
                writeln!(out, "  {l}")?;
            }
        }
        changes |= !p.is_noop();
    }
    Ok(changes)
}

fn describe(step: &env_plan::ClusterCall) -> String {
    match step {
        env_plan::ClusterCall::CreateCluster { .. } => "create".into(),
        env_plan::ClusterCall::Tag { tags } => {
            format!("update tags: set {}", tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","))
        }
        env_plan::ClusterCall::Untag { keys } => format!("update tags: remove {}", keys.join(",")),
        env_plan::ClusterCall::SetCapacityProviders { providers } => {
            format!("update capacityProviders -> {}", providers.join(","))
        }
        env_plan::ClusterCall::SetContainerInsights { value } => {
            format!("update containerInsights -> {value}")
        }
    }
}
