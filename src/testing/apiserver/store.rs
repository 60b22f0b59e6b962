//! The object store behind the test API server: resource types, objects, the change log
//! that watches replay, and the write path every verb goes through.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use super::schema;

/// One kind of resource the server serves.
#[derive(Clone, Debug)]
pub struct ResourceType {
    /// API group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Plural name (the URL segment).
    pub plural: String,
    /// Singular name.
    pub singular: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Short names.
    pub short_names: Vec<String>,
    /// Categories.
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (status then changes only through it).
    pub status_subresource: bool,
    /// openAPIV3Schema of a custom resource.
    pub schema: Option<Value>,
    /// additionalPrinterColumns.
    pub printer_columns: Vec<Value>,
    /// Whether this is a custom resource (generation, strict resourceVersion on update).
    pub custom: bool,
}

impl ResourceType {
    /// `plural.group` (or `plural` for core): the registry key.
    pub fn key(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
    /// `group/version` or `version`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
    /// Built-in kinds the controller and kubectl touch.
    pub fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool, short: &[&str]) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: vec![],
            status_subresource: false,
            schema: None,
            printer_columns: vec![],
            custom: false,
        }
    }
    /// The served version of a CustomResourceDefinition object.
    pub fn from_crd(crd: &Value) -> Option<Self> {
        let spec = &crd["spec"];
        let names = &spec["names"];
        let version = spec["versions"].as_array()?.iter().find(|v| v["served"].as_bool() != Some(false))?;
        let strings = |v: &Value| -> Vec<String> {
            v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
        };
        Some(ResourceType {
            group: spec["group"].as_str()?.into(),
            version: version["name"].as_str()?.into(),
            kind: names["kind"].as_str()?.into(),
            plural: names["plural"].as_str()?.into(),
            singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| names["kind"].as_str().unwrap_or("").to_lowercase()),
            namespaced: spec["scope"].as_str() == Some("Namespaced"),
            short_names: strings(&names["shortNames"]),
            categories: strings(&names["categories"]),
            status_subresource: version["subresources"]["status"].is_object(),
            schema: version["schema"]["openAPIV3Schema"].as_object().map(|o| Value::Object(o.clone())),
            printer_columns: version["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
            custom: true,
        })
    }
}

/// A failed request, rendered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP code.
    pub code: u16,
    /// Status reason (NotFound, AlreadyExists, Conflict, Invalid, ...).
    pub reason: &'static str,
    /// Message.
    pub message: String,
    /// Status details.
    pub details: Value,
}

impl ApiError {
    /// A new error.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError { code, reason, message: message.into(), details: json!({}) }
    }
    /// `<plural>.<group> "<name>" not found`.
    pub fn not_found(ty: &ResourceType, name: &str) -> Self {
        let what = if ty.group.is_empty() { ty.plural.clone() } else { ty.key() };
        ApiError {
            details: json!({"name": name, "group": ty.group, "kind": ty.plural}),
            ..ApiError::new(404, "NotFound", format!("{what} \"{name}\" not found"))
        }
    }
    /// The Status body.
    pub fn body(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "details": self.details, "code": self.code,
        })
    }
}

/// One entry of the change log, sent to watchers.
#[derive(Debug)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Registry key of the type.
    pub type_key: String,
    /// ADDED, MODIFIED or DELETED.
    pub kind: &'static str,
    /// The object after the change (for DELETED, the last state with the new rv).
    pub object: Value,
    /// The object before the change (None for ADDED).
    pub old: Option<Value>,
}

/// Who writes and how: the field manager, the operation (Update, Apply, Replace) and
/// whether unknown fields are refused (`fieldValidation=Strict`).
#[derive(Clone, Copy, Debug)]
pub struct Author<'a> {
    /// Field manager.
    pub manager: &'a str,
    /// Update, Apply or Replace.
    pub operation: &'a str,
    /// Refuse unknown fields.
    pub strict: bool,
}

impl<'a> Author<'a> {
    /// A writer.
    pub fn new(manager: &'a str, operation: &'a str, strict: bool) -> Self {
        Author { manager, operation, strict }
    }
}

/// Storage key: (type key, namespace or "", name).
pub type Key = (String, String, String);

