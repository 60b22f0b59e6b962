//! The status writer: server-side apply on the status subresource, one field manager,
//! and no patch when only timestamps would change.

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "shipshape";

/// Removes the timestamps that change on every reconcile, so equal states compare equal.
fn strip_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("lastTransitionTime");
            m.remove("lastSyncedAt");
            m.values_mut().for_each(strip_times);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// Whether writing `new` over `old` would change anything but timestamps.
pub fn needs_patch(old: Option<&Value>, new: &Value) -> bool {
    let Some(old) = old else { return true };
    let (mut a, mut b) = (old.clone(), new.clone());
    strip_times(&mut a);
    strip_times(&mut b);
    a != b
}

/// Writes `status` of `obj` like [`write`], with `resource_version` as a precondition: a
/// writer acting on a stale object (a deposed leader, a reconcile that raced an edit) gets
/// 409 Conflict and re-reads, instead of overwriting a newer decision. `resource_version` is
/// updated to the object's new version after a write.
pub async fn write_at<K>(
    api: &Api<K>,
    obj: &K,
    resource_version: &mut Option<String>,
    old: Option<Value>,
    status: Value,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if !needs_patch(old.as_ref(), &status) {
        return Ok(false);
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let mut patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    if let Some(rv) = resource_version.as_ref() {
        patch["metadata"] = json!({"resourceVersion": rv});
    }
    let written = api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    *resource_version = written.meta().resource_version.clone();
    Ok(true)
}

/// Writes `status` of `obj` when it differs from the stored one in more than timestamps.
/// Returns whether a patch was sent.
pub async fn write<K>(api: &Api<K>, obj: &K, old: Option<Value>, status: Value) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    if !needs_patch(old.as_ref(), &status) {
        return Ok(false);
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = json!({"apiVersion": K::api_version(&()), "kind": K::kind(&()), "status": status});
    api.patch_status(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(patch)).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_differing_only_in_timestamps_is_not_patched() {
        let a = json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}], "observedGeneration": 2});
        let b = json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-02T00:00:00Z"}], "observedGeneration": 2});
        assert!(!needs_patch(Some(&a), &b));
        let c = json!({"conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-02T00:00:00Z"}], "observedGeneration": 2});
        assert!(needs_patch(Some(&a), &c));
        assert!(needs_patch(None, &a));
    }
}
