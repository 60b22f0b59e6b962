//! StackSpec plan: declared databases, buckets and tables (see `table.rs`) vs what AWS reports → ordered changes per
//! resource and field, or the reason nothing may change. Pure.

use std::collections::BTreeMap;
use std::fmt;

use sha2::{Digest, Sha256};

use crate::api::{
    reasons, BucketEncryption, BucketSpec, CacheSpec, DatabaseSpec, EncryptionAlgorithm, LifecycleRule, StorageClass, TableSpec,
    MANAGED_BY, MANAGED_BY_TAG, OWNER_TAG,
};

pub use super::cache::{CacheModify, ObservedCache};
use super::requeue::Category;
pub use super::table::{ObservedTable, TableUpdate};

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

/// Everything read from AWS for one StackSpec: None when a resource does not exist.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observed {
    /// By database name.
    pub databases: BTreeMap<String, Option<ObservedDatabase>>,
    /// By bucket name.
    pub buckets: BTreeMap<String, Option<ObservedBucket>>,
    /// By table name.
    pub tables: BTreeMap<String, Option<ObservedTable>>,
    /// By cache (replication group) name.
    pub caches: BTreeMap<String, Option<ObservedCache>>,
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

/// One change to make in AWS.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
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

/// Why a resource (and so the whole stack) may not change.
#[derive(Clone, Debug, PartialEq)]
pub struct Refusal {
    /// Condition reason.
    pub reason: &'static str,
    /// What and what to do.
    pub message: String,
    /// Requeue category.
    pub category: Category,
}

/// The plan of one resource.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourcePlan {
    /// Database or Bucket.
    pub kind: &'static str,
    /// Name.
    pub name: String,
    /// Whether it is created.
    pub create: bool,
    /// Field changes (for people).
    pub changes: Vec<FieldChange>,
    /// AWS calls, in order.
    pub steps: Vec<Step>,
    /// Why it may not change.
    pub refusal: Option<Refusal>,
    /// A state AWS must leave before changes can be made (e.g. `creating`).
    pub waiting: Option<String>,
}

impl ResourcePlan {
    /// The plan of `kind` `name` before anything is decided: no change, no refusal.
    pub fn new(kind: &'static str, name: &str) -> Self {
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
pub struct Context<'a> {
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
pub(crate) fn placement_tags(ctx: &Context, p: &Placement) -> BTreeMap<String, String> {
    let mut tags = ctx.env_tags.clone();
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), p.subnet_group.trim_start_matches("shipshape-").into());
    tags
}

pub(crate) fn ownership_tags(ctx: &Context, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut tags = ctx.env_tags.clone();
    tags.extend(extra.clone());
    tags.insert(MANAGED_BY_TAG.into(), MANAGED_BY.into());
    tags.insert(OWNER_TAG.into(), ctx.owner.into());
    tags
}

pub(crate) fn ownership_check(kind: &str, name: &str, tags: &BTreeMap<String, String>, ctx: &Context) -> Option<Refusal> {
    match super::ownership::check(&format!("{kind} {name}"), tags, ctx.owner, ctx.adopt, "StackSpec") {
        super::ownership::Ownership::Conflict(message) => {
            Some(Refusal { reason: reasons::CONFLICT, message, category: Category::Conflict })
        }
        _ => None,
    }
}

use super::ownership::missing_tags;

/// Splits "16.4" or "8.0.35" into numbers for comparison.
fn version(v: &str) -> Vec<u64> {
    v.split(['.', '-']).map(|p| p.parse().unwrap_or(0)).collect()
}

fn major(engine: &str, v: &str) -> Vec<u64> {
    let parts = version(v);
    let n = if engine == "postgres" && parts.first().is_some_and(|m| *m >= 10) { 1 } else { 2 };
    parts.into_iter().take(n).collect()
}

pub(crate) fn unsupported(kind: &str, name: &str, field: &str, from: impl fmt::Display, to: impl fmt::Display, why: &str) -> Refusal {
    Refusal {
        reason: reasons::UNSUPPORTED_CHANGE,
        message: format!("{kind} {name}: {field} cannot change from {from} to {to}: {why}"),
        category: Category::InvalidSpec,
    }
}