/// Everything the server holds.
pub struct Store {
    /// Last resourceVersion handed out.
    pub rv: u64,
    /// Types by key.
    pub types: BTreeMap<String, ResourceType>,
    /// Objects.
    pub objects: BTreeMap<Key, Value>,
    /// Recent changes, oldest first.
    pub log: VecDeque<Arc<Change>>,
    /// Watches from a resourceVersion below this get 410 Gone.
    pub oldest_watchable: u64,
    /// How many changes the log keeps.
    pub log_capacity: usize,
    /// Last configuration applied with server-side apply, per object, manager and subresource.
    pub applied: HashMap<(Key, String, String), Value>,
}

/// What a write did.
pub struct Written {
    /// The stored (or, when deleted, last) object.
    pub object: Value,
    /// Changes to broadcast.
    pub changes: Vec<Arc<Change>>,
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn without(v: &Value, keys: &[&str]) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        for k in keys {
            m.remove(*k);
        }
    }
    v
}

fn metadata_without_managed(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
        m.remove("resourceVersion");
    }
    v
}

const DNS_SUBDOMAIN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

impl Store {
    /// An empty store with the built-in kinds.
    pub fn new() -> Self {
        let mut s = Store {
            rv: 1,
            types: BTreeMap::new(),
            objects: BTreeMap::new(),
            log: VecDeque::new(),
            oldest_watchable: 0,
            log_capacity: 10_000,
            applied: HashMap::new(),
        };
        for t in [
            ResourceType::builtin("", "v1", "Namespace", "namespaces", false, &["ns"]),
            ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true, &["cm"]),
            ResourceType::builtin("", "v1", "Secret", "secrets", true, &[]),
            ResourceType::builtin("", "v1", "Event", "events", true, &["ev"]),
            ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true, &["ev"]),
            ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true, &[]),
            ResourceType::builtin(
                "apiextensions.k8s.io",
                "v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
                &["crd", "crds"],
            ),
        ] {
            s.types.insert(t.key(), t);
        }
        // `kubectl get events` columns, as the real server prints them.
        if let Some(t) = s.types.get_mut("events") {
            t.printer_columns = vec![
                json!({"name": "Last Seen", "type": "date", "jsonPath": ".lastTimestamp"}),
                json!({"name": "Type", "type": "string", "jsonPath": ".type"}),
                json!({"name": "Reason", "type": "string", "jsonPath": ".reason"}),
                json!({"name": "Object", "type": "string", "jsonPath": ".involvedObject.name"}),
                json!({"name": "Message", "type": "string", "jsonPath": ".message"}),
            ];
        }
        s
    }

    /// Finds a type by group and plural.
    pub fn find_type(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.types.values().find(|t| t.group == group && t.version == version && t.plural == plural).cloned()
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, type_key: &str, kind: &'static str, object: Value, old: Option<Value>) -> Arc<Change> {
        let change = Arc::new(Change { rv: self.rv, type_key: type_key.to_string(), kind, object, old });
        self.log.push_back(change.clone());
        while self.log.len() > self.log_capacity {
            if let Some(c) = self.log.pop_front() {
                self.oldest_watchable = c.rv;
            }
        }
        change
    }

    /// Forgets the change history: watches from any earlier resourceVersion get 410 Gone,
    /// as after etcd compaction.
    pub fn compact(&mut self) {
        self.log.clear();
        self.oldest_watchable = self.rv;
    }

    /// Validates and defaults a custom resource; returns the 422/400 error if any.
    fn normalize(&self, ty: &ResourceType, obj: &mut Value, old: Option<&Value>, strict: bool) -> Result<(), ApiError> {
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
        let mut causes = vec![];
        if ty.custom && (name.len() > 253 || !regex::Regex::new(DNS_SUBDOMAIN).unwrap().is_match(&name)) {
            causes.push(schema::Cause {
                reason: "FieldValueInvalid",
                field: "metadata.name".into(),
                message: format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
            });
        }
        if let Some(sch) = &ty.schema {
            let out = schema::normalize(sch, obj, old);
            if strict && !out.unknown.is_empty() {
                let list: Vec<String> = out.unknown.iter().map(|u| format!("unknown field \"{u}\"")).collect();
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    format!("{}.{} \"{name}\" is invalid: strict decoding error: {}", ty.kind, ty.group, list.join(", ")),
                ));
            }
            causes.extend(out.causes);
        }
        if causes.is_empty() {
            return Ok(());
        }
        let joined: Vec<String> = causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        let text = if joined.len() == 1 { joined[0].clone() } else { format!("[{}]", joined.join(", ")) };
        let group_kind = if ty.group.is_empty() { ty.kind.clone() } else { format!("{}.{}", ty.kind, ty.group) };
        Err(ApiError {
            details: json!({
                "name": name, "group": ty.group, "kind": ty.kind,
                "causes": causes.iter().map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>(),
            }),
            ..ApiError::new(422, "Invalid", format!("{group_kind} \"{name}\" is invalid: {text}"))
        })
    }

    fn register_crd(&mut self, crd: &Value) {
        if let Some(t) = ResourceType::from_crd(crd) {
            self.types.insert(t.key(), t);
        }
    }

    /// Creates an object (POST, or server-side apply of a missing object).
    pub fn create(&mut self, ty: &ResourceType, namespace: Option<&str>, mut obj: Value, by: &Author) -> Result<Written, ApiError> {
        let Author { manager, operation, strict } = *by;
        if !obj.is_object() {
            return Err(ApiError::new(400, "BadRequest", "the body of the request must be an object"));
        }
        let meta = obj["metadata"].as_object().cloned().unwrap_or_default();
        let mut name = meta.get("name").and_then(Value::as_str).unwrap_or("").to_string();
        if name.is_empty() {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                name = format!("{prefix}{:05x}", rand::random::<u32>() & 0xfffff);
            } else {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("{} \"\" is invalid: metadata.name: Required value: name or generateName is required", ty.kind),
                ));
            }
        }
        let ns = if ty.namespaced {
            let body_ns = meta.get("namespace").and_then(Value::as_str);
            let ns = namespace.unwrap_or("default");
            if body_ns.is_some_and(|b| b != ns) {
                return Err(ApiError::new(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if !self.objects.contains_key(&("namespaces".to_string(), String::new(), ns.to_string())) {
                return Err(ApiError {
                    details: json!({"name": ns, "kind": "namespaces"}),
                    ..ApiError::new(404, "NotFound", format!("namespaces \"{ns}\" not found"))
                });
            }
            ns.to_string()
        } else {
            String::new()
        };
        let key = (ty.key(), ns.clone(), name.clone());
        if self.objects.contains_key(&key) {
            let what = if ty.group.is_empty() { ty.plural.clone() } else { ty.key() };
            return Err(ApiError {
                details: json!({"name": name, "group": ty.group, "kind": ty.plural}),
                ..ApiError::new(409, "AlreadyExists", format!("{what} \"{name}\" already exists"))
            });
        }
        let o = obj.as_object_mut().unwrap();
        o.insert("apiVersion".into(), json!(ty.api_version()));
        o.insert("kind".into(), json!(ty.kind));
        if ty.status_subresource {
            o.remove("status");
        }
        if ty.kind == "Namespace" {
            o.insert("status".into(), json!({"phase": "Active"}));
        }
        let m = o.entry("metadata").or_insert_with(|| json!({})).as_object_mut().unwrap();
        m.insert("name".into(), json!(name));
        if ty.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        m.insert("uid".into(), json!(uid()));
        m.insert("creationTimestamp".into(), json!(now()));
        m.remove("deletionTimestamp");
        if ty.custom {
            m.insert("generation".into(), json!(1));
        }
        m.insert("managedFields".into(), json!([managed_entry(manager, operation, &ty.api_version(), None)]));
        self.normalize(ty, &mut obj, None, strict)?;
        if ty.kind == "CustomResourceDefinition" {
            obj["status"] = json!({"conditions": [{"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now()}], "acceptedNames": obj["spec"]["names"].clone()});
            self.register_crd(&obj);
        }
        let rv = self.next_rv();
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        self.objects.insert(key, obj.clone());
        let change = self.record(&ty.key(), "ADDED", obj.clone(), None);
        Ok(Written { object: obj, changes: vec![change] })
    }

    /// Gets an object.
    pub fn get(&self, ty: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.objects.get(&(ty.key(), ns.to_string(), name.to_string())).cloned().ok_or_else(|| ApiError::not_found(ty, name))
    }

    /// The common update path (PUT, PATCH, apply) for the main resource or `/status`.
    pub fn update(
        &mut self,
        ty: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        subresource: Option<&str>,
        by: &Author,
    ) -> Result<Written, ApiError> {
        let Author { manager, operation, strict } = *by;
        let key = (ty.key(), ns.to_string(), name.to_string());
        let old = self.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(ty, name))?;
        if !body.is_object() {
            return Err(ApiError::new(400, "BadRequest", "the body of the request must be an object"));
        }
        if let Some(body_name) = body["metadata"]["name"].as_str() {
            if body_name != name {
                return Err(ApiError::new(400, "BadRequest", "the name of the object does not match the name on the URL"));
            }
        }
        // Optimistic concurrency: a resourceVersion in the body is a precondition.
        match body["metadata"]["resourceVersion"].as_str() {
            Some(rv) if rv != old["metadata"]["resourceVersion"].as_str().unwrap_or("") => {
                let what = if ty.group.is_empty() { ty.plural.clone() } else { ty.key() };
                return Err(ApiError {
                    details: json!({"name": name, "group": ty.group, "kind": ty.plural}),
                    ..ApiError::new(409, "Conflict", format!("Operation cannot be fulfilled on {what} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"))
                });
            }
            None if operation == "Replace" && ty.custom => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!(
                        "{}.{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
                        ty.kind, ty.group
                    ),
                ));
            }
            _ => {}
        }
        let mut new = if subresource == Some("status") {
            let mut n = old.clone();
            match body.get("status") {
                Some(s) => n["status"] = s.clone(),
                None => {
                    n.as_object_mut().unwrap().remove("status");
                }
            }
            n
        } else {
            let mut n = body.clone();
            let o = n.as_object_mut().unwrap();
            o.insert("apiVersion".into(), json!(ty.api_version()));
            o.insert("kind".into(), json!(ty.kind));
            if ty.status_subresource {
                match old.get("status") {
                    Some(s) => {
                        o.insert("status".into(), s.clone());
                    }
                    None => {
                        o.remove("status");
                    }
                }
            }
            // Server-owned metadata is kept from the stored object.
            let m = o.entry("metadata").or_insert_with(|| json!({})).as_object_mut().unwrap();
            for k in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "managedFields",
            ] {
                match old["metadata"].get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
            n
        };
        if old["metadata"]["deletionTimestamp"].is_string() {
            let before: Vec<&Value> = old["metadata"]["finalizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
            let added = new["metadata"]["finalizers"].as_array().map(|a| a.iter().any(|f| !before.contains(&f))).unwrap_or(false);
            if added {
                return Err(ApiError::new(422, "Forbidden", format!("{} \"{name}\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted", ty.kind)));
            }
        }
        self.normalize(ty, &mut new, Some(&old), strict && subresource.is_none())?;
        if ty.custom && without(&new, &["metadata", "status"]) != without(&old, &["metadata", "status"]) {
            let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
            new["metadata"]["generation"] = json!(g + 1);
        }
        if metadata_without_managed(&new) == metadata_without_managed(&old) {
            return Ok(Written { object: old, changes: vec![] });
        }
        set_managed(&mut new, manager, operation, &ty.api_version(), subresource);
        if ty.kind == "CustomResourceDefinition" {
            self.register_crd(&new);
        }
        let rv = self.next_rv();
        new["metadata"]["resourceVersion"] = json!(rv.to_string());
        let finished =
            new["metadata"]["deletionTimestamp"].is_string() && new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if finished {
            self.objects.remove(&key);
            self.applied.retain(|(k, _, _), _| k != &key);
            let change = self.record(&ty.key(), "DELETED", new.clone(), Some(old));
            return Ok(Written { object: new, changes: vec![change] });
        }
        self.objects.insert(key, new.clone());
        let change = self.record(&ty.key(), "MODIFIED", new.clone(), Some(old));
        Ok(Written { object: new, changes: vec![change] })
    }

    /// Deletes an object: with finalizers it only gets a deletionTimestamp; without, it goes.
    pub fn delete(&mut self, ty: &ResourceType, ns: &str, name: &str, preconditions: &Value) -> Result<Written, ApiError> {
        let key = (ty.key(), ns.to_string(), name.to_string());
        let old = self.objects.get(&key).cloned().ok_or_else(|| ApiError::not_found(ty, name))?;
        for (field, k) in [("uid", "uid"), ("resourceVersion", "resourceVersion")] {
            if let Some(want) = preconditions.get(field).and_then(Value::as_str) {
                if old["metadata"][k].as_str() != Some(want) {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Precondition failed: {field} in precondition: {want}, {field} in object meta: {}",
                            old["metadata"][k].as_str().unwrap_or("")
                        ),
                    ));
                }
            }
        }
        let has_finalizers = old["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if has_finalizers {
            if old["metadata"]["deletionTimestamp"].is_string() {
                return Ok(Written { object: old, changes: vec![] });
            }
            let mut new = old.clone();
            new["metadata"]["deletionTimestamp"] = json!(now());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if ty.custom {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                new["metadata"]["generation"] = json!(g + 1);
            }
            let rv = self.next_rv();
            new["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.objects.insert(key, new.clone());
            let change = self.record(&ty.key(), "MODIFIED", new.clone(), Some(old));
            return Ok(Written { object: new, changes: vec![change] });
        }
        let mut changes = vec![];
        let mut last = old.clone();
        self.objects.remove(&key);
        self.applied.retain(|(k, _, _), _| k != &key);
        let rv = self.next_rv();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        changes.push(self.record(&ty.key(), "DELETED", last.clone(), Some(old)));
        if ty.kind == "CustomResourceDefinition" {
            if let Some(t) = ResourceType::from_crd(&last) {
                self.types.remove(&t.key());
                let gone: Vec<Key> = self.objects.keys().filter(|k| k.0 == t.key()).cloned().collect();
                for k in gone {
                    if let Some(mut o) = self.objects.remove(&k) {
                        let rv = self.next_rv();
                        o["metadata"]["resourceVersion"] = json!(rv.to_string());
                        changes.push(self.record(&t.key(), "DELETED", o, None));
                    }
                }
            }
        }
        if ty.kind == "Namespace" {
            let gone: Vec<Key> = self.objects.keys().filter(|k| k.1 == name).cloned().collect();
            for k in gone {
                if let Some(mut o) = self.objects.remove(&k) {
                    let rv = self.next_rv();
                    o["metadata"]["resourceVersion"] = json!(rv.to_string());
                    changes.push(self.record(&k.0, "DELETED", o, None));
                }
            }
        }
        Ok(Written { object: last, changes })
    }
}

