//! The vocabulary of a StackSpec plan, shared by every kind's planner: the resource kinds,
//! what AWS reports of each (`Observed*`), the AWS calls a plan makes ([`Call`]) and what a
//! change call carries, the changes it shows people, why a resource may not change, and the
//! inputs that do not come from AWS. Pure.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::api::{
    reasons, Billing, BucketEncryption, CacheSpec, Capacity, DatabaseSpec, IndexSpec, KeyAttribute, LifecycleRule, Projection, StreamView,
    TableEncryption, TableSpec, MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG,
};
pub use crate::core::refusal::Refusal;
use crate::core::requeue::Category;

/// The kinds of resource a StackSpec declares. Every place that lists them matches on this,
/// so the compiler names each one a new kind must fill in (docs/extending.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    /// An RDS instance (`databases[]`).
    Database,
    /// An S3 bucket (`buckets[]`).
    Bucket,
    /// A DynamoDB table (`tables[]`).
    Table,
    /// An ElastiCache replication group (`caches[]`).
    Cache,
}

impl ResourceKind {
    /// Every kind, in the order a StackSpec's plan lists them.
    pub const ALL: [ResourceKind; 4] = [ResourceKind::Database, ResourceKind::Bucket, ResourceKind::Table, ResourceKind::Cache];

    /// The name in status (`resources[].kind`), plan lines and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Database => "Database",
            ResourceKind::Bucket => "Bucket",
            ResourceKind::Table => "Table",
            ResourceKind::Cache => "Cache",
        }
    }

    /// The word in Events (`created database orders`).
    pub fn noun(self) -> &'static str {
        match self {
            ResourceKind::Database => "database",
            ResourceKind::Bucket => "bucket",
            ResourceKind::Table => "table",
            ResourceKind::Cache => "cache",
        }
    }
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an Environment's databases go: a DB subnet group made from its subnets, and its
/// security groups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The DB subnet group's name (`shipshape-<environment>`).
    pub subnet_group: String,
    /// The Environment's subnets.
    pub subnets: Vec<String>,
    /// The Environment's security groups, sorted.
    pub security_groups: Vec<String>,
}

impl Placement {
    /// The placement of an Environment named `environment` with `subnets` and
    /// `security_groups`; None without subnets (databases then go to the default VPC).
    pub fn of(environment: &str, subnets: &[String], security_groups: &[String]) -> Option<Placement> {
        if subnets.is_empty() {
            return None;
        }
        let mut sgs = security_groups.to_vec();
        sgs.sort();
        sgs.dedup();
        Some(Placement { subnet_group: format!("shipshape-{environment}"), subnets: subnets.to_vec(), security_groups: sgs })
    }
}

