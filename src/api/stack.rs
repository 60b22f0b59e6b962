//! `StackSpec`: the stateful pieces a service needs (RDS databases, S3 buckets, DynamoDB
//! tables).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{bounds, duration_rule, Condition, GoDuration};

/// RDS databases, S3 buckets, DynamoDB tables and ElastiCache caches kept in their declared
/// state, with outputs for services.
#[derive(CustomResource, KubeSchema, Deserialize, Serialize, Clone, Debug, PartialEq)]
#[kube(
    group = "shipshape.dev",
    version = "v1alpha1",
    kind = "StackSpec",
    namespaced,
    shortname = "stack",
    category = "shipshape",
    status = "StackSpecStatus",
    printcolumn = r#"{"name":"Environment","type":"string","jsonPath":".spec.environment"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct StackSpecSpec {
    /// Name of the Environment (immutable).
    #[x_kube(validation = Rule::new("self == oldSelf").message("environment is immutable; create a new StackSpec instead"))]
    #[schemars(length(min = 1))]
    pub environment: String,
    /// RDS database instances. An entry cannot be renamed or removed: a renamed one would be
    /// a new, empty database with the outputs pointing at it and the old one left running
    /// unmanaged (delete the StackSpec to let its deletion policies apply).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("oldSelf.all(o, self.exists(d, d.name == o.name))").message(
        "a database cannot be renamed or removed from a StackSpec: a renamed entry would be a new, empty database and the old one would keep running unmanaged; add a new entry beside it, or delete the StackSpec (its deletion policies apply)"
    ))]
    pub databases: Vec<DatabaseSpec>,
    /// S3 buckets. An entry cannot be renamed or removed (as for databases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(validation = Rule::new("oldSelf.all(o, self.exists(b, b.name == o.name))").message(
        "a bucket cannot be renamed or removed from a StackSpec: the outputs would point at a new, empty bucket and the old one would be left unmanaged; add a new entry beside it, or delete the StackSpec (its deletion policies apply)"
    ))]
    pub buckets: Vec<BucketSpec>,
    /// DynamoDB tables. An entry cannot be renamed or removed (as for databases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 50))]
    #[x_kube(validation = Rule::new("oldSelf.all(o, self.exists(t, t.name == o.name))").message(
        "a table cannot be renamed or removed from a StackSpec: the outputs would point at a new, empty table and the old one would be left unmanaged; add a new entry beside it, or delete the StackSpec (its deletion policies apply)"
    ))]
    pub tables: Vec<TableSpec>,
    /// ElastiCache replication groups (Redis OSS or Valkey). An entry cannot be renamed or
    /// removed (as for databases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("oldSelf.all(o, self.exists(c, c.name == o.name))").message(
        "a cache cannot be renamed or removed from a StackSpec: the outputs would point at a new, empty cache and the old one would keep running unmanaged; add a new entry beside it, or delete the StackSpec (its deletion policies apply)"
    ))]
    pub caches: Vec<CacheSpec>,
    /// Name of a ConfigMap the controller writes with endpoints, ports and bucket names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<String>,
    /// Auto applies changes; Manual waits for `shipshape.dev/approve: <plan hash>`.
    #[serde(default)]
    pub approval: Approval,
    /// How often the databases, buckets, tables and caches are re-read to correct drift
    /// (default 5m).
    #[x_kube(validation = duration_rule(bounds::DRIFT_INTERVAL, "driftInterval"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_interval: Option<GoDuration>,
}

/// Whether changes apply at once or after review.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Approval {
    /// Apply every change.
    #[default]
    Auto,
    /// Write the plan to status and apply it once approved by annotation.
    Manual,
}

