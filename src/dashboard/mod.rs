//! `shipshape dashboard`: a web UI served locally with the user's own kubeconfig — every
//! release in every namespace, each rollout's steps and measurements as they happen, the
//! Environments and StackSpecs, the promotion paths, and the buttons (the CLI's annotations,
//! set as the user, so the page can do nothing the user could not do with kubectl).
//!
//! One watch per kind (ServiceRelease, Environment, StackSpec, the outputs ConfigMaps,
//! shipshape's Events) feeds in-memory stores, however many tabs are open; each tab gets the
//! changes pushed as server-sent events (coalesced every [`COALESCE`]) and reads pages from
//! the stores. The page's assets are embedded in the binary (no CDN; works air-gapped).

pub mod view;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::broadcast;

use crate::api::{Environment, ServiceRelease, StackSpec, MANAGED_BY, MANAGED_BY_TAG};
use view::RolloutSeen;

/// How long changes are gathered before a tab is told of them.
pub const COALESCE: Duration = Duration::from_millis(250);
/// How many Events a release page lists.
const EVENTS_SHOWN: usize = 50;

/// Where and what the dashboard serves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address to listen on.
    pub address: SocketAddr,
    /// One namespace (None: every namespace the user may list).
    pub namespace: Option<String>,
}

/// What changed, as a watch saw it.
#[derive(Clone, Debug)]
enum Change {
    Release(String),
    ReleaseGone(String),
    Environments,
    Stacks,
    /// Events about this release ("namespace/name").
    EventsOf(String),
    /// A watch (re)listed: every page reloads what it shows.
    Reset,
}

struct Shared {
    client: Client,
    namespace: Option<String>,
    releases: Store<ServiceRelease>,
    environments: Store<Environment>,
    stacks: Store<StackSpec>,
    outputs: Store<ConfigMap>,
    events: Store<Event>,
    changes: broadcast::Sender<Change>,
    seen: Mutex<HashMap<String, VecDeque<RolloutSeen>>>,
    /// The last error of each kind's watch (a kind the user may not list, say).
    errors: Mutex<HashMap<&'static str, String>>,
    /// Host header values the page may be reached at (DNS rebinding refused).
    hosts: BTreeSet<String>,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Serves the dashboard on `listener` until `shutdown` resolves.
pub async fn serve(
    client: Client,
    listener: tokio::net::TcpListener,
    namespace: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener.local_addr()?;
    let (releases, releases_w) = reflector::store::<ServiceRelease>();
    let (environments, environments_w) = reflector::store::<Environment>();
    let (stacks, stacks_w) = reflector::store::<StackSpec>();
    let (outputs, outputs_w) = reflector::store::<ConfigMap>();
    let (events, events_w) = reflector::store::<Event>();
    let (changes, _) = broadcast::channel(4096);
    let port = local.port();
    let mut hosts: BTreeSet<String> = ["127.0.0.1", "localhost", "[::1]"].iter().map(|h| format!("{h}:{port}")).collect();
    hosts.insert(match local.ip() {
        std::net::IpAddr::V6(ip) => format!("[{ip}]:{port}"),
        ip => format!("{ip}:{port}"),
    });
    let shared = Arc::new(Shared {
        client: client.clone(),
        namespace: namespace.clone(),
        releases,
        environments,
        stacks,
        outputs,
        events,
        changes,
        seen: Mutex::default(),
        errors: Mutex::default(),
        hosts,
    });
    let scoped = |c: &Client| -> (Api<ServiceRelease>, Api<StackSpec>, Api<ConfigMap>, Api<Event>) {
        match &namespace {
            Some(ns) => (
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
                Api::namespaced(c.clone(), ns),
            ),
            None => (Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone()), Api::all(c.clone())),
        }
    };
    let (rel_api, stack_api, cm_api, ev_api) = scoped(&client);
    let watches = vec![
        tokio::spawn(watch(shared.clone(), "ServiceRelease", rel_api, watcher::Config::default(), releases_w, |s, r: &ServiceRelease| {
            let k = key(&r.namespace().unwrap_or_default(), &r.name_any());
            if let Ok(mut seen) = s.seen.lock() {
                view::remember(seen.entry(k.clone()).or_default(), r);
            }
            Change::Release(k)
        })),
        tokio::spawn(watch(shared.clone(), "Environment", Api::all(client.clone()), watcher::Config::default(), environments_w, |_, _| {
            Change::Environments
        })),
        tokio::spawn(watch(shared.clone(), "StackSpec", stack_api, watcher::Config::default(), stacks_w, |_, _| Change::Stacks)),
        tokio::spawn(watch(
            shared.clone(),
            "ConfigMap",
            cm_api,
            watcher::Config::default().labels(&format!("{MANAGED_BY_TAG}={MANAGED_BY}")),
            outputs_w,
            |_, _| Change::Stacks,
        )),
        tokio::spawn(watch(
            shared.clone(),
            "Event",
            ev_api,
            watcher::Config::default().fields(&format!("involvedObject.apiVersion={}", ServiceRelease::api_version(&()))),
            events_w,
            |_, e: &Event| match (e.involved_object.kind.as_deref(), &e.involved_object.namespace, &e.involved_object.name) {
                (Some("ServiceRelease"), Some(ns), Some(name)) => Change::EventsOf(key(ns, name)),
                _ => Change::Stacks,
            },
        )),
    ];
    let app = router(shared);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    for w in watches {
        w.abort();
    }
    Ok(served?)
}