/// One change to make in AWS.
#[derive(Clone, Debug, PartialEq)]
pub enum Call {
    /// CreateDBSubnetGroup, or ModifyDBSubnetGroup to the Environment's subnets.
    EnsureSubnetGroup { placement: Placement, tags: BTreeMap<String, String> },
    /// CreateDBInstance (in the placement's subnet group and security groups, when the
    /// Environment has a network).
    CreateDatabase { spec: DatabaseSpec, tags: BTreeMap<String, String>, placement: Option<Placement> },
    /// ModifyDBInstance (applied immediately).
    ModifyDatabase { name: String, modify: DbModify },
    /// AddTagsToResource.
    TagDatabase { name: String, arn: String, tags: BTreeMap<String, String> },
    /// CreateBucket with its tags (ownership included: creation is authorized by them).
    CreateBucket { name: String, region: String, tags: BTreeMap<String, String> },
    /// PutBucketAbac Enabled: IAM sees the bucket's tags (and so its ownership) only then.
    EnableBucketAbac { name: String },
    /// PutBucketTagging with the full tag set.
    TagBucket { name: String, tags: BTreeMap<String, String> },
    /// PutBucketVersioning.
    SetVersioning { name: String, enabled: bool },
    /// PutBucketEncryption.
    SetEncryption { name: String, encryption: BucketEncryption },
    /// PutPublicAccessBlock (all four on) or DeletePublicAccessBlock.
    SetPublicAccessBlock { name: String, block: bool },
    /// PutBucketLifecycleConfiguration.
    SetLifecycle { name: String, rules: Vec<LifecycleRule> },
    /// CreateTable (keys, billing, indexes, stream, encryption, deletion protection, tags).
    CreateTable { spec: TableSpec, tags: BTreeMap<String, String> },
    /// One UpdateTable call.
    UpdateTable { name: String, update: TableUpdate },
    /// UpdateContinuousBackups.
    SetPointInTimeRecovery { name: String, enabled: bool },
    /// UpdateTimeToLive.
    SetTtl { name: String, attribute: String, enabled: bool },
    /// TagResource.
    TagTable { arn: String, tags: BTreeMap<String, String> },
    /// CreateCacheSubnetGroup, or ModifyCacheSubnetGroup to the Environment's subnets.
    EnsureCacheSubnetGroup { placement: Placement, tags: BTreeMap<String, String> },
    /// CreateReplicationGroup (the AUTH token, if any, is read from its Secret only when the
    /// call is made: it never enters a plan).
    CreateCache { spec: CacheSpec, tags: BTreeMap<String, String>, placement: Option<Placement> },
    /// ModifyReplicationGroup, applied immediately.
    ModifyCache { name: String, modify: CacheModify },
    /// IncreaseReplicaCount or DecreaseReplicaCount to this many replicas.
    SetCacheReplicas { name: String, replicas: i32, from: i32 },
    /// AddTagsToResource.
    TagCache { arn: String, tags: BTreeMap<String, String> },
}

/// A field that changes, for people: status, Events and `shipshape plan`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// Field name as in the spec.
    pub field: &'static str,
    /// Value in AWS ("" when created).
    pub from: String,
    /// Declared value.
    pub to: String,
}

/// The plan of one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePlan {
    /// What it is.
    pub kind: ResourceKind,
    /// Name.
    pub name: String,
    /// Whether it is created.
    pub create: bool,
    /// Field changes (for people).
    pub changes: Vec<FieldChange>,
    /// AWS calls, in order.
    pub steps: Vec<Call>,
    /// Why it may not change.
    pub refusal: Option<Refusal>,
    /// A state AWS must leave before changes can be made (e.g. `creating`).
    pub waiting: Option<String>,
}

impl ResourcePlan {
    /// The plan of `kind` `name` before anything is decided: no change, no refusal.
    pub fn new(kind: ResourceKind, name: &str) -> Self {
        ResourcePlan { kind, name: name.to_string(), create: false, changes: vec![], steps: vec![], refusal: None, waiting: None }
    }

    /// One line per change: `Bucket uploads: update versioning: Suspended -> Enabled`.
    pub fn lines(&self) -> Vec<String> {
        let (kind, name) = (self.kind, &self.name);
        if let Some(refusal) = &self.refusal {
            return vec![format!("{kind} {name}: unsupported: {}", refusal.message)];
        }
        let mut out = vec![];
        if self.create {
            out.push(format!("{kind} {name}: create"));
        }
        for c in &self.changes {
            out.push(format!("{kind} {name}: update {}: {} -> {}", c.field, show(&c.from), show(&c.to)));
        }
        out
    }
}

/// The plan of a StackSpec.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct StackPlan {
    /// Per resource, databases first, in spec order.
    pub resources: Vec<ResourcePlan>,
}

impl StackPlan {
    /// True when nothing would change.
    pub fn is_noop(&self) -> bool {
        self.resources.iter().all(|r| r.steps.is_empty() && r.refusal.is_none())
    }
    /// True when some resource waits for AWS before it can be changed.
    pub fn is_waiting(&self) -> bool {
        self.resources.iter().any(|r| r.waiting.is_some())
    }
    /// The first refusal: while one exists, nothing in the stack changes.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.resources.iter().find_map(|r| r.refusal.as_ref())
    }
    /// One line per change, in order: what `status.plan`, Events and `shipshape plan` show.
    pub fn lines(&self) -> Vec<String> {
        self.resources.iter().flat_map(ResourcePlan::lines).collect()
    }
    /// A short hash of the plan, for `shipshape.dev/approve`.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for l in self.lines() {
            h.update(l.as_bytes());
            h.update(b"\n");
        }
        h.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
    }
}

