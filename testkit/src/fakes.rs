//! In-memory AWS behind the domain traits, for fast scenario tests and benchmarks. Every
//! call is counted; any operation can be made to fail on its k-th call.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use shipshape::api::{BucketEncryption, CacheSpec, DatabaseSpec, LifecycleRule, TableSpec};
use shipshape::aws::{
    AwsClients, AwsError, AwsProvider, BackupState, BucketDeletion, BucketReads, CloudWatch, Dynamo, Ecs, ElastiCache, FamilyLookup,
    FunctionConfig, Invoked, Lambda, Logs, NewCluster, ObservedAlias, ObservedFunction, Rds, ServiceRequest, Sts, Tags, Target,
    TaskRequest, S3,
};
use shipshape::core::environment::ObservedCluster;
use shipshape::core::rollout::{DeploymentObs, ServiceObs, TaskObs};
use shipshape::core::stack::{
    CacheModify, DbModify, ObservedBucket, ObservedCache, ObservedDatabase, ObservedIndex, ObservedTable, Placement, TableUpdate,
};
use shipshape::core::taskdef::TaskDefinitionSpec;

use crate::kube_double::Journal;

/// A function: its $LATEST as read, its configuration, its published versions as
/// (description, configuration).
type Function = (ObservedFunction, FunctionConfig, Vec<(String, FunctionConfig)>);

/// (arn, family, spec hash, tags, active).
type TaskDefinition = (String, String, String, BTreeMap<String, String>, bool);

/// An EventBridge rule: as described, its tags, its targets.
type Rule = (shipshape::aws::ObservedRule, BTreeMap<String, String>, Vec<String>);

#[derive(Default)]
struct World {
    clusters: BTreeMap<String, ObservedCluster>,
    databases: BTreeMap<String, ObservedDatabase>,
    buckets: BTreeMap<String, ObservedBucket>,
    objects: BTreeMap<String, usize>,
    tables: BTreeMap<String, ObservedTable>,
    /// Table backups: (table, backup name).
    backups: Vec<(String, String)>,
    caches: BTreeMap<String, ObservedCache>,
    /// Cache final snapshots and the AUTH token each cache was created with.
    cache_snapshots: Vec<String>,
    cache_tokens: BTreeMap<String, Option<String>>,
    functions: BTreeMap<String, Function>,
    aliases: BTreeMap<(String, String), ObservedAlias>,
    provisioned: BTreeMap<(String, String), i32>,
    alarms: BTreeMap<String, String>,
    task_definitions: Vec<TaskDefinition>,
    services: BTreeMap<String, ServiceObs>,
    deployments: usize,
    /// One-off tasks: (started_by, command, what DescribeTasks says).
    tasks: Vec<(String, Vec<String>, TaskObs)>,
    /// Exit codes of commands (joined by spaces); others exit 0.
    exits: BTreeMap<String, i32>,
    /// New one-off tasks stay RUNNING (until StopTask).
    hold_tasks: bool,
    /// RDS snapshots: name → (instance, status).
    snapshots: BTreeMap<String, (String, String)>,
    /// SQS queues by name, their messages, and EventBridge rules by name (rule, tags, targets).
    queues: BTreeMap<String, shipshape::aws::ObservedQueue>,
    messages: Vec<shipshape::aws::QueueMessage>,
    rules: BTreeMap<String, Rule>,
    heartbeats: usize,
    calls: HashMap<String, usize>,
    failures: HashMap<String, Vec<(usize, AwsError)>>,
}

/// A fake AWS account (123456789012) shared by every environment.
#[derive(Clone, Default)]
pub struct FakeAws {
    world: Arc<Mutex<World>>,
    journal: Option<Journal>,
}

impl FakeAws {
    /// An empty account.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty account recording every call into `journal` (shared with the API server
    /// double, to read the order of effects on both sides).
    pub fn with_journal(journal: Journal) -> Self {
        FakeAws { journal: Some(journal), ..Self::default() }
    }

    /// Sets a CloudWatch alarm's state (`OK`, `ALARM`, `INSUFFICIENT_DATA`).
    pub fn set_alarm(&self, name: &str, state: &str) {
        self.world.lock().unwrap().alarms.insert(name.into(), state.into());
    }

    /// A one-off task running `command` (joined by spaces) exits `code` (others exit 0, at
    /// once: the fake's tasks stop as soon as they start).
    pub fn set_exit(&self, command: &str, code: i32) {
        self.world.lock().unwrap().exits.insert(command.into(), code);
    }

    /// New one-off tasks stay RUNNING until stopped (by default they stop at once).
    pub fn hold_tasks(&self, hold: bool) {
        self.world.lock().unwrap().hold_tasks = hold;
    }

    /// The one-off tasks started so far: (startedBy, command).
    pub fn tasks(&self) -> Vec<(String, Vec<String>)> {
        self.world.lock().unwrap().tasks.iter().map(|(b, c, _)| (b.clone(), c.clone())).collect()
    }

    /// The RDS snapshots taken so far: (name, instance).
    pub fn snapshots(&self) -> Vec<(String, String)> {
        self.world.lock().unwrap().snapshots.iter().map(|(n, (db, _))| (n.clone(), db.clone())).collect()
    }

    /// An ECS service as the fake holds it.
    pub fn service(&self, name: &str) -> Option<ServiceObs> {
        self.world.lock().unwrap().services.get(name).cloned()
    }

    /// Changes an ECS service outside shipshape (its tags, a deployment's state).
    pub fn tamper_service(&self, name: &str, f: impl FnOnce(&mut ServiceObs)) {
        if let Some(s) = self.world.lock().unwrap().services.get_mut(name) {
            f(s);
        }
    }

    /// Makes the `k`-th call (1-based, counted from now on) of `op` fail with `err`.
    pub fn fail_on(&self, op: &str, k: usize, err: AwsError) {
        let mut w = self.world.lock().unwrap();
        let seen = w.calls.get(op).copied().unwrap_or(0);
        w.failures.entry(op.to_string()).or_default().push((seen + k, err));
    }

    /// Calls of `op` so far.
    pub fn count(&self, op: &str) -> usize {
        self.world.lock().unwrap().calls.get(op).copied().unwrap_or(0)
    }

