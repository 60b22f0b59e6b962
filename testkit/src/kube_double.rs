//! A Kubernetes API server double at the client's HTTP boundary, as kube-rs's controller-rs
//! tests do with a mocked tower service: [`ApiDouble::client`] is a real `kube::Client` whose
//! requests are answered from memory. It keeps objects by path and answers what a
//! reconcile sends: GET, JSON patches (the finalizer), server-side apply (status, the outputs
//! ConfigMaps) with the `metadata.resourceVersion` precondition answered 409 Conflict as the
//! API server does, merge patches, creates (Events) and deletes; an object being deleted
//! goes once its last finalizer does. Every request lands in a [`Journal`] it can share with
//! the in-memory AWS ([`crate::fakes::FakeAws::with_journal`]), so a test reads the order of
//! the controller's effects on both sides.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

/// One effect of the controller: an AWS call or a request to the API server.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `aws` or `kube`.
    pub side: &'static str,
    /// The AWS operation, or the method and path (`PATCH /apis/.../status`).
    pub what: String,
    /// The request body (kube; Null for AWS).
    pub body: Value,
}

/// The controller's effects in the order they were made, across the API server and AWS.
#[derive(Clone, Default)]
pub struct Journal(Arc<Mutex<Vec<Entry>>>);

impl Journal {
    /// Records one effect.
    pub fn push(&self, side: &'static str, what: String, body: Value) {
        self.0.lock().unwrap().push(Entry { side, what, body });
    }

    /// Everything so far.
    pub fn entries(&self) -> Vec<Entry> {
        self.0.lock().unwrap().clone()
    }

    /// Forgets everything so far.
    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }

    /// Where the first entry matching `f` is.
    pub fn position(&self, f: impl Fn(&Entry) -> bool) -> Option<usize> {
        self.0.lock().unwrap().iter().position(f)
    }

    /// The AWS operations called, in order.
    pub fn aws_calls(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().filter(|e| e.side == "aws").map(|e| e.what.clone()).collect()
    }

    /// The AWS operations called that change something, in order.
    pub fn aws_writes(&self) -> Vec<String> {
        self.aws_calls().into_iter().filter(|op| crate::awsproxy::is_write(op)).collect()
    }

    /// The status bodies written, in order.
    pub fn statuses(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.side == "kube" && e.what.starts_with("PATCH ") && e.what.ends_with("/status"))
            .map(|e| e.body["status"].clone())
            .collect()
    }
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    events: Vec<Value>,
}

/// The API server double.
#[derive(Clone, Default)]
pub struct ApiDouble {
    state: Arc<Mutex<State>>,
    journal: Journal,
}

/// The path of an object of kind `K`.
fn path_of<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    format!("{}/{}", K::url_path(&(), obj.meta().namespace.as_deref()), obj.meta().name.as_deref().unwrap_or_default())
}

impl ApiDouble {
    /// An empty API server recording into `journal`.
    pub fn new(journal: Journal) -> Self {
        ApiDouble { state: Arc::default(), journal }
    }

