//! AWS events wake objects: one poller per Environment with an event queue (`spec.events`)
//! long-polls it through the Environment's clients, sends the heartbeat, and for each event
//! finds the objects it points at (service → ServiceRelease, database/bucket/table/cache →
//! StackSpec, function → ServiceRelease), forgets what the controller remembered of that
//! resource and requeues the object at once: its reconcile reads AWS before acting. An
//! event is a hint, never a verdict.
//!
//! While the heartbeat comes back ([`Flow::Flowing`]) polling is the slow safety net (a
//! deploying release every 30 s instead of 2 s, drift 10 times less often); when it stops,
//! the Environment says so (condition `EventsFlowing`, an Event, `shipshape_aws_events_flowing`)
//! and every object of it is woken to poll as without events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::channel::mpsc::UnboundedSender;
use kube::runtime::reflector::ObjectRef;
use kube::ResourceExt;
use tracing::{debug, info, warn};

use super::Context;
use crate::api::{Environment, ServiceRelease, StackSpec};
use crate::core::events::{self, Flow, Subject};

/// What wakes objects of each kind at once.
#[derive(Default)]
pub struct Wakers {
    /// ServiceReleases.
    pub releases: OnceLock<UnboundedSender<ObjectRef<ServiceRelease>>>,
    /// StackSpecs.
    pub stacks: OnceLock<UnboundedSender<ObjectRef<StackSpec>>>,
    /// Environments (their `EventsFlowing` condition).
    pub environments: OnceLock<UnboundedSender<ObjectRef<Environment>>>,
}

#[derive(Debug, Clone)]
struct State {
    started: Instant,
    heartbeat: Option<Instant>,
    received: Option<Instant>,
    last_event: Option<chrono::DateTime<chrono::Utc>>,
    flow: Flow,
}

/// The events of every Environment this process polls.
#[derive(Default)]
pub struct Hub {
    states: Mutex<HashMap<String, State>>,
    /// The Environments whose queue this process's Environment controller keeps (a
    /// controller restricted by `--watch-label-selector` sees every Environment, but polls
    /// only its own).
    managed: Mutex<std::collections::HashSet<String>>,
    /// Which release manages which service or function, per Environment.
    releases: Mutex<Placed<ServiceRelease>>,
    /// Which StackSpec manages which database, bucket, table or cache, per Environment.
    stacks: Mutex<Placed<StackSpec>>,
    /// Where wakes go.
    pub wake: Wakers,
}

/// (Environment, what AWS calls the resource).
type Name = (String, Subject);

/// The objects of one kind by the AWS resources they manage, kept by their reconciles (each
/// places its object when it looks at it, and removes it when it is gone), so that an
/// event finds its objects without a walk over every cached object.
struct Placed<K: kube::Resource<DynamicType = ()>> {
    by_name: HashMap<Name, std::collections::HashSet<ObjectRef<K>>>,
    of: HashMap<ObjectRef<K>, Vec<Name>>,
}

impl<K: kube::Resource<DynamicType = ()>> Default for Placed<K> {
    fn default() -> Self {
        Placed { by_name: HashMap::new(), of: HashMap::new() }
    }
}

impl<K: kube::Resource<DynamicType = ()>> Placed<K> {
    /// `at` manages `names` now (and nothing else).
    fn place(&mut self, at: ObjectRef<K>, names: Vec<Name>) {
        if self.of.get(&at) == Some(&names) {
            return;
        }
        self.remove(&at);
        if names.is_empty() {
            return;
        }
        for n in &names {
            self.by_name.entry(n.clone()).or_default().insert(at.clone());
        }
        self.of.insert(at, names);
    }

    fn remove(&mut self, at: &ObjectRef<K>) {
        for n in self.of.remove(at).unwrap_or_default() {
            if let Some(set) = self.by_name.get_mut(&n) {
                set.remove(at);
                if set.is_empty() {
                    self.by_name.remove(&n);
                }
            }
        }
    }