    /// (reads, writes) so far.
    pub fn totals(&self) -> (usize, usize) {
        let w = self.world.lock().unwrap();
        let reads = w.calls.iter().filter(|(k, _)| !crate::awsproxy::is_write(k)).map(|(_, v)| v).sum();
        let writes = w.calls.iter().filter(|(k, _)| crate::awsproxy::is_write(k)).map(|(_, v)| v).sum();
        (reads, writes)
    }

    /// Forgets the call counts.
    pub fn reset_counts(&self) {
        self.world.lock().unwrap().calls.clear();
    }

    /// Puts an object into a bucket (so it is not empty).
    pub fn put_object(&self, bucket: &str) {
        *self.world.lock().unwrap().objects.entry(bucket.to_string()).or_default() += 1;
    }

    /// Changes a table outside shipshape.
    pub fn tamper_table(&self, name: &str, f: impl FnOnce(&mut ObservedTable)) {
        if let Some(t) = self.world.lock().unwrap().tables.get_mut(name) {
            f(t);
        }
    }

    /// The table's backups' names.
    pub fn table_backups(&self, table: &str) -> Vec<String> {
        self.world.lock().unwrap().backups.iter().filter(|(t, _)| t == table).map(|(_, b)| b.clone()).collect()
    }

    /// Changes a cache outside shipshape.
    pub fn tamper_cache(&self, name: &str, f: impl FnOnce(&mut ObservedCache)) {
        if let Some(c) = self.world.lock().unwrap().caches.get_mut(name) {
            f(c);
        }
    }

    /// The AUTH token a cache was created with (Some(None): created without one).
    pub fn cache_token(&self, name: &str) -> Option<Option<String>> {
        self.world.lock().unwrap().cache_tokens.get(name).cloned()
    }

    /// Final snapshots of deleted caches.
    pub fn cache_snapshots(&self) -> Vec<String> {
        self.world.lock().unwrap().cache_snapshots.clone()
    }

    /// Changes a database outside shipshape.
    pub fn tamper_database(&self, name: &str, f: impl FnOnce(&mut ObservedDatabase)) {
        if let Some(db) = self.world.lock().unwrap().databases.get_mut(name) {
            f(db);
        }
    }

    fn call<T>(&self, op: &str, f: impl FnOnce(&mut World) -> Result<T, AwsError>) -> Result<T, AwsError> {
        if let Some(j) = &self.journal {
            j.push("aws", op.to_string(), serde_json::Value::Null);
        }
        let mut w = self.world.lock().unwrap();
        let n = {
            let c = w.calls.entry(op.to_string()).or_default();
            *c += 1;
            *c
        };
        if let Some(list) = w.failures.get_mut(op) {
            if let Some(i) = list.iter().position(|(k, _)| *k == n) {
                return Err(list.remove(i).1);
            }
        }
        f(&mut w)
    }
}

fn not_found(op: &'static str, what: &str) -> AwsError {
    AwsError::NotFound { op, message: format!("{what} not found") }
}

