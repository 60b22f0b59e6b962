//! The kube-rs runtime: one controller per kind in one process, behind a leader lease.

pub mod batch;
mod environment;
pub mod events;
pub mod leader;
pub mod listing;
pub mod notify;
pub mod reconcile;
mod release;
pub mod shard;
mod stack;
pub mod status;
pub mod tasks;
mod tenant;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer;
use kube::{Client, Resource, ResourceExt};
use std::sync::Mutex;

use crate::api::{Environment, ServiceRelease, StackSpec};
use crate::aws::{AwsError, AwsProvider};
use crate::core::requeue::Category;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{self, ObjectRef, Store};

pub use environment::target as environment_target;

/// The annotations the release commands set.
pub mod release_annotations {
    pub use super::release::{
        PAUSED_ANNOTATION as PAUSED, PROMOTE_ANNOTATION as PROMOTE, RETRY_ANNOTATION as RETRY, ROLLBACK_ANNOTATION as ROLLBACK,
    };
}
pub use leader::{Elector, LeaseConfig};
pub use shard::Shard;
pub use stack::{execute as execute_stack_plan, observe as observe_stack, plan_for as plan_stack};

/// Intervals that apply when a resource does not set its own.
#[derive(Clone, Debug)]
pub struct Settings {
    /// ECS drift interval (Environment, ServiceRelease).
    pub ecs_drift: Duration,
    /// RDS/S3 drift interval (StackSpec).
    pub stack_drift: Duration,
    /// The controller's own namespace (Secrets an Environment names without a namespace).
    pub namespace: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { ecs_drift: Duration::from_secs(60), stack_drift: Duration::from_secs(300), namespace: "default".into() }
    }
}

/// The caches reconciles read instead of asking the API server.
#[derive(Clone)]
pub struct Stores {
    /// Every Environment.
    pub environments: Store<Environment>,
    /// The outputs ConfigMaps (labelled `shipshape.dev/managed-by: shipshape`).
    pub outputs: Store<ConfigMap>,
    /// The StackSpecs this controller reconciles.
    pub stacks: Store<StackSpec>,
    /// Every ServiceRelease (a release's upstream stage and the releases it comes after).
    pub releases: Store<ServiceRelease>,
}

impl Stores {
    /// Empty caches (for code that runs without watches).
    pub fn empty() -> Self {
        Stores {
            environments: reflector::store().0,
            outputs: reflector::store().0,
            stacks: reflector::store().0,
            releases: reflector::store().0,
        }
    }

    /// Caches holding these objects (for code that runs without watches: the in-process
    /// controller tests).
    pub fn holding(environments: Vec<Environment>, stacks: Vec<StackSpec>, outputs: Vec<ConfigMap>) -> Self {
        fn of<K>(objects: Vec<K>) -> Store<K>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            let (store, mut writer) = reflector::store();
            for o in objects {
                writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(o));
            }
            store
        }
        Stores { environments: of(environments), outputs: of(outputs), stacks: of(stacks), releases: reflector::store().0 }
    }

    /// An Environment by name.
    pub fn environment(&self, name: &str) -> Option<Arc<Environment>> {
        self.environments.get(&ObjectRef::new(name))
    }

    /// A StackSpec by namespace and name.
    pub fn stack(&self, namespace: &str, name: &str) -> Option<Arc<StackSpec>> {
        self.stacks.get(&ObjectRef::new(name).within(namespace))
    }

    /// A ServiceRelease by namespace and name.
    pub fn release(&self, namespace: &str, name: &str) -> Option<Arc<ServiceRelease>> {
        self.releases.get(&ObjectRef::new(name).within(namespace))
    }
    /// An outputs ConfigMap by namespace and name.
    pub fn output(&self, namespace: &str, name: &str) -> Option<Arc<ConfigMap>> {
        self.outputs.get(&ObjectRef::new(name).within(namespace))
    }
}

/// At most this many drift checks (reconciles with nothing in flight) run at once; rollout
/// work (a spec change, a rollout or rollback in flight, a command) takes no slot. Enough
/// for DescribeServices batches to fill (10 services a call) across many Environments: with
/// 16, 10,000 releases in 10 Environments were checked at ~190 a second and a fresh leader
/// took 10 minutes to read them all.
pub const DRIFT_SLOTS: usize = 128;

