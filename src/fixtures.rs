//! Specs for tests and benchmarks, in one place: each is a small valid spec as a user writes
//! it (JSON, camelCase) with the fields of `extra` laid over it. The unit tests, the test kit,
//! the integration tests and the benchmarks all build their objects here. Not part of the
//! API; it panics on a fixture that does not read as its type (a test's own mistake).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::api::{
    BucketSpec, CacheSpec, DatabaseSpec, Environment, EnvironmentSpec, ServiceRelease, ServiceReleaseSpec, StackSpec, StackSpecSpec,
    TableSpec, MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG,
};

/// `base` with the top-level fields of `extra` laid over it, read as `T`.
pub fn with<T: DeserializeOwned>(mut base: Value, extra: Value) -> T {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    serde_json::from_value(base).unwrap_or_else(|e| panic!("fixture: {e}"))
}

/// A Postgres database, `car-rental-db`.
pub fn database(extra: Value) -> DatabaseSpec {
    with(
        json!({"name": "car-rental-db", "engine": "postgres", "engineVersion": "16.4", "instanceClass": "db.t4g.micro", "allocatedStorageGiB": 20}),
        extra,
    )
}

/// A bucket, `uploads`.
pub fn bucket(extra: Value) -> BucketSpec {
    with(json!({"name": "uploads"}), extra)
}

/// A DynamoDB table, `users-prod`, keyed by `pk` (S) and `sk` (N).
pub fn table(extra: Value) -> TableSpec {
    with(json!({"name": "users-prod", "partitionKey": {"name": "pk", "type": "S"}, "sortKey": {"name": "sk", "type": "N"}}), extra)
}

/// A Redis replication group, `shop-redis`.
pub fn cache(extra: Value) -> CacheSpec {
    with(json!({"name": "shop-redis", "engineVersion": "7.0", "nodeType": "cache.r6g.large"}), extra)
}

/// An Environment in eu-west-1 whose cluster `prod` shipshape creates.
pub fn environment_spec(extra: Value) -> EnvironmentSpec {
    with(
        json!({"region": "eu-west-1", "ecsCluster": {"name": "prod", "create": true, "capacityProviders": ["FARGATE"]}, "tags": {"Project": "car-rental"}}),
        extra,
    )
}

/// An ECS release of image `r` at 3f9c2a1d into Environment `prod`.
pub fn release_spec(extra: Value) -> ServiceReleaseSpec {
    with(json!({"environment": "prod", "image": {"repository": "r", "gitSha": "3f9c2a1d"}, "task": {"cpu": 256, "memory": 512}}), extra)
}

/// A Lambda release at 3f9c2a1d into Environment `prod`, its code in S3; `function` is laid
/// over the function's settings.
pub fn function_release_spec(function: Value) -> ServiceReleaseSpec {
    let base = json!({"s3": {"bucket": "builds", "key": "api/{{sha}}.zip"}, "runtime": "nodejs20.x", "handler": "index.handler",
        "roleArn": "arn:aws:iam::123456789012:role/shipshape/lambda/api"});
    let function: Value = with(base, function);
    with(json!({"environment": "prod", "image": {"repository": "r", "gitSha": "3f9c2a1d"}}), json!({ "function": function }))
}

/// A StackSpec of Environment `prod`.
pub fn stack_spec(extra: Value) -> StackSpecSpec {
    with(json!({"environment": "prod"}), extra)
}

/// An Environment object named `name`.
pub fn environment(name: &str, spec: EnvironmentSpec) -> Environment {
    Environment::new(name, spec)
}

/// A ServiceRelease object `namespace/name`.
pub fn release(namespace: &str, name: &str, spec: ServiceReleaseSpec) -> ServiceRelease {
    let mut r = ServiceRelease::new(name, spec);
    r.metadata.namespace = Some(namespace.into());
    r
}

/// A StackSpec object `namespace/name`.
pub fn stack(namespace: &str, name: &str, spec: StackSpecSpec) -> StackSpec {
    let mut s = StackSpec::new(name, spec);
    s.metadata.namespace = Some(namespace.into());
    s
}

/// The tags of something `owner` (`namespace/name`) owns.
pub fn owned_by(owner: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY_TAG.to_string(), MANAGED_BY.to_string()), (OWNER_TAG.to_string(), owner.to_string())])
}
