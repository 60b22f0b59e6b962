//! A Kubernetes API server for tests and local demos, speaking enough of the real API for
//! kube-rs and kubectl: discovery, CRUD, merge/JSON patch, server-side apply, the status
//! subresource, generation, resourceVersion with 409 conflicts, label and field selectors,
//! watches with bookmarks and 410 Gone, finalizers, Table printing and structural-schema
//! validation of custom resources (including CEL rules). Each behaviour is pinned by a
//! conformance test in `tests/apiserver_conformance.rs`.

mod schema;
mod selector;
mod store;
mod table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc, oneshot};

pub use selector::{FieldSelector, LabelSelector};
pub use store::{ApiError, Author, ResourceType, Store};

use store::{Change, Written};

struct Shared {
    store: Mutex<Store>,
    changes: broadcast::Sender<Arc<Change>>,
    bookmark_interval: Mutex<Duration>,
    addr: SocketAddr,
    audit: Mutex<Vec<AuditRecord>>,
}

/// One resource request as the authorizer sees it: who (user agent), the RBAC verb, and
/// what — the way a real API server's audit log records it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct AuditRecord {
    /// The client's user agent, e.g. `shipshape/0.1.0` or `kubectl/v1.31.0 (...)`.
    pub user_agent: String,
    /// RBAC verb: get, list, watch, create, update, patch, delete.
    pub verb: String,
    /// API group ("" for the core group).
    pub group: String,
    /// Resource plural, with `/subresource` when there is one (`servicereleases/status`).
    pub resource: String,
    /// Namespace ("" for cluster-scoped requests and requests across all namespaces).
    pub namespace: String,
}