#[async_trait]
impl Ecs for FakeAws {
    async fn describe_cluster(&self, name: &str) -> Result<Option<ObservedCluster>, AwsError> {
        self.call("DescribeClusters", |w| Ok(w.clusters.get(name).cloned()))
    }
    async fn create_cluster(&self, c: &NewCluster) -> Result<String, AwsError> {
        self.call("CreateCluster", |w| {
            let arn = format!("arn:aws:ecs:eu-west-1:123456789012:cluster/{}", c.name);
            w.clusters.entry(c.name.clone()).or_insert(ObservedCluster {
                arn: arn.clone(),
                status: "ACTIVE".into(),
                tags: c.tags.clone(),
                capacity_providers: c.capacity_providers.clone(),
                container_insights: c.container_insights.clone(),
            });
            Ok(arn)
        })
    }
    async fn tag_resource(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("TagResource", |w| {
            if let Some(s) = w.services.values_mut().find(|s| s.arn == arn) {
                s.tags.extend(tags.clone());
                return Ok(());
            }
            let c = w.clusters.values_mut().find(|c| c.arn == arn).ok_or_else(|| not_found("TagResource", arn))?;
            c.tags.extend(tags.clone());
            Ok(())
        })
    }
    async fn untag_resource(&self, arn: &str, keys: &[String]) -> Result<(), AwsError> {
        self.call("UntagResource", |w| {
            let c = w.clusters.values_mut().find(|c| c.arn == arn).ok_or_else(|| not_found("UntagResource", arn))?;
            c.tags.retain(|k, _| !keys.contains(k));
            Ok(())
        })
    }
    async fn put_capacity_providers(&self, cluster: &str, providers: &[String]) -> Result<(), AwsError> {
        self.call("PutClusterCapacityProviders", |w| {
            w.clusters.get_mut(cluster).ok_or_else(|| not_found("PutClusterCapacityProviders", cluster))?.capacity_providers =
                providers.to_vec();
            Ok(())
        })
    }
    async fn set_container_insights(&self, cluster: &str, value: &str) -> Result<(), AwsError> {
        self.call("UpdateClusterSettings", |w| {
            w.clusters.get_mut(cluster).ok_or_else(|| not_found("UpdateClusterSettings", cluster))?.container_insights = Some(value.into());
            Ok(())
        })
    }
    async fn delete_cluster(&self, cluster: &str) -> Result<(), AwsError> {
        self.call("DeleteCluster", |w| {
            w.clusters.get_mut(cluster).ok_or_else(|| not_found("DeleteCluster", cluster))?.status = "INACTIVE".into();
            Ok(())
        })
    }
    async fn find_task_definition(&self, family: &str, spec_hash: &str, owner: &str) -> Result<FamilyLookup, AwsError> {
        // As the SDK adapter: the newest ACTIVE revision of the family first.
        self.call("DescribeTaskDefinition", |w| {
            let active = w.task_definitions.iter().rev().filter(|t| t.1 == family && t.4);
            let newest_tags = active.clone().next().map(|t| t.3.clone());
            let found = active
                .filter(|t| t.2 == spec_hash && t.3.get(shipshape::api::OWNER_TAG).map(String::as_str) == Some(owner))
                .map(|t| t.0.clone())
                .next();
            Ok(FamilyLookup { found, newest_tags })
        })
    }
    async fn register_task_definition(&self, td: &TaskDefinitionSpec, spec_hash: &str, tags: &Tags) -> Result<String, AwsError> {
        self.call("RegisterTaskDefinition", |w| Ok(register(w, &td.family, spec_hash, tags)))
    }
    async fn describe_services(&self, _cluster: &str, names: &[String]) -> Result<Vec<(String, ServiceObs)>, AwsError> {
        self.call("DescribeServices", |w| Ok(names.iter().filter_map(|n| w.services.get(n).map(|s| (n.clone(), s.clone()))).collect()))
    }
    async fn ensure_task_definition_active(&self, arn: &str) -> Result<String, AwsError> {
        self.call("DescribeTaskDefinition", |w| {
            let t = w.task_definitions.iter().find(|t| t.0 == arn).cloned().ok_or_else(|| not_found("DescribeTaskDefinition", arn))?;
            Ok(if t.4 { arn.to_string() } else { register(w, &t.1, &t.2, &t.3) })
        })
    }
    async fn create_service(&self, r: &ServiceRequest) -> Result<(), AwsError> {
        self.call("CreateService", |w| {
            deploy(w, r);
            Ok(())
        })
    }
    async fn update_service(&self, r: &ServiceRequest) -> Result<(), AwsError> {
        self.call("UpdateService", |w| {
            deploy(w, r);
            Ok(())
        })
    }
    async fn delete_service(&self, _cluster: &str, name: &str) -> Result<(), AwsError> {
        self.call("DeleteService", |w| {
            w.services.remove(name);
            Ok(())
        })
    }
    async fn continue_deployment(&self, deployment: &str, _hook: &str, _rollback: bool) -> Result<(), AwsError> {
        // The fake's services roll; none has a service deployment to continue.
        self.call("ContinueServiceDeployment", |_| {
            Err(AwsError::NotFound { op: "ContinueServiceDeployment", message: deployment.to_string() })
        })
    }
    async fn stop_deployment(&self, deployment: &str) -> Result<(), AwsError> {
        self.call("StopServiceDeployment", |_| Err(AwsError::NotFound { op: "StopServiceDeployment", message: deployment.to_string() }))
    }
    async fn run_task(&self, r: &TaskRequest) -> Result<String, AwsError> {
        self.call("RunTask", |w| {
            if let Some((_, _, t)) = w.tasks.iter().find(|(b, _, _)| *b == r.started_by) {
                return Ok(t.arn.clone());
            }
            let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task/{}/{:032x}", r.cluster, w.tasks.len() + 1);
            let code = w.exits.get(&r.command.join(" ")).copied().unwrap_or(0);
            let stop = (code != 0).then(|| "Essential container in task exited".to_string());
            let obs = TaskObs {
                arn: arn.clone(),
                last_status: if w.hold_tasks { "RUNNING" } else { "STOPPED" }.into(),
                exit_code: Some(code),
                stop_code: Some("EssentialContainerExited".into()),
                stopped_reason: stop,
                ..TaskObs::default()
            };
            w.tasks.push((r.started_by.clone(), r.command.clone(), obs));
            Ok(arn)
        })
    }
    async fn find_task(&self, _cluster: &str, arn: Option<&str>, started_by: &str) -> Result<Option<TaskObs>, AwsError> {
        let op = if arn.is_some() { "DescribeTasks" } else { "ListTasks" };
        self.call(op, |w| Ok(w.tasks.iter().find(|(b, _, t)| arn.map_or(b == started_by, |a| t.arn == a)).map(|(_, _, t)| t.clone())))
    }
    async fn describe_tasks(&self, _cluster: &str, arns: &[String]) -> Result<Vec<TaskObs>, AwsError> {
        self.call("DescribeTasks", |w| Ok(w.tasks.iter().filter(|(_, _, t)| arns.contains(&t.arn)).map(|(_, _, t)| t.clone()).collect()))
    }
    async fn stop_task(&self, _cluster: &str, task: &str, reason: &str) -> Result<(), AwsError> {
        self.call("StopTask", |w| {
            let t = w.tasks.iter_mut().find(|(_, _, t)| t.arn == task).ok_or_else(|| not_found("StopTask", task))?;
            t.2.last_status = "STOPPED".into();
            t.2.stop_code = Some("UserInitiated".into());
            t.2.stopped_reason = Some(reason.into());
            Ok(())
        })
    }
}

fn register(w: &mut World, family: &str, spec_hash: &str, tags: &BTreeMap<String, String>) -> String {
    let revision = w.task_definitions.iter().filter(|t| t.1 == family).count() + 1;
    let arn = format!("arn:aws:ecs:eu-west-1:123456789012:task-definition/{family}:{revision}");
    w.task_definitions.push((arn.clone(), family.to_string(), spec_hash.to_string(), tags.clone(), true));
    arn
}

/// The fake's ECS: a new deployment per task definition change, COMPLETED at once.
fn deploy(w: &mut World, r: &ServiceRequest) {
    let changed = w.services.get(&r.name).is_none_or(|s| s.task_definition != r.task_definition);
    w.deployments += 1;
    let id = format!("ecs-svc/{}", w.deployments);
    let svc = w.services.entry(r.name.clone()).or_insert_with(|| ServiceObs {
        arn: format!("arn:aws:ecs:eu-west-1:123456789012:service/{}/{}", r.cluster, r.name),
        tags: r.tags.clone(),
        ..Default::default()
    });
    svc.network = Some(shipshape::core::rollout::Network::new(r.subnets.clone(), r.security_groups.clone(), r.assign_public_ip));
    svc.desired_count = r.desired_count;
    svc.maximum_percent = Some(r.maximum_percent);
    svc.minimum_healthy_percent = Some(r.minimum_healthy_percent);
    if changed {
        svc.task_definition = r.task_definition.clone();
        svc.deployments = vec![DeploymentObs {
            id,
            task_definition: r.task_definition.clone(),
            status: "PRIMARY".into(),
            rollout_state: "COMPLETED".into(),
            failed_tasks: 0,
            updated_at: Some(chrono::Utc::now()),
        }];
    }
}

