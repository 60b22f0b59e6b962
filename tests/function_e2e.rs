//! End to end for Lambda releases: the real controller binary on the real control plane,
//! Lambda, IAM and S3 = moto behind the AWS test proxy, the analysis on a real Prometheus,
//! driven with kubectl. A release's code is a zip in S3 named by its SHA.

mod support;

use std::time::Duration;

use support::{aws_at, eventually, health, moto, moto_query, proxy, put_alarm, set_alarm, unique, Cluster, Controller};

const WAIT: Duration = Duration::from_secs(60);

/// The error rate; `* ({{revision}} > bool 0)` is 1 once the placeholder is filled (and a
/// parse error, InvalidQuery, if it were not).
const ERROR_RATE: &str = r#"sum(rate(http_requests_total{service="{{function}}",code=~"5.."}[5s])) / sum(rate(http_requests_total{service="{{function}}"}[5s])) * ({{revision}} > bool 0)"#;

struct Setup {
    c: Cluster,
    p: shipshape_testkit::awsproxy::AwsProxy,
    ns: String,
    env: String,
    name: String,
    bucket: String,
    role: String,
}

/// Puts an object into moto's S3 (path-style), as a build pipeline uploads a zip.
async fn put_object(bucket: &str, key: &str, body: &[u8]) {
    let auth = "AWS4-HMAC-SHA256 Credential=test/20260101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=x";
    let r = reqwest::Client::new()
        .put(format!("{}/{bucket}/{key}", moto()))
        .header("authorization", auth)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}

