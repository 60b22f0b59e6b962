//! Environment plan: desired ECS cluster vs observed → ordered actions, or why none can run.

use std::collections::BTreeMap;

use crate::api::{reasons, EnvironmentSpec, MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG};
pub use crate::core::refusal::Refusal;

use super::requeue::Category;

/// An ECS cluster as AWS reports it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedCluster {
    /// Cluster ARN.
    pub arn: String,
    /// ACTIVE, PROVISIONING, INACTIVE, ...
    pub status: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Capacity providers.
    pub capacity_providers: Vec<String>,
    /// containerInsights setting value, when set.
    pub container_insights: Option<String>,
}

impl ObservedCluster {
    /// An INACTIVE cluster is a deleted one: ECS keeps it listed for a while.
    pub fn is_live(&self) -> bool {
        self.status != "INACTIVE"
    }
}

/// Everything read from AWS before planning.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedEnvironment {
    /// Account of the caller identity.
    pub caller_account: String,
    /// The cluster, when it exists and is not INACTIVE.
    pub cluster: Option<ObservedCluster>,
}

/// One change to make in AWS.
#[derive(Clone, Debug, PartialEq)]
pub enum ClusterCall {
    /// Create the cluster with these tags and settings.
    CreateCluster { name: String, tags: BTreeMap<String, String>, capacity_providers: Vec<String>, container_insights: Option<String> },
    /// Add or change tags.
    Tag { tags: BTreeMap<String, String> },
    /// Remove tags the controller applied earlier and the spec no longer lists.
    Untag { keys: Vec<String> },
    /// Set the capacity providers.
    SetCapacityProviders { providers: Vec<String> },
    /// Set Container Insights.
    SetContainerInsights { value: String },
}

/// Tags every created or adopted cluster carries: the Environment's plus ownership.
pub fn desired_tags(spec: &EnvironmentSpec, owner: &str) -> BTreeMap<String, String> {
    let mut tags = spec.tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), owner.into());
    tags
}

/// Checks the caller account against `accountId`; run before any write.
pub fn check_account(spec: &EnvironmentSpec, caller_account: &str) -> Result<(), Refusal> {
    match &spec.account_id {
        Some(want) if want != caller_account => Err(Refusal {
            reason: reasons::ACCOUNT_MISMATCH,
            message: format!(
                "AWS credentials belong to account {caller_account}, but the Environment declares accountId {want}; \
                 fix the credentials (or roleArn) or the accountId. Nothing was changed"
            ),
            category: Category::NotAllowed,
        }),
        _ => Ok(()),
    }
}