/// At most this many drift checks wait for a slot inside their reconcile; more come back
/// later. Waiting holds one of the runtime's reconcile permits (1,024), so this bound
/// leaves most of them to rollout work.
pub const DRIFT_QUEUE: usize = 256;

/// A drift check that finds the queue full comes back after about this long (jittered),
/// longer while many are turned away (see [`DriftBacklog`]).
const DRIFT_RETRY: Duration = Duration::from_secs(1);

/// How many drift checks were turned away in the last second: when thousands are due at
/// once, each comes back after about the time the queue needs for the ones ahead of it
/// instead of every second (10,000 releases spun ~8,000 reconciles a second doing nothing).
#[derive(Default)]
pub struct DriftBacklog {
    window_start_ms: std::sync::atomic::AtomicU64,
    turned_away: std::sync::atomic::AtomicU64,
}

impl DriftBacklog {
    /// Counts one turned away at `now_ms`; returns the count in the current second.
    fn turn_away(&self, now_ms: u64) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        let start = self.window_start_ms.load(Relaxed);
        if now_ms.saturating_sub(start) >= 1000 && self.window_start_ms.compare_exchange(start, now_ms, Relaxed, Relaxed).is_ok() {
            self.turned_away.store(0, Relaxed);
        }
        self.turned_away.fetch_add(1, Relaxed).saturating_add(1)
    }
}

/// When a drift check turned away comes back: about a second, times the number of queues'
/// worth of checks turned away this second (capped at 30 s), jittered by ±50 %.
pub fn drift_retry(turned_away: u64, jitter: f64) -> Duration {
    let queues = (turned_away / DRIFT_QUEUE as u64).clamp(1, 30);
    DRIFT_RETRY.saturating_mul(u32::try_from(queues).unwrap_or(30)).mul_f64(0.5 + jitter.clamp(0.0, 1.0))
}

/// A drift check's slot, or the Action to come back later when the queue for the slots is
/// full. Unbounded waiting inside reconciles let drift checks hold every reconcile permit,
/// so with more objects due than permits a spec change or a pending rollback waited behind
/// thousands of them (the 2,000-release benchmark saw a failed-over leader leave new SHAs
/// unstarted for minutes); never waiting cost a retry per second per due check.
pub(crate) async fn drift_slot(ctx: &Context) -> Result<tokio::sync::SemaphorePermit<'_>, Action> {
    let later = || {
        let now_ms = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
        Action::requeue(drift_retry(ctx.drift_backlog.turn_away(now_ms), rand::random::<f64>()))
    };
    let Ok(_queued) = ctx.drift_queue.try_acquire() else {
        return Err(later());
    };
    ctx.drift_slots.acquire().await.map_err(|_| later())
}

/// Task definitions registered per (Environment, family, content hash, owner), remembered
/// for [`Revisions::TTL`] (a revision deregistered meanwhile is found missing then).
#[derive(Default)]
pub struct Revisions(Mutex<HashMap<RevisionKey, (std::time::Instant, String)>>);

/// (Environment, family, content hash, owner).
pub type RevisionKey = (String, String, String, String);

impl Revisions {
    /// How long a revision is remembered.
    const TTL: Duration = Duration::from_secs(600);
    /// At most this many are remembered (all forgotten past it).
    const MAX: usize = 100_000;

    /// The revision remembered for this key, if still fresh.
    pub fn get(&self, key: &RevisionKey) -> Option<String> {
        let all = self.0.lock().ok()?;
        all.get(key).filter(|(at, _)| at.elapsed() < Self::TTL).map(|(_, arn)| arn.clone())
    }