/// A running test API server.
pub struct ApiServer {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl ApiServer {
    /// Starts a server on `addr` (use port 0 for a free one) with the `default` and
    /// `kube-system` namespaces.
    pub async fn start(addr: &str) -> std::io::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (tx, _) = broadcast::channel(65_536);
        let shared = Arc::new(Shared {
            store: Mutex::new(Store::new()),
            changes: tx,
            bookmark_interval: Mutex::new(Duration::from_secs(5)),
            addr,
            audit: Mutex::new(Vec::new()),
        });
        let mut server = ApiServer { shared: shared.clone(), stop: None };
        for ns in ["default", "kube-system"] {
            server.create_namespace(ns);
        }
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let (stop_tx, stop_rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await;
        });
        server.stop = Some(stop_tx);
        Ok(server)
    }

    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig pointing at this server (no auth, as the server needs none).
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: shipshape-test\n  cluster:\n    server: {}\ncontexts:\n- name: shipshape-test\n  context:\n    cluster: shipshape-test\n    user: tester\n    namespace: default\ncurrent-context: shipshape-test\nusers:\n- name: tester\n  user: {{}}\n",
            self.url()
        )
    }

    /// Writes the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &std::path::Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    /// A kube client for this server.
    pub async fn client(&self) -> kube::Client {
        let kc: kube::config::Kubeconfig = serde_yaml::from_str(&self.kubeconfig_yaml()).expect("kubeconfig parses");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.expect("kubeconfig loads");
        kube::Client::try_from(cfg).expect("client builds")
    }

    /// Installs CRDs, as `kubectl apply -f crds/` would.
    pub fn install_crds(&self, crds: &[Value]) {
        let ty = ResourceType::builtin("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "customresourcedefinitions", false, &[]);
        for crd in crds {
            let w = self.shared.store.lock().unwrap().create(&ty, None, crd.clone(), &Author::new("installer", "Update", false));
            if let Ok(w) = w {
                self.broadcast(w.changes);
            }
        }
    }

    /// Creates a namespace.
    pub fn create_namespace(&self, name: &str) {
        let ty = ResourceType::builtin("", "v1", "Namespace", "namespaces", false, &[]);
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        if let Ok(w) = self.shared.store.lock().unwrap().create(&ty, None, obj, &Author::new("installer", "Update", false)) {
            self.broadcast(w.changes);
        }
    }

    /// Forgets the change history, as etcd compaction does: watches from an older
    /// resourceVersion then get 410 Gone.
    pub fn compact(&self) {
        self.shared.store.lock().unwrap().compact();
    }

    /// How often watches that asked for bookmarks get one.
    pub fn set_bookmark_interval(&self, d: Duration) {
        *self.shared.bookmark_interval.lock().unwrap() = d;
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().unwrap().rv
    }

    /// Every resource request so far (discovery and OpenAPI requests are not recorded).
    pub fn audit_log(&self) -> Vec<AuditRecord> {
        self.shared.audit.lock().unwrap().clone()
    }

    fn broadcast(&self, changes: Vec<Arc<Change>>) {
        for c in changes {
            let _ = self.shared.changes.send(c);
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn json_response(code: u16, body: &Value) -> Response {
    let mut r = (StatusCode::from_u16(code).unwrap_or(StatusCode::OK), body.to_string()).into_response();
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r
}

fn error_response(e: &ApiError) -> Response {
    json_response(e.code, &e.body())
}

/// Where a request points.
struct Target {
    ty: ResourceType,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_target(store: &Store, path: &str) -> Result<Option<Target>, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Ok(None),
    };
    let find = |plural: &str| {
        store
            .find_type(group, version, plural)
            .ok_or_else(|| ApiError::new(404, "NotFound", format!("the server could not find the requested resource ({plural})")))
    };
    if rest[0] == "namespaces" && rest.len() >= 3 {
        let ty = find(rest[2])?;
        if ty.namespaced {
            return Ok(Some(Target {
                ty,
                namespace: Some(rest[1].to_string()),
                name: rest.get(3).map(|s| s.to_string()),
                subresource: rest.get(4).map(|s| s.to_string()),
            }));
        }
    }
    let ty = find(rest[0])?;
    Ok(Some(Target { ty, namespace: None, name: rest.get(1).map(|s| s.to_string()), subresource: rest.get(2).map(|s| s.to_string()) }))
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let query: HashMap<String, String> = Query::try_from_uri(&uri).map(|q| q.0).unwrap_or_default();
    let path = uri.path().to_string();
    if let Some(r) = discovery(&shared, &path) {
        return r;
    }
    let target = {
        let store = shared.store.lock().unwrap();
        parse_target(&store, &path)
    };
    let target = match target {
        Ok(Some(t)) => t,
        Ok(None) => return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource")),
        Err(e) => return error_response(&e),
    };
    if let Some(sub) = &target.subresource {
        if sub != "status" || !target.ty.status_subresource {
            return error_response(&ApiError::new(404, "NotFound", "the server could not find the requested resource"));
        }
    }
    let is_watch = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let verb = match (&method, target.name.is_some()) {
        (&Method::GET, false) if is_watch => "watch",
        (&Method::GET, false) => "list",
        (&Method::GET, true) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, false) => "deletecollection",
        (&Method::DELETE, true) => "delete",
        _ => "unknown",
    };
    shared.audit.lock().unwrap().push(AuditRecord {
        user_agent: headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("").to_string(),
        verb: verb.to_string(),
        group: target.ty.group.clone(),
        resource: match &target.subresource {
            Some(sub) => format!("{}/{sub}", target.ty.plural),
            None => target.ty.plural.clone(),
        },
        namespace: target.namespace.clone().unwrap_or_default(),
    });
    let accept = headers.get("accept").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("application/json").to_string();
    let manager = query.get("fieldManager").cloned().unwrap_or_else(|| {
        headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("unknown").split('/').next().unwrap_or("unknown").to_string()
    });
    if content_type.contains("protobuf") || content_type.contains("cbor") {
        return error_response(&ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json, application/yaml")));
    }
    let strict = query.get("fieldValidation").map(String::as_str) == Some("Strict");
    let dry_run = query.contains_key("dryRun");
    let is_table = accept.contains("as=Table");
    let ns = target.namespace.clone().unwrap_or_default();
    let result: Result<(u16, Value), ApiError> = match (method.clone(), target.name.clone()) {
        (Method::GET, None) if is_watch => {
            return watch(shared, target, query, is_table);
        }
        (Method::GET, None) => list(&shared, &target, &query, is_table),
        (Method::GET, Some(name)) => {
            let store = shared.store.lock().unwrap();
            store.get(&target.ty, &ns, &name).map(|o| {
                if is_table {
                    (200, table::table(&[o], &target.ty.printer_columns, &store.rv.to_string()))
                } else {
                    (200, o)
                }
            })
        }
        (Method::POST, None) => match serde_json::from_slice::<Value>(&body) {
            Err(e) => Err(ApiError::new(400, "BadRequest", format!("the body of the request could not be decoded: {e}"))),
            Ok(obj) => write(&shared, dry_run, |s| {
                s.create(&target.ty, target.namespace.as_deref(), obj, &Author::new(&manager, "Update", strict))
            })
            .map(|o| (201, o)),
        },
        (Method::PUT, Some(name)) => match serde_json::from_slice::<Value>(&body) {
            Err(e) => Err(ApiError::new(400, "BadRequest", format!("the body of the request could not be decoded: {e}"))),
            Ok(obj) => write(&shared, dry_run, |s| {
                s.update(&target.ty, &ns, &name, obj, target.subresource.as_deref(), &Author::new(&manager, "Replace", strict))
            })
            .map(|o| (200, o)),
        },
        (Method::PATCH, Some(name)) => patch(&shared, &target, &name, &content_type, &body, &query, &manager, strict, dry_run),
        (Method::DELETE, Some(name)) => {
            let opts: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
            let pre = opts.get("preconditions").cloned().unwrap_or(json!({}));
            write(&shared, dry_run, |s| s.delete(&target.ty, &ns, &name, &pre)).map(|o| (200, o))
        }
        _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} is not supported on {path}"))),
    };
    match result {
        Ok((code, body)) => json_response(code, &body),
        Err(e) => error_response(&e),
    }
}

fn write(shared: &Shared, dry_run: bool, f: impl FnOnce(&mut Store) -> Result<Written, ApiError>) -> Result<Value, ApiError> {
    let mut store = shared.store.lock().unwrap();
    if dry_run {
        // Run the write on a scratch copy: validation and defaulting happen, nothing is kept.
        let mut scratch = Store {
            rv: store.rv,
            types: store.types.clone(),
            objects: store.objects.clone(),
            log: Default::default(),
            oldest_watchable: 0,
            log_capacity: 1,
            applied: store.applied.clone(),
        };
        return f(&mut scratch).map(|w| w.object);
    }
    let mut w = f(&mut store)?;
    if w.changes.iter().any(|c| c.type_key == "events.events.k8s.io" && c.kind != "DELETED") {
        w.changes.extend(store.mirror_event(&w.object));
    }
    for c in w.changes {
        let _ = shared.changes.send(c);
    }
    Ok(w.object)
}

fn selectors(query: &HashMap<String, String>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let l = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::new(400, "BadRequest", e))?;
    let f = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::new(400, "BadRequest", e))?;
    Ok((l, f))
}