/// Plans the changes that bring the cluster to the spec.
///
/// `managed_tag_keys` are the keys applied by an earlier reconcile (from status): only
/// those may be removed, so tags others put on the cluster are left alone.
pub fn plan(
    spec: &EnvironmentSpec,
    owner: &str,
    observed: &ObservedEnvironment,
    managed_tag_keys: &[String],
) -> Result<Vec<ClusterCall>, Refusal> {
    check_account(spec, &observed.caller_account)?;
    let want_tags = desired_tags(spec, owner);
    let cluster = &spec.ecs_cluster;
    let insights = cluster.container_insights.map(|c| c.as_aws().to_string());
    let Some(current) = observed.cluster.as_ref().filter(|c| c.is_live()) else {
        if !cluster.create {
            return Err(Refusal {
                reason: reasons::CLUSTER_NOT_FOUND,
                message: format!(
                    "ECS cluster `{}` does not exist in {}; create it or set ecsCluster.create: true",
                    cluster.name, spec.region
                ),
                category: Category::InvalidSpec,
            });
        }
        return Ok(vec![ClusterCall::CreateCluster {
            name: cluster.name.clone(),
            tags: want_tags,
            capacity_providers: cluster.capacity_providers.clone(),
            container_insights: insights,
        }]);
    };
    if let Some(other) = current.tags.get(OWNER_TAG).filter(|o| o.as_str() != owner) {
        return Err(Refusal {
            reason: reasons::CONFLICT,
            message: format!(
                "ECS cluster `{}` is owned by `{other}` (tag {OWNER_TAG}); use another cluster name or remove it from that owner",
                cluster.name
            ),
            category: Category::Conflict,
        });
    }
    let mut actions = Vec::new();
    let changed: BTreeMap<_, _> =
        want_tags.iter().filter(|(k, v)| current.tags.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    if !changed.is_empty() {
        actions.push(ClusterCall::Tag { tags: changed });
    }
    let stale: Vec<String> =
        managed_tag_keys.iter().filter(|k| !want_tags.contains_key(*k) && current.tags.contains_key(*k)).cloned().collect();
    if !stale.is_empty() {
        actions.push(ClusterCall::Untag { keys: stale });
    }
    // Settings are managed only on clusters shipshape creates; an adopted cluster keeps its own.
    if cluster.create {
        if !cluster.capacity_providers.is_empty() && sorted(&cluster.capacity_providers) != sorted(&current.capacity_providers) {
            actions.push(ClusterCall::SetCapacityProviders { providers: cluster.capacity_providers.clone() });
        }
        if let Some(value) = insights.filter(|v| current.container_insights.as_ref() != Some(v)) {
            actions.push(ClusterCall::SetContainerInsights { value });
        }
    }
    Ok(actions)
}

fn sorted(v: &[String]) -> Vec<&String> {
    let mut v: Vec<_> = v.iter().collect();
    v.sort();
    v
}

/// Whether deleting the Environment should delete the cluster: only with policy Delete,
/// only a cluster shipshape was asked to create, and only one that carries its owner tag.
pub fn should_delete_cluster(spec: &EnvironmentSpec, owner: &str, cluster: Option<&ObservedCluster>) -> bool {
    spec.deletion_policy == crate::api::EnvironmentDeletionPolicy::Delete
        && spec.ecs_cluster.create
        && cluster.is_some_and(|c| c.is_live() && c.tags.get(OWNER_TAG).map(String::as_str) == Some(owner))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::fixtures::environment_spec as spec;

    fn observed(cluster: Option<ObservedCluster>) -> ObservedEnvironment {
        ObservedEnvironment { caller_account: "123456789012".into(), cluster }
    }

    fn live(tags: &[(&str, &str)]) -> ObservedCluster {
        ObservedCluster {
            arn: "arn:aws:ecs:eu-west-1:123456789012:cluster/prod".into(),
            status: "ACTIVE".into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            capacity_providers: vec!["FARGATE".into()],
            container_insights: None,
        }
    }

    fn owned() -> Vec<(&'static str, &'static str)> {
        vec![(MANAGED_BY_TAG, MANAGED_BY), (OWNER_TAG, "prod"), ("Project", "car-rental")]
    }

    #[test]
    fn a_missing_cluster_is_created_with_environment_and_ownership_tags() {
        let actions = plan(&spec(json!({})), "prod", &observed(None), &[]).unwrap();
        let ClusterCall::CreateCluster { tags, capacity_providers, .. } = &actions[0] else { panic!("{actions:?}") };
        assert_eq!(tags.get("Project").unwrap(), "car-rental");
        assert_eq!(tags.get(OWNER_TAG).unwrap(), "prod");
        assert_eq!(tags.get(MANAGED_BY_TAG).unwrap(), "shipshape");
        assert_eq!(capacity_providers, &["FARGATE"]);
    }

    #[test]
    fn an_inactive_cluster_counts_as_missing() {
        let mut c = live(&owned());
        c.status = "INACTIVE".into();
        let actions = plan(&spec(json!({})), "prod", &observed(Some(c)), &[]).unwrap();
        assert!(matches!(actions[0], ClusterCall::CreateCluster { .. }));
    }

    #[test]
    fn a_cluster_in_its_declared_state_needs_no_write() {
        let actions = plan(&spec(json!({})), "prod", &observed(Some(live(&owned()))), &[]).unwrap();
        assert_eq!(actions, vec![]);
    }

    #[test]
    fn a_missing_cluster_to_adopt_is_refused_as_cluster_not_found() {
        let s = spec(json!({"ecsCluster": {"name": "prod", "create": false}}));
        let r = plan(&s, "prod", &observed(None), &[]).unwrap_err();
        assert_eq!(r.reason, reasons::CLUSTER_NOT_FOUND);
    }

    #[test]
    fn a_wrong_account_refuses_before_any_write() {
        let s = spec(json!({"accountId": "999999999999"}));
        let r = plan(&s, "prod", &observed(None), &[]).unwrap_err();
        assert_eq!(r.reason, reasons::ACCOUNT_MISMATCH);
        assert!(r.message.contains("123456789012") && r.message.contains("999999999999"));
    }

    #[test]
    fn a_cluster_owned_by_another_environment_is_a_conflict() {
        let c = live(&[(OWNER_TAG, "staging")]);
        let r = plan(&spec(json!({})), "prod", &observed(Some(c)), &[]).unwrap_err();
        assert_eq!(r.reason, reasons::CONFLICT);
    }

    #[test]
    fn changed_tags_are_set_and_removed_managed_tags_are_untagged_but_foreign_tags_stay() {
        let mut tags = owned();
        tags.push(("Team", "old"));
        tags.push(("CostCenter", "someone-elses"));
        let s = spec(json!({"tags": {"Project": "car-rental-2"}}));
        let managed = vec!["Project".to_string(), "Team".to_string()];
        let actions = plan(&s, "prod", &observed(Some(live(&tags))), &managed).unwrap();
        assert_eq!(
            actions,
            vec![
                ClusterCall::Tag { tags: [("Project".to_string(), "car-rental-2".to_string())].into() },
                ClusterCall::Untag { keys: vec!["Team".into()] },
            ]
        );
    }

    #[test]
    fn settings_of_an_adopted_cluster_are_left_alone() {
        let s = spec(
            json!({"ecsCluster": {"name": "prod", "create": false, "capacityProviders": ["FARGATE_SPOT"], "containerInsights": "enabled"}}),
        );
        let actions = plan(&s, "prod", &observed(Some(live(&owned()))), &[]).unwrap();
        assert_eq!(actions, vec![]);
    }

    #[test]
    fn drifted_settings_of_a_created_cluster_are_put_back() {
        let s = spec(
            json!({"ecsCluster": {"name": "prod", "create": true, "capacityProviders": ["FARGATE", "FARGATE_SPOT"], "containerInsights": "enabled"}}),
        );
        let actions = plan(&s, "prod", &observed(Some(live(&owned()))), &[]).unwrap();
        assert_eq!(
            actions,
            vec![
                ClusterCall::SetCapacityProviders { providers: vec!["FARGATE".into(), "FARGATE_SPOT".into()] },
                ClusterCall::SetContainerInsights { value: "enabled".into() },
            ]
        );
    }

    #[test]
    fn only_an_owned_created_cluster_is_deleted_and_only_with_policy_delete() {
        let retain = spec(json!({}));
        let delete = spec(json!({"deletionPolicy": "Delete"}));
        let ours = live(&owned());
        let theirs = live(&[(OWNER_TAG, "other")]);
        assert!(!should_delete_cluster(&retain, "prod", Some(&ours)));
        assert!(should_delete_cluster(&delete, "prod", Some(&ours)));
        assert!(!should_delete_cluster(&delete, "prod", Some(&theirs)));
        assert!(!should_delete_cluster(&delete, "prod", None));
    }
}