/// An RDS database instance.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// DB instance identifier (immutable: see `databases`).
    #[schemars(pattern(r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$"), length(max = 63))]
    pub name: String,
    /// Database engine.
    pub engine: Engine,
    /// Engine version, e.g. "16.4".
    pub engine_version: String,
    /// Instance class, e.g. db.t4g.micro.
    #[schemars(pattern(r"^db\.[a-z0-9]+\.[a-z0-9]+$"))]
    pub instance_class: String,
    /// Allocated storage in GiB.
    #[schemars(range(min = 20, max = 65536))]
    #[serde(rename = "allocatedStorageGiB")]
    pub allocated_storage_gib: i32,
    /// Multi-AZ deployment.
    #[serde(default)]
    pub multi_az: bool,
    /// Encrypt storage at rest (cannot change after creation).
    #[serde(default = "default_true")]
    pub storage_encrypted: bool,
    /// Days of automated backups (0 disables them).
    #[serde(default = "default_backup_days")]
    #[schemars(range(min = 0, max = 35))]
    pub backup_retention_days: i32,
    /// RDS deletion protection.
    #[serde(default)]
    pub deletion_protection: bool,
    /// Reachable from the internet (default false: only from inside the Environment's VPC).
    #[serde(default)]
    pub publicly_accessible: bool,
    /// Master user name.
    #[serde(default = "default_master_username")]
    #[schemars(pattern(r"^[a-zA-Z][a-zA-Z0-9_]{0,15}$"))]
    pub master_username: String,
    /// Let RDS manage the master password in Secrets Manager (never copied elsewhere).
    #[serde(default = "default_true")]
    pub manage_master_user_password: bool,
    /// What happens to the database when it leaves the spec or the StackSpec is deleted.
    #[serde(default)]
    pub deletion_policy: DatabaseDeletionPolicy,
}

fn default_true() -> bool {
    true
}
fn default_backup_days() -> i32 {
    7
}
fn default_master_username() -> String {
    "shipshape".into()
}

/// Database engines.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Engine {
    /// PostgreSQL.
    Postgres,
    /// MySQL.
    Mysql,
    /// MariaDB.
    Mariadb,
}

/// Database deletion policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DatabaseDeletionPolicy {
    /// Delete after a final snapshot.
    #[default]
    Snapshot,
    /// Leave the database.
    Retain,
    /// Delete without a snapshot.
    Delete,
}

/// An S3 bucket.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketSpec {
    /// Bucket name (globally unique; immutable: see `buckets`).
    #[schemars(pattern(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"), length(max = 63))]
    pub name: String,
    /// Object versioning.
    #[serde(default)]
    pub versioning: bool,
    /// Default encryption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<BucketEncryption>,
    /// Block all public access (default true).
    #[serde(default = "default_true")]
    pub block_public_access: bool,
    /// Lifecycle rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<LifecycleRule>,
    /// Tags beside the Environment's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What happens to the bucket on deletion (Delete only removes an empty bucket).
    #[serde(default)]
    pub deletion_policy: BucketDeletionPolicy,
}

/// Bucket default encryption.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketEncryption {
    /// AES256 or aws:kms.
    pub algorithm: EncryptionAlgorithm,
    /// KMS key id or ARN (aws:kms only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
}

/// S3 server-side encryption algorithms.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum EncryptionAlgorithm {
    /// SSE-S3.
    #[serde(rename = "AES256")]
    Aes256,
    /// SSE-KMS.
    #[serde(rename = "aws:kms")]
    AwsKms,
}

/// A lifecycle rule.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleRule {
    /// Key prefix the rule applies to ("" for all).
    #[serde(default)]
    pub prefix: String,
    /// Expire objects after this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub expire_days: Option<i32>,
    /// Storage class transitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
}

/// A storage class transition.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Days after creation.
    #[schemars(range(min = 0))]
    pub days: i32,
    /// Target storage class.
    pub storage_class: StorageClass,
}

/// S3 storage classes a transition can target.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(clippy::upper_case_acronyms)]
pub enum StorageClass {
    /// STANDARD_IA
    StandardIa,
    /// ONEZONE_IA
    OnezoneIa,
    /// INTELLIGENT_TIERING
    IntelligentTiering,
    /// GLACIER_IR
    GlacierIr,
    /// GLACIER
    Glacier,
    /// DEEP_ARCHIVE
    DeepArchive,
}

/// Bucket deletion policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum BucketDeletionPolicy {
    /// Leave the bucket.
    #[default]
    Retain,
    /// Delete it, only when empty.
    Delete,
}

