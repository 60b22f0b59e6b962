//! The controller process: endpoints, leader election, the three controllers, and a
//! graceful shutdown (finish in-flight reconciles, release the lease).

use axum::http::header::{HeaderValue, USER_AGENT};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{controller, predicates, watcher, Controller, Predicate, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::{error, info, warn};

use super::leader::Leadership;
use super::reconcile::{on_error, reconcile, Kind};
use super::{environment, Context, Elector, LeaseConfig, Settings, Shard, Stores};
use crate::api::{Environment, ServiceRelease, StackSpec, MANAGED_BY, MANAGED_BY_TAG};
use crate::aws::AwsProvider;
use crate::http::{self, Health};
use crate::metrics::Metrics;

/// How the process runs.
pub struct RunConfig {
    /// Where `/metrics`, `/healthz`, `/readyz` listen.
    pub metrics_addr: SocketAddr,
    /// Leader election, or None to run unconditionally (one replica).
    pub lease: Option<LeaseConfig>,
    /// Default intervals.
    pub settings: Settings,
    /// AWS clients.
    pub aws: Arc<dyn AwsProvider>,
    /// Metrics (shared with the AWS clients).
    pub metrics: Metrics,
    /// A Kubernetes client to use instead of KUBECONFIG / in-cluster config (benchmarks, tests).
    pub client: Option<Client>,
    /// Only objects whose labels match this selector are reconciled (None: all).
    pub label_selector: Option<String>,
    /// This process's shard (the default: the only one).
    pub shard: Shard,
}

async fn log_result<K, E>(controller: &'static str, res: Result<(ObjectRef<K>, kube::runtime::controller::Action), E>)
where
    K: kube::Resource<DynamicType = ()>,
    E: std::fmt::Display,
{
    match res {
        Ok((obj, _)) => tracing::debug!(controller, object = %obj, "reconciled"),
        Err(e) => tracing::debug!(controller, error = %e, "reconcile error"),
    }
}

/// At most this many reconciles run at once (a bound on memory and on what one replica
/// asks of AWS at a time). Drift checks also queue for a few slots of their own
/// (`Context::drift_slots`) while holding one of these, so this is set well above them:
/// a rollout must find a free one. (At 64, 1,000 releases applied at once with 680 of them
/// already Healthy and drift-checked every 10 s left 305 never started after 15 minutes.)
const MAX_CONCURRENT_RECONCILES: u16 = 1024;

/// API requests in flight at once (watches count only until their response starts). Each
/// one holds an HTTP/1.1 connection, and the client keeps every connection it opened: with
/// a thousand reconciles writing status at once (a convergence), a thousand TLS connections
/// stayed open for good, about a third of the live heap at 1,000 releases (heaptrack).
const API_CONCURRENCY: usize = 64;

/// Drops what no reconcile reads before an object goes into a cache.
fn trim<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// What wakes a reconcile of the object itself: its spec (generation, which deletion bumps
/// too), its annotations (the release commands, adoption, approval) and its finalizers —
/// never its own status writes.
fn own_changes<K: kube::Resource>() -> impl kube::runtime::Predicate<K> {
    predicates::generation.combine(predicates::annotations).combine(predicates::finalizers)
}

/// What a tenant kind's controller runs with.
struct Tenant<'a> {
    client: &'a Client,
    wc: &'a watcher::Config,
    shard: Shard,
    concurrency: controller::Config,
    stop: watch::Receiver<bool>,
    ctx: Arc<Context>,
}

/// The controller of a namespaced kind whose objects name an Environment (StackSpec,
/// ServiceRelease): woken by its own changes in this shard (kept in its cache through
/// `cache`) and by a change of its Environment (`env_changes`), for every object of the
/// shard naming it (`environment_of`).
fn tenant_controller<K, S>(
    t: Tenant<'_>,
    (writer, store): (reflector::store::Writer<K>, reflector::Store<K>),
    env_changes: S,
    environment_of: fn(&K) -> &str,
    dependents: Dependents<K>,
    wakes: Option<futures::channel::mpsc::UnboundedReceiver<ObjectRef<K>>>,
) -> impl std::future::Future<Output = ()>
where
    K: Kind,
    S: futures::Stream<Item = Result<Environment, watcher::Error>> + Send + 'static,
{
    let shard = t.shard;
    // Any change of an object (its status too) wakes the objects waiting on it — a
    // release's next stage, the releases that come after it — at once.
    let (wake_tx, wake_rx) = futures::channel::mpsc::unbounded::<ObjectRef<K>>();
    let deps = store.clone();
    // What the waiting objects look at, per object, as last seen: a change of anything else
    // (most status writes) wakes nobody.
    let mut seen: std::collections::HashMap<ObjectRef<K>, u64> = std::collections::HashMap::new();
    let trigger = watcher(Api::<K>::all(t.client.clone()), t.wc.clone())
        .default_backoff()
        .modify(trim)
        .reflect(writer)
        .applied_objects()
        .inspect_ok(move |o| {
            let fingerprint = (dependents.fingerprint)(o);
            let key = ObjectRef::from_obj(o);
            let unchanged = if o.meta().deletion_timestamp.is_some() {
                seen.remove(&key);
                false
            } else {
                seen.insert(key, fingerprint) == Some(fingerprint)
            };
            if unchanged {
                return;
            }
            for d in (dependents.of)(&deps, o) {
                if shard.owns(d.namespace.as_deref()) {
                    let _ = wake_tx.unbounded_send(d);
                }
            }
        })
        .try_filter(move |o| futures::future::ready(shard.owns(o.meta().namespace.as_deref())))
        .predicate_filter(own_changes(), Default::default());
    let index = store.clone();
    Controller::for_stream(trigger, store)
        .with_config(t.concurrency)
        .reconcile_on(futures::stream::select(
            wake_rx,
            match wakes {
                Some(rx) => rx.boxed(),
                None => futures::stream::pending().boxed(),
            },
        ))
        .watches_stream(env_changes, move |env| {
            let name = env.name_any();
            let tenants = index.state().into_iter().filter(|o| environment_of(o) == name && shard.owns(o.meta().namespace.as_deref()));
            tenants.map(|o| ObjectRef::from_obj(o.as_ref())).collect::<Vec<_>>()
        })
        .graceful_shutdown_on(stopped(t.stop))
        .run(reconcile::<K>, on_error::<K>, t.ctx)
        .for_each(|res| log_result(K::CONTROLLER, res))
}

/// The objects that wait on an object of kind `K`, woken when what they look at changes.
struct Dependents<K: kube::Resource<DynamicType = ()> + 'static> {
    /// A hash of what the waiting objects look at in an object.
    fingerprint: fn(&K) -> u64,
    /// The objects waiting on one.
    of: fn(&reflector::Store<K>, &K) -> Vec<ObjectRef<K>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

async fn termination() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {},
            _ = tokio::signal::ctrl_c() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Runs until SIGTERM/SIGINT (Ok) or until leadership is lost (Err, so the pod restarts).
pub async fn run(cfg: RunConfig) -> anyhow::Result<()> {
    let (client, lease_client) = match cfg.client.clone() {
        Some(c) => (c.clone(), c),
        None => {
            // A user agent of our own, so audit logs (and the RBAC test) can tell our requests apart.
            let mut config = kube::Config::infer().await?;
            config.headers.push((USER_AGENT, HeaderValue::from_static(concat!("shipshape/", env!("CARGO_PKG_VERSION")))));
            // The Lease has a client of its own: its renewal never queues behind reconciles.
            let lease_client = Client::try_from(config.clone())?;
            let client = kube::client::ClientBuilder::try_from(config)?
                .with_layer(&tower::limit::ConcurrencyLimitLayer::new(API_CONCURRENCY))
                .build();
            (client, lease_client)
        }
    };
    if let Some(selector) = &cfg.label_selector {
        // A selector the API server refuses would leave every watch retrying in the background.
        Api::<Environment>::all(client.clone())
            .list_metadata(&kube::api::ListParams::default().labels(selector).limit(1))
            .await
            .map_err(|e| anyhow::anyhow!("--watch-label-selector {selector:?}: {e}"))?;
    }
    let metrics = cfg.metrics.clone();
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            termination().await;
            info!("termination signal: finishing in-flight reconciles");
            let _ = stop_tx.send(true);
        });
    }
    let listener = tokio::net::TcpListener::bind(cfg.metrics_addr).await?;
    info!(addr = %listener.local_addr()?, "serving /metrics, /healthz, /readyz");
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    let http_task = tokio::spawn(http::serve(listener, Health { metrics: metrics.clone(), ready: ready.clone() }, stopped(http_stop_rx)));
    ready.store(true, Ordering::Relaxed);

    let lost = Arc::new(AtomicBool::new(false));
    let (lost_tx, lost_rx) = watch::channel(false);
    let elector = cfg.lease.clone().map(|lc| Arc::new(Elector::new(lease_client, lc)));
    // Valid for 2/3 of a lease after each renewal: a replica that cannot renew in time
    // stops acting before another could take the lease.
    let leadership = cfg.lease.as_ref().map(|lc| Arc::new(Leadership::new(lc.duration.mul_f64(2.0 / 3.0))));
    if let (Some(elector), Some(leadership)) = (&elector, &leadership) {
        let lc = elector.config().clone();
        info!(lease = %lc.name, identity = %lc.identity, "waiting for leadership");
        loop {
            match elector.try_acquire_or_renew().await {
                Ok(true) => {
                    leadership.renewed();
                    break;
                }
                Ok(false) => {}
                Err(e) => warn!(error = %e, "lease round failed"),
            }
            tokio::select! {
                _ = stopped(stop_rx.clone()) => {
                    let _ = http_stop_tx.send(true);
                    let _ = http_task.await;
                    return Ok(());
                }
                _ = tokio::time::sleep(lc.retry_period) => {}
            }
        }
        info!(identity = %lc.identity, "became leader");
        metrics.leader.set(1);
        let (elector, stop_tx, lost, stop_rx, leadership) =
            (elector.clone(), stop_tx.clone(), lost.clone(), stop_rx.clone(), leadership.clone());
        tokio::spawn(async move {
            // Renew well inside the lease; give up (and stop acting) before it can expire.
            loop {
                tokio::select! {
                    _ = stopped(stop_rx.clone()) => return,
                    _ = tokio::time::sleep(lc.retry_period) => {}
                }
                if !leadership.is_valid() {
                    error!("could not renew the lease in time: stopping");
                    break;
                }
                match elector.try_acquire_or_renew().await {
                    Ok(true) => leadership.renewed(),
                    Ok(false) => {
                        error!("another replica holds the lease: stopping");
                        break;
                    }
                    Err(e) => warn!(error = %e, "lease renewal failed"),
                }
            }
            leadership.lose();
            lost.store(true, Ordering::Relaxed);
            let _ = lost_tx.send(true);
            let _ = stop_tx.send(true);
        });
    } else {
        metrics.leader.set(1);
    }

    let wc = match &cfg.label_selector {
        Some(selector) => watcher::Config::default().labels(selector),
        None => watcher::Config::default(),
    };
    // Reads come from these caches, kept by watches: a reconcile that changes nothing makes
    // no API request. managedFields are dropped: nothing reads them, and they are most of a
    // stored object's size.
    let (environments_store, env_writer) = reflector::store::<Environment>();
    let (outputs_store, outputs_writer) = reflector::store::<ConfigMap>();
    let (stacks_store, stacks_writer) = reflector::store::<StackSpec>();
    let (releases_store, releases_writer) = reflector::store::<ServiceRelease>();
    // Every Environment (a release may name one whatever its labels), and the outputs
    // ConfigMaps (labelled managed-by shipshape).
    tokio::spawn(
        watcher(Api::<Environment>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(trim)
            .reflect(env_writer)
            .for_each(|_| futures::future::ready(())),
    );
    tokio::spawn(
        watcher(Api::<ConfigMap>::all(client.clone()), watcher::Config::default().labels(&format!("{MANAGED_BY_TAG}={MANAGED_BY}")))
            .default_backoff()
            .modify(trim)
            .reflect(outputs_writer)
            .for_each(|_| futures::future::ready(())),
    );
    let stores = Stores {
        environments: environments_store.clone(),
        outputs: outputs_store.clone(),
        stacks: stacks_store.clone(),
        releases: releases_store.clone(),
    };
    // Releases woken by what the controller itself just wrote (see release::Recent).
    let (release_wake_tx, release_wakes) = futures::channel::mpsc::unbounded::<ObjectRef<ServiceRelease>>();
    let ctx = Arc::new(Context::new(client.clone(), cfg.aws.clone(), metrics.clone(), cfg.settings.clone(), leadership.clone(), stores));
    // AWS events wake objects through these too (controller/events.rs).
    let _ = ctx.events.wake.releases.set(release_wake_tx.clone());
    ctx.recent.wake_into(release_wake_tx);
    let (stack_wake_tx, stack_wakes) = futures::channel::mpsc::unbounded::<ObjectRef<StackSpec>>();
    let _ = ctx.events.wake.stacks.set(stack_wake_tx);
    let (env_wake_tx, env_wakes) = futures::channel::mpsc::unbounded::<ObjectRef<Environment>>();
    let _ = ctx.events.wake.environments.set(env_wake_tx);
    // Nothing starts before the caches hold what the API server has.
    if environments_store.wait_until_ready().await.is_err() || outputs_store.wait_until_ready().await.is_err() {
        anyhow::bail!("a cache stopped before it was filled");
    }

    // A deleting Environment waits for its StackSpecs and ServiceReleases: their deletion
    // wakes it (and nothing else of theirs does).
    fn when_deleted(meta: &kube::api::ObjectMeta, env: &str) -> Vec<ObjectRef<Environment>> {
        if meta.deletion_timestamp.is_some() {
            vec![ObjectRef::new(env)]
        } else {
            vec![]
        }
    }
    let shard = cfg.shard;
    let concurrency = controller::Config::default().concurrency(MAX_CONCURRENT_RECONCILES);
    let environments = Controller::new(Api::<Environment>::all(client.clone()), wc.clone())
        .with_config(concurrency.clone())
        .reconcile_on(env_wakes)
        .watches(Api::<StackSpec>::all(client.clone()), wc.clone(), |s| when_deleted(&s.metadata, &s.spec.environment))
        .watches(Api::<ServiceRelease>::all(client.clone()), wc.clone(), |r| when_deleted(&r.metadata, &r.spec.environment))
        .graceful_shutdown_on(stopped(stop_rx.clone()))
        .run(reconcile::<Environment>, on_error::<Environment>, ctx.clone())
        .for_each(|res| log_result(Environment::CONTROLLER, res));

    // An Environment's spec change, or its readiness changing, wakes what uses it, once;
    // its other status writes do not.
    let environment_changes = || {
        watcher(Api::<Environment>::all(client.clone()), wc.clone())
            .default_backoff()
            .touched_objects()
            .predicate_filter(environment::tenant_view, Default::default())
    };
    let stacks = tenant_controller(
        Tenant { client: &client, wc: &wc, shard, concurrency: concurrency.clone(), stop: stop_rx.clone(), ctx: ctx.clone() },
        (stacks_writer, stacks_store.clone()),
        environment_changes(),
        |s: &StackSpec| s.spec.environment.as_str(),
        Dependents { fingerprint: |_| 0, of: |_, _| vec![] },
        Some(stack_wakes),
    );
    let releases = tenant_controller(
        Tenant { client: &client, wc: &wc, shard, concurrency, stop: stop_rx.clone(), ctx: ctx.clone() },
        (releases_writer, releases_store.clone()),
        environment_changes(),
        |r: &ServiceRelease| r.spec.environment.as_str(),
        Dependents { fingerprint: super::release::gate_fingerprint, of: super::release::waiting_on },
        Some(release_wakes),
    );

    info!("controllers running");
    // The Environments' event queues. An event that comes before the caches hold its object
    // finds nobody to wake: that object's first reconcile reads AWS anyway.
    tokio::spawn(super::events::supervise(ctx.clone(), shard, stop_rx.clone()));
    // Environments are cluster-scoped: shard 0 reconciles them.
    let environments = async move {
        if shard.owns(None) {
            environments.await;
        }
    };
    let controllers = async {
        futures::join!(environments, stacks, releases);
    };
    tokio::select! {
        _ = controllers => info!("controllers stopped"),
        // Leadership lost: in-flight reconciles are cancelled where they wait, not finished
        // (a deposed leader must not complete a decision the new leader may be making).
        _ = stopped(lost_rx) => error!("leadership lost: in-flight reconciles cancelled"),
    }

    if let Some(elector) = &elector {
        if !lost.load(Ordering::Relaxed) {
            match elector.release().await {
                Ok(()) => info!("lease released"),
                Err(e) => warn!(error = %e, "could not release the lease"),
            }
        }
    }
    metrics.leader.set(0);
    let _ = http_stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), http_task).await;
    if lost.load(Ordering::Relaxed) {
        anyhow::bail!("lost leadership");
    }
    Ok(())
}