    fn of(&self, env: &str, subject: &Subject) -> Vec<ObjectRef<K>> {
        self.by_name.get(&(env.to_string(), subject.clone())).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}

/// Records what `r` manages (its ECS service in its Environment's cluster, or its Lambda
/// function), for events to find it. Called by each of its reconciles (cheap when unchanged).
pub(crate) fn place_release(ctx: &Context, r: &ServiceRelease) {
    let at = ObjectRef::from_obj(r);
    let env = r.spec.environment.clone();
    let service = r.spec.service.clone().unwrap_or_else(|| r.name_any());
    let names = if r.metadata.deletion_timestamp.is_some() {
        vec![]
    } else if r.spec.function.is_some() {
        vec![(env, Subject::Function(service))]
    } else {
        match ctx.stores.environment(&env) {
            Some(e) => vec![(env, Subject::Service { cluster: e.spec.ecs_cluster.name.clone(), service })],
            None => vec![],
        }
    };
    if let Ok(mut p) = ctx.events.releases.lock() {
        p.place(at, names);
    }
}

/// Records what `s` manages (its databases, buckets, tables and caches), for events to find it.
pub(crate) fn place_stack(ctx: &Context, s: &StackSpec) {
    let at = ObjectRef::from_obj(s);
    let env = &s.spec.environment;
    let names: Vec<Name> = if s.metadata.deletion_timestamp.is_some() {
        vec![]
    } else {
        (s.spec.databases.iter().map(|d| Subject::Database(d.name.clone())))
            .chain(s.spec.buckets.iter().map(|b| Subject::Bucket(b.name.clone())))
            .chain(s.spec.tables.iter().map(|t| Subject::Table(t.name.clone())))
            .chain(s.spec.caches.iter().map(|c| Subject::Cache(c.name.clone())))
            .map(|subject| (env.clone(), subject))
            .collect()
    };
    if let Ok(mut p) = ctx.events.stacks.lock() {
        p.place(at, names);
    }
}

impl Hub {
    fn with<T>(&self, env: &str, f: impl FnOnce(&mut State) -> T) -> Option<T> {
        self.states.lock().ok()?.get_mut(env).map(f)
    }

    /// Records whether this process keeps `env`'s event queue (its Environment reconcile says).
    pub fn manage(&self, env: &str, on: bool) {
        if let Ok(mut m) = self.managed.lock() {
            if on {
                m.insert(env.to_string());
            } else {
                m.remove(env);
            }
        }
    }

    fn manages(&self, env: &str) -> bool {
        self.managed.lock().is_ok_and(|m| m.contains(env))
    }

    /// Whether `env`'s events flow now: polling may be slow.
    pub fn flowing(&self, env: &str) -> bool {
        self.with(env, |s| s.flow == Flow::Flowing).unwrap_or(false)
    }

    /// `env`'s flow (None: no queue polled here) and when its last event was handled.
    pub fn state(&self, env: &str) -> Option<(Flow, Option<chrono::DateTime<chrono::Utc>>)> {
        self.with(env, |s| (s.flow, s.last_event))
    }

    /// A deploying release's poll and the drift interval for `env`: as given without events,
    /// [`events::EVENTS_DEPLOY_POLL`] and [`events::EVENTS_DRIFT_FACTOR`] times longer while
    /// they flow.
    pub fn release_config(&self, env: &str, mut cfg: crate::core::rollout::Config) -> crate::core::rollout::Config {
        if self.flowing(env) {
            cfg.deploy_poll = events::EVENTS_DEPLOY_POLL;
            cfg.drift_interval = self.drift(env, cfg.drift_interval);
        }
        cfg
    }

    /// A drift interval for `env`: longer while its events flow.
    pub fn drift(&self, env: &str, every: Duration) -> Duration {
        if self.flowing(env) {
            every.saturating_mul(events::EVENTS_DRIFT_FACTOR)
        } else {
            every
        }
    }

    fn start(&self, env: &str) {
        if let Ok(mut s) = self.states.lock() {
            s.insert(
                env.to_string(),
                State { started: Instant::now(), heartbeat: None, received: None, last_event: None, flow: Flow::Starting },
            );
        }
    }

    fn stop(&self, env: &str) {
        if let Ok(mut s) = self.states.lock() {
            s.remove(env);
        }
    }

