//! DescribeServices batching that actually batches: ECS answers up to 10 services per
//! call, so every call is filled — with the services asked for in a short window and, to
//! fill it, the services of the same cluster read longest ago — and every answer is kept.
//! A drift check accepts an answer younger than half its interval (usually one a
//! neighbour's call brought in), so N releases cost about N/10 reads per interval however
//! their reconciles are spread in time; a rollout in flight always reads afresh.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::aws::{AwsError, Ecs, Work};
use crate::core::rollout::ServiceObs;

type Reply = oneshot::Sender<Result<Option<ServiceObs>, AwsError>>;

struct Request {
    ecs: Arc<dyn Ecs>,
    environment: String,
    cluster: String,
    name: String,
    /// The work asking: a drift check (it accepts an older answer) takes the drift share of
    /// the read budget; a fresh read is rollout work, a rollout in flight's goes first.
    work: Work,
    reply: Reply,
}

/// (environment, cluster).
type ClusterKey = (String, String);

/// What was last read of the services of one cluster, and when, indexed by read time so
/// that filling a call with the stalest services costs O(room · log n), not a scan of every
/// service (a scan per call made each drift interval cost O(n²)).
#[derive(Default)]
struct ClusterCache {
    entries: HashMap<String, (Option<ServiceObs>, Instant)>,
    by_age: BTreeSet<(Instant, String)>,
}

impl ClusterCache {
    fn get(&self, name: &str) -> Option<&(Option<ServiceObs>, Instant)> {
        self.entries.get(name)
    }

    fn insert(&mut self, name: String, obs: Option<ServiceObs>, at: Instant) {
        if let Some((_, old)) = self.entries.insert(name.clone(), (obs, at)) {
            self.by_age.remove(&(old, name.clone()));
        }
        self.by_age.insert((at, name));
    }

    fn remove(&mut self, name: &str) {
        if let Some((_, at)) = self.entries.remove(name) {
            self.by_age.remove(&(at, name.to_string()));
        }
    }

    /// Drops answers nobody asked about for [`FORGET_AFTER`] (services no release reconciles any more).
    fn expire(&mut self) {
        while let Some((at, name)) = self.by_age.first().cloned() {
            if at.elapsed() < FORGET_AFTER {
                break;
            }
            self.by_age.pop_first();
            self.entries.remove(&name);
        }
    }

    /// Up to `room` services read longest ago, other than `except`.
    fn stalest(&self, room: usize, except: &[String]) -> Vec<String> {
        self.by_age.iter().filter(|(_, n)| !except.contains(n)).take(room).map(|(_, n)| n.clone()).collect()
    }
}

/// Every cluster's cache.
#[derive(Default)]
struct Cache {
    clusters: HashMap<ClusterKey, ClusterCache>,
}

/// How long an unasked-for answer is kept (a service nobody reconciles any more is dropped).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Collects service reads for a short window and answers them with batched calls.
#[derive(Clone)]
pub struct ServiceReader {
    tx: mpsc::Sender<Request>,
    cache: Arc<Mutex<Cache>>,
}

/// How long the first request of a batch waits for company.
const WINDOW: Duration = Duration::from_millis(25);
/// ECS's limit of services per DescribeServices call.
const PER_CALL: usize = 10;
/// Requests one flush answers at most (its calls are made one after the other).
const PER_FLUSH: usize = 10 * PER_CALL;
/// Flushes of one lane in flight at once; more requests wait and join the next one.
const CALLS_IN_FLIGHT: usize = 2;

/// (environment, cluster, work): drift checks, rollouts started and rollouts in flight batch
/// separately, so a rollout's read never waits behind a drift batch, nor a rollback's behind
/// a wave of new rollouts.
type Lane = (String, String, Work);