fn show(s: &str) -> &str {
    if s.is_empty() {
        "(none)"
    } else {
        s
    }
}

impl fmt::Display for StackPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in self.lines() {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Inputs that do not come from AWS.
pub struct PlanInputs<'a> {
    /// `namespace/name` of the StackSpec.
    pub owner: &'a str,
    /// The Environment's tags.
    pub env_tags: &'a BTreeMap<String, String>,
    /// The Environment's region.
    pub region: &'a str,
    /// Whether the StackSpec carries `shipshape.dev/adopt: "true"`.
    pub adopt: bool,
    /// The Environment's network for databases (None: the account's default VPC).
    pub placement: Option<&'a Placement>,
}

/// The tags of an Environment's subnet group (shared by its StackSpecs): the Environment's
/// tags and shipshape's ownership, owned by the Environment — so changing its subnets is
/// allowed only on the group shipshape made (IAM: aws:ResourceTag).
pub(crate) fn placement_tags(ctx: &PlanInputs, p: &Placement) -> BTreeMap<String, String> {
    let mut tags = ctx.env_tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), p.subnet_group.trim_start_matches("shipshape-").into());
    tags
}

pub(crate) fn ownership_tags(ctx: &PlanInputs, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = ctx.env_tags.clone();
    tags.extend(extra.clone());
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), ctx.owner.into());
    tags
}

pub(crate) fn ownership_check(kind: ResourceKind, name: &str, tags: &BTreeMap<String, String>, ctx: &PlanInputs) -> Option<Refusal> {
    match crate::core::ownership::check(&format!("{kind} {name}"), tags, ctx.owner, ctx.adopt, "StackSpec") {
        crate::core::ownership::Ownership::Conflict(message) => {
            Some(Refusal { reason: reasons::CONFLICT, message, category: Category::Conflict })
        }
        _ => None,
    }
}

/// Records the change of `field` and puts the declared value in `slot` (the field of the
/// change call) when it differs from the observed one: `(have, want)`.
pub(crate) fn differs<T: PartialEq + ToString + Clone>(
    changes: &mut Vec<FieldChange>,
    field: &'static str,
    (have, want): (&T, &T),
    slot: &mut Option<T>,
) {
    if have != want {
        changes.push(FieldChange { field, from: have.to_string(), to: want.to_string() });
        *slot = Some(want.clone());
    }
}

/// The tags of `want` that `have` lacks (another owner's keys are never among them): shown
/// as a change and added with the call `tag` makes of them.
pub(crate) fn add_missing_tags(
    plan: &mut ResourcePlan,
    want: &BTreeMap<String, String>,
    have: &BTreeMap<String, String>,
    tag: impl FnOnce(BTreeMap<String, String>) -> Call,
) {
    let missing = crate::core::ownership::missing_tags(want, have);
    if !missing.is_empty() {
        plan.changes.push(FieldChange { field: "tags", from: join_keys(have, &missing), to: join(&missing) });
        plan.steps.push(tag(missing));
    }
}

/// Splits "16.4" or "8.0.35" into numbers for comparison.
pub(crate) fn version(v: &str) -> Vec<u64> {
    v.split(['.', '-']).map(|p| p.parse().unwrap_or(0)).collect()
}

pub(crate) fn unsupported(
    kind: impl fmt::Display,
    name: &str,
    field: &str,
    from: impl fmt::Display,
    to: impl fmt::Display,
    why: &str,
) -> Refusal {
    Refusal {
        reason: reasons::UNSUPPORTED_CHANGE,
        message: format!("{kind} {name}: {field} cannot change from {from} to {to}: {why}"),
        category: Category::InvalidSpec,
    }
}