    /// Remembers a revision.
    pub fn put(&self, key: RevisionKey, arn: &str) {
        if let Ok(mut all) = self.0.lock() {
            if all.len() >= Self::MAX {
                all.clear();
            }
            all.entry(key).or_insert_with(|| (std::time::Instant::now(), arn.to_string()));
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// AWS clients per Environment.
    pub aws: Arc<dyn AwsProvider>,
    /// Metrics.
    pub metrics: Metrics,
    /// Events reporter.
    pub reporter: Reporter,
    /// Default intervals.
    pub settings: Settings,
    /// Batched DescribeServices reads.
    pub services: batch::ServiceReader,
    /// One-off tasks (steps before traffic, smoke tests), read for a cluster's releases together.
    pub tasks: tasks::TaskReader,
    /// DB instances listed per Environment for drift checks.
    pub databases: listing::DatabaseReader,
    /// Task definitions registered lately.
    pub task_definitions: Revisions,
    /// Release statuses written lately (what waiting releases look at, before the watch).
    pub recent: release::Recent,
    /// Consecutive failures per object, for backoff (reset on success).
    failures: Mutex<HashMap<String, u32>>,
    /// This replica's leadership, when elected (None: a single replica acts unconditionally).
    pub leadership: Option<Arc<leader::Leadership>>,
    /// The caches.
    pub stores: Stores,
    /// Slots for drift checks (see [`DRIFT_SLOTS`]).
    pub drift_slots: tokio::sync::Semaphore,
    /// Places in the queue for a drift slot (see [`DRIFT_QUEUE`]).
    drift_queue: tokio::sync::Semaphore,
    /// Drift checks turned away lately.
    drift_backlog: DriftBacklog,
    /// One Prometheus client (connection pool) and its credentials per Environment, read
    /// again after [`PROMETHEUS_TTL`].
    prometheus: Mutex<HashMap<String, PrometheusEntry>>,
    /// Rollout notifications to the webhooks Environments list.
    pub notifier: notify::Notifier,
    /// AWS events: which Environments' flow, and what they wake.
    pub events: events::Hub,
}

/// An object's place: the Environment it belongs to, and the git SHA it is at (what a
/// notification about it names).
pub trait Placed {
    /// The name of the object's Environment (None: it belongs to none).
    fn environment_name(&self) -> Option<&str>;
    /// The git SHA the object is at.
    fn sha(&self) -> Option<String> {
        None
    }
}

impl Placed for ServiceRelease {
    fn environment_name(&self) -> Option<&str> {
        Some(&self.spec.environment)
    }
    fn sha(&self) -> Option<String> {
        Some(self.spec.image.git_sha.as_str().to_string())
    }
}

impl Placed for StackSpec {
    fn environment_name(&self) -> Option<&str> {
        Some(&self.spec.environment)
    }
}

impl Placed for Environment {
    fn environment_name(&self) -> Option<&str> {
        None
    }
}

/// How long an Environment's Prometheus client and credentials are kept before its Secrets
/// are read again (a rotated password is picked up within this time).
const PROMETHEUS_TTL: Duration = Duration::from_secs(60);

struct PrometheusEntry {
    fetched: std::time::Instant,
    spec: crate::api::PrometheusSpec,
    client: crate::health::prometheus::Prometheus,
    auth: crate::health::prometheus::Auth,
}

impl Context {
    /// A new context.
    pub fn new(
        client: Client,
        aws: Arc<dyn AwsProvider>,
        metrics: Metrics,
        settings: Settings,
        leadership: Option<Arc<leader::Leadership>>,
        stores: Stores,
    ) -> Self {
        let reporter = Reporter { controller: "shipshape".into(), instance: std::env::var("POD_NAME").ok() };
        let notifier = notify::Notifier::new(client.clone(), metrics.clone(), settings.namespace.clone());
        Context {
            notifier,
            leadership,
            stores,
            drift_slots: tokio::sync::Semaphore::new(DRIFT_SLOTS),
            drift_queue: tokio::sync::Semaphore::new(DRIFT_QUEUE),
            drift_backlog: DriftBacklog::default(),
            prometheus: Mutex::new(HashMap::new()),
            client,
            aws,
            metrics,
            reporter,
            settings,
            services: batch::ServiceReader::start(),
            tasks: tasks::TaskReader::default(),
            databases: listing::DatabaseReader::default(),
            task_definitions: Revisions::default(),
            recent: release::Recent::default(),
            failures: Mutex::new(HashMap::new()),
            events: events::Hub::default(),
        }
    }

    /// Publishes an Event about `obj`; failures are logged, never fatal. When the reason is
    /// one notifications announce, the sinks of the object's Environment get it too.
    pub async fn event<K: Resource<DynamicType = ()> + Placed>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let note = event_note(note);
        // A recorder per Event on purpose: kube's Recorder turns a repeat of the same reason
        // on the same object into a series of the *first* Event, keeping its note, so a
        // second DriftCorrected (another field) or Progressing (another SHA) would show the
        // old text.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let ev = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish event");
        }
        self.notify(obj, warning, reason, note);
    }

