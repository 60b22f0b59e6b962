//! Which namespaces may use an Environment.

use crate::api::EnvironmentSpec;

/// Why a namespaced object may not use an Environment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TenancyError {
    /// The Environment does not exist.
    #[error("environment `{0}` does not exist; create it or fix spec.environment")]
    NotFound(String),
    /// The namespace is not listed.
    #[error("environment `{env}` does not allow namespace `{namespace}`; add it to spec.allowedNamespaces of the Environment")]
    NotAllowed { env: String, namespace: String },
}

/// Checks that `namespace` may deploy into the Environment `name` (given if it exists).
pub fn check(name: &str, env: Option<&EnvironmentSpec>, namespace: &str) -> Result<(), TenancyError> {
    let env = env.ok_or_else(|| TenancyError::NotFound(name.to_string()))?;
    if env.allowed_namespaces.iter().any(|n| n == namespace) {
        Ok(())
    } else {
        Err(TenancyError::NotAllowed { env: name.to_string(), namespace: namespace.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(allowed: &[&str]) -> EnvironmentSpec {
        crate::fixtures::environment_spec(serde_json::json!({"allowedNamespaces": allowed}))
    }

    #[test]
    fn a_listed_namespace_may_deploy() {
        assert_eq!(check("prod", Some(&env(&["team-a"])), "team-a"), Ok(()));
    }

    #[test]
    fn an_empty_allow_list_allows_no_namespace() {
        assert!(matches!(check("prod", Some(&env(&[])), "team-a"), Err(TenancyError::NotAllowed { .. })));
    }

    #[test]
    fn an_unlisted_namespace_is_refused_with_what_to_change() {
        let e = check("prod", Some(&env(&["team-a"])), "team-b").unwrap_err();
        assert_eq!(
            e.to_string(),
            "environment `prod` does not allow namespace `team-b`; add it to spec.allowedNamespaces of the Environment"
        );
    }

    #[test]
    fn a_missing_environment_is_named() {
        assert_eq!(check("prod", None, "team-a"), Err(TenancyError::NotFound("prod".into())));
    }
}