#[async_trait]
impl Rds for FakeAws {
    async fn describe_db_instance(&self, name: &str) -> Result<Option<ObservedDatabase>, AwsError> {
        self.call("DescribeDBInstances", |w| Ok(w.databases.get(name).cloned()))
    }
    async fn list_db_instances(&self) -> Result<Vec<ObservedDatabase>, AwsError> {
        let all: Vec<ObservedDatabase> = self.call("DescribeDBInstances", |w| Ok(w.databases.values().cloned().collect()))?;
        // One call per page of 100, as the SDK adapter makes them.
        for _ in 1..all.len().div_ceil(100) {
            self.call("DescribeDBInstances", |_| Ok(()))?;
        }
        Ok(all)
    }
    async fn ensure_db_subnet_group(&self, _placement: &Placement, _tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("DescribeDBSubnetGroups", |_| Ok(()))
    }
    async fn create_db_instance(&self, spec: &DatabaseSpec, tags: &Tags, placement: Option<&Placement>) -> Result<(), AwsError> {
        self.call("CreateDBInstance", |w| {
            if w.databases.contains_key(&spec.name) {
                return Err(AwsError::Conflict { op: "CreateDBInstance", message: "DBInstanceAlreadyExists".into() });
            }
            let engine = serde_json::to_value(spec.engine).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            let port = if engine == "postgres" { 5432 } else { 3306 };
            w.databases.insert(
                spec.name.clone(),
                ObservedDatabase {
                    name: spec.name.clone(),
                    arn: format!("arn:aws:rds:eu-west-1:123456789012:db:{}", spec.name),
                    status: "available".into(),
                    engine,
                    engine_version: spec.engine_version.clone(),
                    instance_class: spec.instance_class.clone(),
                    allocated_storage_gib: spec.allocated_storage_gib,
                    multi_az: spec.multi_az,
                    storage_encrypted: spec.storage_encrypted,
                    backup_retention_days: spec.backup_retention_days,
                    deletion_protection: spec.deletion_protection,
                    master_username: spec.master_username.clone(),
                    master_secret_arn: Some(format!("arn:aws:secretsmanager:eu-west-1:123456789012:secret:rds!{}", spec.name)),
                    endpoint: Some(format!("{}.fake.eu-west-1.rds.amazonaws.com", spec.name)),
                    port: Some(port),
                    tags: tags.clone(),
                    publicly_accessible: spec.publicly_accessible,
                    vpc_security_groups: placement.map(|p| p.security_groups.clone()).unwrap_or_default(),
                    subnet_group: placement.map(|p| p.subnet_group.clone()),
                },
            );
            Ok(())
        })
    }
    async fn modify_db_instance(&self, name: &str, m: &DbModify) -> Result<(), AwsError> {
        self.call("ModifyDBInstance", |w| {
            let db = w.databases.get_mut(name).ok_or_else(|| not_found("ModifyDBInstance", name))?;
            if let Some(v) = &m.instance_class {
                db.instance_class = v.clone();
            }
            if let Some(v) = m.allocated_storage_gib {
                db.allocated_storage_gib = v;
            }
            if let Some(v) = m.multi_az {
                db.multi_az = v;
            }
            if let Some(v) = &m.engine_version {
                db.engine_version = v.clone();
            }
            if let Some(v) = m.backup_retention_days {
                db.backup_retention_days = v;
            }
            if let Some(v) = m.deletion_protection {
                db.deletion_protection = v;
            }
            Ok(())
        })
    }
    async fn add_tags(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("AddTagsToResource", |w| {
            let db = w.databases.values_mut().find(|d| d.arn == arn).ok_or_else(|| not_found("AddTagsToResource", arn))?;
            db.tags.extend(tags.clone());
            Ok(())
        })
    }
    async fn create_snapshot(&self, db: &str, name: &str, _tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("CreateDBSnapshot", |w| {
            if !w.databases.contains_key(db) {
                return Err(not_found("CreateDBSnapshot", db));
            }
            w.snapshots.insert(name.into(), (db.into(), "available".into()));
            Ok(())
        })
    }
    async fn list_snapshots(
        &self,
        db: &str,
    ) -> Result<Vec<(String, Option<chrono::DateTime<chrono::Utc>>, BTreeMap<String, String>)>, AwsError> {
        self.call("DescribeDBSnapshots", |w| {
            let mut all: Vec<_> =
                w.snapshots.iter().filter(|(_, (d, _))| d == db).map(|(n, _)| (n.clone(), None, BTreeMap::new())).collect();
            all.reverse();
            Ok(all)
        })
    }
    async fn delete_snapshot(&self, name: &str) -> Result<(), AwsError> {
        self.call("DeleteDBSnapshot", |w| {
            w.snapshots.remove(name);
            Ok(())
        })
    }
    async fn snapshot_status(&self, name: &str) -> Result<Option<String>, AwsError> {
        self.call("DescribeDBSnapshots", |w| Ok(w.snapshots.get(name).map(|(_, s)| s.clone())))
    }
    async fn delete_db_instance(&self, name: &str, _final_snapshot: Option<&str>) -> Result<(), AwsError> {
        self.call("DeleteDBInstance", |w| {
            let db = w.databases.get(name).ok_or_else(|| not_found("DeleteDBInstance", name))?;
            if db.deletion_protection {
                return Err(AwsError::Invalid {
                    op: "DeleteDBInstance",
                    message: "InvalidParameterCombination: deletion protection is enabled".into(),
                });
            }
            w.databases.remove(name);
            Ok(())
        })
    }
}