    /// Queues a notification of the Event, if its reason is one and the object's Environment
    /// exists (never waits).
    fn notify<K: Resource<DynamicType = ()> + Placed>(&self, obj: &K, warning: bool, reason: &str, message: String) {
        let Some(event) = notify::event_of(reason) else { return };
        let Some(env) = obj.environment_name().and_then(|name| self.stores.environment(name)) else { return };
        let note = notify::Note {
            event,
            kind: K::kind(&()).into_owned(),
            environment: env.name_any(),
            namespace: obj.meta().namespace.clone().unwrap_or_default(),
            name: obj.meta().name.clone().unwrap_or_default(),
            sha: obj.sha(),
            reason: reason.to_string(),
            message,
            warning,
            at: chrono::Utc::now(),
        };
        self.notifier.publish(&env, note);
    }

    /// The Prometheus client for `url`, made once and kept.
    pub async fn prometheus(
        &self,
        env: &Environment,
    ) -> Result<(crate::health::prometheus::Prometheus, crate::health::prometheus::Auth), String> {
        use crate::health::prometheus::{Auth, Prometheus};
        let Some(spec) = env.spec.health.as_ref().and_then(|h| h.prometheus.clone()) else {
            return Err(format!("Environment {} has no health.prometheus.url", env.name_any()));
        };
        let key = env.name_any();
        {
            let all = self.prometheus.lock().map_err(|_| "Prometheus clients poisoned".to_string())?;
            if let Some(e) = all.get(&key).filter(|e| e.spec == spec && e.fetched.elapsed() < PROMETHEUS_TTL) {
                return Ok((e.client.clone(), e.auth.clone()));
            }
        }
        let ca = match &spec.ca_secret_ref {
            Some(r) => Some(self.secret_key(r, "ca.crt").await?),
            None => None,
        };
        let client = Prometheus::with_ca(&spec.url, ca.as_deref())?;
        let auth = match (&spec.auth_secret_ref, &spec.sigv4) {
            (Some(_), Some(_)) => return Err("health.prometheus: authSecretRef and sigv4 exclude each other".into()),
            (Some(r), None) => match self.secret_key(r, "token").await {
                Ok(token) => Auth::Bearer(String::from_utf8_lossy(&token).trim().to_string()),
                Err(_) => {
                    let username = self.secret_key(r, "username").await?;
                    let password = self.secret_key(r, "password").await?;
                    Auth::Basic {
                        username: String::from_utf8_lossy(&username).into_owned(),
                        password: String::from_utf8_lossy(&password).into_owned(),
                    }
                }
            },
            (None, Some(s)) => {
                let aws = self.aws.clients(&environment::target(env)).await.map_err(|e| e.to_string())?;
                let Some(credentials) = aws.credentials.clone() else {
                    return Err("no AWS credentials to sign Prometheus queries with".into());
                };
                Auth::SigV4 { region: s.region.clone().unwrap_or_else(|| env.spec.region.clone()), credentials }
            }
            (None, None) => Auth::None,
        };
        let mut all = self.prometheus.lock().map_err(|_| "Prometheus clients poisoned".to_string())?;
        all.insert(key, PrometheusEntry { fetched: std::time::Instant::now(), spec, client: client.clone(), auth: auth.clone() });
        Ok((client, auth))
    }

    /// One key of a Secret an Environment names (its namespace, else the controller's).
    async fn secret_key(&self, r: &crate::api::SecretRef, key: &str) -> Result<Vec<u8>, String> {
        let ns = r.namespace.clone().unwrap_or_else(|| self.settings.namespace.clone());
        let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(self.client.clone(), &ns);
        let secret = api.get(&r.name).await.map_err(|e| secret_error(&ns, &r.name, e))?;
        secret.data.and_then(|d| d.get(key).map(|v| v.0.clone())).ok_or_else(|| format!("Secret {ns}/{} has no key {key}", r.name))
    }

    /// Ok while this replica may act (it leads, renewed recently); checked before every AWS
    /// write, so a replica paused past its lease never acts on a stale decision.
    pub fn may_act(&self) -> Result<(), Error> {
        match &self.leadership {
            Some(l) if !l.is_valid() => Err(Error::NotLeader),
            _ => Ok(()),
        }
    }

