//! What the real kube-apiserver (and kube-controller-manager) do with shipshape's CRDs and
//! RBAC: every CEL rule enforced, the structural schema's defaults and pruning, namespaces
//! that finish deleting through the controller's finalizers, and the controller's own
//! credentials refused what its rules do not grant.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{json, Value};
use support::{eventually, unique, Cluster, E2e};

fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(e) => *e,
        other => panic!("expected an API error, got {other}"),
    }
}

fn resource(kind: &str) -> ApiResource {
    let plural = match kind {
        "Environment" => "environments",
        "StackSpec" => "stackspecs",
        "ServiceRelease" => "servicereleases",
        other => panic!("unknown kind {other}"),
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("shipshape.dev", "v1alpha1", kind), plural)
}

/// Every `x-kubernetes-validations` rule of the CRDs in crds/, as (kind, field path, rule, message).
fn cel_rules() -> Vec<(String, String, String, String)> {
    fn walk(schema: &Value, path: &str, kind: &str, out: &mut Vec<(String, String, String, String)>) {
        for r in schema["x-kubernetes-validations"].as_array().into_iter().flatten() {
            let text = |k: &str| r[k].as_str().unwrap_or_default().to_string();
            out.push((kind.to_string(), path.to_string(), text("rule"), text("message")));
        }
        for (name, sub) in schema["properties"].as_object().into_iter().flatten() {
            walk(sub, &if path.is_empty() { name.clone() } else { format!("{path}.{name}") }, kind, out);
        }
        if schema["items"].is_object() {
            walk(&schema["items"], &format!("{path}[]"), kind, out);
        }
        if schema["additionalProperties"].is_object() {
            walk(&schema["additionalProperties"], &format!("{path}{{}}"), kind, out);
        }
    }
    let mut out = vec![];
    for crd in shipshape::api::crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_string();
        walk(&crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"], "", &kind, &mut out);
    }
    out
}

