//! What StackSpecs and ServiceReleases share: resolving their Environment under the
//! tenancy rules, before any AWS call.

use kube::Resource;

use super::Context;
use crate::api::{reasons, Environment};
use crate::core::refusal::Refusal;
use crate::core::requeue::Category;
use crate::core::tenancy::{self, TenancyError};

/// The Environment, or the refusal that stops the reconcile.
pub async fn resolve<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    obj: &K,
    env_name: &str,
) -> Result<Result<Environment, Refusal>, kube::Error> {
    let namespace = obj.meta().namespace.clone().unwrap_or_default();
    // From the cache: a reconcile that changes nothing asks the API server nothing.
    let env = ctx.stores.environment(env_name).map(|e| e.as_ref().clone());
    let checked = tenancy::check(env_name, env.as_ref().map(|e| &e.spec), &namespace);
    match (checked, env) {
        (Ok(()), Some(env)) => Ok(Ok(env)),
        (Ok(()), None) | (Err(TenancyError::NotFound(_)), _) => {
            let e = TenancyError::NotFound(env_name.to_string());
            Ok(Err(Refusal { reason: reasons::ENVIRONMENT_NOT_FOUND, message: e.to_string(), category: Category::InvalidSpec }))
        }
        (Err(e @ TenancyError::NotAllowed { .. }), _) => {
            Ok(Err(Refusal { reason: reasons::ENVIRONMENT_NOT_ALLOWED, message: e.to_string(), category: Category::NotAllowed }))
        }
    }
}
