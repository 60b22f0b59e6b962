//! Analysis beyond queries: HTTP checks the controller makes (`analysis.http`) and smoke
//! tests run as ECS tasks of the new revision (`analysis.jobs`). Their verdicts count like
//! a query's; what passes is judged in `core::checks`.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::ResourceExt;

use crate::api::{AnalysisJob, GoDuration, HttpCheck, HttpMethod, RolloutStatus, ServiceRelease};
use crate::aws::{AwsClients, TaskRequest};
use crate::controller::Context;
use crate::core::analysis::Verdict;
use crate::core::checks::{self, BODY_LIMIT};
use crate::core::rollout;

/// Where an ECS release's smoke tests run: tasks of the revision being judged, on the
/// Environment's network, tagged as the release's.
#[derive(Clone, Debug)]
pub(crate) struct JobTarget {
    /// Cluster.
    pub(crate) cluster: String,
    /// The task definition being judged.
    pub(crate) task_definition: String,
    /// The container (and task definition family).
    pub(crate) container: String,
    /// awsvpc subnets.
    pub(crate) subnets: Vec<String>,
    /// Security groups.
    pub(crate) security_groups: Vec<String>,
    /// Public IP.
    pub(crate) assign_public_ip: bool,
    /// Ownership tags.
    pub(crate) tags: BTreeMap<String, String>,
    /// The task definition's CloudWatch Logs group.
    pub(crate) log_group: Option<String>,
}

/// One HTTP check at `url` (placeholders filled): its verdict and the status code.
pub(crate) async fn http(ctx: &Context, r: &ServiceRelease, check: &HttpCheck, url: &str) -> (Verdict, Option<f64>) {
    if let Some(why) = checks::url_refused(url) {
        return (Verdict::Invalid(format!("http check {}: {why}", check.name)), None);
    }
    let timeout = GoDuration::get_or(check.timeout.as_ref(), "timeout", crate::api::bounds::HTTP_CHECK_TIMEOUT, Duration::from_secs(10))
        .unwrap_or(Duration::from_secs(10));
    let headers = match &check.headers_secret_ref {
        Some(s) => match secret_headers(ctx, &r.namespace().unwrap_or_default(), &s.name).await {
            Ok(h) => h,
            Err(e) => return (Verdict::Invalid(format!("http check {}: {e}", check.name)), None),
        },
        None => vec![],
    };
    // No redirects (a check judges the answer of the URL it names), and no name that
    // resolves to instance metadata.
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(NoMetadata))
        .build()
    {
        Ok(c) => c,
        Err(e) => return (Verdict::Unavailable(format!("http check {}: {e}", check.name)), None),
    };
    let method = match check.method {
        HttpMethod::Get => reqwest::Method::GET,
        HttpMethod::Head => reqwest::Method::HEAD,
        HttpMethod::Post => reqwest::Method::POST,
    };
    let mut req = client.request(method, url);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let answer = match req.send().await {
        Ok(mut resp) => {
            let status = resp.status().as_u16();
            let mut body = vec![];
            let mut read = Ok(());
            while body.len() < BODY_LIMIT {
                match resp.chunk().await {
                    Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(BODY_LIMIT - body.len())]),
                    Ok(None) => break,
                    Err(e) => {
                        read = Err(format!("reading the body: {e}"));
                        break;
                    }
                }
            }
            read.map(|()| (status, body))
        }
        Err(e) if e.is_timeout() => Err(format!("no answer within {}s", timeout.as_secs())),
        Err(e) => Err(format!("{e}")),
    };
    let status = answer.as_ref().ok().map(|(s, _)| f64::from(*s));
    (checks::judge_http(check, answer.as_ref().map(|(s, b)| (*s, b.as_slice())).map_err(Clone::clone)), status)
}

/// The label a Secret needs before its keys are sent as a check's headers: whoever may create
/// a ServiceRelease may not thereby send any Secret of the namespace to a URL of their choice.
pub const HEADERS_LABEL: &str = "shipshape.dev/http-headers";

/// Resolves names as the system does, refusing any that leads to instance metadata.
pub(crate) struct NoMetadata;