/// A valid object of each kind (in namespace `ns` when namespaced).
fn valid(kind: &str, name: &str, ns: &str) -> Value {
    let spec = match kind {
        "Environment" => json!({"region": "eu-west-1", "ecsCluster": {"name": name}}),
        "StackSpec" => json!({"environment": "prod", "buckets": [{"name": format!("{name}-bucket")}]}),
        "ServiceRelease" => {
            json!({"environment": "prod", "image": {"repository": "r", "gitSha": "3f9c2a1d"}, "task": {"cpu": 256, "memory": 512}})
        }
        other => panic!("unknown kind {other}"),
    };
    let mut meta = json!({"name": name});
    if kind != "Environment" {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": kind, "metadata": meta, "spec": spec})
}

/// How to break a rule: an object created with this merge patch applied, or a valid object
/// (with `base` merged in) changed by `change` afterwards (transition rules).
enum Breach {
    Create(Value),
    Update { base: Value, change: Value },
}

fn update(change: Value) -> Breach {
    Breach::Update { base: json!({}), change }
}

/// One breach per CEL rule, keyed by (kind, field path). A rule with no entry here fails
/// `every_cel_rule_of_the_crds_is_enforced_by_the_api_server`: add one.
fn breaches() -> BTreeMap<(&'static str, &'static str), Breach> {
    let db = |name: &str| json!({"name": name, "engine": "postgres", "engineVersion": "16.4", "instanceClass": "db.t4g.micro", "allocatedStorageGiB": 20});
    let table = |name: &str| json!({"name": name, "partitionKey": {"name": "id", "type": "S"}});
    let cache = |name: &str| json!({"name": name, "engineVersion": "7.0", "nodeType": "cache.t4g.micro"});
    BTreeMap::from([
        // Immutable identity.
        (("Environment", "spec.region"), update(json!({"spec": {"region": "us-east-1"}}))),
        (("Environment", "spec.ecsCluster.name"), update(json!({"spec": {"ecsCluster": {"name": "another"}}}))),
        (
            ("Environment", "spec"),
            Breach::Update { base: json!({"spec": {"accountId": "123456789012"}}), change: json!({"spec": {"accountId": "999999999999"}}) },
        ),
        (("StackSpec", "spec.environment"), update(json!({"spec": {"environment": "staging"}}))),
        (
            ("StackSpec", "spec.databases"),
            Breach::Update {
                base: json!({"spec": {"databases": [db("orders")]}}),
                change: json!({"spec": {"databases": [db("orders-v2")]}}),
            },
        ),
        (("StackSpec", "spec.buckets"), update(json!({"spec": {"buckets": [{"name": "renamed-bucket"}]}}))),
        (
            ("StackSpec", "spec.tables"),
            Breach::Update {
                base: json!({"spec": {"tables": [table("users")]}}),
                change: json!({"spec": {"tables": [table("users-v2")]}}),
            },
        ),
        (
            ("StackSpec", "spec.caches"),
            Breach::Update {
                base: json!({"spec": {"caches": [cache("redis")]}}),
                change: json!({"spec": {"caches": [cache("redis-v2")]}}),
            },
        ),
        // Settings that need one another.
        (
            ("StackSpec", "spec.tables[]"),
            Breach::Create(
                json!({"spec": {"tables": [{"name": "users", "partitionKey": {"name": "id", "type": "S"}, "billing": "Provisioned"}]}}),
            ),
        ),
        (
            ("StackSpec", "spec.caches[]"),
            Breach::Create(
                json!({"spec": {"caches": [{"name": "redis", "engineVersion": "7.0", "nodeType": "cache.t4g.micro", "multiAz": true}]}}),
            ),
        ),
        (("ServiceRelease", "spec.environment"), update(json!({"spec": {"environment": "staging"}}))),
        // Exactly one target: a task and a function at once.
        (
            ("ServiceRelease", ""),
            Breach::Create(
                json!({"spec": {"function": {"s3": {"bucket": "builds", "key": "k.zip"}, "roleArn": "arn:aws:iam::123456789012:role/r"}}}),
            ),
        ),
        (
            ("ServiceRelease", "spec"),
            Breach::Update { base: json!({"spec": {"service": "api"}}), change: json!({"spec": {"service": "api-2"}}) },
        ),
        // Bounded durations.
        (("Environment", "spec.driftInterval"), Breach::Create(json!({"spec": {"driftInterval": "25h"}}))),
        (("StackSpec", "spec.driftInterval"), Breach::Create(json!({"spec": {"driftInterval": "500ms"}}))),
        (("ServiceRelease", "spec.driftInterval"), Breach::Create(json!({"spec": {"driftInterval": "9999h"}}))),
        (("ServiceRelease", "spec.rollout.progressDeadline"), Breach::Create(json!({"spec": {"rollout": {"progressDeadline": "48h"}}}))),
        (("ServiceRelease", "spec.rollout.analysis.warmup"), Breach::Create(json!({"spec": {"rollout": {"analysis": {"warmup": "7h"}}}}))),
        (
            ("ServiceRelease", "spec.rollout.analysis.interval"),
            Breach::Create(json!({"spec": {"rollout": {"analysis": {"interval": "0s"}}}})),
        ),
        (
            ("ServiceRelease", "spec.task.healthCheck.interval"),
            Breach::Create(json!({"spec": {"task": {"healthCheck": {"command": ["x"], "interval": "1s"}}}})),
        ),
        (
            ("ServiceRelease", "spec.task.healthCheck.timeout"),
            Breach::Create(json!({"spec": {"task": {"healthCheck": {"command": ["x"], "timeout": "5m"}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.strategy"),
            Breach::Create(json!({"spec": {"rollout": {"strategy": {"canary": {"percent": 10}, "blueGreen": {}}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.strategy.canary.bake"),
            Breach::Create(json!({"spec": {"rollout": {"strategy": {"canary": {"percent": 10, "bake": "25h"}}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.strategy.linear.stepBake"),
            Breach::Create(json!({"spec": {"rollout": {"strategy": {"linear": {"stepPercent": 10, "stepBake": "200h"}}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.strategy.blueGreen.bake"),
            Breach::Create(json!({"spec": {"rollout": {"strategy": {"blueGreen": {"bake": "30h"}}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.preDeploy[].timeout"),
            Breach::Create(json!({"spec": {"rollout": {"preDeploy": [{"name": "migrate", "command": ["x"], "timeout": "3h"}]}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.analysis.jobs[].timeout"),
            Breach::Create(json!({"spec": {"rollout": {"analysis": {"jobs": [{"name": "smoke", "command": ["x"], "timeout": "3h"}]}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.analysis.http[].timeout"),
            Breach::Create(json!({"spec": {"rollout": {"analysis": {"http": [{"name": "health", "url": "http://a/", "timeout": "2m"}]}}}})),
        ),
        (
            ("ServiceRelease", "spec.rollout.analysis.http[]"),
            Breach::Create(
                json!({"spec": {"rollout": {"analysis": {"http": [{"name": "health", "url": "http://a/", "bodyContains": "ok", "jsonPath": "$.a"}]}}}}),
            ),
        ),
        (("ServiceRelease", "spec.promotion.soak"), Breach::Create(json!({"spec": {"promotion": {"soak": "8d"}}}))),
        (
            ("Environment", "spec.windows[].duration"),
            Breach::Create(json!({"spec": {"windows": [{"schedule": "0 9 * * 1-5", "duration": "30s"}]}})),
        ),
        (
            ("Environment", "spec.blackouts[]"),
            Breach::Create(json!({"spec": {"blackouts": [{"start": "2026-12-26T00:00:00Z", "end": "2026-12-24T00:00:00Z"}]}})),
        ),
        (
            ("ServiceRelease", "spec.task.healthCheck.startPeriod"),
            Breach::Create(json!({"spec": {"task": {"healthCheck": {"command": ["x"], "startPeriod": "10m"}}}})),
        ),
    ])
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// The real API server evaluates every CEL rule of the CRDs (including transition rules
/// with `oldSelf`) and answers 422 with the rule's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cel_rule_of_the_crds_is_enforced_by_the_api_server() {
    let c = Cluster::start().await;
    let client = c.client().await;
    let ns = unique("cel");
    c.kubectl(&["create", "namespace", &ns]).success();
    let rules = cel_rules();
    assert!(!rules.is_empty());
    let table = breaches();
    let mut missing = vec![];
    let mut seen = std::collections::BTreeMap::<(String, String), usize>::new();
    for (i, (kind, path, rule, message)) in rules.iter().enumerate() {
        *seen.entry((kind.clone(), path.clone())).or_default() += 1;
        let Some(breach) = table.get(&(kind.as_str(), path.as_str())) else {
            missing.push(format!("({kind:?}, {path:?}) for `{rule}`"));
            continue;
        };
        let ar = resource(kind);
        let api: Api<DynamicObject> =
            if kind == "Environment" { Api::all_with(client.clone(), &ar) } else { Api::namespaced_with(client.clone(), &ns, &ar) };
        let name = format!("cel-{i}-{}", unique("x"));
        let mut obj = valid(kind, &name, &ns);
        let err = match breach {
            Breach::Create(patch) => {
                merge(&mut obj, patch);
                api.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.expect_err("the breach is refused")
            }
            Breach::Update { base, change } => {
                merge(&mut obj, base);
                api.create(&PostParams::default(), &serde_json::from_value(obj).unwrap()).await.expect("the valid object is accepted");
                api.patch(&name, &PatchParams::default(), &Patch::Merge(change)).await.expect_err("the breach is refused")
            }
        };
        let status = api_error(err);
        assert_eq!(status.code, 422, "{kind} {path}: {status:?}");
        assert!(status.message.contains(message.as_str()), "{kind} {path} `{rule}`: {}", status.message);
    }
    assert!(missing.is_empty(), "CEL rules without a breach in this test: {}", missing.join(", "));
    assert!(seen.values().all(|n| *n == 1), "one rule per field keeps this table exact: {seen:?}");
}

/// The structural schema as the real server applies it: patterns and enums refused with the
/// field named, defaults filled in, unknown fields pruned, printer columns in `kubectl get`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_refuses_bad_fields_fills_defaults_prunes_unknown_ones_and_prints_columns() {
    let c = Cluster::start().await;
    let ns = unique("schema");
    c.kubectl(&["create", "namespace", &ns]).success();
    let raw: Api<DynamicObject> = Api::namespaced_with(c.client().await, &ns, &resource("ServiceRelease"));
    let create = |v: Value| {
        let raw = raw.clone();
        async move { raw.create(&PostParams::default(), &serde_json::from_value(v).unwrap()).await }
    };
    let mut bad = valid("ServiceRelease", "api", &ns);
    bad["spec"]["image"]["gitSha"] = json!("NOT-A-SHA");
    let err = api_error(create(bad).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(err.message.contains("spec.image.gitSha"), "{}", err.message);
    let mut bad = valid("ServiceRelease", "api", &ns);
    bad["spec"]["rollout"] = json!({"analysis": {"queries": [{"name": "q", "prometheus": "up", "noData": "Maybe"}]}});
    let err = api_error(create(bad).await.unwrap_err());
    assert!(err.message.contains("Unsupported value: \"Maybe\""), "{}", err.message);
    let mut bad = valid("ServiceRelease", "api", &ns);
    bad["spec"]["rollout"] = json!({"progressDeadline": "ten minutes"});
    assert_eq!(api_error(create(bad).await.unwrap_err()).code, 422);

    let mut unknown = valid("ServiceRelease", "api", &ns);
    unknown["spec"]["colour"] = json!("blue");
    create(unknown).await.unwrap();
    let stored = raw.get("api").await.unwrap();
    assert_eq!(stored.data["spec"]["replicas"], 1, "defaults from the schema are applied");
    assert_eq!(stored.data["spec"]["historyLimit"], 10);
    assert!(stored.data["spec"].get("colour").is_none(), "unknown fields are pruned");

    let out = c.kubectl(&["get", "release", "-n", &ns]).success().stdout;
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "SHA", "STABLE", "WEIGHT", "STEP", "STAGE", "READY", "REASON", "AGE"]);
    assert!(out.contains("3f9c2a1d"), "{out}");
}

/// kube-controller-manager's namespace controller deletes what a namespace holds; the
/// controller's finalizers run their cleanup (Events into a terminating namespace are
/// refused, which must not block it) and the namespace is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_holding_a_stackspec_and_a_servicerelease_finishes() {
    let E2e { c, p: _p, ctl } = E2e::start_slow(Duration::from_millis(300), &[]).await;
    let (env, ns) = (unique("env"), unique("team"));
    let mut yaml = support::namespaces_and_environment(&env, &[&ns], "").await;
    yaml += &format!(
        "---\napiVersion: shipshape.dev/v1alpha1\nkind: StackSpec\nmetadata: {{name: data, namespace: {ns}}}\nspec:\n  environment: {env}\n  outputs: data-out\n  buckets: [{{name: {bucket}}}]\n---\napiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: api, namespace: {ns}}}\nspec:\n  environment: {env}\n  stack: data\n  image: {{repository: r, gitSha: 3f9c2a1d}}\n  task: {{cpu: 256, memory: 512}}\n",
        bucket = unique("ns-delete")
    );
    c.apply(&yaml).success();
    eventually(Duration::from_secs(60), "release Healthy", || {
        (c.jsonpath(&["release", "api", "-n", &ns], "{.status.phase}") == "Healthy").then_some(())
    })
    .await;
    let out = c.kubectl(&["delete", "namespace", &ns, "--wait=true", "--timeout=90s"]);
    assert_eq!(out.code, 0, "{}{}\n{}", out.stdout, out.stderr, ctl.logs());
    assert!(c.kubectl(&["get", "namespace", &ns]).stderr.contains("NotFound"));
}

/// The controller's own credentials (the chart's ServiceAccount, a TokenRequest token) are
/// refused by the real authorizer what its ClusterRole and Role do not grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_credentials_are_refused_what_its_rules_do_not_grant() {
    let c = Cluster::start().await;
    let me = c.control_plane().controller.clone();
    let whoami = c.kubectl_as(&me, &["auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"], "").success().stdout;
    assert_eq!(whoami, support::CONTROLLER_USER);
    // Granted: watching the three kinds, Events, Leases in its own namespace.
    for (verb, resource, ns) in
        [("watch", "servicereleases.shipshape.dev", "-A"), ("create", "events.events.k8s.io", "-A"), ("update", "leases", "shipshape")]
    {
        let ns_args: Vec<&str> = if ns == "-A" { vec!["-A"] } else { vec!["-n", ns] };
        let mut args = vec!["auth", "can-i", verb, resource];
        args.extend(ns_args);
        assert_eq!(c.kubectl_as(&me, &args, "").stdout.trim(), "yes", "{verb} {resource}");
    }
    // Secrets: by name only, and only where the chart binds shipshape-secrets (its own
    // namespace, rbac.secretNamespaces) — never listed, never elsewhere.
    assert_eq!(c.kubectl_as(&me, &["auth", "can-i", "get", "secrets/prom-auth", "-n", "shipshape"], "").stdout.trim(), "yes");
    assert_eq!(c.kubectl_as(&me, &["auth", "can-i", "get", "secrets/db-token", "-n", "default"], "").stdout.trim(), "no");
    // Not granted: secrets, deleting the user's objects, writing their spec, leases elsewhere.
    for (args, what) in [
        (vec!["get", "secrets", "-n", "shipshape"], "secrets"),
        (vec!["get", "secret", "anything", "-n", "kube-system"], "secrets"),
        (vec!["delete", "servicereleases.shipshape.dev", "nothing-here", "-n", "default"], "servicereleases"),
        (vec!["get", "leases", "-n", "kube-system"], "leases"),
        (vec!["create", "namespace", "owned-by-the-controller"], "namespaces"),
    ] {
        let out = c.kubectl_as(&me, &args, "");
        assert_ne!(out.code, 0, "{args:?} must be refused: {}", out.stdout);
        assert!(out.stderr.contains("Forbidden") || out.stderr.contains("forbidden"), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(support::CONTROLLER_USER) && out.stderr.contains(what), "{}", out.stderr);
    }
    // The same through the API the controller uses: a 403.
    let kc = kube::config::Kubeconfig::read_from(&me).unwrap();
    let client = kube::Client::try_from(kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap()).unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client, "shipshape");
    let err = api_error(secrets.list(&Default::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (403, "Forbidden"));
}

/// What Flux and Argo CD see of an object the controller has not looked at yet: kstatus
/// itself (sigs.k8s.io/cli-utils, testkit/kstatus) on each kind as the real API server
/// returns it just after `kubectl apply` — the schema's status default makes it InProgress,
/// not Current — and Current once a status for its generation is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_just_applied_object_of_each_kind_reads_in_progress_to_kstatus_until_its_status_is_written() {
    let c = Cluster::start().await;
    let ns = unique("kstatus");
    c.kubectl(&["create", "namespace", &ns]).success();
    let client = c.client().await;
    for kind in ["Environment", "StackSpec", "ServiceRelease"] {
        let name = unique("fresh");
        let mut obj = valid(kind, &name, &ns);
        obj["metadata"]["labels"] = json!({support::TEST_LABEL: c.id});
        c.apply(&serde_json::to_string(&obj).unwrap()).success();
        let api: Api<DynamicObject> = if kind == "Environment" {
            Api::all_with(client.clone(), &resource(kind))
        } else {
            Api::namespaced_with(client.clone(), &ns, &resource(kind))
        };
        let stored = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
        assert_eq!(stored["status"]["observedGeneration"], -1, "{kind}: the schema's status default: {stored}");
        let seen = support::kstatus(&stored);
        assert!(seen.starts_with("InProgress"), "{kind} before the controller: {seen}");
        // The controller's first status write: its generation observed, Ready.
        let status = json!({"apiVersion": "shipshape.dev/v1alpha1", "kind": kind, "status": {"observedGeneration": 1, "conditions": [
            {"type": "Ready", "status": "True", "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-12-06T00:00:00Z"},
            {"type": "Reconciling", "status": "False", "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-12-06T00:00:00Z"},
            {"type": "Stalled", "status": "False", "reason": "Reconciled", "message": "", "lastTransitionTime": "2026-12-06T00:00:00Z"}]}});
        api.patch_status(&name, &PatchParams::apply("kstatus-test").force(), &Patch::Apply(status)).await.unwrap();
        let written = serde_json::to_value(api.get(&name).await.unwrap()).unwrap();
        assert!(support::kstatus(&written).starts_with("Current"), "{kind} after its status: {}", support::kstatus(&written));
    }
}
