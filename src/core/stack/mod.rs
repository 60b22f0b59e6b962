//! StackSpec plans: what a StackSpec declares vs what AWS reports → ordered changes per
//! resource and field, or the reason nothing may change. Pure. One room per kind —
//! [`database`], [`bucket`], [`table`], [`cache`] — speaking the vocabulary of [`plan`];
//! this module puts a whole StackSpec's plan together. docs/extending.md names
//! every place a new kind touches.

use std::collections::BTreeMap;

use crate::api::{BucketSpec, CacheSpec, DatabaseSpec, StackSpecSpec, TableSpec};

pub mod bucket;
pub mod cache;
pub mod database;
pub mod plan;
pub mod table;

pub use bucket::{normalize_rules, plan_bucket, storage_class_name};
pub use database::plan_database;
pub use plan::{
    final_snapshot_name, CacheModify, Call, DbModify, FieldChange, ObservedBucket, ObservedCache, ObservedDatabase, ObservedIndex,
    ObservedTable, Placement, PlanInputs, Refusal, ResourceKind, ResourcePlan, StackPlan, TableUpdate,
};

/// Everything read from AWS for one StackSpec: None when a resource does not exist.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedStack {
    /// By database name.
    pub databases: BTreeMap<String, Option<ObservedDatabase>>,
    /// By bucket name.
    pub buckets: BTreeMap<String, Option<ObservedBucket>>,
    /// By table name.
    pub tables: BTreeMap<String, Option<ObservedTable>>,
    /// By cache (replication group) name.
    pub caches: BTreeMap<String, Option<ObservedCache>>,
}

/// What a StackSpec declares, by kind.
#[derive(Clone, Copy, Default)]
pub struct Declared<'a> {
    /// Databases.
    pub databases: &'a [DatabaseSpec],
    /// Buckets.
    pub buckets: &'a [BucketSpec],
    /// Tables.
    pub tables: &'a [TableSpec],
    /// Caches.
    pub caches: &'a [CacheSpec],
}

/// Plans a whole StackSpec: databases, buckets, tables, then caches, in spec order.
pub fn plan_all(declared: Declared, observed: &ObservedStack, ctx: &PlanInputs) -> StackPlan {
    let mut p = plan(declared.databases, declared.buckets, declared.tables, observed, ctx);
    for c in declared.caches {
        p.resources.push(cache::plan_cache(c, observed.caches.get(&c.name).and_then(Option::as_ref), ctx));
    }
    p
}

/// Plans databases, buckets, then tables, in spec order.
pub fn plan(
    databases: &[DatabaseSpec],
    buckets: &[BucketSpec],
    tables: &[TableSpec],
    observed: &ObservedStack,
    ctx: &PlanInputs,
) -> StackPlan {
    let mut resources = vec![];
    for d in databases {
        resources.push(plan_database(d, observed.databases.get(&d.name).and_then(Option::as_ref), ctx));
    }
    for b in buckets {
        resources.push(plan_bucket(b, observed.buckets.get(&b.name).and_then(Option::as_ref), ctx));
    }
    for t in tables {
        resources.push(table::plan_table(t, observed.tables.get(&t.name).and_then(Option::as_ref), ctx));
    }
    StackPlan { resources }
}

/// An environment-variable-style key for outputs: `car-rental-db` → `CAR_RENTAL_DB`.
pub fn env_key(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

/// The names a StackSpec declares of `kind`, in spec order.
pub fn declared_names(spec: &StackSpecSpec, kind: ResourceKind) -> Vec<&str> {
    match kind {
        ResourceKind::Database => spec.databases.iter().map(|d| d.name.as_str()).collect(),
        ResourceKind::Bucket => spec.buckets.iter().map(|b| b.name.as_str()).collect(),
        ResourceKind::Table => spec.tables.iter().map(|t| t.name.as_str()).collect(),
        ResourceKind::Cache => spec.caches.iter().map(|c| c.name.as_str()).collect(),
    }
}

#[cfg(test)]
mod tests;
