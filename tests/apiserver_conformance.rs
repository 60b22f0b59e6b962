//! The test API server behaves like the real one where shipshape and kubectl depend on it.
//! Each test names the documented Kubernetes behaviour it pins.

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::Status;
use kube::Client;
use serde_json::json;
use shipshape::api::{Environment, ServiceRelease};
use shipshape::testing::apiserver::ApiServer;

async fn server() -> (ApiServer, Client) {
    let s = ApiServer::start("127.0.0.1:0").await.unwrap();
    let crds: Vec<serde_json::Value> = shipshape::api::crds().iter().map(|c| serde_json::to_value(c).unwrap()).collect();
    s.install_crds(&crds);
    let c = s.client().await;
    (s, c)
}

fn env(name: &str) -> Environment {
    serde_json::from_value(json!({
        "apiVersion": "shipshape.dev/v1alpha1", "kind": "Environment",
        "metadata": {"name": name},
        "spec": {"region": "eu-west-1", "ecsCluster": {"name": "c1"}},
    }))
    .unwrap()
}

fn release(name: &str, sha: &str) -> serde_json::Value {
    json!({
        "apiVersion": "shipshape.dev/v1alpha1", "kind": "ServiceRelease",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"environment": "prod", "image": {"repository": "r", "gitSha": sha}, "task": {"cpu": 256, "memory": 512}},
    })
}

fn api_error(e: kube::Error) -> Status {
    match e {
        kube::Error::Api(e) => *e,
        other => panic!("expected an API error, got {other}"),
    }
}

#[tokio::test]
async fn discovery_lists_the_group_its_resources_short_names_and_status_subresources() {
    let (_s, c) = server().await;
    let groups = c.list_api_groups().await.unwrap();
    assert!(groups.groups.iter().any(|g| g.name == "shipshape.dev"));
    let res = c.list_api_group_resources("shipshape.dev/v1alpha1").await.unwrap();
    let names: Vec<_> = res.resources.iter().map(|r| r.name.as_str()).collect();
    for n in ["environments", "environments/status", "servicereleases", "servicereleases/status", "stackspecs"] {
        assert!(names.contains(&n), "{names:?}");
    }
    let rel = res.resources.iter().find(|r| r.name == "servicereleases").unwrap();
    assert_eq!(rel.short_names.as_deref(), Some(&["release".to_string()][..]));
    assert!(rel.namespaced);
}

#[tokio::test]
async fn create_sets_uid_timestamps_resource_version_and_generation_and_refuses_duplicates() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    let e = api.create(&PostParams::default(), &env("prod")).await.unwrap();
    assert!(e.metadata.uid.is_some() && e.metadata.creation_timestamp.is_some());
    assert_eq!(e.metadata.generation, Some(1));
    assert!(e.metadata.resource_version.is_some());
    let err = api_error(api.create(&PostParams::default(), &env("prod")).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
}

#[tokio::test]
async fn generation_changes_on_spec_changes_only_not_on_metadata_or_status() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    api.create(&PostParams::default(), &env("prod")).await.unwrap();
    let pp = PatchParams::default();
    let e = api.patch("prod", &pp, &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}}))).await.unwrap();
    assert_eq!(e.metadata.generation, Some(1));
    let e = api.patch_status("prod", &pp, &Patch::Merge(json!({"status": {"clusterArn": "arn"}}))).await.unwrap();
    assert_eq!(e.metadata.generation, Some(1));
    let e = api.patch("prod", &pp, &Patch::Merge(json!({"spec": {"freeze": true}}))).await.unwrap();
    assert_eq!(e.metadata.generation, Some(2));
}