    /// Judges `env`'s flow now; returns the new one when it changed.
    fn judge(&self, env: &str) -> Option<Flow> {
        self.with(env, |s| {
            let now = Instant::now();
            let flow = events::flow(now, s.started, s.heartbeat, s.received);
            (flow != s.flow).then(|| {
                s.flow = flow;
                flow
            })
        })
        .flatten()
    }
}

/// Keeps one poller per Environment with an event queue, for as long as this process leads.
pub async fn supervise(ctx: Arc<Context>, shard: super::Shard, mut stop: tokio::sync::watch::Receiver<bool>) {
    // Environments are cluster-scoped: the shard that reconciles them polls their queues.
    if !shard.owns(None) {
        return;
    }
    let mut pollers: HashMap<String, (String, tokio::task::JoinHandle<()>)> = HashMap::new();
    info!("event queues: watching the Environments for spec.events");
    loop {
        let wanted: HashMap<String, String> = ctx
            .stores
            .environments
            .state()
            .iter()
            .filter(|e| e.spec.events.is_some() && e.metadata.deletion_timestamp.is_none() && ctx.events.manages(&e.name_any()))
            .filter_map(|e| Some((e.name_any(), e.status.as_ref()?.events.as_ref()?.queue_url.clone()?)))
            .collect();
        pollers.retain(|env, (url, task)| {
            let keep = wanted.get(env) == Some(url) && !task.is_finished();
            if !keep {
                task.abort();
                ctx.events.stop(env);
                wake_all(&ctx, env);
                set_gauge(&ctx, env, None);
            }
            keep
        });
        for (env, url) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = pollers.entry(env.clone()) {
                info!(environment = %env, queue = %url, "polling the event queue");
                ctx.events.start(&env);
                set_gauge(&ctx, &env, Some(Flow::Starting));
                let task = tokio::spawn(poll(ctx.clone(), env.clone(), url.clone()));
                slot.insert((url, task));
            }
        }
        tokio::select! {
            _ = stop.wait_for(|v| *v) => break,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
    for (_, (_, task)) in pollers {
        task.abort();
    }
}

fn set_gauge(ctx: &Context, env: &str, flow: Option<Flow>) {
    let v = match flow {
        Some(Flow::Flowing) => 1,
        None => {
            let _ = ctx.metrics.aws_events_flowing.remove_label_values(&[env]);
            return;
        }
        Some(_) => 0,
    };
    ctx.metrics.aws_events_flowing.with_label_values(&[env]).set(v);
}

/// Every object of `env`, woken to look at AWS as without events.
fn wake_all(ctx: &Context, env: &str) {
    if let Some(tx) = ctx.events.wake.releases.get() {
        for r in ctx.stores.releases.state().iter().filter(|r| r.spec.environment == env) {
            let _ = tx.unbounded_send(ObjectRef::from_obj(r.as_ref()));
        }
    }
    if let Some(tx) = ctx.events.wake.stacks.get() {
        for s in ctx.stores.stacks.state().iter().filter(|s| s.spec.environment == env) {
            let _ = tx.unbounded_send(ObjectRef::from_obj(s.as_ref()));
        }
    }
}

/// One Environment's poller: heartbeat, long poll, wake, delete what was handled.
async fn poll(ctx: Arc<Context>, env_name: String, url: String) {
    let mut last_beat: Option<Instant> = None;
    let mut failures: u32 = 0;
    loop {
        let Some(env) = ctx.stores.environment(&env_name) else { return };
        let target =
            crate::aws::Target { environment: env_name.clone(), region: env.spec.region.clone(), role_arn: env.spec.role_arn.clone() };
        let aws = match ctx.aws.clients(&target).await {
            Ok(a) => a,
            Err(e) => {
                warn!(environment = %env_name, error = %e, "event queue: no AWS clients");
                failures = failures.saturating_add(1);
                rest(&ctx, &env, failures).await;
                continue;
            }
        };
        if last_beat.is_none_or(|t| t.elapsed() >= events::HEARTBEAT_EVERY) {
            if let Err(e) = aws.events.put_heartbeat(&env_name).await {
                // Tried again at the next beat; a heartbeat that never arrives stops the flow.
                warn!(environment = %env_name, error = %e, "event queue: heartbeat not sent");
            }
            last_beat = Some(Instant::now());
        }
        let until_beat = last_beat.map(|t| events::HEARTBEAT_EVERY.saturating_sub(t.elapsed())).unwrap_or_default();
        let wait = until_beat.clamp(Duration::from_secs(1), events::LONG_POLL);
        match aws.events.receive(&url, wait, events::BATCH).await {
            Ok(messages) => {
                failures = 0;
                ctx.events.with(&env_name, |s| s.received = Some(Instant::now()));
                let own = aws.sts.caller_arn().await.ok().flatten();
                let handled = handle(&ctx, &env, &messages, own.as_deref()).await;
                if !handled.is_empty() {
                    // Deleted beside the next receive, not before it: a batch's round trip
                    // does not delay the next events.
                    let (queue, url, env_name) = (aws.events.clone(), url.clone(), env_name.clone());
                    tokio::spawn(async move {
                        if let Err(e) = queue.delete_messages(&url, &handled).await {
                            // Not deleted: they come back after the visibility timeout, and are
                            // handled again (a hint twice is harmless).
                            warn!(environment = %env_name, error = %e, "event queue: handled messages not deleted");
                        }
                    });
                }
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                ctx.metrics.aws_event_receive_failures.with_label_values(&[&env_name]).inc();
                warn!(environment = %env_name, error = %e, "event queue: receive failed");
                rest(&ctx, &env, failures).await;
                continue;
            }
        }
        judged(&ctx, &env).await;
    }
}

/// After a failure: the flow judged (it may have stopped), then a backoff before trying again.
async fn rest(ctx: &Context, env: &Environment, failures: u32) {
    judged(ctx, env).await;
    let wait = crate::core::requeue::backoff(failures, Duration::from_secs(1), Duration::from_secs(30), rand::random());
    tokio::time::sleep(wait).await;
}

/// Judges the flow after a round; on a change: the gauge, an Event, the Environment woken (its
/// condition) and, when events stopped, every object of it woken to poll as before.
async fn judged(ctx: &Context, env: &Environment) {
    let name = env.name_any();
    let Some(flow) = ctx.events.judge(&name) else { return };
    set_gauge(ctx, &name, Some(flow));
    if let Some(tx) = ctx.events.wake.environments.get() {
        let _ = tx.unbounded_send(ObjectRef::from_obj(env));
    }
    match flow {
        Flow::Flowing => {
            info!(environment = %name, "AWS events flowing");
            ctx.event(
                env,
                false,
                crate::api::reasons::EVENTS_FLOWING,
                "AWS events arrive (the heartbeat came back): polling is now the slow safety net".into(),
            )
            .await;
        }
        Flow::Stopped => {
            ctx.metrics.aws_event_fallbacks.with_label_values(&[&name]).inc();
            warn!(environment = %name, "AWS events stopped: polling as without events");
            ctx.event(env, true, crate::api::reasons::EVENTS_STOPPED, stopped_message()).await;
            wake_all(ctx, &name);
        }
        Flow::Starting => {}
    }
}

/// What an Environment says when its events stop.
pub fn stopped_message() -> String {
    format!(
        "no AWS event (heartbeat) came back through the event queue for {} s, or the queue cannot be read: polling as without events until they return (check the queue, the EventBridge rule and the role's sqs/events permissions)",
        events::HEARTBEAT_GRACE.as_secs()
    )
}

/// Handles a batch: returns the (id, receipt) of every message handled (all of them: an
/// event nobody here cares about, or a body that is no event, is handled by being dropped).
async fn handle(ctx: &Context, env: &Environment, messages: &[crate::aws::QueueMessage], own: Option<&str>) -> Vec<(String, String)> {
    if messages.is_empty() {
        return vec![];
    }
    let env_name = env.name_any();
    let now = chrono::Utc::now();
    let mut handled = Vec::with_capacity(messages.len());
    for m in messages {
        handled.push((m.id.clone(), m.receipt.clone()));
        let event = match events::parse(&m.body) {
            Ok(e) => e,
            Err(why) => {
                debug!(environment = %env_name, why, "event queue: a message that is no event, dropped");
                ctx.metrics.aws_events.with_label_values(&["invalid", "invalid"]).inc();
                continue;
            }
        };
        ctx.metrics.aws_events.with_label_values(&[event.source, event.detail_type]).inc();
        debug!(environment = %env_name, source = event.source, detail_type = event.detail_type, subjects = ?event.subjects, by = ?event.by, "aws event");
        if let Some(t) = event.time {
            let lag = now.signed_duration_since(t).num_milliseconds().max(0);
            ctx.metrics.aws_event_lag.observe(lag as f64 / 1000.0);
        }
        ctx.events.with(&env_name, |s| s.last_event = Some(now));
        if let Some(of) = &event.heartbeat {
            if *of == env_name {
                ctx.events.with(&env_name, |s| s.heartbeat = Some(Instant::now()));
            }
            continue;
        }
        if own.is_some() && event.by.as_deref() == own {
            // The controller's own call, recorded by CloudTrail: nothing to learn.
            continue;
        }
        for subject in &event.subjects {
            wake(ctx, &env_name, subject).await;
        }
    }
    handled
}

async fn wake(ctx: &Context, env: &str, subject: &Subject) {
    match subject {
        Subject::Service { .. } | Subject::Function(_) => {
            let found = ctx.events.releases.lock().map(|p| p.of(env, subject)).unwrap_or_default();
            for r in found {
                if let Subject::Service { cluster, service } = subject {
                    // What the controller remembered of the service is older than the event.
                    ctx.services.forget(env, cluster, service);
                }
                ctx.metrics.aws_event_wakes.with_label_values(&["ServiceRelease"]).inc();
                if let Some(tx) = ctx.events.wake.releases.get() {
                    let _ = tx.unbounded_send(r);
                }
            }
        }
        other => {
            let found = ctx.events.stacks.lock().map(|p| p.of(env, other)).unwrap_or_default();
            for s in found {
                if let Subject::Database(name) = other {
                    ctx.databases.changed(env, name).await;
                }
                ctx.metrics.aws_event_wakes.with_label_values(&["StackSpec"]).inc();
                if let Some(tx) = ctx.events.wake.stacks.get() {
                    let _ = tx.unbounded_send(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_finds_the_objects_placed_on_its_resource_and_no_longer_after_they_move_or_go() {
        let mut p = Placed::<ServiceRelease>::default();
        let svc = |name: &str| Subject::Service { cluster: "c".into(), service: name.into() };
        let (a, b) = (ObjectRef::new("a").within("team"), ObjectRef::new("b").within("team"));
        p.place(a.clone(), vec![("prod".into(), svc("api"))]);
        p.place(b.clone(), vec![("prod".into(), svc("api"))]);
        assert_eq!(p.of("prod", &svc("api")).len(), 2, "two releases naming one service (one of them is refused; both hear of it)");
        assert!(p.of("staging", &svc("api")).is_empty(), "another Environment's service of that name");
        p.place(a.clone(), vec![("prod".into(), svc("web"))]);
        assert_eq!(p.of("prod", &svc("api")), vec![b.clone()], "a's spec.service changed");
        assert_eq!(p.of("prod", &svc("web")), vec![a.clone()]);
        p.place(b.clone(), vec![]);
        p.place(a, vec![]);
        assert!(p.of("prod", &svc("api")).is_empty() && p.of("prod", &svc("web")).is_empty());
        assert!(p.by_name.is_empty() && p.of.is_empty(), "nothing kept of deleted objects");
    }

    #[test]
    fn polling_slows_only_while_the_heartbeat_comes_back_and_returns_when_it_stops() {
        let hub = Hub::default();
        let cfg = crate::core::spec::release(
            &serde_json::from_value(serde_json::json!({
                "environment": "prod", "image": {"repository": "r", "gitSha": "abc1234"}, "task": {"cpu": 256, "memory": 512}
            }))
            .unwrap(),
            Duration::from_secs(60),
        )
        .unwrap();
        assert_eq!(hub.release_config("prod", cfg.clone()).deploy_poll, crate::core::rollout::DEPLOY_POLL, "no queue polled");
        hub.start("prod");
        assert_eq!(hub.judge("prod"), None, "starting: no change");
        assert!(!hub.flowing("prod"));
        hub.with("prod", |s| {
            s.heartbeat = Some(Instant::now());
            s.received = Some(Instant::now());
        });
        assert_eq!(hub.judge("prod"), Some(Flow::Flowing));
        let slow = hub.release_config("prod", cfg.clone());
        assert_eq!((slow.deploy_poll, slow.drift_interval), (events::EVENTS_DEPLOY_POLL, Duration::from_secs(600)));
        assert_eq!(hub.drift("prod", Duration::from_secs(300)), Duration::from_secs(3000));
        assert_eq!(hub.drift("staging", Duration::from_secs(300)), Duration::from_secs(300), "another Environment");
        hub.with("prod", |s| s.heartbeat = Instant::now().checked_sub(events::HEARTBEAT_GRACE * 2));
        assert_eq!(hub.judge("prod"), Some(Flow::Stopped));
        assert_eq!(hub.release_config("prod", cfg).deploy_poll, crate::core::rollout::DEPLOY_POLL, "back to polling");
        hub.stop("prod");
        assert_eq!(hub.state("prod"), None);
    }
}