#[async_trait]
impl S3 for FakeAws {
    async fn describe_bucket(&self, name: &str, reads: BucketReads) -> Result<Option<ObservedBucket>, AwsError> {
        // Count calls as the SDK adapter makes them (HeadBucket gives the region).
        for (op, made) in [
            ("HeadBucket", true),
            ("GetBucketVersioning", true),
            ("GetBucketEncryption", reads.encryption),
            ("GetPublicAccessBlock", true),
            ("GetBucketLifecycleConfiguration", reads.lifecycle),
        ] {
            if made {
                self.call(op, |_| Ok(()))?;
            }
        }
        self.call("GetBucketAbac", |_| Ok(()))?;
        self.call("GetBucketTagging", |w| {
            Ok(w.buckets.get(name).cloned().map(|mut b| {
                if !reads.encryption {
                    b.encryption = None;
                }
                if !reads.lifecycle {
                    b.lifecycle = vec![];
                }
                b
            }))
        })
    }
    async fn create_bucket(&self, name: &str, region: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("CreateBucket", |w| {
            w.buckets.entry(name.to_string()).or_insert(ObservedBucket {
                name: name.into(),
                region: region.into(),
                tags: tags.clone(),
                ..Default::default()
            });
            Ok(())
        })
    }
    async fn enable_abac(&self, name: &str) -> Result<(), AwsError> {
        self.call("PutBucketAbac", |w| {
            w.buckets.get_mut(name).ok_or_else(|| not_found("PutBucketAbac", name))?.abac = true;
            Ok(())
        })
    }
    async fn put_tags(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("TagResource", |w| {
            w.buckets.get_mut(name).ok_or_else(|| not_found("TagResource", name))?.tags.extend(tags.clone());
            Ok(())
        })
    }
    async fn put_versioning(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        self.call("PutBucketVersioning", |w| {
            w.buckets.get_mut(name).ok_or_else(|| not_found("PutBucketVersioning", name))?.versioning =
                Some(if enabled { "Enabled" } else { "Suspended" }.into());
            Ok(())
        })
    }
    async fn put_encryption(&self, name: &str, encryption: &BucketEncryption) -> Result<(), AwsError> {
        self.call("PutBucketEncryption", |w| {
            w.buckets.get_mut(name).ok_or_else(|| not_found("PutBucketEncryption", name))?.encryption = Some(encryption.clone());
            Ok(())
        })
    }
    async fn set_public_access_block(&self, name: &str, block: bool) -> Result<(), AwsError> {
        let op = if block { "PutPublicAccessBlock" } else { "DeletePublicAccessBlock" };
        self.call(op, |w| {
            let b = w.buckets.get_mut(name).ok_or_else(|| not_found("PutPublicAccessBlock", name))?;
            b.public_access_blocked = block;
            b.public_access_block_present = block;
            Ok(())
        })
    }
    async fn put_lifecycle(&self, name: &str, rules: &[LifecycleRule]) -> Result<(), AwsError> {
        self.call("PutBucketLifecycleConfiguration", |w| {
            w.buckets.get_mut(name).ok_or_else(|| not_found("PutBucketLifecycleConfiguration", name))?.lifecycle = rules.to_vec();
            Ok(())
        })
    }
    async fn delete_bucket(&self, name: &str) -> Result<BucketDeletion, AwsError> {
        self.call("DeleteBucket", |w| {
            if !w.buckets.contains_key(name) {
                return Ok(BucketDeletion::Missing);
            }
            if w.objects.get(name).copied().unwrap_or(0) > 0 {
                return Ok(BucketDeletion::NotEmpty);
            }
            w.buckets.remove(name);
            Ok(BucketDeletion::Deleted)
        })
    }
}

/// DynamoDB as documented, with every change applied at once (tables ACTIVE immediately).
#[async_trait]
impl Dynamo for FakeAws {
    async fn describe_table(&self, name: &str) -> Result<Option<ObservedTable>, AwsError> {
        self.call("DescribeTable", |w| Ok(w.tables.get(name).cloned()))
    }
    async fn create_table(&self, spec: &TableSpec, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("CreateTable", |w| {
            if w.tables.contains_key(&spec.name) {
                return Err(AwsError::Conflict {
                    op: "CreateTable",
                    message: format!("ResourceInUseException: table {} exists", spec.name),
                });
            }
            let arn = format!("arn:aws:dynamodb:eu-west-1:123456789012:table/{}", spec.name);
            let provisioned = spec.billing == shipshape::api::Billing::Provisioned;
            w.tables.insert(
                spec.name.clone(),
                ObservedTable {
                    name: spec.name.clone(),
                    arn: arn.clone(),
                    status: "ACTIVE".into(),
                    partition_key: Some(spec.partition_key.clone()),
                    sort_key: spec.sort_key.clone(),
                    billing: spec.billing,
                    capacity: spec.capacity.filter(|_| provisioned),
                    indexes: spec
                        .global_secondary_indexes
                        .iter()
                        .map(|i| {
                            let mut non_key = i.non_key_attributes.clone();
                            non_key.sort();
                            ObservedIndex {
                                name: i.name.clone(),
                                partition_key: Some(i.partition_key.clone()),
                                sort_key: i.sort_key.clone(),
                                projection: i.projection,
                                non_key_attributes: non_key,
                                capacity: shipshape::core::table::index_capacity(spec, i),
                                status: "ACTIVE".into(),
                            }
                        })
                        .collect(),
                    encryption: spec.encryption,
                    kms_key_arn: spec.kms_key_id.clone(),
                    deletion_protection: spec.deletion_protection,
                    stream: spec.stream,
                    stream_arn: spec.stream.map(|_| format!("{arn}/stream/1")),
                    tags: tags.clone(),
                    ..Default::default()
                },
            );
            Ok(())
        })
    }
    async fn update_table(&self, name: &str, update: &TableUpdate) -> Result<(), AwsError> {
        self.call("UpdateTable", |w| {
            let t = w.tables.get_mut(name).ok_or_else(|| not_found("UpdateTable", name))?;
            match update {
                TableUpdate::Billing { billing, capacity, indexes } => {
                    t.billing = *billing;
                    t.capacity = *capacity;
                    for (n, c) in indexes {
                        if let Some(i) = t.indexes.iter_mut().find(|i| &i.name == n) {
                            i.capacity = Some(*c);
                        }
                    }
                }
                TableUpdate::CreateIndex { index, capacity } => t.indexes.push(ObservedIndex {
                    name: index.name.clone(),
                    partition_key: Some(index.partition_key.clone()),
                    sort_key: index.sort_key.clone(),
                    projection: index.projection,
                    non_key_attributes: index.non_key_attributes.clone(),
                    capacity: *capacity,
                    status: "ACTIVE".into(),
                }),
                TableUpdate::DeleteIndex { name } => t.indexes.retain(|i| &i.name != name),
                TableUpdate::Stream(v) => {
                    t.stream = *v;
                    t.stream_arn = v.map(|_| format!("{}/stream/2", t.arn));
                }
                TableUpdate::Encryption { encryption, kms_key_id } => {
                    t.encryption = *encryption;
                    t.kms_key_arn = kms_key_id.clone();
                }
                TableUpdate::DeletionProtection(on) => t.deletion_protection = *on,
            }
            Ok(())
        })
    }
    async fn set_point_in_time_recovery(&self, name: &str, enabled: bool) -> Result<(), AwsError> {
        self.call("UpdateContinuousBackups", |w| {
            w.tables.get_mut(name).ok_or_else(|| not_found("UpdateContinuousBackups", name))?.point_in_time_recovery = enabled;
            Ok(())
        })
    }
    async fn set_ttl(&self, name: &str, attribute: &str, enabled: bool) -> Result<(), AwsError> {
        self.call("UpdateTimeToLive", |w| {
            let t = w.tables.get_mut(name).ok_or_else(|| not_found("UpdateTimeToLive", name))?;
            t.ttl = Some((attribute.to_string(), if enabled { "ENABLED" } else { "DISABLED" }.to_string()));
            Ok(())
        })
    }
    async fn tag_table(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("TagResource", |w| {
            let t = w.tables.values_mut().find(|t| t.arn == arn).ok_or_else(|| not_found("TagResource", arn))?;
            t.tags.extend(tags.clone());
            Ok(())
        })
    }
    async fn final_backup(&self, table: &str, name: &str) -> Result<BackupState, AwsError> {
        self.call("CreateBackup", |w| {
            if !w.tables.contains_key(table) {
                return Err(not_found("CreateBackup", table));
            }
            let prefix = format!("{table}-final-");
            if let Some((_, b)) = w.backups.iter().find(|(t, b)| t == table && b.starts_with(&prefix)) {
                return Ok(BackupState::Available(b.clone()));
            }
            w.backups.push((table.to_string(), name.to_string()));
            Ok(BackupState::Available(name.to_string()))
        })
    }
    async fn delete_table(&self, name: &str) -> Result<(), AwsError> {
        self.call("DeleteTable", |w| {
            if w.tables.get(name).is_some_and(|t| t.deletion_protection) {
                return Err(AwsError::Invalid { op: "DeleteTable", message: "ValidationException: deletion protection is enabled".into() });
            }
            w.tables.remove(name);
            Ok(())
        })
    }
}