#[tokio::test]
async fn the_status_subresource_isolates_status_from_spec() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    api.create(&PostParams::default(), &env("prod")).await.unwrap();
    let pp = PatchParams::default();
    // Status sent to the main resource is ignored...
    let e = api.patch("prod", &pp, &Patch::Merge(json!({"spec": {"region": "us-east-1"}, "status": {"clusterArn": "x"}}))).await.unwrap();
    assert_eq!(e.spec.region, "us-east-1");
    assert!(e.status.is_none());
    // ...and spec sent to /status is ignored.
    let e = api
        .patch_status("prod", &pp, &Patch::Merge(json!({"spec": {"region": "ap-south-1"}, "status": {"clusterArn": "y"}})))
        .await
        .unwrap();
    assert_eq!(e.spec.region, "us-east-1");
    assert_eq!(e.status.unwrap().cluster_arn.as_deref(), Some("y"));
}

#[tokio::test]
async fn a_stale_resource_version_is_a_409_conflict_and_a_custom_resource_update_needs_one() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    let created = api.create(&PostParams::default(), &env("prod")).await.unwrap();
    let mut fresh = api.get("prod").await.unwrap();
    fresh.spec.freeze = true;
    api.replace("prod", &PostParams::default(), &fresh).await.unwrap();
    let mut stale = created.clone();
    stale.spec.region = "us-east-1".into();
    let err = api_error(api.replace("prod", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    stale.metadata.resource_version = None;
    let err = api_error(api.replace("prod", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn a_no_op_write_does_not_change_the_resource_version() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    let e = api.create(&PostParams::default(), &env("prod")).await.unwrap();
    let again = api.patch("prod", &PatchParams::default(), &Patch::Merge(json!({"spec": {"region": "eu-west-1"}}))).await.unwrap();
    assert_eq!(e.metadata.resource_version, again.metadata.resource_version);
}

#[tokio::test]
async fn json_patch_test_ops_guard_writes_and_strategic_merge_is_refused_for_custom_resources() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    api.create(&PostParams::default(), &env("prod")).await.unwrap();
    let pp = PatchParams::default();
    let add: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["x/y"]},
    ]))
    .unwrap();
    let e = api.patch("prod", &pp, &Patch::<()>::Json(add.clone())).await.unwrap();
    assert_eq!(e.metadata.finalizers, Some(vec!["x/y".to_string()]));
    let err = api_error(api.patch("prod", &pp, &Patch::<()>::Json(add)).await.unwrap_err());
    assert_eq!(err.code, 422, "a failed test op rejects the whole patch");
    let err = api_error(api.patch("prod", &pp, &Patch::Strategic(json!({"spec": {"freeze": true}}))).await.unwrap_err());
    assert_eq!(err.code, 415);
}

#[tokio::test]
async fn server_side_apply_creates_merges_removes_dropped_fields_and_records_the_manager() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let pp = PatchParams::apply("tester");
    let cm = |data: serde_json::Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "out"}, "data": data});
    let created = api.patch("out", &pp, &Patch::Apply(cm(json!({"a": "1", "b": "2"})))).await.unwrap();
    assert_eq!(created.data.as_ref().unwrap().len(), 2);
    // Someone else's field survives; the manager's dropped field goes.
    api.patch("out", &PatchParams::default(), &Patch::Merge(json!({"data": {"other": "x"}}))).await.unwrap();
    let after = api.patch("out", &pp, &Patch::Apply(cm(json!({"a": "1"})))).await.unwrap();
    let data = after.data.unwrap();
    assert_eq!(data.get("a").map(String::as_str), Some("1"));
    assert!(!data.contains_key("b"));
    assert_eq!(data.get("other").map(String::as_str), Some("x"));
    let managers: Vec<String> = after.metadata.managed_fields.unwrap().into_iter().filter_map(|m| m.manager).collect();
    assert!(managers.contains(&"tester".to_string()), "{managers:?}");
}