impl Store {
    /// The API server stores `events.k8s.io/v1` and core `v1` Events as one object seen
    /// through two APIs; this keeps the core view (what `kubectl get events` and
    /// `kubectl describe` read) in step with an events.k8s.io write.
    pub fn mirror_event(&mut self, ev: &Value) -> Vec<Arc<Change>> {
        let Some(core) = self.types.get("events").cloned() else {
            return vec![];
        };
        let ns = ev["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
        let name = ev["metadata"]["name"].as_str().unwrap_or("").to_string();
        let count = ev["series"]["count"].as_i64().unwrap_or(1);
        let last = ev["series"]["lastObservedTime"].as_str().or(ev["eventTime"].as_str()).unwrap_or("").to_string();
        let mut obj = json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ev["regarding"], "reason": ev["reason"], "message": ev["note"], "type": ev["type"],
            "source": {"component": ev["reportingController"]},
            "reportingComponent": ev["reportingController"], "reportingInstance": ev["reportingInstance"],
            "action": ev["action"], "eventTime": ev["eventTime"], "firstTimestamp": ev["eventTime"], "lastTimestamp": last, "count": count,
        });
        match self.objects.get(&(core.key(), ns.clone(), name.clone())).cloned() {
            None => {
                self.create(&core, Some(&ns), obj, &Author::new("event-mirror", "Update", false)).map(|w| w.changes).unwrap_or_default()
            }
            Some(existing) => {
                obj["metadata"] = existing["metadata"].clone();
                self.update(&core, &ns, &name, obj, None, &Author::new("event-mirror", "Update", false))
                    .map(|w| w.changes)
                    .unwrap_or_default()
            }
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

fn uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn managed_entry(manager: &str, operation: &str, api_version: &str, subresource: Option<&str>) -> Value {
    let mut e = json!({"manager": manager, "operation": if operation == "Apply" { "Apply" } else { "Update" }, "apiVersion": api_version, "time": now(), "fieldsType": "FieldsV1", "fieldsV1": {}});
    if let Some(s) = subresource {
        e["subresource"] = json!(s);
    }
    e
}

fn set_managed(obj: &mut Value, manager: &str, operation: &str, api_version: &str, subresource: Option<&str>) {
    let entry = managed_entry(manager, operation, api_version, subresource);
    let list = obj["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let mut list: Vec<Value> = list
        .into_iter()
        .filter(|e| {
            !(e["manager"] == entry["manager"] && e["operation"] == entry["operation"] && e.get("subresource") == entry.get("subresource"))
        })
        .collect();
    list.push(entry);
    obj["metadata"]["managedFields"] = Value::Array(list);
}