/// ElastiCache as documented, every change applied at once.
#[async_trait]
impl ElastiCache for FakeAws {
    async fn describe_cache(&self, name: &str) -> Result<Option<ObservedCache>, AwsError> {
        self.call("DescribeReplicationGroups", |w| Ok(w.caches.get(name).cloned()))
    }
    async fn ensure_cache_subnet_group(&self, _placement: &Placement, _tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("DescribeCacheSubnetGroups", |_| Ok(()))
    }
    async fn create_cache(
        &self,
        spec: &CacheSpec,
        tags: &Tags,
        _placement: Option<&Placement>,
        auth: Option<&str>,
    ) -> Result<(), AwsError> {
        self.call("CreateReplicationGroup", |w| {
            if w.caches.contains_key(&spec.name) {
                return Err(AwsError::Conflict { op: "CreateReplicationGroup", message: "ReplicationGroupAlreadyExists".into() });
            }
            let members = (0..=spec.replicas).map(|i| format!("{}-{:03}", spec.name, i + 1)).collect();
            w.caches.insert(
                spec.name.clone(),
                ObservedCache {
                    name: spec.name.clone(),
                    arn: format!("arn:aws:elasticache:eu-west-1:123456789012:replicationgroup:{}", spec.name),
                    status: "available".into(),
                    engine: Some(shipshape::core::cache::engine_name(spec.engine).into()),
                    engine_version: Some(spec.engine_version.clone()),
                    node_type: spec.node_type.clone(),
                    members,
                    multi_az: spec.multi_az,
                    automatic_failover: spec.replicas > 0,
                    at_rest_encryption: spec.at_rest_encryption,
                    transit_encryption: spec.transit_encryption,
                    auth_token_enabled: auth.is_some(),
                    snapshot_retention_days: spec.snapshot_retention_days,
                    snapshot_window: spec.snapshot_window.clone(),
                    maintenance_window: spec.maintenance_window.clone(),
                    primary_endpoint: Some((format!("master.{}.cache.amazonaws.com", spec.name), 6379)),
                    reader_endpoint: (spec.replicas > 0).then(|| (format!("replica.{}.cache.amazonaws.com", spec.name), 6379)),
                    tags: tags.clone(),
                },
            );
            w.cache_tokens.insert(spec.name.clone(), auth.map(String::from));
            Ok(())
        })
    }
    async fn modify_cache(&self, name: &str, m: &CacheModify) -> Result<(), AwsError> {
        self.call("ModifyReplicationGroup", |w| {
            let c = w.caches.get_mut(name).ok_or_else(|| not_found("ModifyReplicationGroup", name))?;
            if m.automatic_failover == Some(true) && c.members.len() < 2 {
                return Err(AwsError::Invalid { op: "ModifyReplicationGroup", message: "automatic failover needs a replica".into() });
            }
            if let Some(v) = &m.node_type {
                c.node_type = v.clone();
            }
            if let Some(v) = &m.engine {
                c.engine = Some(v.clone());
            }
            if let Some(v) = &m.engine_version {
                c.engine_version = Some(v.clone());
            }
            if let Some(v) = m.multi_az {
                c.multi_az = v;
            }
            if let Some(v) = m.automatic_failover {
                c.automatic_failover = v;
            }
            if let Some(v) = m.snapshot_retention_days {
                c.snapshot_retention_days = v;
            }
            if let Some(v) = &m.snapshot_window {
                c.snapshot_window = Some(v.clone());
            }
            if let Some(v) = &m.maintenance_window {
                c.maintenance_window = Some(v.clone());
            }
            Ok(())
        })
    }
    async fn set_cache_replicas(&self, name: &str, replicas: i32, current: i32) -> Result<(), AwsError> {
        let op = if replicas > current { "IncreaseReplicaCount" } else { "DecreaseReplicaCount" };
        self.call(op, |w| {
            let c = w.caches.get_mut(name).ok_or_else(|| not_found(op, name))?;
            if replicas == 0 && c.automatic_failover {
                return Err(AwsError::Invalid { op, message: "automatic failover needs a replica: turn it off first".into() });
            }
            c.members = (0..=replicas).map(|i| format!("{name}-{:03}", i + 1)).collect();
            Ok(())
        })
    }
    async fn tag_cache(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("AddTagsToResource", |w| {
            let c = w.caches.values_mut().find(|c| c.arn == arn).ok_or_else(|| not_found("AddTagsToResource", arn))?;
            c.tags.extend(tags.clone());
            Ok(())
        })
    }
    async fn delete_cache(&self, name: &str, final_snapshot: Option<&str>) -> Result<(), AwsError> {
        self.call("DeleteReplicationGroup", |w| {
            if w.caches.remove(name).is_some() {
                w.cache_snapshots.extend(final_snapshot.map(String::from));
            }
            Ok(())
        })
    }
}