/// A DynamoDB table.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(!has(self.billing) || self.billing != 'Provisioned' || has(self.capacity)) && (!has(self.encryption) || self.encryption != 'CustomerKey' || has(self.kmsKeyId))"
).message("billing: Provisioned needs capacity: {read, write}, and encryption: CustomerKey needs kmsKeyId"))]
pub struct TableSpec {
    /// Table name (immutable: see `tables`), e.g. `users-prod`.
    #[schemars(pattern(r"^[a-zA-Z0-9_.-]{3,255}$"), length(max = 255))]
    pub name: String,
    /// Partition (hash) key. Fixed at creation: a change is refused in the plan.
    pub partition_key: KeyAttribute,
    /// Sort (range) key. Fixed at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<KeyAttribute>,
    /// OnDemand (pay per request, the default) or Provisioned (with `capacity`).
    #[serde(default)]
    pub billing: Billing,
    /// Read and write capacity units (billing: Provisioned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
    /// Global secondary indexes: missing ones are created, undeclared ones removed (an index
    /// holds only copies of the table's items), one index change at a time as DynamoDB
    /// requires. An index's keys and projection are fixed: use a new name to change them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub global_secondary_indexes: Vec<IndexSpec>,
    /// Point-in-time recovery (default true).
    #[serde(default = "default_true")]
    pub point_in_time_recovery: bool,
    /// Attribute holding each item's expiry time (epoch seconds); none: TTL off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub ttl_attribute: Option<String>,
    /// Encryption at rest: AwsOwned (the default), AwsManaged (the `aws/dynamodb` KMS key)
    /// or CustomerKey (`kmsKeyId`).
    #[serde(default)]
    pub encryption: TableEncryption,
    /// KMS key id, ARN or alias (encryption: CustomerKey).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub kms_key_id: Option<String>,
    /// DynamoDB deletion protection.
    #[serde(default)]
    pub deletion_protection: bool,
    /// DynamoDB Streams view type; none: no stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamView>,
    /// Tags beside the Environment's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What happens to the table when the StackSpec is deleted.
    #[serde(default)]
    pub deletion_policy: TableDeletionPolicy,
}

/// A key attribute: name and scalar type.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyAttribute {
    /// Attribute name.
    #[schemars(length(min = 1, max = 255))]
    pub name: String,
    /// S (string), N (number) or B (binary).
    #[serde(rename = "type")]
    pub type_: AttributeType,
}

/// DynamoDB scalar attribute types.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AttributeType {
    /// String.
    S,
    /// Number.
    N,
    /// Binary.
    B,
}

/// How a table is billed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Billing {
    /// PAY_PER_REQUEST.
    #[default]
    OnDemand,
    /// PROVISIONED.
    Provisioned,
}

/// Provisioned capacity units.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Capacity {
    /// Read capacity units.
    #[schemars(range(min = 1, max = 40000))]
    pub read: i64,
    /// Write capacity units.
    #[schemars(range(min = 1, max = 40000))]
    pub write: i64,
}

/// A global secondary index.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IndexSpec {
    /// Index name.
    #[schemars(pattern(r"^[a-zA-Z0-9_.-]{3,255}$"), length(max = 255))]
    pub name: String,
    /// Partition key.
    pub partition_key: KeyAttribute,
    /// Sort key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_key: Option<KeyAttribute>,
    /// All (default), KeysOnly or Include (with `nonKeyAttributes`).
    #[serde(default)]
    pub projection: Projection,
    /// Attributes projected besides the keys (projection: Include).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub non_key_attributes: Vec<String>,
    /// Capacity (the table's billing: Provisioned; default: the table's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<Capacity>,
}

/// Which attributes an index holds.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum Projection {
    /// Every attribute.
    #[default]
    All,
    /// The keys only.
    KeysOnly,
    /// The keys and `nonKeyAttributes`.
    Include,
}

/// Table encryption at rest.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TableEncryption {
    /// A key DynamoDB owns (no KMS charges).
    #[default]
    AwsOwned,
    /// The account's AWS-managed key `aws/dynamodb`.
    AwsManaged,
    /// A customer-managed KMS key (`kmsKeyId`).
    CustomerKey,
}

/// DynamoDB Streams view types.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum StreamView {
    /// KEYS_ONLY.
    KeysOnly,
    /// NEW_IMAGE.
    NewImage,
    /// OLD_IMAGE.
    OldImage,
    /// NEW_AND_OLD_IMAGES.
    NewAndOldImages,
}

/// Table deletion policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TableDeletionPolicy {
    /// Leave the table.
    #[default]
    Retain,
    /// An on-demand backup (`<table>-final-<UTC timestamp>`), then delete.
    Snapshot,
    /// Delete without a backup.
    Delete,
}