/// Keeps `writer`'s store current from one watch, telling the tabs what changed.
async fn watch<K>(
    shared: Arc<Shared>,
    kind: &'static str,
    api: Api<K>,
    config: watcher::Config,
    writer: reflector::store::Writer<K>,
    changed: fn(&Shared, &K) -> Change,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let mut stream = watcher(api, config).default_backoff().reflect(writer).boxed();
    while let Some(event) = stream.next().await {
        let change = match event {
            Ok(watcher::Event::Apply(o)) => {
                if let Ok(mut e) = shared.errors.lock() {
                    e.remove(kind);
                }
                changed(&shared, &o)
            }
            Ok(watcher::Event::Delete(o)) => match kind {
                "ServiceRelease" => {
                    let k = key(&o.namespace().unwrap_or_default(), &o.name_any());
                    if let Ok(mut seen) = shared.seen.lock() {
                        seen.remove(&k);
                    }
                    Change::ReleaseGone(k)
                }
                _ => changed(&shared, &o),
            },
            Ok(watcher::Event::InitDone) => {
                if let Ok(mut e) = shared.errors.lock() {
                    e.remove(kind);
                }
                Change::Reset
            }
            Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
            Err(e) => {
                if let Ok(mut errs) = shared.errors.lock() {
                    errs.insert(kind, format!("{kind}: {e}"));
                }
                Change::Reset
            }
        };
        let _ = shared.changes.send(change);
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(|| async { asset("text/html; charset=utf-8", include_str!("assets/index.html")) }))
        .route("/app.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("assets/app.js")) }))
        .route("/style.css", get(|| async { asset("text/css; charset=utf-8", include_str!("assets/style.css")) }))
        .route("/api/releases", get(releases))
        .route("/api/releases/{ns}/{name}", get(release))
        .route("/api/releases/{ns}/{name}/{action}", post(act))
        .route("/api/environments", get(environments))
        .route("/api/stacks", get(stacks))
        .route("/api/pipeline", get(pipeline))
        .route("/api/stream", get(stream))
        .layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// Refuses a request for another host name (DNS rebinding: a web page the user visits
/// pointing its own name at 127.0.0.1) and an action not sent by the page itself (another
/// site's form cannot set the header without the browser asking first, which nothing here
/// answers).
async fn guard(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
    let any_host = s.hosts.iter().any(|h| h.starts_with("0.0.0.0:") || h.starts_with("[::]:"));
    if !any_host && !s.hosts.contains(&host) {
        return (StatusCode::FORBIDDEN, "unknown host").into_response();
    }
    if req.method() == axum::http::Method::POST {
        let from_page = req.headers().get("x-shipshape-dashboard").is_some();
        let origin_ok = match req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
            Some(origin) => origin.strip_prefix("http://").is_some_and(|o| o == host),
            None => true,
        };
        if !from_page || !origin_ok {
            return (StatusCode::FORBIDDEN, "actions come from the dashboard's own page").into_response();
        }
    }
    next.run(req).await
}

fn watch_errors(s: &Shared) -> Vec<String> {
    s.errors.lock().map(|e| e.values().cloned().collect()).unwrap_or_default()
}

async fn releases(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let mut rows: Vec<view::ReleaseRow> = s.releases.state().iter().map(|r| view::release_row(r)).collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Json(json!({"releases": rows, "namespace": s.namespace, "errors": watch_errors(&s)}))
}

async fn release(State(s): State<Arc<Shared>>, Path((ns, name)): Path<(String, String)>) -> Response {
    let Some(r) = s.releases.get(&reflector::ObjectRef::new(&name).within(&ns)) else {
        return (StatusCode::NOT_FOUND, format!("servicerelease {ns}/{name} not found (or not visible to you)")).into_response();
    };
    let events = s.events.state();
    let about = events.iter().filter(|e| {
        e.involved_object.kind.as_deref() == Some("ServiceRelease")
            && e.involved_object.namespace.as_deref() == Some(ns.as_str())
            && e.involved_object.name.as_deref() == Some(name.as_str())
    });
    let k = key(&ns, &name);
    let row = view::release_row(&r);
    let downstream = s
        .releases
        .state()
        .iter()
        .map(|o| view::release_row(o))
        .filter(|o| o.upstream.as_deref() == Some(k.as_str()))
        .map(|o| key(&o.namespace, &o.name))
        .collect();
    let page = view::ReleasePage {
        release: serde_json::to_value(r.as_ref()).unwrap_or_default(),
        events: view::event_rows(about.map(|e| e.as_ref()), EVENTS_SHOWN),
        rollouts: s.seen.lock().ok().and_then(|m| m.get(&k).cloned()).map(Vec::from).unwrap_or_default(),
        environment: s.environments.get(&reflector::ObjectRef::new(&row.environment)).map(|e| view::environment_row(&e)),
        downstream,
        row,
    };
    Json(page).into_response()
}

async fn environments(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let mut rows: Vec<view::EnvironmentRow> = s.environments.state().iter().map(|e| view::environment_row(e)).collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Json(json!({"environments": rows, "errors": watch_errors(&s)}))
}

async fn stacks(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let mut rows: Vec<view::StackView> = s
        .stacks
        .state()
        .iter()
        .map(|st| {
            let outputs = st
                .spec
                .outputs
                .as_ref()
                .and_then(|o| s.outputs.get(&reflector::ObjectRef::new(o).within(&st.namespace().unwrap_or_default())));
            view::stack_view(st, outputs.as_deref())
        })
        .collect();
    rows.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Json(json!({"stacks": rows, "errors": watch_errors(&s)}))
}

async fn pipeline(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let rows: Vec<view::ReleaseRow> = s.releases.state().iter().map(|r| view::release_row(r)).collect();
    let chains = view::chains(&rows);
    let shown: BTreeSet<&String> = chains.iter().flatten().collect();
    let stages: Vec<&view::ReleaseRow> = rows.iter().filter(|r| shown.contains(&key(&r.namespace, &r.name))).collect();
    Json(json!({"chains": chains, "stages": stages}))
}

/// A button: the CLI's command, as the user. A refusal carries the API server's message.
async fn act(
    State(s): State<Arc<Shared>>,
    Path((ns, name, action)): Path<(String, String, String)>,
    body: Option<Json<serde_json::Value>>,
) -> Response {
    let sha = body.and_then(|Json(b)| b.get("sha").and_then(|v| v.as_str()).map(String::from));
    let cmd = match action.as_str() {
        "rollback" => crate::cli::Command::Rollback,
        "promote" => crate::cli::Command::Promote,
        "pause" => crate::cli::Command::Pause,
        "resume" => crate::cli::Command::Resume,
        "retry" => crate::cli::Command::Retry,
        "approve" => crate::cli::Command::Approve(sha),
        other => return (StatusCode::NOT_FOUND, format!("no action {other}")).into_response(),
    };
    match crate::cli::act(s.client.clone(), &ns, &name, cmd).await {
        Ok(done) => Json(json!({"message": done})).into_response(),
        Err(e) => {
            let code = e
                .chain()
                .find_map(|c| match c.downcast_ref::<kube::Error>() {
                    Some(kube::Error::Api(status)) => StatusCode::from_u16(status.code).ok(),
                    _ => None,
                })
                .unwrap_or(StatusCode::BAD_REQUEST);
            (code, Json(json!({"message": format!("{e:#}")}))).into_response()
        }
    }
}

#[derive(Default)]
struct Batch {
    releases: BTreeSet<String>,
    gone: BTreeSet<String>,
    events_of: BTreeSet<String>,
    environments: bool,
    stacks: bool,
    reset: bool,
}

impl Batch {
    fn add(&mut self, c: Change) {
        match c {
            Change::Release(k) => {
                self.gone.remove(&k);
                self.releases.insert(k);
            }
            Change::ReleaseGone(k) => {
                self.releases.remove(&k);
                self.gone.insert(k);
            }
            Change::EventsOf(k) => {
                self.events_of.insert(k);
            }
            Change::Environments => self.environments = true,
            Change::Stacks => self.stacks = true,
            Change::Reset => self.reset = true,
        }
    }

    fn render(self, s: &Shared) -> String {
        if self.reset {
            return json!({"reset": true, "errors": watch_errors(s)}).to_string();
        }
        let rows: Vec<view::ReleaseRow> = self
            .releases
            .iter()
            .filter_map(|k| {
                let (ns, name) = k.split_once('/')?;
                s.releases.get(&reflector::ObjectRef::new(name).within(ns)).map(|r| view::release_row(&r))
            })
            .collect();
        json!({
            "releases": rows,
            "gone": self.gone,
            "events": self.events_of,
            "environments": self.environments,
            "stacks": self.stacks,
        })
        .to_string()
    }
}

/// The changes, pushed to one tab: what changed in the last [`COALESCE`], once.
async fn stream(State(s): State<Arc<Shared>>) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let rx = s.changes.subscribe();
    let updates = futures::stream::unfold((rx, s), |(mut rx, s)| async move {
        let mut batch = Batch::default();
        match rx.recv().await {
            Ok(c) => batch.add(c),
            Err(broadcast::error::RecvError::Lagged(_)) => batch.reset = true,
            Err(broadcast::error::RecvError::Closed) => return None,
        }
        let until = tokio::time::sleep(COALESCE);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => break,
                c = rx.recv() => match c {
                    Ok(c) => batch.add(c),
                    Err(broadcast::error::RecvError::Lagged(_)) => batch.reset = true,
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
        let data = batch.render(&s);
        Some((Ok(SseEvent::default().event("changes").data(data)), (rx, s)))
    });
    Sse::new(updates).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests;