/// Lambda as documented: updates finish at once; versions numbered from 1.
#[async_trait]
impl Lambda for FakeAws {
    async fn invoke(&self, name: &str, qualifier: &str, payload: &str) -> Result<Invoked, AwsError> {
        self.call("Invoke", |w| {
            if !w.functions.contains_key(name) {
                return Err(not_found("Invoke", name));
            }
            let failed = payload.contains("\"fail\"");
            Ok(Invoked {
                request_id: Some(format!("req-{qualifier}")),
                function_error: failed.then(|| "Unhandled".to_string()),
                payload: if failed { r#"{"errorMessage":"failed"}"#.into() } else { "null".into() },
                log_tail: vec![format!("invoked {name}:{qualifier} with {payload}")],
            })
        })
    }

    async fn get_function(&self, name: &str) -> Result<Option<ObservedFunction>, AwsError> {
        self.call("GetFunction", |w| Ok(w.functions.get(name).map(|f| f.0.clone())))
    }
    async fn create_function(&self, config: &FunctionConfig, description: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("CreateFunction", |w| {
            if w.functions.contains_key(&config.name) {
                return Err(AwsError::Conflict { op: "CreateFunction", message: "ResourceConflictException: function exists".into() });
            }
            let observed = ObservedFunction {
                arn: format!("arn:aws:lambda:eu-west-1:123456789012:function:{}", config.name),
                tags: tags.clone(),
                description: description.into(),
                last_update_status: "Successful".into(),
                state: "Active".into(),
                reserved_concurrency: None,
            };
            w.functions.insert(config.name.clone(), (observed, config.clone(), vec![]));
            Ok(())
        })
    }
    async fn update_function(&self, config: &FunctionConfig, description: &str) -> Result<(), AwsError> {
        self.call("UpdateFunctionConfiguration", |w| {
            let f = w.functions.get_mut(&config.name).ok_or_else(|| not_found("UpdateFunctionConfiguration", &config.name))?;
            f.0.description = description.into();
            f.1 = config.clone();
            Ok(())
        })
    }
    async fn find_version(&self, name: &str, description: &str) -> Result<Option<String>, AwsError> {
        self.call("ListVersionsByFunction", |w| {
            let f = w.functions.get(name).ok_or_else(|| not_found("ListVersionsByFunction", name))?;
            Ok(f.2.iter().position(|(d, _)| d == description).map(|i| format!("{}:{}", f.0.arn, i + 1)))
        })
    }
    async fn publish_version(&self, name: &str, description: &str) -> Result<String, AwsError> {
        self.call("PublishVersion", |w| {
            let f = w.functions.get_mut(name).ok_or_else(|| not_found("PublishVersion", name))?;
            let config = f.1.clone();
            f.2.push((description.into(), config));
            Ok(format!("{}:{}", f.0.arn, f.2.len()))
        })
    }
    async fn get_alias(&self, name: &str, alias: &str) -> Result<Option<ObservedAlias>, AwsError> {
        self.call("GetAlias", |w| Ok(w.aliases.get(&(name.to_string(), alias.to_string())).cloned()))
    }
    async fn set_alias(&self, name: &str, alias: &str, version: &str, create: bool) -> Result<(), AwsError> {
        let op = if create { "CreateAlias" } else { "UpdateAlias" };
        self.call(op, |w| {
            let f = w.functions.get(name).ok_or_else(|| not_found(op, name))?;
            let arn = format!("{}:{alias}", f.0.arn);
            let key = (name.to_string(), alias.to_string());
            if create == w.aliases.contains_key(&key) {
                return Err(AwsError::Conflict { op, message: format!("alias {alias} exists: {}", !create) });
            }
            w.aliases.insert(key, ObservedAlias { arn, version: version.into(), weights: BTreeMap::new() });
            Ok(())
        })
    }
    async fn route_alias(&self, name: &str, alias: &str, stable: &str, version: &str, weight: f64) -> Result<(), AwsError> {
        self.call("UpdateAlias", |w| {
            let a = w.aliases.get_mut(&(name.to_string(), alias.to_string())).ok_or_else(|| not_found("UpdateAlias", alias))?;
            a.version = stable.into();
            a.weights = BTreeMap::from([(version.to_string(), weight)]);
            Ok(())
        })
    }
    async fn get_provisioned_concurrency(&self, name: &str, qualifier: &str) -> Result<Option<(i32, String)>, AwsError> {
        self.call("GetProvisionedConcurrencyConfig", |w| {
            Ok(w.provisioned.get(&(name.to_string(), qualifier.to_string())).map(|n| (*n, "READY".to_string())))
        })
    }
    async fn set_provisioned_concurrency(&self, name: &str, qualifier: &str, n: Option<i32>) -> Result<(), AwsError> {
        let op = if n.is_some() { "PutProvisionedConcurrencyConfig" } else { "DeleteProvisionedConcurrencyConfig" };
        self.call(op, |w| {
            let key = (name.to_string(), qualifier.to_string());
            match n {
                Some(n) => w.provisioned.insert(key, n),
                None => w.provisioned.remove(&key),
            };
            Ok(())
        })
    }
    async fn set_reserved_concurrency(&self, name: &str, reserved: Option<i32>) -> Result<(), AwsError> {
        let op = if reserved.is_some() { "PutFunctionConcurrency" } else { "DeleteFunctionConcurrency" };
        self.call(op, |w| {
            w.functions.get_mut(name).ok_or_else(|| not_found(op, name))?.0.reserved_concurrency = reserved;
            Ok(())
        })
    }
    async fn delete_function(&self, name: &str) -> Result<(), AwsError> {
        self.call("DeleteFunction", |w| {
            w.functions.remove(name);
            w.aliases.retain(|(f, _), _| f != name);
            Ok(())
        })
    }
    async fn tag_function(&self, arn: &str, tags: &BTreeMap<String, String>) -> Result<(), AwsError> {
        self.call("TagResource", |w| {
            let f = w.functions.values_mut().find(|f| f.0.arn == arn).ok_or_else(|| not_found("TagResource", arn))?;
            f.0.tags.extend(tags.clone());
            Ok(())
        })
    }
}

#[async_trait]
impl CloudWatch for FakeAws {
    async fn alarm_states(&self, names: &[String]) -> Result<Vec<(String, String)>, AwsError> {
        self.call("DescribeAlarms", |w| Ok(names.iter().filter_map(|n| w.alarms.get(n).map(|s| (n.clone(), s.clone()))).collect()))
    }
}

#[async_trait]
impl Logs for FakeAws {
    async fn tail(&self, _group: &str, stream: &str, _lines: usize) -> Result<Vec<String>, AwsError> {
        self.call("GetLogEvents", |_| Ok(vec![format!("output of {stream}")]))
    }
}

#[async_trait]
impl shipshape::aws::EventQueue for FakeAws {
    async fn describe_queue(&self, name: &str, _account: Option<&str>) -> Result<Option<shipshape::aws::ObservedQueue>, AwsError> {
        self.call("GetQueueUrl", |w| Ok(w.queues.get(name).cloned()))
    }
    async fn create_queue(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<String, AwsError> {
        self.call("CreateQueue", |w| {
            let url = format!("https://sqs.eu-west-1.amazonaws.com/123456789012/{name}");
            let arn = format!("arn:aws:sqs:eu-west-1:123456789012:{name}");
            w.queues.insert(name.into(), shipshape::aws::ObservedQueue { url: url.clone(), arn, policy: None, tags: tags.clone() });
            Ok(url)
        })
    }
    async fn set_queue_policy(&self, url: &str, policy: &str) -> Result<(), AwsError> {
        self.call("SetQueueAttributes", |w| {
            let q = w.queues.values_mut().find(|q| q.url == url).ok_or_else(|| not_found("SetQueueAttributes", url))?;
            q.policy = Some(policy.into());
            Ok(())
        })
    }
    async fn delete_queue(&self, url: &str) -> Result<(), AwsError> {
        self.call("DeleteQueue", |w| {
            w.queues.retain(|_, q| q.url != url);
            Ok(())
        })
    }
    async fn receive(&self, _url: &str, _wait: std::time::Duration, max: i32) -> Result<Vec<shipshape::aws::QueueMessage>, AwsError> {
        self.call("ReceiveMessage", |w| {
            let n = usize::try_from(max).unwrap_or(10).min(w.messages.len());
            Ok(w.messages.drain(..n).collect())
        })
    }
    async fn delete_messages(&self, _url: &str, _handled: &[(String, String)]) -> Result<(), AwsError> {
        self.call("DeleteMessageBatch", |_| Ok(()))
    }
    async fn describe_rule(&self, name: &str) -> Result<Option<shipshape::aws::ObservedRule>, AwsError> {
        self.call("DescribeRule", |w| Ok(w.rules.get(name).map(|r| r.0.clone())))
    }
    async fn rule_tags(&self, arn: &str) -> Result<BTreeMap<String, String>, AwsError> {
        self.call("ListTagsForResource", |w| Ok(w.rules.values().find(|r| r.0.arn == arn).map(|r| r.1.clone()).unwrap_or_default()))
    }
    async fn put_rule(&self, name: &str, pattern: &str, tags: &BTreeMap<String, String>) -> Result<String, AwsError> {
        self.call("PutRule", |w| {
            let arn = format!("arn:aws:events:eu-west-1:123456789012:rule/{name}");
            let rule = shipshape::aws::ObservedRule { arn: arn.clone(), pattern: Some(pattern.into()), state: "ENABLED".into() };
            let e = w.rules.entry(name.into()).or_insert_with(|| (rule.clone(), tags.clone(), vec![]));
            e.0 = rule;
            Ok(arn)
        })
    }
    async fn rule_targets(&self, rule: &str) -> Result<Vec<String>, AwsError> {
        self.call("ListTargetsByRule", |w| Ok(w.rules.get(rule).map(|r| r.2.clone()).unwrap_or_default()))
    }
    async fn put_target(&self, rule: &str, queue_arn: &str) -> Result<(), AwsError> {
        self.call("PutTargets", |w| {
            let r = w.rules.get_mut(rule).ok_or_else(|| not_found("PutTargets", rule))?;
            r.2 = vec![queue_arn.into()];
            Ok(())
        })
    }
    async fn delete_rule(&self, rule: &str) -> Result<(), AwsError> {
        self.call("DeleteRule", |w| {
            w.rules.remove(rule);
            Ok(())
        })
    }
    async fn put_heartbeat(&self, _environment: &str) -> Result<(), AwsError> {
        self.call("PutEvents", |w| {
            w.heartbeats += 1;
            Ok(())
        })
    }
}

#[async_trait]
impl Sts for FakeAws {
    async fn caller_account(&self) -> Result<String, AwsError> {
        self.call("GetCallerIdentity", |_| Ok("123456789012".into()))
    }
}

#[async_trait]
impl AwsProvider for FakeAws {
    async fn clients(&self, _target: &Target) -> Result<AwsClients, AwsError> {
        let me = Arc::new(self.clone());
        Ok(AwsClients {
            ecs: me.clone(),
            rds: me.clone(),
            s3: me.clone(),
            dynamodb: me.clone(),
            elasticache: me.clone(),
            lambda: me.clone(),
            cloudwatch: me.clone(),
            logs: me.clone(),
            events: me.clone(),
            sts: me,
            credentials: None,
        })
    }
}

/// A service request with ECS's defaults (1 task, 200/100 %, no network, no tags), to adjust
/// with struct update syntax.
pub fn service_request(cluster: &str, name: &str, task_definition: &str) -> ServiceRequest {
    ServiceRequest {
        cluster: cluster.into(),
        name: name.into(),
        task_definition: task_definition.into(),
        desired_count: 1,
        subnets: vec![],
        security_groups: vec![],
        assign_public_ip: false,
        maximum_percent: 200,
        minimum_healthy_percent: 100,
        tags: Default::default(),
        client_token: String::new(),
        load_balancer: None,
        native: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_kth_call_fails_and_the_others_succeed() {
        let aws = FakeAws::new();
        aws.fail_on("CreateBucket", 2, AwsError::Throttled { op: "CreateBucket", message: "SlowDown".into() });
        assert!(aws.create_bucket("a", "eu-west-1", &BTreeMap::new()).await.is_ok());
        assert!(matches!(aws.create_bucket("b", "eu-west-1", &BTreeMap::new()).await, Err(AwsError::Throttled { .. })));
        assert!(aws.create_bucket("b", "eu-west-1", &BTreeMap::new()).await.is_ok());
        assert_eq!(aws.count("CreateBucket"), 3);
    }

    #[tokio::test]
    async fn a_bucket_with_objects_is_not_deleted() {
        let aws = FakeAws::new();
        aws.create_bucket("a", "eu-west-1", &BTreeMap::new()).await.unwrap();
        aws.put_object("a");
        assert_eq!(aws.delete_bucket("a").await.unwrap(), BucketDeletion::NotEmpty);
    }
}