pub(crate) fn join(tags: &BTreeMap<String, String>) -> String {
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

pub(crate) fn join_keys(observed: &BTreeMap<String, String>, keys: &BTreeMap<String, String>) -> String {
    keys.keys().filter_map(|k| observed.get(k).map(|v| format!("{k}={v}"))).collect::<Vec<_>>().join(",")
}

/// The name of a resource's last copy before deletion (a database's or cache's final
/// snapshot, a table's on-demand backup): `<name>-final-<UTC timestamp>`.
pub fn final_snapshot_name(name: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    format!("{name}-final-{}", now.format("%Y%m%d%H%M%S"))
}

// What AWS reports of each kind, and what a change call carries: the planners read the
// first and write the second.

/// An S3 bucket as AWS reports it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedBucket {
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// "Enabled", "Suspended", or None when never enabled.
    pub versioning: Option<String>,
    /// Default encryption.
    pub encryption: Option<BucketEncryption>,
    /// Whether all four public access block settings are on.
    pub public_access_blocked: bool,
    /// Whether a public access block configuration exists at all.
    pub public_access_block_present: bool,
    /// Lifecycle rules (normalised).
    pub lifecycle: Vec<LifecycleRule>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Whether attribute-based access control is on (GetBucketAbac).
    pub abac: bool,
}

/// A replication group as ElastiCache reports it (DescribeReplicationGroups, the primary's
/// DescribeCacheClusters, ListTagsForResource). A field ElastiCache did not report is None
/// and not judged.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedCache {
    /// Replication group id.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// creating, available, modifying, deleting, snapshotting, ...
    pub status: String,
    /// redis or valkey.
    pub engine: Option<String>,
    /// Engine version (from a member cluster).
    pub engine_version: Option<String>,
    /// Node type.
    pub node_type: String,
    /// Member clusters (primary + replicas).
    pub members: Vec<String>,
    /// Multi-AZ enabled.
    pub multi_az: bool,
    /// Automatic failover enabled (or enabling).
    pub automatic_failover: bool,
    /// Encryption at rest.
    pub at_rest_encryption: bool,
    /// Encryption in transit.
    pub transit_encryption: bool,
    /// Whether an AUTH token is set.
    pub auth_token_enabled: bool,
    /// Snapshot retention days.
    pub snapshot_retention_days: i32,
    /// Snapshot window.
    pub snapshot_window: Option<String>,
    /// Maintenance window (from a member cluster).
    pub maintenance_window: Option<String>,
    /// Primary endpoint.
    pub primary_endpoint: Option<(String, i32)>,
    /// Reader endpoint.
    pub reader_endpoint: Option<(String, i32)>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// The typed arguments of one ModifyReplicationGroup call (None: leave as is).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CacheModify {
    /// New node type.
    pub node_type: Option<String>,
    /// New engine (valkey).
    pub engine: Option<String>,
    /// New engine version.
    pub engine_version: Option<String>,
    /// Multi-AZ.
    pub multi_az: Option<bool>,
    /// Automatic failover.
    pub automatic_failover: Option<bool>,
    /// Snapshot retention days.
    pub snapshot_retention_days: Option<i32>,
    /// Snapshot window.
    pub snapshot_window: Option<String>,
    /// Maintenance window.
    pub maintenance_window: Option<String>,
}

/// An RDS instance as AWS reports it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedDatabase {
    /// Identifier.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// available, creating, modifying, deleting, ...
    pub status: String,
    /// postgres, mysql, mariadb.
    pub engine: String,
    /// Engine version.
    pub engine_version: String,
    /// Instance class.
    pub instance_class: String,
    /// Storage in GiB.
    pub allocated_storage_gib: i32,
    /// Multi-AZ.
    pub multi_az: bool,
    /// Encrypted storage.
    pub storage_encrypted: bool,
    /// Backup retention days.
    pub backup_retention_days: i32,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// Master user name.
    pub master_username: String,
    /// Secrets Manager ARN of the RDS-managed master password.
    pub master_secret_arn: Option<String>,
    /// Endpoint address.
    pub endpoint: Option<String>,
    /// Endpoint port.
    pub port: Option<i32>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Reachable from the internet.
    pub publicly_accessible: bool,
    /// VPC security group ids, sorted.
    pub vpc_security_groups: Vec<String>,
    /// DB subnet group name.
    pub subnet_group: Option<String>,
}