fn matches(obj: &Value, ns: Option<&str>, l: &LabelSelector, f: &FieldSelector) -> bool {
    ns.is_none_or(|ns| obj["metadata"]["namespace"].as_str() == Some(ns))
        && l.matches(obj["metadata"]["labels"].as_object())
        && f.matches(obj)
}

fn list(shared: &Shared, target: &Target, query: &HashMap<String, String>, is_table: bool) -> Result<(u16, Value), ApiError> {
    let (l, f) = selectors(query)?;
    let store = shared.store.lock().unwrap();
    let key = target.ty.key();
    let start_after = query.get("continue").cloned().unwrap_or_default();
    let limit: usize = query.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let mut items = vec![];
    let mut next = None;
    for ((k, ns, name), obj) in store.objects.iter() {
        if *k != key || !matches(obj, target.namespace.as_deref(), &l, &f) {
            continue;
        }
        let pos = format!("{ns}/{name}");
        if !start_after.is_empty() && pos <= start_after {
            continue;
        }
        if items.len() == limit {
            next = items.last().map(|o: &Value| {
                format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap_or(""), o["metadata"]["name"].as_str().unwrap_or(""))
            });
            break;
        }
        items.push(obj.clone());
    }
    let rv = store.rv.to_string();
    if is_table {
        return Ok((200, table::table(&items, &target.ty.printer_columns, &rv)));
    }
    let mut meta = json!({"resourceVersion": rv});
    if let Some(n) = next {
        meta["continue"] = json!(n);
    }
    Ok((200, json!({"kind": format!("{}List", target.ty.kind), "apiVersion": target.ty.api_version(), "metadata": meta, "items": items})))
}