    /// Stores `obj` (as a create would), with a fresh resourceVersion; returns it as stored.
    pub fn put<K: Resource<DynamicType = ()> + Serialize + DeserializeOwned>(&self, obj: &K) -> K {
        let mut st = self.state.lock().unwrap();
        st.resource_version += 1;
        let mut v = serde_json::to_value(obj).unwrap();
        v["apiVersion"] = json!(K::api_version(&()));
        v["kind"] = json!(K::kind(&()));
        v["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
        if v["metadata"]["generation"].is_null() {
            v["metadata"]["generation"] = json!(1);
        }
        st.objects.insert(path_of(obj), v.clone());
        serde_json::from_value(v).unwrap()
    }

    /// The stored version of `obj`, None once it is gone.
    pub fn get<K: Resource<DynamicType = ()> + DeserializeOwned>(&self, obj: &K) -> Option<K> {
        let st = self.state.lock().unwrap();
        st.objects.get(&path_of(obj)).map(|v| serde_json::from_value(v.clone()).unwrap())
    }

    /// The Events published: (type, reason, note).
    pub fn events(&self) -> Vec<(String, String, String)> {
        let st = self.state.lock().unwrap();
        let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
        st.events.iter().map(|e| (s(&e["type"]), s(&e["reason"]), s(&e["note"]))).collect()
    }

    /// The reasons of the Events published, in order.
    pub fn event_reasons(&self) -> Vec<String> {
        self.events().into_iter().map(|(_, reason, _)| reason).collect()
    }

    /// A client talking to this double.
    pub fn client(&self) -> kube::Client {
        let me = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let me = me.clone();
            async move { Ok::<_, Infallible>(me.answer(req).await) }
        });
        kube::Client::new(service, "default")
    }

    async fn answer(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let bytes = req.into_body().collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        self.journal.push("kube", format!("{method} {path}"), body.clone());
        let (code, answer) = self.handle(&method, &path, &content_type, body);
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&answer).unwrap()))
            .unwrap()
    }

    fn handle(&self, method: &Method, path: &str, content_type: &str, body: Value) -> (StatusCode, Value) {
        let mut st = self.state.lock().unwrap();
        let (object_path, status) = match path.strip_suffix("/status") {
            Some(p) => (p.to_string(), true),
            None => (path.to_string(), false),
        };
        if path.contains("/events") {
            st.events.push(body.clone());
            return (if *method == Method::POST { StatusCode::CREATED } else { StatusCode::OK }, body);
        }
        match *method {
            Method::GET => match st.objects.get(&object_path) {
                Some(v) => (StatusCode::OK, v.clone()),
                None => not_found(&object_path),
            },
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let full = format!("{object_path}/{name}");
                st.resource_version += 1;
                let mut v = body;
                v["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
                st.objects.insert(full, v.clone());
                (StatusCode::CREATED, v)
            }
            Method::DELETE => match st.objects.remove(&object_path) {
                Some(v) => (StatusCode::OK, v),
                None => not_found(&object_path),
            },
            Method::PATCH => {
                let existing = st.objects.get(&object_path).cloned();
                let apply = content_type.starts_with("application/apply-patch");
                let mut v = match existing {
                    Some(v) => v,
                    // Server-side apply creates what is not there (not the status).
                    None if apply && !status => json!({"metadata": {"name": body["metadata"]["name"].clone()}}),
                    None => return not_found(&object_path),
                };
                if let Some(want) = body["metadata"]["resourceVersion"].as_str() {
                    if v["metadata"]["resourceVersion"].as_str() != Some(want) {
                        return conflict(&object_path);
                    }
                }
                if content_type.starts_with("application/json-patch") {
                    let Ok(patch) = serde_json::from_value::<json_patch::Patch>(body) else {
                        return (StatusCode::BAD_REQUEST, json!({"kind": "Status", "code": 400}));
                    };
                    if json_patch::patch(&mut v, &patch).is_err() {
                        // A failed `test` operation: the API server answers 422.
                        return (StatusCode::UNPROCESSABLE_ENTITY, json!({"kind": "Status", "status": "Failure", "code": 422}));
                    }
                } else if apply && status {
                    // One field manager owns the whole status: applying it replaces it.
                    v["status"] = body["status"].clone();
                } else {
                    merge(&mut v, &body);
                }
                st.resource_version += 1;
                v["metadata"]["resourceVersion"] = json!(st.resource_version.to_string());
                let finalized = v["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
                if !v["metadata"]["deletionTimestamp"].is_null() && finalized {
                    st.objects.remove(&object_path);
                } else {
                    st.objects.insert(object_path, v.clone());
                }
                (StatusCode::OK, v)
            }
            _ => not_found(&object_path),
        }
    }
}

/// RFC 7386: `patch` merged into `target` (null removes).
fn merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if v.is_null() {
            target.as_object_mut().map(|t| t.remove(k));
        } else {
            merge(target.as_object_mut().unwrap().entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

fn not_found(path: &str) -> (StatusCode, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
        "message": format!("{path} not found")});
    (StatusCode::NOT_FOUND, status)
}

fn conflict(path: &str) -> (StatusCode, Value) {
    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
        "message": format!("Operation cannot be fulfilled on {path}: the object has been modified; please apply your changes to the latest version and try again")});
    (StatusCode::CONFLICT, status)
}