#[tokio::test]
async fn list_filters_by_label_and_field_selectors_and_paginates() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    for (name, tier) in [("a", "web"), ("b", "web"), ("c", "db")] {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name, "labels": {"tier": tier}}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<ConfigMap>| l.items.into_iter().map(|c| c.metadata.name.unwrap()).collect::<Vec<_>>();
    assert_eq!(names(api.list(&ListParams::default().labels("tier=web")).await.unwrap()), ["a", "b"]);
    assert_eq!(names(api.list(&ListParams::default().labels("tier in (db)")).await.unwrap()), ["c"]);
    assert_eq!(names(api.list(&ListParams::default().fields("metadata.name=b")).await.unwrap()), ["b"]);
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    let token = page.metadata.continue_.clone().expect("a continue token");
    assert_eq!(names(page), ["a", "b"]);
    assert_eq!(names(api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap()), ["c"]);
}

#[tokio::test]
async fn a_watch_from_a_resource_version_sees_later_changes_and_bookmarks() {
    let (s, c) = server().await;
    s.set_bookmark_interval(Duration::from_millis(200));
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let first = api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "one"}})).unwrap()).await.unwrap();
    let rv = first.metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "two"}})).unwrap()).await.unwrap();
    api.delete("one", &DeleteParams::default()).await.unwrap();
    let mut seen = vec![];
    let mut bookmark = false;
    while seen.len() < 2 || !bookmark {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Added(o) => seen.push(format!("ADDED {}", o.metadata.name.unwrap())),
            WatchEvent::Deleted(o) => seen.push(format!("DELETED {}", o.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => bookmark = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED two", "DELETED one"], "the object created before the watch's resourceVersion is not replayed");
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410_gone() {
    let (s, c) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    let cm = api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "one"}})).unwrap()).await.unwrap();
    api.patch("one", &PatchParams::default(), &Patch::Merge(json!({"data": {"a": "b"}}))).await.unwrap();
    s.compact();
    let rv = cm.metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match stream.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_an_object_with_finalizers_marks_it_until_the_last_finalizer_goes() {
    let (_s, c) = server().await;
    let api: Api<Environment> = Api::all(c);
    let mut e = env("prod");
    e.metadata.finalizers = Some(vec!["environments.shipshape.dev/cleanup".into()]);
    api.create(&PostParams::default(), &e).await.unwrap();
    api.delete("prod", &DeleteParams::default()).await.unwrap();
    let marked = api.get("prod").await.unwrap();
    assert!(marked.metadata.deletion_timestamp.is_some());
    let err = api_error(
        api.patch(
            "prod",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["environments.shipshape.dev/cleanup", "new/one"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 422, "no new finalizers on an object being deleted");
    api.patch("prod", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert!(api.get_opt("prod").await.unwrap().is_none());
}

#[tokio::test]
async fn the_schema_rejects_invalid_specs_with_field_causes_and_applies_defaults() {
    let (_s, c) = server().await;
    let api: Api<ServiceRelease> = Api::namespaced(c.clone(), "default");
    let raw: Api<kube::core::DynamicObject> = Api::namespaced_with(c, "default", &kube::core::ApiResource::erase::<ServiceRelease>(&()));
    let bad: kube::core::DynamicObject = serde_json::from_value(release("api", "NOT-A-SHA")).unwrap();
    let err = api_error(raw.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert!(err.message.contains("spec.image.gitSha") && err.message.contains("^[0-9a-f]{7,40}$"), "{}", err.message);
    let mut bad_enum = release("api", "3f9c2a1d");
    bad_enum["spec"]["rollout"] = json!({"analysis": {"queries": [{"name": "q", "prometheus": "up", "noData": "Maybe"}]}});
    let err = api_error(raw.create(&PostParams::default(), &serde_json::from_value(bad_enum).unwrap()).await.unwrap_err());
    assert!(err.message.contains("Unsupported value: \"Maybe\""), "{}", err.message);
    let mut bad_duration = release("api", "3f9c2a1d");
    bad_duration["spec"]["rollout"] = json!({"progressDeadline": "ten minutes"});
    assert_eq!(api_error(raw.create(&PostParams::default(), &serde_json::from_value(bad_duration).unwrap()).await.unwrap_err()).code, 422);
    let mut unknown = release("api", "3f9c2a1d");
    unknown["spec"]["colour"] = json!("blue");
    raw.create(&PostParams::default(), &serde_json::from_value(unknown).unwrap()).await.unwrap();
    let stored = api.get("api").await.unwrap();
    assert_eq!(stored.spec.replicas, 1, "defaults from the schema are applied");
    assert_eq!(stored.spec.history_limit, 10);
    let raw_stored = raw.get("api").await.unwrap();
    assert!(raw_stored.data["spec"].get("colour").is_none(), "unknown fields are pruned");
}

#[tokio::test]
async fn cel_transition_rules_keep_environment_immutable() {
    let (_s, c) = server().await;
    let api: Api<ServiceRelease> = Api::namespaced(c, "default");
    api.create(&PostParams::default(), &serde_json::from_value(release("api", "3f9c2a1d")).unwrap()).await.unwrap();
    let pp = PatchParams::default();
    let err = api_error(api.patch("api", &pp, &Patch::Merge(json!({"spec": {"environment": "staging"}}))).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("environment is immutable"), "{}", err.message);
    api.patch("api", &pp, &Patch::Merge(json!({"spec": {"image": {"gitSha": "abcdef1"}}}))).await.unwrap();
}

#[tokio::test]
async fn objects_in_a_missing_namespace_are_refused() {
    let (_s, c) = server().await;
    let api: Api<ConfigMap> = Api::namespaced(c, "nowhere");
    let err = api_error(
        api.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap()).await.unwrap_err(),
    );
    assert_eq!(err.code, 404);
    assert!(err.message.contains("namespaces \"nowhere\" not found"));
}

/// kubectl itself: apply (client-side, with server-side field validation), get with
/// server-printed columns, get -w, and delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_gets_watches_and_deletes_custom_resources() {
    let (s, _c) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let kubectl = move |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &kc)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = child.wait_with_output().unwrap();
        (o.status.success(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    };
    let manifest = serde_yaml::to_string(&release("api", "3f9c2a1d")).unwrap();
    let (ok, out) = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        let m = manifest.clone();
        move || kubectl(&["apply", "-f", "-"], &m)
    })
    .await
    .unwrap();
    assert!(ok && out.contains("servicerelease.shipshape.dev/api created"), "{out}");
    let (ok, out) = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl(&["get", "release"], "")
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    let header: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "PHASE", "SHA", "STABLE", "READY", "AGE"]);
    assert!(out.contains("3f9c2a1d"), "{out}");
    // A spec the schema refuses is refused to kubectl too, with the field named.
    let bad = manifest.replace("3f9c2a1d", "XYZ");
    let (ok, out) = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl(&["apply", "-f", "-"], &bad)
    })
    .await
    .unwrap();
    assert!(!ok && out.contains("spec.image.gitSha"), "{out}");
    // get -w prints the object, then its change.
    let watch = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl(&["get", "release", "api", "-w", "--request-timeout=3s"], "")
    });
    tokio::time::sleep(Duration::from_millis(800)).await;
    let patched = manifest.replace("3f9c2a1d", "abcdef1");
    let (ok, out) = tokio::task::spawn_blocking({
        let kubectl = kubectl.clone();
        move || kubectl(&["apply", "-f", "-"], &patched)
    })
    .await
    .unwrap();
    assert!(ok && out.contains("configured"), "{out}");
    let (_, watched) = watch.await.unwrap();
    assert!(watched.contains("3f9c2a1d") && watched.contains("abcdef1"), "{watched}");
    let (ok, out) = tokio::task::spawn_blocking(move || kubectl(&["delete", "release", "api"], "")).await.unwrap();
    assert!(ok && out.contains("deleted"), "{out}");
}