    fn failure_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
        format!("{}/{}/{}", K::kind(&()), obj.meta().namespace.as_deref().unwrap_or(""), obj.meta().name.as_deref().unwrap_or(""))
    }

    fn reset_failures<K: Resource<DynamicType = ()>>(&self, obj: &K) {
        self.failures.lock().unwrap().remove(&Self::failure_key(obj));
    }

    fn bump_failures<K: Resource<DynamicType = ()>>(&self, obj: &K) -> u32 {
        let mut f = self.failures.lock().unwrap();
        let n = f.entry(Self::failure_key(obj)).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }
}

/// The API server refuses an Event whose note is longer than 1 KiB (events.k8s.io/v1
/// validation: `note` at most 1024 bytes): cut longer ones at a character boundary.
pub fn event_note(note: String) -> String {
    const MAX: usize = 1024;
    if note.len() <= MAX {
        return note;
    }
    let suffix = "…";
    let mut end = MAX - suffix.len();
    while !note.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &note[..end])
}

/// A reconcile failure the runtime retries.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Kubernetes API failure.
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// AWS failure.
    #[error(transparent)]
    Aws(#[from] AwsError),
    /// Something refused, already written to status (e.g. cleanup that must not proceed).
    #[error("{message}")]
    Refused {
        /// Category deciding the requeue.
        category: Category,
        /// Message.
        message: String,
    },
    /// Finalizer helper failure.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<finalizer::Error<Error>>),
    /// This replica no longer (or not yet again) holds a valid lease: nothing is written.
    #[error("not the leader: leadership lapsed, nothing written")]
    NotLeader,
}

impl Error {
    /// The static category of the failure.
    pub fn category(&self) -> Category {
        match self {
            Error::Kube(_) | Error::NotLeader => Category::Transient,
            Error::Aws(e) => e.category(),
            Error::Refused { category, .. } => *category,
            Error::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e.category(),
                _ => Category::Transient,
            },
        }
    }
}

/// The namespaced name of an object, for logs.
fn key_of<K: ResourceExt>(obj: &K) -> String {
    match obj.namespace() {
        Some(ns) => format!("{ns}/{}", obj.name_any()),
        None => obj.name_any(),
    }
}

pub use run::{run, RunConfig};

mod run;

/// Why a Secret could not be read, saying what to do: Secrets are readable only in the
/// namespaces where the chart binds the `<release>-secrets` ClusterRole.
pub(crate) fn secret_error(ns: &str, name: &str, e: kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => format!("Secret {ns}/{name} not found"),
        kube::Error::Api(s) if s.code == 403 => format!(
            "Secret {ns}/{name}: the controller may not read Secrets in namespace {ns}; bind the chart's <release>-secrets ClusterRole there (add {ns} to rbac.secretNamespaces, or a RoleBinding of its own)"
        ),
        other => format!("Secret {ns}/{name}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::{drift_retry, event_note, DriftBacklog, DRIFT_QUEUE};
    use std::time::Duration;

    #[test]
    fn drift_checks_turned_away_come_back_later_the_more_are_turned_away() {
        assert_eq!(drift_retry(1, 0.5), Duration::from_secs(1));
        assert_eq!(drift_retry(10 * DRIFT_QUEUE as u64, 0.5), Duration::from_secs(10));
        assert_eq!(drift_retry(u64::MAX, 1.0), Duration::from_secs(45), "capped at 30 s, +50 % jitter");
        assert_eq!(drift_retry(0, 0.0), Duration::from_millis(500));
        let b = DriftBacklog::default();
        assert_eq!((b.turn_away(5_000), b.turn_away(5_500), b.turn_away(5_999)), (1, 2, 3));
        assert_eq!(b.turn_away(6_000), 1, "a new second starts a new count");
    }

    #[test]
    fn event_notes_fit_the_api_servers_1_kib_limit() {
        assert_eq!(event_note("short".into()), "short");
        for n in [1024, 1025, 5000] {
            for c in ["a", "é", "日"] {
                let note = event_note(c.repeat(n));
                assert!(note.len() <= 1024, "{c} x {n}: {}", note.len());
            }
        }
    }
}
