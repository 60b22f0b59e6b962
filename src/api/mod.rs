//! The three custom resources (group `shipshape.dev`, version `v1alpha1`) and shared types.

mod common;
mod environment;
pub mod reasons;
pub mod reference;
mod release;
mod stack;

pub use common::*;
pub use environment::*;
pub use release::*;
pub use stack::*;

use kube::{CustomResourceExt, Resource};

/// The API group of every shipshape resource.
pub const GROUP: &str = "shipshape.dev";
/// Label/tag key naming the controller that manages a resource.
pub const MANAGED_BY_TAG: &str = "shipshape.dev/managed-by";
/// Tag key naming the owning object (`namespace/name`, or `name` when cluster-scoped).
pub const OWNER_TAG: &str = "shipshape.dev/owner";
/// Value of [`MANAGED_BY_TAG`].
pub const MANAGED_BY: &str = "shipshape";
/// Annotation allowing an object to adopt existing AWS resources that no shipshape object
/// owns (`"true"`); never another owner's.
pub const ADOPT_ANNOTATION: &str = "shipshape.dev/adopt";

/// The finalizer of a kind: `<plural>.shipshape.dev/cleanup`.
pub fn finalizer_name<K: Resource<DynamicType = ()>>() -> String {
    format!("{}.{GROUP}/cleanup", K::plural(&()))
}

/// All CRDs, ordered by plural name (the order of the files in `crds/`).
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    let mut crds = vec![Environment::crd(), ServiceRelease::crd(), StackSpec::crd()];
    for crd in &mut crds {
        for v in &mut crd.spec.versions {
            let status = v
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
                .and_then(|s| s.properties.as_mut())
                .and_then(|p| p.get_mut("status"));
            if let Some(status) = status {
                status.default = Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(UNOBSERVED_STATUS.clone()));
            }
        }
    }
    crds
}

/// The status every object has before the controller first writes one: generation -1 was
/// observed, so kstatus (Flux, Argo CD's health, `kubectl wait`) reads a just-applied object
/// as InProgress instead of Current (an object with no status reads Current).
pub static UNOBSERVED_STATUS: std::sync::LazyLock<serde_json::Value> =
    std::sync::LazyLock::new(|| serde_json::json!({"observedGeneration": -1}));

/// One CRD as a YAML document (with its leading `---`), as in `crds/<plural>.yaml`.
pub fn crd_yaml(crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition) -> String {
    format!("---\n{}", serde_yaml::to_string(crd).expect("CRDs serialize"))
}

/// The CRDs as one multi-document YAML stream: what `shipshape crd` prints, and what
/// `cat crds/*.yaml` gives.
pub fn crds_yaml() -> String {
    crds().iter().map(crd_yaml).collect()
}

/// The owner tag value of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn owner_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.clone().unwrap_or_default();
    match &meta.namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name,
    }
}