impl ServiceReader {
    /// Starts the batching task (on the current runtime).
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::channel::<Request>(4096);
        let cache: Arc<Mutex<Cache>> = Arc::default();
        let shared = cache.clone();
        tokio::spawn(async move {
            // Requests wait here while their lane has its calls in flight: under load (the
            // read budget spent, calls waiting for it) they pile up and the next call is full,
            // instead of many small calls each waiting for the budget.
            let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Lane>();
            let mut pending: HashMap<Lane, Vec<Request>> = HashMap::new();
            let mut in_flight: HashMap<Lane, usize> = HashMap::new();
            loop {
                tokio::select! {
                    first = rx.recv() => {
                        let Some(first) = first else { break };
                        let mut batch = vec![first];
                        let deadline = tokio::time::sleep(WINDOW);
                        tokio::pin!(deadline);
                        loop {
                            tokio::select! {
                                _ = &mut deadline => break,
                                next = rx.recv() => match next {
                                    Some(r) => batch.push(r),
                                    None => break,
                                },
                            }
                        }
                        for r in batch {
                            pending.entry((r.environment.clone(), r.cluster.clone(), r.work)).or_default().push(r);
                        }
                    }
                    Some(lane) = done_rx.recv() => {
                        if let Some(n) = in_flight.get_mut(&lane) {
                            *n = n.saturating_sub(1);
                        }
                    }
                }
                for (lane, requests) in pending.iter_mut() {
                    let busy = in_flight.entry(lane.clone()).or_default();
                    if requests.is_empty() || *busy >= CALLS_IN_FLIGHT {
                        continue;
                    }
                    *busy += 1;
                    let take: Vec<Request> = requests.drain(..requests.len().min(PER_FLUSH)).collect();
                    let (cache, done, lane) = (shared.clone(), done_tx.clone(), lane.clone());
                    tokio::spawn(async move {
                        crate::aws::as_work(lane.2, flush(cache, lane.0.clone(), lane.1.clone(), take)).await;
                        let _ = done.send(lane);
                    });
                }
                pending.retain(|_, r| !r.is_empty());
            }
        });
        ServiceReader { tx, cache }
    }

    /// Forgets what was read of a service: after shipshape changes it, the next read asks ECS.
    pub fn forget(&self, environment: &str, cluster: &str, name: &str) {
        if let Ok(mut c) = self.cache.lock() {
            if let Some(cc) = c.clusters.get_mut(&(environment.to_string(), cluster.to_string())) {
                cc.remove(name);
            }
        }
    }

    /// The service `name` in `cluster` as ECS reported it at most `max_age` ago (zero: read
    /// now), read together with others of the same environment and cluster.
    pub async fn describe(
        &self,
        ecs: Arc<dyn Ecs>,
        environment: &str,
        cluster: &str,
        name: &str,
        max_age: Duration,
    ) -> Result<Option<ServiceObs>, AwsError> {
        if !max_age.is_zero() {
            let cached = self.cache.lock().ok().and_then(|c| c.clusters.get(&(environment.into(), cluster.into()))?.get(name).cloned());
            if let Some((obs, at)) = cached {
                if at.elapsed() <= max_age {
                    return Ok(obs);
                }
            }
        }
        let (reply, rx) = oneshot::channel();
        let req = Request {
            ecs: ecs.clone(),
            environment: environment.into(),
            cluster: cluster.into(),
            name: name.into(),
            work: if max_age.is_zero() { crate::aws::work().max(Work::Rollout) } else { Work::Drift },
            reply,
        };
        if self.tx.send(req).await.is_err() {
            // The batching task is gone (shutdown): read alone.
            return ecs
                .describe_services(cluster, &[name.to_string()])
                .await
                .map(|v| v.into_iter().find(|(n, _)| n == name).map(|(_, s)| s));
        }
        rx.await.unwrap_or_else(|_| Err(AwsError::Transient { op: "DescribeServices", message: "batch dropped".into() }))
    }
}

async fn flush(cache: Arc<Mutex<Cache>>, environment: String, cluster: String, mut requests: Vec<Request>) {
    let Some(ecs) = requests.first().map(|r| r.ecs.clone()) else { return };
    requests.sort_by(|a, b| a.name.cmp(&b.name));
    let mut names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    names.dedup();
    // Fill the last call with the services of this cluster read longest ago.
    let room = (PER_CALL - names.len() % PER_CALL) % PER_CALL;
    if room > 0 {
        if let Ok(mut c) = cache.lock() {
            let cc = c.clusters.entry((environment.clone(), cluster.clone())).or_default();
            cc.expire();
            let stale = cc.stalest(room, &names);
            names.extend(stale);
        }
    }
    let mut found: HashMap<String, ServiceObs> = HashMap::new();
    let mut failure = None;
    let mut read = vec![];
    // The calls wait their turn as the lane's work (`ServiceReader::start` runs this as it).
    for chunk in names.chunks(PER_CALL) {
        let answer = ecs.describe_services(&cluster, chunk).await;
        match answer {
            Ok(list) => {
                found.extend(list);
                read.extend(chunk.iter().cloned());
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    if let Ok(mut c) = cache.lock() {
        let now = Instant::now();
        let cc = c.clusters.entry((environment.clone(), cluster.clone())).or_default();
        for name in read {
            let obs = found.get(&name).cloned();
            cc.insert(name, obs, now);
        }
    }
    for r in requests {
        let answer = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(found.get(&r.name).cloned()),
        };
        let _ = r.reply.send(answer);
    }
}
