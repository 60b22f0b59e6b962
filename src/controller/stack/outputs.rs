//! The outputs ConfigMap: endpoints, ports, engines, bucket and table names and ARNs; never a
//! password (the master password's Secrets Manager ARN is named instead).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::super::{status::FIELD_MANAGER, Context};
use crate::api::{Environment, StackSpec, MANAGED_BY, MANAGED_BY_TAG};
use crate::core::stack::{env_key, ObservedStack};

/// Why the outputs could not be written.
pub enum OutputError {
    /// A ConfigMap of that name exists and belongs to something else.
    Conflict(String),
    /// Kubernetes API failure.
    Kube(kube::Error),
}

/// The ConfigMap data for a stack.
pub fn data(stack: &StackSpec, env: &Environment, observed: &ObservedStack) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for d in &stack.spec.databases {
        let key = env_key(&d.name);
        out.insert(
            format!("{key}_ENGINE"),
            serde_json::to_value(d.engine).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        );
        if let Some(db) = observed.databases.get(&d.name).and_then(Option::as_ref) {
            if let Some(host) = &db.endpoint {
                out.insert(format!("{key}_HOST"), host.clone());
            }
            if let Some(port) = db.port {
                out.insert(format!("{key}_PORT"), port.to_string());
            }
            out.insert(format!("{key}_USERNAME"), db.master_username.clone());
            if let Some(arn) = &db.master_secret_arn {
                out.insert(format!("{key}_MASTER_SECRET_ARN"), arn.clone());
            }
        }
    }
    for b in &stack.spec.buckets {
        let key = env_key(&b.name);
        out.insert(format!("{key}_BUCKET"), b.name.clone());
        out.insert(format!("{key}_REGION"), env.spec.region.clone());
    }
    for c in &stack.spec.caches {
        let key = env_key(&c.name);
        if let Some(observed) = observed.caches.get(&c.name).and_then(Option::as_ref) {
            if let Some((host, port)) = &observed.primary_endpoint {
                out.insert(format!("{key}_HOST"), host.clone());
                out.insert(format!("{key}_PORT"), port.to_string());
            }
            if let Some((host, _)) = &observed.reader_endpoint {
                out.insert(format!("{key}_READER_HOST"), host.clone());
            }
            out.insert(format!("{key}_TLS"), observed.transit_encryption.to_string());
        }
    }
    for t in &stack.spec.tables {
        let key = env_key(&t.name);
        out.insert(format!("{key}_TABLE"), t.name.clone());
        if let Some(observed) = observed.tables.get(&t.name).and_then(Option::as_ref) {
            out.insert(format!("{key}_TABLE_ARN"), observed.arn.clone());
            if let Some(stream) = &observed.stream_arn {
                out.insert(format!("{key}_STREAM_ARN"), stream.clone());
            }
        }
    }
    out
}

/// Writes (server-side apply) the ConfigMap named by `spec.outputs`, owned by the StackSpec.
pub async fn write(ctx: &Context, stack: &StackSpec, env: &Environment, observed: &ObservedStack) -> Result<(), OutputError> {
    let Some(name) = &stack.spec.outputs else {
        return Ok(());
    };
    let ns = stack.namespace().unwrap_or_default();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let uid = stack.uid().unwrap_or_default();
    // The cache holds the ConfigMaps shipshape labelled; one it does not hold is read
    // directly, in case someone else's of that name is in the way.
    let existing = match ctx.stores.output(&ns, name) {
        Some(cm) => Some(cm.as_ref().clone()),
        None => api.get_opt(name).await.map_err(OutputError::Kube)?,
    };
    if let Some(existing) = existing {
        let ours = existing.owner_references().iter().any(|o| o.uid == uid);
        if !ours {
            return Err(OutputError::Conflict(format!(
                "ConfigMap {ns}/{name} exists and is not owned by this StackSpec; choose another spec.outputs name or delete it"
            )));
        }
        if existing.data.clone().unwrap_or_default() == data(stack, env, observed) {
            return Ok(());
        }
    }
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {MANAGED_BY_TAG: MANAGED_BY},
            "ownerReferences": [{
                "apiVersion": StackSpec::api_version(&()), "kind": "StackSpec", "name": stack.name_any(), "uid": uid,
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "data": data(stack, env, observed),
    });
    api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(cm)).await.map_err(OutputError::Kube)?;
    Ok(())
}

/// Deletes the outputs ConfigMap (garbage collection would too, through the owner reference).
pub async fn delete(ctx: &Context, stack: &StackSpec) -> Result<(), kube::Error> {
    let Some(name) = &stack.spec.outputs else {
        return Ok(());
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &stack.namespace().unwrap_or_default());
    match api.get_opt(name).await? {
        Some(cm) if cm.owner_references().iter().any(|o| Some(&o.uid) == stack.uid().as_ref()) => {
            api.delete(name, &Default::default()).await?;
        }
        _ => {}
    }
    Ok(())
}