#[allow(clippy::too_many_arguments)]
fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    content_type: &str,
    body: &[u8],
    query: &HashMap<String, String>,
    manager: &str,
    strict: bool,
    dry_run: bool,
) -> Result<(u16, Value), ApiError> {
    let ns = target.namespace.clone().unwrap_or_default();
    let sub = target.subresource.as_deref();
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let ty = &target.ty;
    if ct == "application/apply-patch+yaml" {
        let applied: Value =
            serde_yaml::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("error decoding YAML: {e}")))?;
        if !query.contains_key("fieldManager") {
            return Err(ApiError::new(400, "BadRequest", "PATCH requests with apply content type require fieldManager"));
        }
        let force = query.get("force").map(String::as_str) == Some("true");
        let _ = force; // Conflicts between managers are not modelled; see the module docs.
        return write(shared, dry_run, |s| {
            let key = (ty.key(), ns.clone(), name.to_string());
            let applied_key = (key.clone(), manager.to_string(), sub.unwrap_or("").to_string());
            let result = match s.objects.get(&key).cloned() {
                None if sub.is_some() => Err(ApiError::not_found(ty, name)),
                None => {
                    let mut obj = applied.clone();
                    obj["metadata"]["name"] = json!(name);
                    s.create(ty, target.namespace.as_deref(), obj, &Author::new(manager, "Apply", strict))
                }
                Some(current) => {
                    let previous = s.applied.get(&applied_key).cloned().unwrap_or(json!({}));
                    let mut merged = current.clone();
                    let scope = |v: &Value| {
                        if sub == Some("status") {
                            json!({"status": v.get("status").cloned().unwrap_or(json!({}))})
                        } else {
                            without_status(v, ty.status_subresource)
                        }
                    };
                    remove_dropped(&mut merged, &scope(&previous), &scope(&applied));
                    apply_merge(&mut merged, &scope(&applied));
                    if let Some(m) = merged["metadata"].as_object_mut() {
                        m.remove("resourceVersion");
                    }
                    if let Some(rv) = applied["metadata"]["resourceVersion"].as_str() {
                        merged["metadata"]["resourceVersion"] = json!(rv);
                    }
                    s.update(ty, &ns, name, merged, sub, &Author::new(manager, "Apply", strict))
                }
            };
            if result.is_ok() {
                s.applied.insert(applied_key, applied.clone());
            }
            result
        })
        .map(|o| (200, o));
    }
    let store_ty_custom = ty.custom;
    write(shared, dry_run, |s| {
        let current = s.get(ty, &ns, name)?;
        let mut doc = current.clone();
        match ct {
            "application/json-patch+json" => {
                let p: json_patch::Patch = serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body of the request could not be decoded: {e}")))?;
                // As in the API server's JSON patch library, `test` of a missing path against
                // null succeeds (kube-rs' finalizer helper relies on it).
                for op in p.0 {
                    if let json_patch::PatchOperation::Test(t) = &op {
                        if t.value.is_null() && doc.pointer(t.path.as_str()).is_none() {
                            continue;
                        }
                    }
                    json_patch::patch(&mut doc, &[op]).map_err(|e| ApiError::new(422, "Invalid", format!("the server rejected our request due to an error in our request: {e}")))?;
                }
            }
            "application/merge-patch+json" => {
                let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body of the request could not be decoded: {e}")))?;
                json_patch::merge(&mut doc, &p);
            }
            // Built-in kinds accept strategic merge patch; its list-merge keys are not modelled
            // (maps merge as in a merge patch). Custom resources refuse it, as a real server does.
            "application/strategic-merge-patch+json" if !store_ty_custom => {
                let p: Value = serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("the body of the request could not be decoded: {e}")))?;
                json_patch::merge(&mut doc, &p);
            }
            other => {
                return Err(ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format ({other}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml")));
            }
        }
        // A resourceVersion the patch did not set is not a precondition.
        if doc["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"] {
            if let Some(m) = doc["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        }
        s.update(ty, &ns, name, doc, sub, &Author::new(manager, "Update", strict))
    })
    .map(|o| (200, o))
}

fn without_status(v: &Value, status_subresource: bool) -> Value {
    let mut v = v.clone();
    if status_subresource {
        if let Some(m) = v.as_object_mut() {
            m.remove("status");
        }
    }
    v
}

/// Server-side apply: fields this manager applied before and no longer applies are removed.
fn remove_dropped(target: &mut Value, previous: &Value, now: &Value) {
    let (Some(prev), Some(t)) = (previous.as_object(), target.as_object_mut()) else {
        return;
    };
    for (k, pv) in prev {
        if matches!(k.as_str(), "apiVersion" | "kind") {
            continue;
        }
        match now.get(k) {
            None => {
                t.remove(k);
            }
            Some(nv) if pv.is_object() && nv.is_object() => {
                if let Some(tv) = t.get_mut(k) {
                    remove_dropped(tv, pv, nv);
                }
            }
            _ => {}
        }
    }
}

/// Server-side apply: maps merge key by key; lists and scalars are replaced.
fn apply_merge(target: &mut Value, applied: &Value) {
    match (target.as_object_mut(), applied.as_object()) {
        (Some(t), Some(a)) => {
            for (k, v) in a {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && v.is_object() => apply_merge(tv, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        _ => *target = applied.clone(),
    }
}

fn watch_event(kind: &str, obj: &Value, ty: &ResourceType, is_table: bool) -> Value {
    let object = if is_table && kind != "BOOKMARK" && kind != "ERROR" {
        let rv = obj["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
        table::table(std::slice::from_ref(obj), &ty.printer_columns, &rv)
    } else {
        obj.clone()
    };
    json!({"type": kind, "object": object})
}

fn watch(shared: Arc<Shared>, target: Target, query: HashMap<String, String>, is_table: bool) -> Response {
    let (l, f) = match selectors(&query) {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let (tx, mut rx) = mpsc::channel::<String>(1024);
    let bookmarks = query.get("allowWatchBookmarks").map(String::as_str) == Some("true");
    let timeout = query.get("timeoutSeconds").and_then(|t| t.parse().ok()).map(Duration::from_secs).unwrap_or(Duration::from_secs(1800));
    let ns = target.namespace.clone();
    let ty = target.ty.clone();
    let key = ty.key();
    let requested = query.get("resourceVersion").cloned().unwrap_or_default();
    // Snapshot and subscription under one lock, so no change falls between them.
    let (initial, mut sub, start_rv) = {
        let store = shared.store.lock().unwrap();
        let sub = shared.changes.subscribe();
        let mut initial = vec![];
        match requested.parse::<u64>() {
            Ok(rv) if rv > 0 => {
                if rv < store.oldest_watchable {
                    let status =
                        ApiError::new(410, "Expired", format!("too old resource version: {rv} ({})", store.oldest_watchable)).body();
                    initial.push(json!({"type": "ERROR", "object": status}).to_string());
                } else {
                    for c in store.log.iter().filter(|c| c.rv > rv && c.type_key == key) {
                        if let Some(e) = filtered(c, ns.as_deref(), &l, &f) {
                            initial.push(watch_event(e.0, &e.1, &ty, is_table).to_string());
                        }
                    }
                }
            }
            _ => {
                // No resourceVersion (or 0): synthetic ADDED events for what exists now.
                for ((k, _, _), obj) in store.objects.iter() {
                    if *k == key && matches(obj, ns.as_deref(), &l, &f) {
                        initial.push(watch_event("ADDED", obj, &ty, is_table).to_string());
                    }
                }
            }
        }
        (initial, sub, store.rv)
    };
    let interval = *shared.bookmark_interval.lock().unwrap();
    let shared2 = shared.clone();
    tokio::spawn(async move {
        let expired = initial.first().is_some_and(|e| e.contains("\"ERROR\""));
        for e in initial {
            if tx.send(e + "\n").await.is_err() {
                return;
            }
        }
        if expired {
            return;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        let mut last_rv = start_rv;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tick.tick(), if bookmarks => {
                    let rv = shared2.store.lock().unwrap().rv.max(last_rv);
                    let b = json!({"type": "BOOKMARK", "object": {"kind": ty.kind, "apiVersion": ty.api_version(), "metadata": {"resourceVersion": rv.to_string()}}});
                    if tx.send(b.to_string() + "\n").await.is_err() { return; }
                }
                c = sub.recv() => match c {
                    Ok(c) => {
                        if c.rv <= last_rv || c.type_key != key { continue; }
                        last_rv = c.rv;
                        if let Some(e) = filtered(&c, ns.as_deref(), &l, &f) {
                            if tx.send(watch_event(e.0, &e.1, &ty, is_table).to_string() + "\n").await.is_err() { return; }
                        }
                    }
                    // A watcher that fell behind is closed; the client re-watches, as with a real server.
                    Err(_) => return,
                },
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx).map(|o| o.map(|s| Ok::<_, std::io::Error>(Bytes::from(s)))));
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("transfer-encoding", "chunked".parse().unwrap());
    r
}

/// The event a selector-filtered watch sees: an object leaving the selection is DELETED for it.
fn filtered(c: &Change, ns: Option<&str>, l: &LabelSelector, f: &FieldSelector) -> Option<(&'static str, Value)> {
    let now = matches(&c.object, ns, l, f);
    let before = c.old.as_ref().is_some_and(|o| matches(o, ns, l, f));
    match (c.kind, before, now) {
        ("DELETED", true, _) | ("DELETED", _, true) => Some(("DELETED", c.object.clone())),
        ("DELETED", _, _) => None,
        (_, false, true) => Some(("ADDED", c.object.clone())),
        (_, true, true) => Some(("MODIFIED", c.object.clone())),
        (_, true, false) => Some(("DELETED", c.object.clone())),
        _ => None,
    }
}

fn discovery(shared: &Shared, path: &str) -> Option<Response> {
    let store = shared.store.lock().unwrap();
    let segs: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let resources = |group: &str, version: &str| -> Value {
        let mut out = vec![];
        for t in store.types.values().filter(|t| t.group == group && t.version == version) {
            out.push(json!({
                "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced, "kind": t.kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "shortNames": t.short_names, "categories": t.categories,
            }));
            if t.status_subresource {
                out.push(json!({"name": format!("{}/status", t.plural), "singularName": "", "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}));
            }
        }
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
    };
    let group_doc = |g: &str| -> Option<Value> {
        let versions: Vec<String> = store
            .types
            .values()
            .filter(|t| t.group == g)
            .map(|t| t.version.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let first = versions.first()?.clone();
        Some(json!({
            "kind": "APIGroup", "apiVersion": "v1", "name": g,
            "versions": versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
            "preferredVersion": {"groupVersion": format!("{g}/{first}"), "version": first},
        }))
    };
    let body = match segs.as_slice() {
        ["version"] => {
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-shipshape-test", "platform": "linux/amd64"})
        }
        ["api"] => {
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": shared.addr.to_string()}]})
        }
        ["api", v] => resources("", v),
        ["apis"] => {
            let groups: std::collections::BTreeSet<String> =
                store.types.values().filter(|t| !t.group.is_empty()).map(|t| t.group.clone()).collect();
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups.iter().filter_map(|g| group_doc(g)).collect::<Vec<_>>()})
        }
        ["apis", g] => group_doc(g)?,
        ["apis", g, v] => {
            if !store.types.values().any(|t| t.group == *g && t.version == *v) {
                return None;
            }
            resources(g, v)
        }
        ["healthz"] | ["readyz"] | ["livez"] => return Some("ok".into_response()),
        ["openapi", "v3"] => {
            let gvs: std::collections::BTreeSet<String> = store
                .types
                .values()
                .map(|t| if t.group.is_empty() { format!("api/{}", t.version) } else { format!("apis/{}", t.api_version()) })
                .collect();
            let paths: serde_json::Map<String, Value> = gvs
                .into_iter()
                .map(|gv| (gv.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{gv}?hash={}", store.rv)})))
                .collect();
            json!({"paths": paths})
        }
        ["openapi", "v3", rest @ ..] => {
            // Just enough OpenAPI v3 for kubectl to see that PATCH takes `fieldValidation`,
            // so it leaves validation to this server (as with a real one).
            let (group, version) = match rest {
                ["api", v] => ("", *v),
                ["apis", g, v] => (*g, *v),
                _ => return None,
            };
            let mut paths = serde_json::Map::new();
            for t in store.types.values().filter(|t| t.group == group && t.version == version) {
                let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
                let path = if t.namespaced {
                    format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
                } else {
                    format!("{prefix}/{}/{{name}}", t.plural)
                };
                let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
                let param = |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string"}});
                paths.insert(
                    path,
                    json!({"patch": {
                        "x-kubernetes-group-version-kind": gvk,
                        "x-kubernetes-action": "patch",
                        "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
                        "responses": {"200": {"description": "OK"}},
                    }}),
                );
            }
            if paths.is_empty() {
                return None;
            }
            json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": paths, "components": {"schemas": {}}})
        }
        _ => return None,
    };
    Some(json_response(200, &body))
}
