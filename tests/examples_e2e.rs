//! Every example app in deploy/examples, applied with kubectl to the real control plane and
//! run by the real controller binary (under the chart's RBAC) against moto behind the AWS
//! test proxy, until every Environment and StackSpec is Ready and every ServiceRelease
//! Healthy; then AWS is read, account by account, for what was created.
//!
//! What the test changes in an example to fit moto's world, and nothing else:
//! - an Environment without `roleArn` runs in the controller's own account, which in moto is
//!   123456789012: its `accountId` (and that number wherever the file uses it) becomes that.
//!   An Environment with `roleArn` keeps its account: the controller assumes the role
//!   through moto's STS, and moto keeps that account's resources apart.
//! - the subnets, security groups, clusters (`create: false`), IAM roles, build buckets with
//!   their zips, the cache's AUTH token Secret and the load balancers (target groups, listener
//!   rule) the examples take as given are created first, in their account and Region, and the
//!   network ids and ARNs replaced by moto's;
//! - Prometheus is the test's own: every example query is first checked to be valid PromQL
//!   there, then replaced by the test exporter's error rate of the release (the examples'
//!   metrics come from the apps themselves); warmup, interval and bakes become seconds.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shipshape::aws::sdk::SdkProvider;
use shipshape::aws::{AwsClients, AwsProvider, BucketReads, Target};
use shipshape::metrics::Metrics;
use support::{health, moto, proxy, root, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(240);
/// The account moto answers for with its default credentials.
const MOTO_ACCOUNT: &str = "123456789012";

/// An Environment of the example as the test set it up in moto.
#[derive(Clone)]
struct Env {
    region: String,
    role: Option<String>,
    /// The access key moto knows this account by (an assumed role's, or the default).
    akid: String,
    cluster: String,
}

/// A raw call to moto as the account behind `akid` (moto tells accounts apart by access key).
async fn moto_call(akid: &str, region: &str, service: &str, headers: &[(&str, &str)], body: String) -> String {
    let auth = format!("AWS4-HMAC-SHA256 Credential={akid}/20260101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=x");
    let mut req = reqwest::Client::new().post(moto()).header("authorization", auth).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{service} in {region}: {status}: {text}");
    text
}

async fn query(akid: &str, region: &str, service: &str, body: &str) -> String {
    moto_call(akid, region, service, &[("content-type", "application/x-www-form-urlencoded")], body.to_string()).await
}

/// The text of the first `<name>` element.
fn xml(text: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = text.find(&open).unwrap_or_else(|| panic!("no <{name}> in {text}")) + open.len();
    let end = text[start..].find(&format!("</{name}>")).unwrap() + start;
    text[start..end].to_string()
}

/// Clients in `env`'s account, through the proxy (an assumed role when it has one).
async fn clients(endpoint: &str, env: &Env) -> AwsClients {
    let p = SdkProvider::with_endpoint(Metrics::new(), 100, endpoint);
    p.clients(&Target { environment: "e2e".into(), region: env.region.clone(), role_arn: env.role.clone() }).await.unwrap()
}

async fn create_role(env: &Env, arn: &str) {
    let name = arn.rsplit('/').next().unwrap();
    // The role's path (`role/shipshape/lambda/name` → `/shipshape/lambda/`): the IAM policy
    // lets shipshape pass only roles under its paths.
    let path = arn.split_once(":role").map(|(_, p)| p.trim_end_matches(name)).unwrap_or("/");
    let body = format!("Action=CreateRole&Version=2010-05-08&RoleName={name}&Path={path}&AssumeRolePolicyDocument=%7B%7D");
    let auth = format!("AWS4-HMAC-SHA256 Credential={}/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=x", env.akid);
    // A role named twice (two releases of one account) is there already: fine.
    let r = reqwest::Client::new()
        .post(moto())
        .header("authorization", auth)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert!(text.contains("<Arn>") || text.contains("EntityAlreadyExists"), "{text}");
}

/// Puts a build's zip where the release's code key says, as a pipeline uploads it.
async fn put_object(env: &Env, bucket: &str, key: &str) {
    let auth = format!("AWS4-HMAC-SHA256 Credential={}/20260101/{}/s3/aws4_request, SignedHeaders=host, Signature=x", env.akid, env.region);
    let r = reqwest::Client::new()
        .put(format!("{}/{bucket}/{key}", moto()))
        .header("authorization", auth)
        .body(format!("zip {key}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

/// A query of an example, its placeholders filled, is valid PromQL on a real Prometheus.
async fn assert_valid_promql(promql: &str, service: &str, ns: &str) {
    let rendered = promql
        .replace("{{service}}", service)
        .replace("{{function}}", service)
        .replace("{{namespace}}", ns)
        .replace("{{sha}}", "3f9c2a1d")
        .replace("{{version}}", "1")
        .replace("{{alias}}", "live");
    let url = format!("{}/api/v1/query", health().prometheus);
    let answer: Value = reqwest::Client::new().get(url).query(&[("query", &rendered)]).send().await.unwrap().json().await.unwrap();
    assert_eq!(answer["status"], "success", "example query `{promql}` is not valid PromQL: {answer}");
}

/// The example's documents, fitted to moto's world (see the top of this file), the
/// Environments by name, and the Secrets the example expects to exist.
async fn prepare(file: &str, endpoint: &str) -> (Vec<Value>, BTreeMap<String, Env>, Vec<(String, String, String)>) {
    let mut text = std::fs::read_to_string(root().join("deploy/examples").join(file)).unwrap();
    let parse = |text: &str| -> Vec<Value> {
        serde_yaml::Deserializer::from_str(text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect()
    };
    for d in parse(&text) {
        if d["kind"] == "Environment" && d["spec"]["roleArn"].is_null() {
            if let Some(account) = d["spec"]["accountId"].as_str() {
                text = text.replace(account, MOTO_ACCOUNT);
            }
        }
    }
    let mut docs = parse(&text);
    // The examples' soaks (10m to 1h) shortened: the test proves the order, not the wait.
    for d in docs.iter_mut().filter(|d| d["kind"] == "ServiceRelease" && d["spec"]["promotion"]["soak"].is_string()) {
        d["spec"]["promotion"]["soak"] = json!("1s");
    }
    let mut envs = BTreeMap::new();
    let mut vpc_n = 0;
    for d in docs.iter_mut().filter(|d| d["kind"] == "Environment") {
        let name = d["metadata"]["name"].as_str().unwrap().to_string();
        let spec = &mut d["spec"];
        let region = spec["region"].as_str().unwrap().to_string();
        let role = spec["roleArn"].as_str().map(String::from);
        let akid = match &role {
            Some(arn) => {
                let body = format!("Action=AssumeRole&Version=2011-06-15&RoleArn={arn}&RoleSessionName=e2e-setup");
                xml(&query("test", &region, "sts", &body).await, "AccessKeyId")
            }
            None => "test".to_string(),
        };
        let env = Env { region: region.clone(), role, akid, cluster: spec["ecsCluster"]["name"].as_str().unwrap().to_string() };
        if spec["network"].is_object() {
            vpc_n += 1;
            let vpc = xml(&query(&env.akid, &region, "ec2", "Action=CreateVpc&Version=2016-11-15&CidrBlock=10.0.0.0/16").await, "vpcId");
            let subnets: Vec<Value> = spec["network"]["subnets"].as_array().unwrap().clone();
            let mut ids = vec![];
            for (i, _) in subnets.iter().enumerate() {
                let az = format!("{region}{}", ['a', 'b', 'c'][i % 3]);
                let body = format!("Action=CreateSubnet&Version=2016-11-15&VpcId={vpc}&CidrBlock=10.0.{i}.0/24&AvailabilityZone={az}");
                ids.push(json!(xml(&query(&env.akid, &region, "ec2", &body).await, "subnetId")));
            }
            let mut groups = vec![];
            for g in spec["network"]["securityGroups"].as_array().unwrap().clone() {
                let body = format!(
                    "Action=CreateSecurityGroup&Version=2016-11-15&GroupName={}-{vpc_n}&GroupDescription=e2e&VpcId={vpc}",
                    g.as_str().unwrap()
                );
                groups.push(json!(xml(&query(&env.akid, &region, "ec2", &body).await, "groupId")));
            }
            spec["network"]["subnets"] = json!(ids);
            spec["network"]["securityGroups"] = json!(groups);
        }
        if spec["ecsCluster"]["create"] != true {
            let headers =
                [("content-type", "application/x-amz-json-1.1"), ("x-amz-target", "AmazonEC2ContainerServiceV20141113.CreateCluster")];
            moto_call(&env.akid, &region, "ecs", &headers, json!({"clusterName": env.cluster}).to_string()).await;
        }
        if spec["health"]["prometheus"]["url"].is_string() {
            spec["health"]["prometheus"]["url"] = json!(health().prometheus);
        }
        if let Some(arn) = spec["functionRoleArn"].as_str() {
            create_role(&env, arn).await;
        }
        envs.insert(name, env);
    }
    // The load balancers the examples name: one per Environment that has releases behind
    // one, created in its account and Region, and its ARNs put in place of the example's.
    let mut balancers: BTreeMap<String, (String, String, String)> = BTreeMap::new();
    let behind: Vec<String> = docs
        .iter()
        .filter(|d| d["kind"] == "ServiceRelease" && d["spec"]["loadBalancer"].is_object())
        .filter_map(|d| d["spec"]["environment"].as_str().map(String::from))
        .collect();
    for name in behind {
        if !balancers.contains_key(&name) {
            let lb = support::load_balancer_in(&envs[&name].akid, &envs[&name].region).await;
            balancers.insert(name.clone(), (lb.production, lb.alternate, lb.rule));
        }
    }
    for d in docs.iter_mut() {
        let env = if d["kind"] == "Environment" { d["metadata"]["name"].as_str() } else { d["spec"]["environment"].as_str() };
        let Some((production, alternate, rule)) = env.and_then(|e| balancers.get(e)).cloned() else { continue };
        let lb = &mut d["spec"]["loadBalancer"];
        for (field, arn) in [("targetGroupArn", production), ("alternateTargetGroupArn", alternate), ("productionListenerRule", rule)] {
            if lb[field].is_string() {
                lb[field] = json!(arn);
            }
        }
    }
    let mut secrets = vec![];
    for d in docs.iter_mut() {
        let ns = d["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        if d["kind"] == "StackSpec" {
            for c in d["spec"]["caches"].as_array().cloned().unwrap_or_default() {
                if let Some(r) = c["authTokenSecretRef"].as_object() {
                    secrets.push((ns.clone(), r["name"].as_str().unwrap().to_string(), r["key"].as_str().unwrap().to_string()));
                }
            }
        }
        if d["kind"] != "ServiceRelease" {
            continue;
        }
        let env = envs[d["spec"]["environment"].as_str().unwrap()].clone();
        let service = d["spec"]["service"].as_str().or(d["metadata"]["name"].as_str()).unwrap().to_string();
        let sha = d["spec"]["image"]["gitSha"].as_str().unwrap().to_string();
        let f = &mut d["spec"]["function"];
        if f.is_object() {
            if let Some(arn) = f["roleArn"].as_str() {
                create_role(&env, arn).await;
            }
            let bucket = f["s3"]["bucket"].as_str().unwrap().to_string();
            let key = f["s3"]["key"].as_str().unwrap().replace("{{sha}}", &sha);
            let aws = clients(endpoint, &env).await;
            if aws.s3.describe_bucket(&bucket, BucketReads::BASIC).await.unwrap().is_none() {
                aws.s3.create_bucket(&bucket, &env.region, &Default::default()).await.unwrap();
            }
            put_object(&env, &bucket, &key).await;
        }
        let rollout = &mut d["spec"]["rollout"];
        if let Some(queries) = rollout["analysis"]["queries"].as_array_mut() {
            for q in queries.iter_mut() {
                assert_valid_promql(q["prometheus"].as_str().unwrap(), &service, &ns).await;
                q["prometheus"] = json!(format!(
                    "sum(rate(http_requests_total{{service=\"{service}\",code=~\"5..\"}}[5s])) / sum(rate(http_requests_total{{service=\"{service}\"}}[5s]))"
                ));
                q["noData"] = json!("Inconclusive");
            }
            rollout["analysis"]["warmup"] = json!("1s");
            rollout["analysis"]["interval"] = json!("1s");
            health().set_error_rate(&service, 0.0);
        }
        for (strategy, field) in [("canary", "bake"), ("linear", "stepBake"), ("blueGreen", "bake")] {
            if rollout["strategy"][strategy].is_object() {
                rollout["strategy"][strategy][field] = json!("2s");
            }
        }
    }
    (docs, envs, secrets)
}

fn yaml(docs: &[&Value]) -> String {
    docs.iter().map(|d| format!("---\n{}\n", serde_json::to_string(d).unwrap())).collect()
}

fn kind_name(d: &Value) -> (String, String, String) {
    let kind = match d["kind"].as_str().unwrap() {
        "Environment" => "environment",
        "StackSpec" => "stackspec",
        "ServiceRelease" => "servicerelease",
        other => other,
    };
    (
        kind.to_string(),
        d["metadata"]["name"].as_str().unwrap().to_string(),
        d["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
    )
}

/// Applies the example and waits until everything is Ready (a ServiceRelease: Healthy),
/// approving each plan a Manual StackSpec waits on, as its team would after reading it.
async fn run(c: &Cluster, file: &str, endpoint: &str) -> (Vec<Value>, BTreeMap<String, Env>) {
    let (docs, envs, secrets) = prepare(file, endpoint).await;
    let namespaces: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Namespace").collect();
    c.apply(&yaml(&namespaces)).success();
    for (ns, name, key) in &secrets {
        c.kubectl(&["create", "secret", "generic", name, "-n", ns, &format!("--from-literal={key}=an-auth-token-of-32-characters!!")])
            .success();
        // As the install would (rbac.secretNamespaces): the controller reads Secrets there.
        c.allow_secrets(ns);
    }
    let rest: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "Namespace").collect();
    c.apply(&yaml(&rest)).success();

    let start = Instant::now();
    let mut approved: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut waiting = vec![];
        for d in &rest {
            let (kind, name, ns) = kind_name(d);
            let mut args = vec![kind.as_str(), name.as_str()];
            if !ns.is_empty() {
                args.extend(["-n", ns.as_str()]);
            }
            let (ready, reason) = c.condition(&args, "Ready");
            let phase = c.jsonpath(&args, "{.status.phase}");
            let done = ready == "True" && (kind != "servicerelease" || phase == "Healthy");
            if reason == "AwaitingApproval" {
                let hash = c.jsonpath(&args, "{.status.plan.hash}");
                if !hash.is_empty() && approved.get(&name) != Some(&hash) {
                    c.kubectl(&["annotate", "--overwrite", &kind, &name, "-n", &ns, &format!("shipshape.dev/approve={hash}")]).success();
                    approved.insert(name.clone(), hash);
                }
            }
            if reason == "WaitingForApproval" {
                // The reviewer approves the SHA the release waits with.
                let sha = c.jsonpath(&args, "{.status.waiting.sha}");
                if !sha.is_empty() && approved.get(&name) != Some(&sha) {
                    c.kubectl(&["annotate", "--overwrite", &kind, &name, "-n", &ns, &format!("shipshape.dev/approve={sha}")]).success();
                    approved.insert(name.clone(), sha);
                }
            }
            if !done {
                let message = c.jsonpath(&args, "{.status.conditions[?(@.type==\"Ready\")].message}");
                waiting.push(format!("{kind} {ns}/{name}: Ready={ready} {reason} {phase}: {message}"));
            }
        }
        if waiting.is_empty() {
            break;
        }
        assert!(start.elapsed() < WAIT, "{file}: not Ready after {WAIT:?}:\n{}", waiting.join("\n"));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (docs, envs)
}

/// What each StackSpec and ServiceRelease declared exists in its Environment's account,
/// with the owner tag of the object that made it, and not in the default account when the
/// Environment is another one (a namesake there belongs to another object).
async fn check_aws(docs: &[Value], envs: &BTreeMap<String, Env>, endpoint: &str) {
    for d in docs {
        let Some(env) = d["spec"]["environment"].as_str().map(|e| envs[e].clone()) else { continue };
        let aws = clients(endpoint, &env).await;
        let home = clients(endpoint, &Env { role: None, akid: "test".into(), ..env.clone() }).await;
        let owner = format!("{}/{}", d["metadata"]["namespace"].as_str().unwrap(), d["metadata"]["name"].as_str().unwrap());
        let owned = |tags: &BTreeMap<String, String>, what: &str| {
            assert_eq!(tags.get("shipshape.dev/owner"), Some(&owner), "{what} carries its owner tag");
        };
        let names = |list: &str| -> Vec<String> {
            d["spec"][list].as_array().map(|a| a.iter().map(|x| x["name"].as_str().unwrap().to_string()).collect()).unwrap_or_default()
        };
        for db in names("databases") {
            let o = aws.rds.describe_db_instance(&db).await.unwrap().unwrap_or_else(|| panic!("database {db}"));
            owned(&o.tags, &db);
            if env.role.is_some() {
                let there = home.rds.describe_db_instance(&db).await.unwrap();
                assert!(there.is_none_or(|o| o.tags.get("shipshape.dev/owner") != Some(&owner)), "{db} is in its own account only");
            }
        }
        for b in names("buckets") {
            let o = aws.s3.describe_bucket(&b, BucketReads::BASIC).await.unwrap().unwrap_or_else(|| panic!("bucket {b}"));
            owned(&o.tags, &b);
        }
        for t in names("tables") {
            let o = aws.dynamodb.describe_table(&t).await.unwrap().unwrap_or_else(|| panic!("table {t}"));
            owned(&o.tags, &t);
            if env.role.is_some() {
                let there = home.dynamodb.describe_table(&t).await.unwrap();
                assert!(there.is_none_or(|o| o.tags.get("shipshape.dev/owner") != Some(&owner)), "{t} is in its own account only");
            }
        }
        for cache in names("caches") {
            let o = aws.elasticache.describe_cache(&cache).await.unwrap().unwrap_or_else(|| panic!("cache {cache}"));
            owned(&o.tags, &cache);
        }
        if d["kind"] == "ServiceRelease" {
            let service = d["spec"]["service"].as_str().or(d["metadata"]["name"].as_str()).unwrap().to_string();
            if d["spec"]["function"].is_object() {
                let f = aws.lambda.get_function(&service).await.unwrap().unwrap_or_else(|| panic!("function {service}"));
                owned(&f.tags, &service);
                let alias = aws.lambda.get_alias(&service, "live").await.unwrap().expect("alias live");
                assert_eq!((alias.version.as_str(), alias.weights.len()), ("1", 0), "{service}: live on version 1");
                let provisioned = aws.lambda.get_provisioned_concurrency(&service, "live").await.unwrap().map(|p| i64::from(p.0));
                assert_eq!(provisioned, d["spec"]["function"]["provisionedConcurrency"].as_i64(), "{service}: provisioned concurrency");
                if env.role.is_some() {
                    // (staging's function of the same name may be there, with its own owner)
                    let there = home.lambda.get_function(&service).await.unwrap();
                    assert!(
                        there.is_none_or(|o| o.tags.get("shipshape.dev/owner") != Some(&owner)),
                        "{service} is in its own account only"
                    );
                }
            } else {
                let found = aws.ecs.describe_services(&env.cluster, std::slice::from_ref(&service)).await.unwrap();
                let (_, svc) = found.iter().find(|(n, _)| *n == service).unwrap_or_else(|| panic!("ECS service {service}"));
                owned(&svc.tags, &service);
                let replicas = d["spec"]["replicas"].as_i64().unwrap_or(1);
                assert_eq!(i64::from(svc.desired_count), replicas, "{service}");
            }
        }
    }
}

/// The existing clusters an example's Environments adopt (`ecsCluster.create` not true):
/// their ARNs, for the adoption policy a platform team attaches meanwhile.
fn adopted_clusters(file: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("deploy/examples").join(file)).unwrap();
    let mut arns = vec![];
    for d in serde_yaml::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(d).unwrap();
        let spec = &v["spec"];
        if v["kind"] != "Environment" || spec["ecsCluster"]["create"] == true {
            continue;
        }
        let account = match (spec["roleArn"].as_str(), spec["accountId"].as_str()) {
            (Some(role), _) => role.split(':').nth(4).unwrap().to_string(),
            _ => MOTO_ACCOUNT.to_string(),
        };
        arns.push(format!(
            "arn:aws:ecs:{}:{account}:cluster/{}",
            spec["region"].as_str().unwrap(),
            spec["ecsCluster"]["name"].as_str().unwrap()
        ));
    }
    arns
}

async fn example(file: &str) {
    let c = Cluster::start().await;
    let p = proxy().await;
    // Environments that use an existing cluster adopt it: shipshape tags it as theirs, which
    // its IAM policy allows only with the adoption policy for those clusters attached.
    let adopted = adopted_clusters(file);
    if !adopted.is_empty() {
        p.attach_policy("adopt-clusters", shipshape::iam::adoption_policy(&adopted));
    }
    let _ctl = Controller::start_at(&c, &p.url(), &[]);
    // The test's own set-up and checks (build buckets, roles, reads in each account) are a
    // team's and an auditor's, not shipshape's: through a proxy that checks nothing (their
    // assumed roles' sessions look like the controller's to the controller's proxy).
    let mine = shipshape_testkit::awsproxy::AwsProxy::start_with("127.0.0.1:0", support::moto(), shipshape_testkit::gate::Gate::off())
        .await
        .unwrap();
    let (docs, envs) = run(&c, file, &mine.url()).await;
    check_aws(&docs, &envs, &mine.url()).await;
    p.assert_no_violations();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_car_rental_api_with_postgres_and_uploads_is_ready() {
    example("car-rental.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_with_mysql_assets_and_redis_is_ready() {
    example("shop-laravel-react.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduling_app_on_ecs_and_lambda_in_two_accounts_is_ready() {
    example("scheduling.yaml").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mobile_back_end_on_lambda_and_dynamodb_in_three_environments_is_ready() {
    example("mobile-backend.yaml").await;
}