/// Plans one database.
pub fn plan_database(spec: &DatabaseSpec, observed: Option<&ObservedDatabase>, ctx: &Context) -> ResourcePlan {
    let mut plan = ResourcePlan::new("Database", &spec.name);
    let tags = ownership_tags(ctx, &BTreeMap::new());
    if !spec.manage_master_user_password {
        plan.refusal = Some(Refusal {
            reason: reasons::INVALID_SPEC,
            message: format!("Database {}: shipshape never handles database passwords; keep manageMasterUserPassword: true so RDS keeps it in Secrets Manager", spec.name),
            category: Category::InvalidSpec,
        });
        return plan;
    }
    let Some(db) = observed else {
        plan.create = true;
        if let Some(p) = ctx.placement {
            // The Environment's subnet group carries the Environment's own tags.
            plan.steps.push(Step::EnsureSubnetGroup { placement: p.clone(), tags: placement_tags(ctx, p) });
        }
        plan.steps.push(Step::CreateDatabase { spec: spec.clone(), tags, placement: ctx.placement.cloned() });
        return plan;
    };
    if let Some(r) = ownership_check("Database", &spec.name, &db.tags, ctx) {
        plan.refusal = Some(r);
        return plan;
    }
    let engine = serde_json::to_value(spec.engine).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
    let refuse = |field: &str, from: String, to: String, why: &str| unsupported("Database", &spec.name, field, from, to, why);
    if !db.engine.is_empty() && db.engine != engine {
        plan.refusal =
            Some(refuse("engine", db.engine.clone(), engine, "RDS cannot change an instance's engine; create a new database and migrate"));
        return plan;
    }
    if spec.allocated_storage_gib < db.allocated_storage_gib {
        plan.refusal = Some(refuse(
            "allocatedStorageGiB",
            db.allocated_storage_gib.to_string(),
            spec.allocated_storage_gib.to_string(),
            "RDS storage can only grow",
        ));
        return plan;
    }
    if spec.storage_encrypted != db.storage_encrypted {
        plan.refusal = Some(refuse(
            "storageEncrypted",
            db.storage_encrypted.to_string(),
            spec.storage_encrypted.to_string(),
            "encryption is fixed at creation; restore a snapshot into a new instance",
        ));
        return plan;
    }
    if !db.master_username.is_empty() && spec.master_username != db.master_username {
        plan.refusal = Some(refuse(
            "masterUsername",
            db.master_username.clone(),
            spec.master_username.clone(),
            "the master user name is fixed at creation",
        ));
        return plan;
    }
    if version(&spec.engine_version) < version(&db.engine_version) {
        plan.refusal =
            Some(refuse("engineVersion", db.engine_version.clone(), spec.engine_version.clone(), "RDS never downgrades an engine"));
        return plan;
    }
    let mut m = DbModify::default();
    let mut change = |field: &'static str, from: String, to: String| plan.changes.push(FieldChange { field, from, to });
    if spec.instance_class != db.instance_class {
        change("instanceClass", db.instance_class.clone(), spec.instance_class.clone());
        m.instance_class = Some(spec.instance_class.clone());
    }
    if spec.allocated_storage_gib > db.allocated_storage_gib {
        change("allocatedStorageGiB", db.allocated_storage_gib.to_string(), spec.allocated_storage_gib.to_string());
        m.allocated_storage_gib = Some(spec.allocated_storage_gib);
    }
    if spec.multi_az != db.multi_az {
        change("multiAz", db.multi_az.to_string(), spec.multi_az.to_string());
        m.multi_az = Some(spec.multi_az);
    }
    if version(&spec.engine_version) > version(&db.engine_version) {
        change("engineVersion", db.engine_version.clone(), spec.engine_version.clone());
        m.allow_major_version_upgrade = major(&engine, &spec.engine_version) != major(&engine, &db.engine_version);
        m.engine_version = Some(spec.engine_version.clone());
    }
    if spec.backup_retention_days != db.backup_retention_days {
        change("backupRetentionDays", db.backup_retention_days.to_string(), spec.backup_retention_days.to_string());
        m.backup_retention_days = Some(spec.backup_retention_days);
    }
    if spec.deletion_protection != db.deletion_protection {
        change("deletionProtection", db.deletion_protection.to_string(), spec.deletion_protection.to_string());
        m.deletion_protection = Some(spec.deletion_protection);
    }
    if spec.publicly_accessible != db.publicly_accessible {
        change("publiclyAccessible", db.publicly_accessible.to_string(), spec.publicly_accessible.to_string());
        m.publicly_accessible = Some(spec.publicly_accessible);
    }
    // Security groups follow the Environment's (the subnet group is fixed at creation).
    if let Some(p) = ctx.placement.filter(|p| !p.security_groups.is_empty() && p.security_groups != db.vpc_security_groups) {
        change("securityGroups", db.vpc_security_groups.join(","), p.security_groups.join(","));
        m.vpc_security_groups = Some(p.security_groups.clone());
    }
    if m != DbModify::default() {
        if db.status == "available" {
            plan.steps.push(Step::ModifyDatabase { name: spec.name.clone(), modify: m });
        } else {
            // RDS refuses changes until the instance is available again.
            plan.waiting = Some(db.status.clone());
        }
    }
    let missing = missing_tags(&tags, &db.tags);
    if !missing.is_empty() {
        plan.changes.push(FieldChange { field: "tags", from: join_keys(&db.tags, &missing), to: join(&missing) });
        plan.steps.push(Step::TagDatabase { name: spec.name.clone(), arn: db.arn.clone(), tags: missing });
    }
    plan
}

