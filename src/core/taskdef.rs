//! The task definition a ServiceRelease asks for, and its content hash (which makes
//! registration idempotent and decides whether a change is a new rollout).

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::api::{HealthCheck, SecretEnv, ServiceReleaseSpec};

/// Tag carrying the content hash on registered task definitions.
pub const SPEC_HASH_TAG: &str = "shipshape.dev/spec-hash";

/// Everything that goes into a task definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskDefinitionSpec {
    /// Family (= the ECS service name).
    pub family: String,
    /// `<repository>:<gitSha>`.
    pub image: String,
    /// CPU units.
    pub cpu: i32,
    /// Memory MiB.
    pub memory: i32,
    /// Container port.
    pub port: Option<i32>,
    /// Command.
    pub command: Vec<String>,
    /// Environment (spec env over StackSpec outputs).
    pub env: BTreeMap<String, String>,
    /// Secrets.
    pub secrets: Vec<SecretEnv>,
    /// Execution role.
    pub execution_role_arn: Option<String>,
    /// Task role.
    pub task_role_arn: Option<String>,
    /// Health check.
    pub health_check: Option<HealthCheck>,
    /// Log group.
    pub log_group: Option<String>,
    /// The region of the log group (the Environment's), for the awslogs driver; only with a
    /// log group, so task definitions without one hash as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_region: Option<String>,
}

impl TaskDefinitionSpec {
    /// Builds it from the spec, the StackSpec outputs (spec env wins on a clash) and the
    /// Environment's region.
    pub fn new(service: &str, spec: &ServiceReleaseSpec, outputs: &BTreeMap<String, String>, region: &str) -> Option<Self> {
        let task = spec.task.as_ref()?;
        let mut env = outputs.clone();
        env.extend(task.env.clone());
        Some(TaskDefinitionSpec {
            family: service.to_string(),
            image: format!("{}:{}", spec.image.repository, spec.image.git_sha),
            cpu: task.cpu,
            memory: task.memory,
            port: task.port,
            command: task.command.clone(),
            env,
            secrets: task.secrets.clone(),
            execution_role_arn: task.execution_role_arn.clone(),
            task_role_arn: task.task_role_arn.clone(),
            health_check: task.health_check.clone(),
            log_group: task.log_group.clone(),
            log_region: task.log_group.as_ref().map(|_| region.to_string()),
        })
    }

    /// Content hash (16 hex digits): equal content, equal hash.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(self).expect("task definition serializes");
        Sha256::digest(json).iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sha: &str, env: &[(&str, &str)]) -> ServiceReleaseSpec {
        let env: BTreeMap<&str, &str> = env.iter().cloned().collect();
        crate::fixtures::release_spec(serde_json::json!({
            "image": {"repository": "r", "gitSha": sha},
            "task": {"cpu": 256, "memory": 512, "env": env},
        }))
    }

    #[test]
    fn the_image_tag_is_the_sha_and_spec_env_wins_over_outputs() {
        let outputs = [("DB_HOST".to_string(), "db".to_string()), ("NODE_ENV".to_string(), "dev".to_string())].into();
        let td = TaskDefinitionSpec::new("api", &spec("3f9c2a1", &[("NODE_ENV", "production")]), &outputs, "eu-west-1").unwrap();
        assert_eq!(td.image, "r:3f9c2a1");
        assert_eq!(td.env.get("NODE_ENV").map(String::as_str), Some("production"));
        assert_eq!(td.env.get("DB_HOST").map(String::as_str), Some("db"));
    }

    /// Task definitions registered before the log region existed keep their hash (no
    /// rollout of every release on upgrade).
    #[test]
    fn a_task_definition_without_a_log_group_hashes_as_before() {
        let td = TaskDefinitionSpec::new("api", &spec("3f9c2a1", &[("A", "1")]), &BTreeMap::new(), "eu-west-1").unwrap();
        assert_eq!(td.log_region, None);
        assert!(!serde_json::to_string(&td).unwrap().contains("log_region"));
    }

    #[test]
    fn the_hash_changes_with_content_only() {
        let none = BTreeMap::new();
        let a = TaskDefinitionSpec::new("api", &spec("3f9c2a1", &[("A", "1")]), &none, "eu-west-1").unwrap().hash();
        assert_eq!(a, TaskDefinitionSpec::new("api", &spec("3f9c2a1", &[("A", "1")]), &none, "eu-west-1").unwrap().hash());
        assert_ne!(
            a,
            TaskDefinitionSpec::new("api", &spec("3f9c2a1", &[("A", "2")]), &none, "eu-west-1").unwrap().hash(),
            "env only is a new rollout"
        );
        assert_ne!(a, TaskDefinitionSpec::new("api", &spec("abcdef1", &[("A", "1")]), &none, "eu-west-1").unwrap().hash());
        assert_eq!(a.len(), 16);
    }
}