async fn setup() -> Setup {
    let c = Cluster::start().await;
    let p = proxy().await;
    let h = health();
    let (env, ns, name, bucket) = (unique("env"), unique("sched"), unique("bookings"), unique("fn-builds"));
    // The execution role (moto's Lambda checks that it exists; the Environment's default for
    // functions) and the builds bucket.
    let role = unique("lambda-role");
    let created = moto_query(
        "iam",
        &format!("Action=CreateRole&Version=2010-05-08&RoleName={role}&Path=/shipshape/lambda/&AssumeRolePolicyDocument=%7B%7D"),
    )
    .await;
    assert!(created.contains("<Arn>"), "{created}");
    let aws = aws_at(&p.url(), "eu-west-1").await;
    aws.s3.create_bucket(&bucket, "eu-west-1", &Default::default()).await.unwrap();
    for sha in ["aaaa111", "bbbb222", "cccc333", "dddd444"] {
        put_object(&bucket, &format!("builds/{sha}.zip"), format!("zip of {sha}").as_bytes()).await;
    }
    c.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  allowedNamespaces: [{ns}]\n  health: {{prometheus: {{url: \"{}\"}}}}\n  functionRoleArn: arn:aws:iam::123456789012:role/shipshape/lambda/{role}\n  functionCodeLocations: [\"s3://{bucket}/builds/\"]\n",
        h.prometheus
    ))
    .success();
    Setup { c, p, ns, env, name, bucket, role }
}

impl Setup {
    fn release(&self, sha: &str) -> String {
        self.release_baking(sha, "3s")
    }
    fn release_baking(&self, sha: &str, bake: &str) -> String {
        self.release_with(sha, bake, "", "")
    }
    /// A release with `rollout` lines added (indented 4) and `query` fields added to its one
    /// query (indented 10).
    fn release_with(&self, sha: &str, bake: &str, rollout: &str, query: &str) -> String {
        let q = ERROR_RATE.replace('\'', "''");
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{gitSha: {sha}}}\n  function:\n    s3: {{bucket: {bucket}, key: \"builds/{{{{sha}}}}.zip\"}}\n    runtime: nodejs20.x\n    handler: index.handler\n    memory: 512\n    timeoutSeconds: 30\n    reservedConcurrency: 5\n    provisionedConcurrency: 2\n    env: {{STAGE: staging}}\n  driftInterval: 2s\n  rollout:\n    progressDeadline: 2m\n    strategy: {{canary: {{percent: 10, bake: {bake}}}}}\n{rollout}    analysis:\n      warmup: 3s\n      interval: 2s\n      successfulRuns: 2\n      failureLimit: 1\n      queries:\n        - name: error-rate\n          prometheus: '{q}'\n          max: 0.05\n{query}",
            name = self.name,
            ns = self.ns,
            env = self.env,
            bucket = self.bucket,
        )
    }
    fn get(&self, path: &str) -> String {
        self.c.jsonpath(&["release", &self.name, "-n", &self.ns], path)
    }
    /// The alias as a user reads it (`aws lambda get-alias`): its version and its weighted
    /// routing as `version=weight` pairs.
    async fn alias(&self) -> (String, String) {
        let mine = proxy().await;
        let aws = aws_at(&mine.url(), "eu-west-1").await;
        let a = aws.lambda.get_alias(&self.name, "live").await.unwrap().expect("alias live exists");
        let weights: Vec<String> = a.weights.iter().map(|(v, w)| format!("{v}={w}")).collect();
        (a.version, weights.join(","))
    }

    /// Waits until the alias is on `version` with these `weights` (`v=w` pairs).
    async fn alias_at(&self, version: &str, weights: &str) {
        let want = (version.to_string(), weights.to_string());
        eventually(WAIT, &format!("the alias on {version} with weights '{weights}'"), || {
            (futures::executor::block_on(self.alias()) == want).then_some(())
        })
        .await;
    }

    /// Waits for the canary step: the alias on `stable` with 10 % on `canary`, as status says.
    async fn at_canary(&self, stable: &str, canary: &str) {
        let want = (stable.to_string(), format!("{canary}=0.1"));
        eventually(WAIT, "the alias at the 10 % step", || {
            let a = futures::executor::block_on(self.alias());
            (a == want).then_some(())
        })
        .await;
        eventually(WAIT, "status at step 1/2, 10 %", || {
            (self.get("{.status.rollout.stepText} {.status.rollout.weight}") == "1/2 10").then_some(())
        })
        .await;
        let table = self.c.kubectl(&["get", "release", &self.name, "-n", &self.ns]).stdout;
        assert!(table.contains("WEIGHT") && table.contains("STEP"), "{table}");
        let kc = self.c.kubeconfig.clone();
        let ns = self.ns.clone();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
            .args(["status", "-n", &ns])
            .env("KUBECONFIG", &kc)
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert!(out.contains("TRAFFIC") && out.contains("10% (step 1/2)"), "{out}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_canary_takes_10_percent_then_the_alias_and_a_breaching_one_is_rolled_back_in_one_call() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let h = health();
    h.set_error_rate(&s.name, 0.0);

    s.c.apply(&s.release("aaaa111")).success();
    eventually(WAIT, "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    assert_eq!(s.alias().await, ("1".to_string(), String::new()), "a first version takes all the traffic at once");
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    let f = aws.lambda.get_function(&s.name).await.unwrap().expect("function exists");
    assert_eq!(f.tags.get("shipshape.dev/owner"), Some(&format!("{}/{}", s.ns, s.name)));
    assert_eq!(f.reserved_concurrency, Some(5), "reservedConcurrency is set on the function");
    eventually(WAIT, "provisioned concurrency on the alias", || {
        let pc = futures::executor::block_on(aws.lambda.get_provisioned_concurrency(&s.name, "live")).ok()??;
        (pc.0 == 2).then_some(())
    })
    .await;

    // v2: 10 % of the invocations for the bake while the analysis passes, then all of them
    // (a bake long enough for the test to read the step everywhere).
    s.c.apply(&s.release_baking("bbbb222", "10s")).success();
    s.at_canary("1", "2").await;
    eventually(WAIT, "v2 stable", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    assert_eq!(s.alias().await, ("2".to_string(), String::new()));
    let stable = s.get("{.status.stableFunctionVersionArn}");
    assert!(stable.ends_with(&format!("function:{}:2", s.name)), "{stable}");
    assert_eq!(s.get("{.status.stableTaskDefinitionArn}"), "", "a Lambda version is not stored under ECS's name");

    // v3 serves 20% errors at its 10 % step: rolled back, the alias on version 2 again with
    // no weights (its 10 % lasts two failing rounds: the UpdateAlias count below shows it).
    h.set_error_rate(&s.name, 0.2);
    s.c.apply(&s.release("cccc333")).success();
    eventually(WAIT, "v3 RolledBack", || (s.get("{.status.phase}") == "RolledBack").then_some(())).await;
    assert_eq!(s.alias().await, ("2".to_string(), String::new()));
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack Promoted Promoted");
    let reason = s.get("{.status.history[0].reason}");
    assert!(reason.contains("error-rate") && reason.contains("above max 0.05"), "{reason}");
    assert!(
        s.c.kubectl(&["get", "events", "-n", &s.ns, "-o", "jsonpath={.items[*].reason}"]).stdout.contains("StepPassed"),
        "v2's canary step passed with an Event"
    );
    assert_eq!(s.p.count("UpdateAlias"), 4, "v2: 10 % then all; v3: 10 % then the rollback, one call");

    // The rolled-back SHA is not retried on its own.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(s.p.count("UpdateAlias"), 4);
    assert_eq!(s.get("{.status.phase}"), "RolledBack");
    // One version per content: three published, none twice.
    assert_eq!(s.p.count("PublishVersion"), 3);

    // Someone points the alias elsewhere: put back at the stable version.
    aws.lambda.set_alias(&s.name, "live", "3", false).await.unwrap();
    h.set_error_rate(&s.name, 0.0);
    eventually(WAIT, "alias put back", || {
        let a = futures::executor::block_on(aws.lambda.get_alias(&s.name, "live")).ok()??;
        (a.version == "2").then_some(())
    })
    .await;

    // v4 would bake for an hour at 10 %: `shipshape promote` skips the rest.
    s.c.apply(&s.release_baking("dddd444", "1h")).success();
    s.at_canary("2", "4").await;
    let kc = s.c.kubeconfig.clone();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
        .args(["promote", &s.name, "-n", &s.ns])
        .env("KUBECONFIG", &kc)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eventually(WAIT, "v4 promoted by hand", || (s.get("{.status.stableSha}") == "dddd444").then_some(())).await;
    assert_eq!(s.alias().await, ("4".to_string(), String::new()), "all the traffic on v4 at once");
    assert_eq!(s.get("{.status.history[0].reason}"), "promoted by hand");
}

/// The proxy's model of provisioned concurrency (moto answers 404), against the Lambda API
/// Reference quoted in testkit/src/lambda.rs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_provisioned_concurrency_model_follows_the_api_reference() {
    let s = setup().await;
    let aws = aws_at(&s.p.url(), "eu-west-1").await;
    let name = &s.name;
    let role = format!("arn:aws:iam::123456789012:role/shipshape/lambda/{}", s.role);
    let config = shipshape::aws::FunctionConfig {
        name: name.clone(),
        s3: Some((s.bucket.clone(), "builds/aaaa111.zip".into())),
        image: None,
        runtime: Some("nodejs20.x".into()),
        handler: Some("index.handler".into()),
        memory: 128,
        timeout_seconds: 3,
        architecture: "x86_64".into(),
        env: Default::default(),
        role_arn: role,
    };
    aws.lambda.create_function(&config, "shipshape model", &Default::default()).await.unwrap();
    let v = aws.lambda.publish_version(name, "shipshape model").await.unwrap();
    aws.lambda.set_alias(name, "live", v.rsplit(':').next().unwrap(), true).await.unwrap();

    // "You can't allocate provisioned concurrency on the $LATEST version."
    let e = aws.lambda.set_provisioned_concurrency(name, "$LATEST", Some(1)).await.expect_err("$LATEST has none");
    assert!(e.to_string().contains("InvalidParameterValue"), "{e}");
    // A qualifier that does not exist: ResourceNotFoundException.
    let e = aws.lambda.set_provisioned_concurrency(name, "no-such-alias", Some(1)).await.expect_err("no such alias");
    assert!(matches!(e, shipshape::aws::AwsError::NotFound { .. }), "{e}");
    // None configured: ProvisionedConcurrencyConfigNotFoundException, read as none.
    assert_eq!(aws.lambda.get_provisioned_concurrency(name, "live").await.unwrap(), None);
    // 202 IN_PROGRESS, then READY with the requested count allocated.
    aws.lambda.set_provisioned_concurrency(name, "live", Some(3)).await.unwrap();
    assert_eq!(aws.lambda.get_provisioned_concurrency(name, "live").await.unwrap(), Some((3, "IN_PROGRESS".into())));
    tokio::time::sleep(shipshape_testkit::lambda::ALLOCATION).await;
    assert_eq!(aws.lambda.get_provisioned_concurrency(name, "live").await.unwrap(), Some((3, "READY".into())));
    // Deleted: none again.
    aws.lambda.set_provisioned_concurrency(name, "live", None).await.unwrap();
    assert_eq!(aws.lambda.get_provisioned_concurrency(name, "live").await.unwrap(), None);
    assert_eq!(s.p.count("PutProvisionedConcurrencyConfig"), 3);
}

/// A dry-run query is measured and shown but never decides; `onFailure: Pause` holds a
/// failing canary at its step (no rollback, no deadline) until `shipshape promote`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_query_never_decides_and_on_failure_pause_holds_the_canary_until_promoted() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let h = health();
    h.set_error_rate(&s.name, 0.2);
    let promote = |s: &Setup| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shipshape"))
            .args(["promote", &s.name, "-n", &s.ns])
            .env("KUBECONFIG", &s.c.kubeconfig)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };

    // 20 % errors, but the only query is a dry run: promoted, the failure shown.
    s.c.apply(&s.release_with("aaaa111", "1s", "", "          dryRun: true\n")).success();
    eventually(WAIT, "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    let shown = s.get("{.status.lastMeasurement.verdict}");
    assert_eq!(shown, "Fail (dry run)", "measured and shown");

    // The query decides now, and a failure pauses: held at 10 %.
    s.c.apply(&s.release_with("bbbb222", "1s", "    onFailure: Pause\n", "")).success();
    s.at_canary("1", "2").await;
    eventually(WAIT, "held after the failed analysis", || {
        (s.get("{.status.phase}") == "Paused" && s.c.condition(&["release", &s.name, "-n", &s.ns], "Stalled").1 == "AnalysisFailed")
            .then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(s.get("{.status.phase}"), "Paused", "still held");
    assert_eq!(s.alias().await, ("1".to_string(), "2=0.1".to_string()), "the canary keeps its share");
    assert_eq!(s.p.count("UpdateAlias"), 1, "no rollback");

    promote(&s);
    eventually(WAIT, "v2 promoted by hand", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    assert_eq!(s.alias().await, ("2".to_string(), String::new()));
}

/// A real Prometheus behind TLS (a test CA) and basic auth (`--web.config.file`), scraping
/// the test exporter. Returns its https URL and the CA certificate (PEM).
struct SecurePrometheus {
    url: String,
    ca: String,
    _child: std::process::Child,
}

/// bcrypt of "pr0m-test-pass" (cost 10), as Prometheus's web config wants it.
const PROM_PASSWORD_HASH: &str = "$2b$10$y0iyNYRt..u/Y/M9XXdNA.kr6RBfXvNcucZtvoMIjhSNoiFpU8HaS";
const PROM_PASSWORD: &str = "pr0m-test-pass";

impl SecurePrometheus {
    async fn start() -> SecurePrometheus {
        let dir = tempfile::tempdir().unwrap().keep();
        let sh = |script: &str| {
            let out = std::process::Command::new("sh").arg("-c").arg(script).current_dir(&dir).output().unwrap();
            assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=shipshape-test-ca 2>/dev/null");
        sh("openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null");
        sh("printf 'subjectAltName=IP:127.0.0.1' > ext && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 1 -extfile ext 2>/dev/null");
        std::fs::write(
            dir.join("web.yml"),
            format!("tls_server_config: {{cert_file: server.crt, key_file: server.key}}\nbasic_auth_users:\n  shipshape: '{PROM_PASSWORD_HASH}'\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: app\n    static_configs: [{{targets: ['{}']}}]\n",
                health().exporter
            ),
        )
        .unwrap();
        let port = support::free_port();
        let child = std::process::Command::new("prometheus")
            .current_dir(&dir)
            .args(["--config.file=prometheus.yml", "--web.config.file=web.yml", "--storage.tsdb.path=data"])
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .expect("prometheus starts");
        let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        let url = format!("https://127.0.0.1:{port}");
        let client =
            reqwest::Client::builder().add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap()).build().unwrap();
        let start = std::time::Instant::now();
        loop {
            let r = client.get(format!("{url}/-/ready")).basic_auth("shipshape", Some(PROM_PASSWORD)).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "prometheus with TLS did not start");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        SecurePrometheus { url, ca, _child: child }
    }
}

impl Drop for SecurePrometheus {
    fn drop(&mut self) {
        let _ = self._child.kill();
    }
}

/// Prometheus behind basic auth and TLS with a private CA: a release is judged through it
/// (credentials and CA from Secrets); with a wrong password the analysis is unavailable
/// with the 401 named, and nothing is rolled back or promoted for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_behind_basic_auth_and_tls_judges_and_a_wrong_password_is_unavailable_not_a_rollback() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let prom = SecurePrometheus::start().await;
    health().set_error_rate(&s.name, 0.0);
    let ca = prom.ca.replace('\n', "\n    ");
    let role = format!("arn:aws:iam::123456789012:role/shipshape/lambda/{}", s.role);
    // The Prometheus credentials live in the team's namespace: it lets the controller read
    // Secrets there.
    s.c.allow_secrets(&s.ns);
    // Two Environments on the same Prometheus: the right password, and a wrong one.
    let (good, bad) = (unique("env-auth"), unique("env-wrong"));
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: prom-ca, namespace: {ns}}}\nstringData:\n  ca.crt: |\n    {ca}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: prom-auth, namespace: {ns}}}\nstringData: {{username: shipshape, password: {PROM_PASSWORD}}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: prom-wrong, namespace: {ns}}}\nstringData: {{username: shipshape, password: not-the-password}}\n",
        ns = s.ns
    );
    for (env, secret) in [(&good, "prom-auth"), (&bad, "prom-wrong")] {
        yaml += &format!(
            "---\napiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  allowedNamespaces: [{ns}]\n  functionRoleArn: {role}\n  functionCodeLocations: [\"s3://{bucket}/\"]\n  health:\n    prometheus:\n      url: \"{url}\"\n      authSecretRef: {{name: {secret}, namespace: {ns}}}\n      caSecretRef: {{name: prom-ca, namespace: {ns}}}\n",
            ns = s.ns,
            url = prom.url,
            bucket = s.bucket
        );
    }
    s.c.apply(&yaml).success();
    let good_release = s.release("aaaa111").replace(&format!("environment: {}", s.env), &format!("environment: {good}"));
    s.c.apply(&good_release).success();
    eventually(WAIT, "judged through TLS and basic auth, Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    let verdict = s.get("{.status.lastMeasurement.verdict}");
    assert_eq!(verdict, "Pass", "a real measurement, not a pass by default");

    let other = unique("bookings-wrong");
    let bad_release = s
        .release("aaaa111")
        .replace(&format!("environment: {}", s.env), &format!("environment: {bad}"))
        .replace(&format!("name: {}", s.name), &format!("name: {other}"));
    s.c.apply(&bad_release).success();
    let cond = |t: &str| s.c.condition(&["release", &other, "-n", &s.ns], t);
    eventually(WAIT, "AnalysisUnavailable naming the 401", || {
        let (st, reason) = cond("Stalled");
        let message = s.c.jsonpath(&["release", &other, "-n", &s.ns], "{.status.conditions[?(@.type==\"Stalled\")].message}");
        (st == "True" && reason == "AnalysisUnavailable" && message.contains("401")).then_some(())
    })
    .await;
    let phase = s.c.jsonpath(&["release", &other, "-n", &s.ns], "{.status.phase}");
    assert_eq!(phase, "Analyzing", "held: neither promoted nor rolled back for a backend that refuses");
    // The credentials appear nowhere in the object or its Events.
    let everything = s.c.kubectl(&["get", "release,environment,events", "-A", "-o", "yaml"]).stdout;
    assert!(!everything.contains(PROM_PASSWORD) && !everything.contains("not-the-password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_migration_invokes_the_new_version_before_the_alias_moves_and_a_function_error_stops_it() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let h = health();
    h.set_error_rate(&s.name, 0.0);
    let step = |sha: &str| format!("    preDeploy:\n      - {{name: migrate, payload: '{{\"migrate\": \"{sha}\"}}'}}\n");
    s.c.apply(&s.release_with("aaaa111", "1s", &step("aaaa111"), "")).success();
    eventually(WAIT, "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    let calls: Vec<_> = s.p.calls().into_iter().map(|c| c.operation).collect();
    let invoke = calls.iter().position(|o| o == "Invoke").expect("the migration was invoked");
    let alias = calls.iter().position(|o| o == "CreateAlias").expect("alias created");
    assert!(invoke < alias, "the migration before the alias: {calls:?}");
    let ran: Vec<_> = shipshape_testkit::lambda::invocations().into_iter().filter(|(f, _, _)| *f == s.name).collect();
    assert_eq!(ran, [(s.name.clone(), "1".to_string(), r#"{"migrate": "aaaa111"}"#.to_string())], "the new version, once");
    assert_eq!(s.get("{.status.history[0].preDeploy[0].phase}"), "Succeeded");
    assert!(!s.get("{.status.history[0].preDeploy[0].requestId}").is_empty());

    shipshape_testkit::lambda::script_invoke(
        r#"{"migrate": "bbbb222"}"#,
        shipshape_testkit::lambda::InvokeScript {
            function_error: Some("Unhandled".into()),
            body: Some(r#"{"errorMessage":"relation \"bookings\" already exists","errorType":"error"}"#.into()),
            lines: vec!["ERROR Invoke Error: relation \"bookings\" already exists".into()],
        },
    );
    s.c.apply(&s.release_with("bbbb222", "1s", &step("bbbb222"), "")).success();
    eventually(WAIT, "v2 Failed", || (s.get("{.status.phase}") == "Failed").then_some(())).await;
    let (stalled, reason) = s.c.condition(&["release", &s.name, "-n", &s.ns], "Stalled");
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "PreDeployFailed"));
    let message = s.get("{.status.conditions[?(@.type==\"Stalled\")].message}");
    assert!(message.contains("function error Unhandled") && message.contains("already exists"), "{message}");
    assert_eq!(s.alias().await, ("1".to_string(), String::new()), "the alias never moved");
}

/// The SDK's RPCv2-CBOR DescribeAlarms reaches moto's real alarms through the proxy's
/// translation (testkit/src/cloudwatch.rs): states as SetAlarmState left them, a missing
/// alarm left out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_alarms_reach_moto_through_the_rpcv2_translation() {
    let p = proxy().await;
    let aws = aws_at(&p.url(), "eu-west-1").await;
    let (a, b) = (unique("api-5xx"), unique("api-p99"));
    put_alarm(&a, "ALARM").await;
    put_alarm(&b, "OK").await;
    let mut states = aws.cloudwatch.alarm_states(&[a.clone(), b.clone(), "no-such-alarm".into()]).await.unwrap();
    states.sort();
    let mut want = vec![(a.clone(), "ALARM".to_string()), (b.clone(), "OK".to_string())];
    want.sort();
    assert_eq!(states, want);
    assert_eq!(p.count("DescribeAlarms"), 1, "one call for all the names");
}

/// A Lambda canary judged only by a CloudWatch alarm: promoted while the alarm is OK,
/// rolled back (alias on the stable version, no weights) when it goes to ALARM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_gated_only_by_a_cloudwatch_alarm_is_rolled_back_when_it_fires() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let alarm = unique("bookings-errors");
    put_alarm(&alarm, "OK").await;
    // v2 bakes an hour: the alarm, fired once the test has seen the canary, decides.
    let release = |sha: &str| {
        let bake = if sha == "aaaa111" { "3s" } else { "1h" };
        format!(
            "apiVersion: shipshape.dev/v1alpha1\nkind: ServiceRelease\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  environment: {env}\n  image: {{gitSha: {sha}}}\n  function:\n    s3: {{bucket: {bucket}, key: \"builds/{{{{sha}}}}.zip\"}}\n    runtime: nodejs20.x\n    handler: index.handler\n  driftInterval: 2s\n  deletionPolicy: Delete\n  rollout:\n    strategy: {{canary: {{percent: 10, bake: {bake}}}}}\n    analysis:\n      warmup: 1s\n      interval: 1s\n      successfulRuns: 2\n      failureLimit: 0\n      cloudwatchAlarms: [{alarm}]\n",
            name = s.name,
            ns = s.ns,
            env = s.env,
            bucket = s.bucket
        )
    };
    s.c.apply(&release("aaaa111")).success();
    eventually(WAIT, "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    assert_eq!(s.get("{.status.lastMeasurement.query}"), format!("alarm:{alarm}"), "judged on the alarm");

    s.c.apply(&release("bbbb222")).success();
    s.at_canary("1", "2").await;
    set_alarm(&alarm, "ALARM").await;
    eventually(WAIT, "v2 RolledBack", || (s.get("{.status.phase}") == "RolledBack").then_some(())).await;
    assert_eq!(s.alias().await, ("1".to_string(), String::new()));
    let reason = s.get("{.status.history[0].reason}");
    assert!(reason.contains(&format!("CloudWatch alarm {alarm} is in ALARM")), "{reason}");

    // deletionPolicy Delete: the function goes with its ServiceRelease.
    s.c.kubectl(&["delete", "release", &s.name, "-n", &s.ns, "--timeout=40s"]).success();
    let mine = proxy().await;
    let aws = aws_at(&mine.url(), "eu-west-1").await;
    assert!(aws.lambda.get_function(&s.name).await.unwrap().is_none(), "the function is deleted");
    assert_eq!(s.p.count("DeleteFunction"), 1);
}

/// Linear 25 % steps: the alias moves 25 → 50 % while the analysis passes, and a breach at
/// step 2 of 4 puts it back on the stable version with no weights; blue/green moves all at
/// once and is rolled back during its bake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linear_release_rolls_back_at_step_2_of_4_and_a_blue_green_one_during_its_bake() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let h = health();
    h.set_error_rate(&s.name, 0.0);
    let with = |sha: &str, strategy: &str| s.release(sha).replace("strategy: {canary: {percent: 10, bake: 3s}}", strategy);
    // Each step bakes long enough for the test to see step 2 and breach in it.
    let linear = "strategy: {linear: {stepPercent: 25, stepBake: 10s}}";
    s.c.apply(&with("aaaa111", linear)).success();
    eventually(WAIT, "v1 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;

    s.c.apply(&with("bbbb222", linear)).success();
    s.alias_at("1", "2=0.25").await;
    s.alias_at("1", "2=0.5").await;
    eventually(WAIT, "status at step 2/4", || (s.get("{.status.rollout.stepText} {.status.rollout.weight}") == "2/4 50").then_some(()))
        .await;
    h.set_error_rate(&s.name, 0.3);
    eventually(WAIT, "v2 RolledBack", || (s.get("{.status.phase}") == "RolledBack").then_some(())).await;
    assert_eq!(s.alias().await, ("1".to_string(), String::new()), "back on the stable version, no weights");
    let events = s.c.kubectl(&["get", "events", "-n", &s.ns, "-o", "jsonpath={.items[*].message}"]).stdout;
    assert!(events.contains("passed step 1/4 at 25% of the traffic; step 2/4: 50%"), "{events}");
    assert!(!events.contains("passed step 2/4"), "rolled back at step 2: {events}");
    assert_eq!(s.get("{.status.history[0].steps[*].weight}"), "25 50", "history records each step");
    assert_eq!(s.get("{.status.history[0].steps[*].result}"), "Passed RolledBack");

    // Blue/green: all at once, the stable version kept to go back to during the bake.
    h.set_error_rate(&s.name, 0.0);
    let blue_green = "strategy: {blueGreen: {bake: 1h}}";
    s.c.apply(&with("cccc333", blue_green)).success();
    s.alias_at("3", "").await;
    eventually(WAIT, "baking", || (s.get("{.status.phase}") == "Analyzing").then_some(())).await;
    h.set_error_rate(&s.name, 0.3);
    eventually(WAIT, "v3 RolledBack during its bake", || (s.get("{.status.phase}") == "RolledBack").then_some(())).await;
    assert_eq!(s.alias().await, ("1".to_string(), String::new()));
    assert_eq!(s.get("{.status.history[*].outcome}"), "RolledBack RolledBack Promoted");
}

/// An Amazon Managed Prometheus stand-in: answers a query only when its SigV4 signature
/// (service `aps`, eu-west-1) checks out with the key the controller runs with (the test
/// harness's `shipshape`/`test`), re-derived from what it received; counts the ones it
/// accepted.
async fn sigv4_prometheus() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::{HeaderMap, Uri};
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, uri: Uri| {
        let count = count.clone();
        async move {
            let header = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let time = chrono::NaiveDateTime::parse_from_str(&header("x-amz-date"), "%Y%m%dT%H%M%SZ")
                .map(|t| std::time::SystemTime::from(t.and_utc()))
                .unwrap_or(std::time::UNIX_EPOCH);
            let url = format!("http://{}{}", header("host"), uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"));
            let token = Some(header("x-amz-security-token")).filter(|t| !t.is_empty());
            let creds = aws_credential_types::Credentials::new("shipshape", "test", token, None, "verifier");
            let want = shipshape::health::prometheus::sigv4_headers(&url, "eu-west-1", creds, time)
                .unwrap_or_default()
                .into_iter()
                .find(|(k, _)| k == "authorization")
                .map(|(_, v)| v);
            if want.is_some_and(|w| w == header("authorization")) {
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                (axum::http::StatusCode::OK, r#"{"status":"success","data":{"resultType":"scalar","result":[1,"0"]}}"#)
            } else {
                (axum::http::StatusCode::FORBIDDEN, r#"{"message":"signature mismatch"}"#)
            }
        }
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (format!("http://{addr}"), accepted)
}

/// `health.prometheus.sigv4`: the controller signs every query with its own AWS credentials
/// for the Environment, and a release is judged through the signing endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_with_sigv4_signs_its_queries_with_the_controllers_credentials() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    let (url, accepted) = sigv4_prometheus().await;
    let env = unique("env-amp");
    let role = format!("arn:aws:iam::123456789012:role/shipshape/lambda/{}", s.role);
    s.c.apply(&format!(
        "apiVersion: shipshape.dev/v1alpha1\nkind: Environment\nmetadata: {{name: {env}}}\nspec:\n  region: eu-west-1\n  ecsCluster: {{name: {env}, create: true}}\n  allowedNamespaces: [{ns}]\n  functionRoleArn: {role}\n  functionCodeLocations: [\"s3://{bucket}/\"]\n  health:\n    prometheus:\n      url: \"{url}\"\n      sigv4: {{}}\n",
        ns = s.ns,
        bucket = s.bucket
    ))
    .success();
    s.c.apply(&s.release("aaaa111").replace(&format!("environment: {}", s.env), &format!("environment: {env}"))).success();
    eventually(WAIT, "judged through the signing endpoint, Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;
    assert_eq!(s.get("{.status.lastMeasurement.verdict}"), "Pass");
    assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) >= 2, "every round signed and accepted");
}

/// A Lambda SHA waiting for its approval is not even uploaded: no CreateFunction for a first
/// one, no UpdateFunctionCode or PublishVersion for the next, so `$LATEST` (what unqualified
/// callers and event sources run) stays the stable code until the SHA may start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_sha_waiting_for_its_approval_is_not_uploaded_until_approved() {
    let s = setup().await;
    let _ctl = Controller::start_at(&s.c, &s.p.url(), &[]);
    health().set_error_rate(&s.name, 0.0);
    let manual =
        |sha: &str| s.release_baking(sha, "1s").replace("  driftInterval: 2s\n", "  driftInterval: 2s\n  promotion: {approval: Manual}\n");
    let approve = |sha: &str| {
        s.c.kubectl(&["annotate", "--overwrite", "release", &s.name, "-n", &s.ns, &format!("shipshape.dev/approve={sha}")]).success();
    };
    s.c.apply(&manual("aaaa111")).success();
    eventually(WAIT, "waiting for approval", || (s.get("{.status.waiting.reason}") == "WaitingForApproval").then_some(())).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(s.p.count("CreateFunction"), 0, "no function for a SHA not yet approved");
    approve("aaaa111");
    eventually(WAIT, "aaaa111 Healthy", || (s.get("{.status.phase}") == "Healthy").then_some(())).await;

    let (updates, publishes) = (s.p.count("UpdateFunctionCode"), s.p.count("PublishVersion"));
    s.c.apply(&manual("bbbb222")).success();
    eventually(WAIT, "bbbb222 waiting for approval", || {
        (s.get("{.status.waiting.sha}") == "bbbb222" && s.get("{.status.waiting.reason}") == "WaitingForApproval").then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!((s.p.count("UpdateFunctionCode"), s.p.count("PublishVersion")), (updates, publishes), "$LATEST untouched while it waits");
    assert_eq!(s.alias().await.0, "1");
    approve("bbbb222");
    eventually(WAIT, "bbbb222 stable", || (s.get("{.status.stableSha}") == "bbbb222").then_some(())).await;
    assert!(s.p.count("UpdateFunctionCode") > updates);
}