pub(crate) fn join(tags: &BTreeMap<String, String>) -> String {
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

pub(crate) fn join_keys(observed: &BTreeMap<String, String>, keys: &BTreeMap<String, String>) -> String {
    keys.keys().filter_map(|k| observed.get(k).map(|v| format!("{k}={v}"))).collect::<Vec<_>>().join(",")
}

/// Lifecycle rules in a canonical form, so AWS's answer compares equal to the spec.
pub fn normalize_rules(rules: &[LifecycleRule]) -> Vec<LifecycleRule> {
    let mut out: Vec<LifecycleRule> = rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.transitions.sort_by_key(|t| t.days);
            r
        })
        .collect();
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix).then(a.expire_days.cmp(&b.expire_days)));
    out
}

fn describe_rules(rules: &[LifecycleRule]) -> String {
    rules
        .iter()
        .map(|r| {
            let mut parts = vec![format!("prefix={:?}", r.prefix)];
            if let Some(d) = r.expire_days {
                parts.push(format!("expire={d}d"));
            }
            for t in &r.transitions {
                parts.push(format!("{}d->{}", t.days, storage_class_name(t.storage_class)));
            }
            parts.join(" ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The AWS name of a storage class.
pub fn storage_class_name(c: StorageClass) -> &'static str {
    match c {
        StorageClass::StandardIa => "STANDARD_IA",
        StorageClass::OnezoneIa => "ONEZONE_IA",
        StorageClass::IntelligentTiering => "INTELLIGENT_TIERING",
        StorageClass::GlacierIr => "GLACIER_IR",
        StorageClass::Glacier => "GLACIER",
        StorageClass::DeepArchive => "DEEP_ARCHIVE",
    }
}

fn describe_encryption(e: Option<&BucketEncryption>) -> String {
    match e {
        None => String::new(),
        Some(e) => {
            let alg = match e.algorithm {
                EncryptionAlgorithm::Aes256 => "AES256",
                EncryptionAlgorithm::AwsKms => "aws:kms",
            };
            match &e.kms_key_id {
                Some(k) => format!("{alg}({k})"),
                None => alg.to_string(),
            }
        }
    }
}

/// Plans one bucket. Lifecycle rules are managed when the spec lists some; tags are
/// merged (keys others set stay).
pub fn plan_bucket(spec: &BucketSpec, observed: Option<&ObservedBucket>, ctx: &Context) -> ResourcePlan {
    let mut plan = ResourcePlan::new("Bucket", &spec.name);
    let name = spec.name.clone();
    let tags = ownership_tags(ctx, &spec.tags);
    let empty = ObservedBucket::default();
    let b = match observed {
        None => {
            plan.create = true;
            plan.steps.push(Step::CreateBucket { name: name.clone(), region: ctx.region.into(), tags: tags.clone() });
            plan.steps.push(Step::EnableBucketAbac { name: name.clone() });
            &empty
        }
        Some(b) => {
            if let Some(r) = ownership_check("Bucket", &spec.name, &b.tags, ctx) {
                plan.refusal = Some(r);
                return plan;
            }
            if !b.region.is_empty() && b.region != ctx.region {
                plan.refusal = Some(unsupported("Bucket", &name, "region", &b.region, ctx.region, "a bucket cannot move between regions"));
                return plan;
            }
            b
        }
    };
    let create = plan.create;
    let change = |plan: &mut ResourcePlan, field: &'static str, from: String, to: String, step: Step| {
        if !create {
            plan.changes.push(FieldChange { field, from, to });
        }
        plan.steps.push(step);
    };
    // A bucket made before shipshape turned ABAC on (or adopted) gets it first: its tags,
    // ownership included, then decide what IAM lets shipshape do with it.
    if !create && !b.abac {
        change(&mut plan, "abac", "Disabled".into(), "Enabled".into(), Step::EnableBucketAbac { name: name.clone() });
    }
    let missing = if create { BTreeMap::new() } else { missing_tags(&tags, &b.tags) };
    if !missing.is_empty() {
        change(&mut plan, "tags", join_keys(&b.tags, &missing), join(&missing), Step::TagBucket { name: name.clone(), tags: missing });
    }
    let enabled = b.versioning.as_deref() == Some("Enabled");
    if spec.versioning != enabled {
        let from = b.versioning.clone().unwrap_or_else(|| "Disabled".into());
        let to = if spec.versioning { "Enabled" } else { "Suspended" };
        change(&mut plan, "versioning", from, to.into(), Step::SetVersioning { name: name.clone(), enabled: spec.versioning });
    }
    if let Some(e) = &spec.encryption {
        if b.encryption.as_ref() != Some(e) {
            change(
                &mut plan,
                "encryption",
                describe_encryption(b.encryption.as_ref()),
                describe_encryption(Some(e)),
                Step::SetEncryption { name: name.clone(), encryption: e.clone() },
            );
        }
    }
    let block_differs = if spec.block_public_access { !b.public_access_blocked } else { b.public_access_block_present };
    if block_differs {
        change(
            &mut plan,
            "blockPublicAccess",
            b.public_access_blocked.to_string(),
            spec.block_public_access.to_string(),
            Step::SetPublicAccessBlock { name: name.clone(), block: spec.block_public_access },
        );
    }
    if !spec.lifecycle.is_empty() {
        let want = normalize_rules(&spec.lifecycle);
        if normalize_rules(&b.lifecycle) != want {
            change(
                &mut plan,
                "lifecycle",
                describe_rules(&normalize_rules(&b.lifecycle)),
                describe_rules(&want),
                Step::SetLifecycle { name: name.clone(), rules: want },
            );
        }
    }
    plan
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
pub fn plan_all(declared: Declared, observed: &Observed, ctx: &Context) -> StackPlan {
    let mut p = plan(declared.databases, declared.buckets, declared.tables, observed, ctx);
    for c in declared.caches {
        p.resources.push(super::cache::plan_cache(c, observed.caches.get(&c.name).and_then(Option::as_ref), ctx));
    }
    p
}

/// Plans databases, buckets, then tables, in spec order.
pub fn plan(databases: &[DatabaseSpec], buckets: &[BucketSpec], tables: &[TableSpec], observed: &Observed, ctx: &Context) -> StackPlan {
    let mut resources = vec![];
    for d in databases {
        resources.push(plan_database(d, observed.databases.get(&d.name).and_then(Option::as_ref), ctx));
    }
    for b in buckets {
        resources.push(plan_bucket(b, observed.buckets.get(&b.name).and_then(Option::as_ref), ctx));
    }
    for t in tables {
        resources.push(super::table::plan_table(t, observed.tables.get(&t.name).and_then(Option::as_ref), ctx));
    }
    StackPlan { resources }
}

/// The name of a resource's last copy before deletion (a database's or cache's final
/// snapshot, a table's on-demand backup): `<name>-final-<UTC timestamp>`.
pub fn final_snapshot_name(name: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    format!("{name}-final-{}", now.format("%Y%m%d%H%M%S"))
}

/// An environment-variable-style key for outputs: `car-rental-db` → `CAR_RENTAL_DB`.
pub fn env_key(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

#[cfg(test)]
mod tests;