/// An ElastiCache replication group: one primary and `replicas` read replicas (cluster mode
/// disabled), in the Environment's subnets and security groups.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(!has(self.multiAz) || !self.multiAz || (has(self.replicas) && self.replicas > 0)) && (!has(self.authTokenSecretRef) || !has(self.transitEncryption) || self.transitEncryption)"
).message("multiAz needs at least one replica to fail over to, and an AUTH token needs transitEncryption: true"))]
pub struct CacheSpec {
    /// Replication group id (immutable: see `caches`), e.g. `shop-redis`.
    #[schemars(pattern(r"^[a-z](-?[a-z0-9])*$"), length(min = 1, max = 40))]
    pub name: String,
    /// redis (the default) or valkey.
    #[serde(default)]
    pub engine: CacheEngine,
    /// Engine version, e.g. "7.0".
    #[schemars(pattern(r"^[0-9]+(\.[0-9]+){0,2}$"), length(max = 16))]
    pub engine_version: String,
    /// Node type, e.g. cache.r6g.large.
    #[schemars(pattern(r"^cache\.[a-z0-9]+\.[a-z0-9]+$"), length(max = 64))]
    pub node_type: String,
    /// Read replicas besides the primary (0–5); with one or more, automatic failover is on.
    #[serde(default)]
    #[schemars(range(min = 0, max = 5))]
    pub replicas: i32,
    /// Replicas in other Availability Zones, failed over to automatically.
    #[serde(default)]
    pub multi_az: bool,
    /// Encryption at rest (default true; fixed at creation).
    #[serde(default = "default_true")]
    pub at_rest_encryption: bool,
    /// TLS between clients and the cache (default true; fixed at creation).
    #[serde(default = "default_true")]
    pub transit_encryption: bool,
    /// The Secret (in the StackSpec's namespace) holding the AUTH token, set at creation.
    /// The token is read when the cache is created and never written to status, logs or
    /// Events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_token_secret_ref: Option<SecretKeyRef>,
    /// Days of automatic snapshots (0 disables them).
    #[serde(default)]
    #[schemars(range(min = 0, max = 35))]
    pub snapshot_retention_days: i32,
    /// Daily snapshot window (UTC), e.g. "03:00-05:00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^([01][0-9]|2[0-3]):[0-5][0-9]-([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub snapshot_window: Option<String>,
    /// Weekly maintenance window (UTC), e.g. "sun:05:00-sun:06:00".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(
        r"^(sun|mon|tue|wed|thu|fri|sat):([01][0-9]|2[0-3]):[0-5][0-9]-(sun|mon|tue|wed|thu|fri|sat):([01][0-9]|2[0-3]):[0-5][0-9]$"
    ))]
    pub maintenance_window: Option<String>,
    /// Tags beside the Environment's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// What happens to the cache when the StackSpec is deleted.
    #[serde(default)]
    pub deletion_policy: CacheDeletionPolicy,
}

/// A key of a Secret in the object's own namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Secret name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// ElastiCache engines.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CacheEngine {
    /// Redis OSS.
    #[default]
    Redis,
    /// Valkey.
    Valkey,
}

/// Cache deletion policy.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum CacheDeletionPolicy {
    /// Delete after a final snapshot `<cache>-final-<UTC timestamp>`.
    #[default]
    Snapshot,
    /// Leave the cache.
    Retain,
    /// Delete without a snapshot.
    Delete,
}

/// Observed state of a StackSpec.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StackSpecStatus {
    /// One entry per database, bucket, table and cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceStatus>,
    /// kstatus conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The pending plan when `approval: Manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanStatus>,
}

/// State of one managed AWS resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// Database, Bucket, Table or Cache.
    pub kind: String,
    /// Resource name.
    pub name: String,
    /// ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// AWS state (e.g. available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Whether AWS matches the spec.
    pub synced: bool,
    /// Fields last corrected after drift.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drift: Vec<String>,
    /// When the resource was last read and found in sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_synced_at: Option<DateTime<Utc>>,
}

/// A plan awaiting approval.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlanStatus {
    /// Hash to put in the `shipshape.dev/approve` annotation.
    pub hash: String,
    /// Ordered changes.
    pub changes: Vec<String>,
}