/// The typed arguments of one ModifyDBInstance call (None: leave as is).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct DbModify {
    /// New class.
    pub instance_class: Option<String>,
    /// New storage.
    pub allocated_storage_gib: Option<i32>,
    /// New multi-AZ.
    pub multi_az: Option<bool>,
    /// New engine version.
    pub engine_version: Option<String>,
    /// Whether the version change crosses a major version.
    pub allow_major_version_upgrade: bool,
    /// New retention.
    pub backup_retention_days: Option<i32>,
    /// New deletion protection.
    pub deletion_protection: Option<bool>,
    /// New public accessibility.
    pub publicly_accessible: Option<bool>,
    /// New VPC security groups.
    pub vpc_security_groups: Option<Vec<String>>,
}

/// A global secondary index as DynamoDB reports it.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedIndex {
    /// Index name.
    pub name: String,
    /// Partition key.
    pub partition_key: Option<KeyAttribute>,
    /// Sort key.
    pub sort_key: Option<KeyAttribute>,
    /// Projection.
    pub projection: Projection,
    /// Non-key attributes (Include), sorted.
    pub non_key_attributes: Vec<String>,
    /// Provisioned capacity (0/0 on demand: None).
    pub capacity: Option<Capacity>,
    /// CREATING, UPDATING, DELETING, ACTIVE.
    pub status: String,
}

/// A table as DynamoDB reports it (DescribeTable, DescribeContinuousBackups,
/// DescribeTimeToLive, ListTagsOfResource).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ObservedTable {
    /// Name.
    pub name: String,
    /// ARN.
    pub arn: String,
    /// CREATING, UPDATING, DELETING, ACTIVE, ...
    pub status: String,
    /// Partition key.
    pub partition_key: Option<KeyAttribute>,
    /// Sort key.
    pub sort_key: Option<KeyAttribute>,
    /// Billing mode.
    pub billing: Billing,
    /// Provisioned capacity (None on demand).
    pub capacity: Option<Capacity>,
    /// Global secondary indexes.
    pub indexes: Vec<ObservedIndex>,
    /// Point-in-time recovery enabled.
    pub point_in_time_recovery: bool,
    /// TTL attribute and status (ENABLED, ENABLING, DISABLING, DISABLED).
    pub ttl: Option<(String, String)>,
    /// Encryption at rest (KMS: AwsManaged or CustomerKey cannot be told apart without KMS;
    /// the SDK adapter reports KMS as AwsManaged with the key's ARN).
    pub encryption: TableEncryption,
    /// The KMS key's ARN (KMS encryption).
    pub kms_key_arn: Option<String>,
    /// Deletion protection.
    pub deletion_protection: bool,
    /// Stream view type when a stream is enabled.
    pub stream: Option<StreamView>,
    /// The latest stream's ARN.
    pub stream_arn: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// One UpdateTable call (DynamoDB accepts one kind of change per call).
#[derive(Clone, Debug, PartialEq)]
pub enum TableUpdate {
    /// BillingMode and ProvisionedThroughput, with each index's throughput when Provisioned.
    Billing { billing: Billing, capacity: Option<Capacity>, indexes: Vec<(String, Capacity)> },
    /// GlobalSecondaryIndexUpdates Create (with the attribute definitions of its keys).
    CreateIndex { index: IndexSpec, capacity: Option<Capacity> },
    /// GlobalSecondaryIndexUpdates Delete.
    DeleteIndex { name: String },
    /// StreamSpecification.
    Stream(Option<StreamView>),
    /// SSESpecification.
    Encryption { encryption: TableEncryption, kms_key_id: Option<String> },
    /// DeletionProtectionEnabled.
    DeletionProtection(bool),
}