impl reqwest::dns::Resolve for NoMetadata {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.iter().any(|a| checks::metadata_address(&a.ip())) {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves to a link-local address (instance metadata): refused").into();
                return Err(e);
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// The headers a check sends: every key of a Secret in the release's namespace labelled
/// [`HEADERS_LABEL`]`: "true"`.
async fn secret_headers(ctx: &Context, ns: &str, name: &str) -> Result<Vec<(String, String)>, String> {
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(ctx.client.clone(), ns);
    let secret = api.get(name).await.map_err(|e| crate::controller::secret_error(ns, name, e))?;
    if secret.metadata.labels.as_ref().and_then(|l| l.get(HEADERS_LABEL)).map(String::as_str) != Some("true") {
        return Err(format!("Secret {ns}/{name} is not labelled {HEADERS_LABEL}: \"true\" (only such Secrets are sent as headers)"));
    }
    Ok(secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned())).collect())
}

/// A smoke test's verdict this round: its task for this round of the rollout is found (by
/// `startedBy`) or started; while it runs the round is inconclusive; past its timeout it is
/// stopped and fails. The next round (after a verdict) starts a new task.
pub(crate) async fn job(
    ctx: &Context,
    r: &ServiceRelease,
    aws: &AwsClients,
    rollout: &RolloutStatus,
    t: &JobTarget,
    job: &AnalysisJob,
) -> (Verdict, Option<f64>) {
    let name = &job.name;
    let timeout = GoDuration::get_or(job.timeout.as_ref(), "timeout", crate::api::bounds::PRE_DEPLOY_TIMEOUT, Duration::from_secs(600))
        .unwrap_or(Duration::from_secs(600));
    let (started_by, client_token) = job_tokens(r, rollout, name);
    let found = match aws.ecs.find_task(&t.cluster, None, &started_by).await {
        Ok(f) => f,
        Err(e) => return (Verdict::Unavailable(format!("job {name}: ECS: {e}")), None),
    };
    let Some(mut task) = found else {
        if ctx.may_act().is_err() {
            return (Verdict::Inconclusive(format!("job {name}: not started (this replica does not lead)")), None);
        }
        let req = TaskRequest {
            cluster: t.cluster.clone(),
            task_definition: t.task_definition.clone(),
            container: t.container.clone(),
            command: job.command.clone(),
            started_by,
            client_token,
            subnets: t.subnets.clone(),
            security_groups: t.security_groups.clone(),
            assign_public_ip: t.assign_public_ip,
            tags: t.tags.clone(),
        };
        return match aws.ecs.run_task(&req).await {
            Ok(arn) => (Verdict::Inconclusive(format!("job {name} started: task {arn}")), None),
            // Not the new version's fault: the round holds, as for a metrics backend that
            // cannot answer.
            Err(e) => (Verdict::Unavailable(format!("job {name}: RunTask: {e}")), None),
        };
    };
    if task.last_status != "STOPPED" {
        let over = task.created_at.and_then(|c| chrono::Duration::from_std(timeout).ok().and_then(|d| c.checked_add_signed(d)));
        if over.is_some_and(|t| chrono::Utc::now() >= t) && ctx.may_act().is_ok() {
            let why = format!("shipshape: job {name} timed out after {}s", timeout.as_secs());
            if let Err(e) = aws.ecs.stop_task(&t.cluster, &task.arn, &why).await {
                return (Verdict::Unavailable(format!("job {name}: StopTask: {e}")), None);
            }
            return (Verdict::Inconclusive(format!("job {name} timed out; stopping it")), None);
        }
        return (checks::judge_job(name, &task), None);
    }
    if let Some(group) = &t.log_group {
        let id = task.arn.rsplit('/').next().unwrap_or_default().to_string();
        let stream = format!("{}/{}/{id}", t.container, t.container);
        task.log_tail = aws.logs.tail(group, &stream, rollout::LOG_LINES).await.unwrap_or_default();
        for line in task.log_tail.iter_mut() {
            *line = line.chars().take(rollout::LOG_LINE_CHARS).collect();
        }
    }
    (checks::judge_job(name, &task), task.exit_code.map(f64::from))
}

/// ECS's `startedBy` and idempotency token of a job's task for this round of the rollout: the
/// same until the round has a verdict (the step, passing and failed rounds so far are part
/// of it), so a restarted controller finds the task again and the next round starts anew.
fn job_tokens(r: &ServiceRelease, rollout: &RolloutStatus, job: &str) -> (String, String) {
    use sha2::{Digest, Sha256};
    let round = format!("{}/{}/{}", rollout.step.unwrap_or(0), rollout.successes, rollout.failures);
    let digest = Sha256::digest(format!(
        "{}/{}/{}/job/{job}/{round}",
        r.uid().unwrap_or_default(),
        rollout.spec_hash,
        rollout.started_at.to_rfc3339()
    ));
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    (format!("shipshape-{hex}-job"), hex)
}
