//! Rollout notifications: the Events that matter to people (a rollout started, a step passed,
//! a promotion, a rollback...) POSTed to the webhooks an Environment lists. Each sink has a
//! bounded queue and a worker of its own that retries a message until it is delivered (in
//! order, head of line first) or a day old; publishing never waits, so a slow or broken
//! webhook never holds a reconcile.
//!
//! A webhook's URL is a secret (Slack's carry their credential in the path): it is read from
//! a Secret and never written to a log line, an error or a metric.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use kube::ResourceExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc::{self, error::TrySendError};

use crate::api::{reasons, Environment, KeyedSecretRef, NotificationEvent, NotificationFormat, NotificationSink};
use crate::metrics::Metrics;

/// Messages a sink's queue holds; one more is dropped (counted `result="dropped"`).
pub const QUEUE: usize = 1_000;

/// How long a POST may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The notification a Kubernetes Event reason announces, if any.
pub fn event_of(reason: &str) -> Option<NotificationEvent> {
    use NotificationEvent as E;
    Some(match reason {
        // The core writes an Event of reason Progressing only when a rollout starts.
        reasons::PROGRESSING => E::RolloutStarted,
        reasons::STEP_PASSED => E::StepPassed,
        reasons::PROMOTED => E::Promoted,
        reasons::ROLLED_BACK => E::RolledBack,
        reasons::ROLLOUT_FAILED | reasons::PRE_DEPLOY_FAILED => E::Failed,
        reasons::ROLLBACK_FAILED => E::RollbackFailed,
        reasons::ROLLBACK_UNSAFE => E::RollbackUnsafe,
        reasons::WAITING_FOR_APPROVAL => E::WaitingForApproval,
        reasons::UPSTREAM_REJECTED => E::UpstreamRejected,
        reasons::DRIFT_CORRECTED => E::DriftCorrected,
        _ => return None,
    })
}

/// The event's name, as in the API (`RolledBack`).
fn event_name(e: NotificationEvent) -> &'static str {
    use NotificationEvent as E;
    match e {
        E::RolloutStarted => "RolloutStarted",
        E::StepPassed => "StepPassed",
        E::Promoted => "Promoted",
        E::RolledBack => "RolledBack",
        E::Failed => "Failed",
        E::RollbackFailed => "RollbackFailed",
        E::RollbackUnsafe => "RollbackUnsafe",
        E::WaitingForApproval => "WaitingForApproval",
        E::UpstreamRejected => "UpstreamRejected",
        E::DriftCorrected => "DriftCorrected",
    }
}

/// One thing to tell the sinks: an Event about an object of an Environment.
#[derive(Clone, Debug, PartialEq)]
pub struct Note {
    /// What happened.
    pub event: NotificationEvent,
    /// The object's kind (`ServiceRelease`).
    pub kind: String,
    /// The object's Environment.
    pub environment: String,
    /// The object's namespace.
    pub namespace: String,
    /// The object's name.
    pub name: String,
    /// The git SHA concerned (a release's).
    pub sha: Option<String>,
    /// The Event's reason.
    pub reason: String,
    /// The Event's note.
    pub message: String,
    /// Whether the Event is a Warning.
    pub warning: bool,
    /// When it happened.
    pub at: DateTime<Utc>,
}

impl Note {
    /// A stable id (64 hex digits): equal notes, equal ids, so every retry of a message
    /// carries the same one and receivers can drop duplicates.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        let at = self.time();
        let fields = [&self.environment, &self.namespace, &self.name, &self.reason, self.sha.as_deref().unwrap_or(""), &self.message, &at];
        for f in fields {
            h.update(f.as_bytes());
            h.update([0]);
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `at` in RFC 3339 with milliseconds.
    fn time(&self) -> String {
        self.at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// The SHA's first 7 characters.
    fn short_sha(&self) -> Option<String> {
        self.sha.as_ref().map(|s| s.chars().take(7).collect())
    }
}

/// A Slack incoming webhook's body: one line of text, `&`, `<` and `>` escaped as Slack
/// asks (they mark links and mentions).
pub fn slack_body(note: &Note) -> Value {
    fn escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace(['\n', '\r'], " ")
    }
    let sha = note.short_sha().map(|s| format!(" {s}")).unwrap_or_default();
    let text = format!(
        "[{}] {}/{}{sha} in {}: {}",
        event_name(note.event),
        escape(&note.namespace),
        escape(&note.name),
        escape(&note.environment),
        escape(&note.message)
    );
    json!({ "text": text })
}

/// A CloudEvents 1.0 event in structured mode (sent as `application/cloudevents+json`).
pub fn cloudevent_body(note: &Note) -> Value {
    let kind = note.kind.to_lowercase();
    let noun = match note.kind.as_str() {
        "ServiceRelease" => "release",
        "StackSpec" => "stack",
        _ => kind.as_str(),
    };
    json!({
        "specversion": "1.0",
        "id": note.id(),
        "source": format!("/shipshape/environments/{}/namespaces/{}/{kind}s/{}", note.environment, note.namespace, note.name),
        "type": format!("dev.shipshape.{noun}.{}", event_name(note.event).to_lowercase()),
        "subject": format!("{}/{}", note.namespace, note.name),
        "time": note.time(),
        "datacontenttype": "application/json",
        "data": {
            "event": event_name(note.event),
            "environment": note.environment,
            "namespace": note.namespace,
            "name": note.name,
            "sha": note.sha,
            "reason": note.reason,
            "message": note.message,
        },
    })
}

/// shipshape's own JSON.
pub fn json_body(note: &Note) -> Value {
    json!({
        "id": note.id(),
        "event": event_name(note.event),
        "environment": note.environment,
        "namespace": note.namespace,
        "kind": note.kind,
        "name": note.name,
        "sha": note.sha,
        "reason": note.reason,
        "message": note.message,
        "time": note.time(),
    })
}

/// The body a sink of `format` gets, and its Content-Type.
pub fn body(format: NotificationFormat, note: &Note) -> (&'static str, Value) {
    match format {
        NotificationFormat::Slack => ("application/json", slack_body(note)),
        NotificationFormat::CloudEvents => ("application/cloudevents+json", cloudevent_body(note)),
        NotificationFormat::Json => ("application/json", json_body(note)),
    }
}

/// Whether `sink` wants `note` (its events and namespaces; empty lists take everything).
fn wants(sink: &NotificationSink, note: &Note) -> bool {
    (sink.events.is_empty() || sink.events.contains(&note.event))
        && (sink.namespaces.is_empty() || sink.namespaces.contains(&note.namespace))
}

/// Retry and cache timings (shorter in tests).
#[derive(Clone, Copy, Debug)]
struct Timing {
    /// The first retry's delay, doubled at each failure...
    first_retry: Duration,
    /// ...up to this.
    max_retry: Duration,
    /// A message older than this is dropped undelivered.
    max_age: Duration,
    /// How long a URL read from a Secret is used before the Secret is read again.
    url_ttl: Duration,
}

const TIMING: Timing = Timing {
    first_retry: Duration::from_millis(500),
    max_retry: Duration::from_secs(30),
    max_age: Duration::from_secs(24 * 3600),
    url_ttl: Duration::from_secs(60),
};

/// The delay before retry `attempt` (0 = the first retry): doubling from `first_retry` up to
/// `max_retry`, then scaled to 50–100 % by `jitter` (0 to 1).
fn backoff(t: &Timing, attempt: u32, jitter: f64) -> Duration {
    let full = 2u32.checked_pow(attempt).and_then(|f| t.first_retry.checked_mul(f)).map_or(t.max_retry, |d| d.min(t.max_retry));
    full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
}

/// Where webhook URLs come from.
enum Urls {
    /// Secrets, read with the controller's client (namespace default: the controller's).
    Secrets { client: kube::Client, default_namespace: String },
    /// Secret name → URL, without an API server.
    #[cfg(test)]
    Fixed(Mutex<HashMap<String, String>>),
}

/// A URL as a webhook takes it: http or https. The error never shows the URL.
fn webhook_url(raw: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("the webhook URL is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" => {}
        _ => return Err("the webhook URL is not http(s)".into()),
    }
    // Instance metadata is never a webhook (names resolving there are refused by the
    // resolver; a literal address here).
    let literal = url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().ok());
    if literal.is_some_and(|ip| crate::core::checks::metadata_address(&ip)) {
        return Err("the webhook URL points at a link-local address (instance metadata): refused".into());
    }
    Ok(url)
}

/// A reqwest failure without the URL (`without_url`, and any other copy of it cut out).
fn describe(e: reqwest::Error, url: &reqwest::Url) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect"
    } else {
        "request failed"
    };
    let e = e.without_url();
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    let full = url.as_str();
    for secret in [full, full.trim_end_matches('/'), url.path()].into_iter().filter(|s| s.len() > 1) {
        text = text.replace(secret, "<url>");
    }
    text
}

/// Locks, whether or not another thread panicked holding the lock (the maps stay usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Secret key: (namespace, name, key).
type SecretKey = (String, String, String);

/// What the workers share: the HTTP client, the URLs, the metrics.
struct Delivery {
    http: Result<reqwest::Client, String>,
    urls: Urls,
    /// URLs read from Secrets, with when they were read.
    cache: Mutex<HashMap<SecretKey, (Instant, reqwest::Url)>>,
    metrics: Metrics,
    timing: Timing,
}

impl Delivery {
    /// The webhook's URL, read again after `url_ttl` (a rotated URL is picked up).
    async fn url(&self, r: &KeyedSecretRef) -> Result<reqwest::Url, String> {
        let ns = match &self.urls {
            Urls::Secrets { default_namespace, .. } => r.namespace.clone().unwrap_or_else(|| default_namespace.clone()),
            #[cfg(test)]
            Urls::Fixed(_) => r.namespace.clone().unwrap_or_default(),
        };
        let key = (ns.clone(), r.name.clone(), r.key.clone());
        if let Some((_, url)) = lock(&self.cache).get(&key).filter(|(read, _)| read.elapsed() < self.timing.url_ttl) {
            return Ok(url.clone());
        }
        let raw = match &self.urls {
            Urls::Secrets { client, .. } => {
                let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(client.clone(), &ns);
                let secret = api.get(&r.name).await.map_err(|e| super::secret_error(&ns, &r.name, e))?;
                let value =
                    secret.data.and_then(|mut d| d.remove(&r.key)).ok_or_else(|| format!("Secret {ns}/{} has no key {}", r.name, r.key))?;
                String::from_utf8(value.0).map_err(|_| format!("Secret {ns}/{} key {} is not UTF-8", r.name, r.key))?
            }
            #[cfg(test)]
            Urls::Fixed(urls) => lock(urls).get(&r.name).cloned().ok_or_else(|| format!("Secret {ns}/{} not found", r.name))?,
        };
        let url = webhook_url(&raw).map_err(|e| format!("Secret {ns}/{} key {}: {e}", r.name, r.key))?;
        lock(&self.cache).insert(key, (Instant::now(), url.clone()));
        Ok(url)
    }

    /// One POST; Ok on any 2xx. The error names the status or the kind of failure only.
    async fn post(&self, r: &KeyedSecretRef, content_type: &str, body: &str) -> Result<(), String> {
        let http = self.http.as_ref().map_err(Clone::clone)?;
        let url = self.url(r).await?;
        let sent = http.post(url.clone()).header(reqwest::header::CONTENT_TYPE, content_type).body(body.to_owned()).send().await;
        let status = sent.map_err(|e| describe(e, &url))?.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }

    /// Whether a failure is the receiver refusing this message for good (a 4xx other than
    /// 408 Request Timeout and 429 Too Many Requests): retried a few times, then dropped,
    /// so one message the receiver will never take does not hold its sink for a day.
    fn refused_for_good(error: &str) -> bool {
        error.strip_prefix("HTTP ").and_then(|c| c.parse::<u16>().ok()).is_some_and(|c| (400..500).contains(&c) && c != 408 && c != 429)
    }

    /// Sends one message until it is delivered or too old, waiting longer after each failure.
    async fn send(&self, sink: &str, m: &Message) {
        let (content_type, body) = body(m.sink.format, &m.note);
        let body = body.to_string();
        let id = m.note.id();
        let mut attempt: u32 = 0;
        loop {
            let age = Utc::now().signed_duration_since(m.note.at).to_std().unwrap_or_default();
            if age > self.timing.max_age {
                self.count(sink, "dropped");
                tracing::warn!(sink, id, "notification dropped undelivered: older than {:?}", self.timing.max_age);
                return;
            }
            match self.post(&m.sink.webhook.url_secret_ref, content_type, &body).await {
                Ok(()) => {
                    self.count(sink, "delivered");
                    tracing::debug!(sink, id, "notification delivered");
                    return;
                }
                Err(error) => {
                    self.count(sink, "failed");
                    if Self::refused_for_good(&error) && attempt.saturating_add(1) >= REFUSED_ATTEMPTS {
                        self.count(sink, "dropped");
                        tracing::warn!(sink, id, attempt, error, "notification dropped: the receiver refuses it");
                        return;
                    }
                    tracing::warn!(sink, id, attempt, error, "notification not delivered; retrying");
                }
            }
            tokio::time::sleep(backoff(&self.timing, attempt, rand::random())).await;
            attempt = attempt.saturating_add(1);
        }
    }

    fn count(&self, sink: &str, result: &str) {
        self.metrics.notifications.with_label_values(&[sink, result]).inc();
    }
}

/// A queued message: the sink as configured when it was published, and the note.
struct Message {
    sink: NotificationSink,
    note: Note,
}

/// How many times a message a receiver refuses for good (a 4xx) is sent before it is dropped.
const REFUSED_ATTEMPTS: u32 = 3;

/// Each sink's queue, by (Environment name, sink name).
type Queues = HashMap<(String, String), mpsc::Sender<Message>>;

/// Delivers notes to the sinks of their Environment, one queue and worker per sink.
#[derive(Clone)]
pub struct Notifier {
    delivery: Arc<Delivery>,
    workers: Arc<Mutex<Queues>>,
}

impl Notifier {
    /// A notifier reading webhook URLs from Secrets (in `default_namespace` when a reference
    /// names none).
    pub fn new(client: kube::Client, metrics: Metrics, default_namespace: String) -> Self {
        Self::with(Urls::Secrets { client, default_namespace }, metrics, TIMING)
    }

    fn with(urls: Urls, metrics: Metrics, timing: Timing) -> Self {
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(super::release::NoMetadata))
            .build()
            .map_err(|e| format!("HTTP client: {}", e.without_url()));
        let delivery = Delivery { http, urls, cache: Mutex::new(HashMap::new()), metrics, timing };
        Notifier { delivery: Arc::new(delivery), workers: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Queues `note` for each sink of `env` that wants it; never waits. A full queue drops
    /// the new message (counted `result="dropped"`). Call inside a tokio runtime (a sink's
    /// worker is spawned on first use).
    pub fn publish(&self, env: &Environment, note: Note) {
        let environment = env.name_any();
        for sink in env.spec.notifications.iter().filter(|s| wants(s, &note)) {
            let label = format!("{environment}/{}", sink.name);
            let message = Message { sink: sink.clone(), note: note.clone() };
            let key = (environment.clone(), sink.name.clone());
            let mut workers = lock(&self.workers);
            let tx = workers.entry(key.clone()).or_insert_with(|| self.spawn(label.clone()));
            let refused = match tx.try_send(message) {
                Ok(()) => None,
                Err(TrySendError::Full(_)) => Some("queue full"),
                // The worker ended (it panicked): a new one.
                Err(TrySendError::Closed(message)) => {
                    let tx = self.spawn(label.clone());
                    let sent = tx.try_send(message);
                    workers.insert(key, tx);
                    sent.err().map(|_| "worker gone")
                }
            };
            if let Some(why) = refused {
                self.delivery.count(&label, "dropped");
                tracing::warn!(sink = label, id = note.id(), "notification dropped: {why}");
            }
        }
    }

    /// A sink's queue, and the worker that empties it in order.
    fn spawn(&self, sink: String) -> mpsc::Sender<Message> {
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        let delivery = self.delivery.clone();
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                delivery.send(&sink, &m).await;
            }
        });
        tx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Webhook;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn note(event: NotificationEvent, message: &str) -> Note {
        Note {
            event,
            kind: "ServiceRelease".into(),
            environment: "prod".into(),
            namespace: "car-rental".into(),
            name: "backend".into(),
            sha: Some("3f9c2a1d0e".into()),
            reason: "RolledBack".into(),
            message: message.into(),
            warning: true,
            at: DateTime::parse_from_rfc3339("2026-05-01T10:00:00.250Z").unwrap().with_timezone(&Utc),
        }
    }

    /// A note of now (older ones are dropped undelivered).
    fn fresh(event: NotificationEvent, message: &str) -> Note {
        Note { at: Utc::now(), ..note(event, message) }
    }

    fn sink(name: &str, secret: &str, format: NotificationFormat) -> NotificationSink {
        NotificationSink {
            name: name.into(),
            webhook: Webhook { url_secret_ref: KeyedSecretRef { name: secret.into(), namespace: None, key: "url".into() } },
            format,
            events: vec![],
            namespaces: vec![],
        }
    }

    fn environment(sinks: Vec<NotificationSink>) -> Environment {
        let mut spec = crate::fixtures::environment_spec(json!({}));
        spec.notifications = sinks;
        crate::fixtures::environment("prod", spec)
    }

    const FAST: Timing = Timing {
        first_retry: Duration::from_millis(10),
        max_retry: Duration::from_millis(40),
        max_age: Duration::from_secs(24 * 3600),
        url_ttl: Duration::from_secs(60),
    };

    fn notifier(urls: &[(&str, &str)], timing: Timing) -> (Notifier, Metrics) {
        let metrics = Metrics::new();
        let urls = urls.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        (Notifier::with(Urls::Fixed(Mutex::new(urls)), metrics.clone(), timing), metrics)
    }

    fn count(m: &Metrics, sink: &str, result: &str) -> u64 {
        m.notifications.with_label_values(&[sink, result]).get()
    }

    /// A webhook receiver: answers 500 to the first `failures` requests, then 200.
    #[derive(Default)]
    struct Receiver {
        failures: AtomicUsize,
        /// (path, Content-Type, body) of every request, answered or not.
        seen: Mutex<Vec<(String, String, Value)>>,
    }

    impl Receiver {
        fn seen(&self) -> Vec<(String, String, Value)> {
            self.seen.lock().unwrap().clone()
        }
    }

    async fn receive(State(r): State<Arc<Receiver>>, uri: axum::http::Uri, headers: HeaderMap, body: String) -> StatusCode {
        let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        r.seen.lock().unwrap().push((uri.path().to_string(), ct, serde_json::from_str(&body).unwrap()));
        let failing = r.failures.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
        if failing {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }

    async fn serve(listener: tokio::net::TcpListener, failures: usize) -> Arc<Receiver> {
        let r = Arc::new(Receiver { failures: AtomicUsize::new(failures), ..Default::default() });
        let app = axum::Router::new().fallback(receive).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        r
    }

    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[test]
    fn event_reasons_map_to_notifications() {
        use NotificationEvent as E;
        let cases = [
            (reasons::PROGRESSING, E::RolloutStarted),
            (reasons::STEP_PASSED, E::StepPassed),
            (reasons::PROMOTED, E::Promoted),
            (reasons::ROLLED_BACK, E::RolledBack),
            (reasons::ROLLOUT_FAILED, E::Failed),
            (reasons::PRE_DEPLOY_FAILED, E::Failed),
            (reasons::ROLLBACK_FAILED, E::RollbackFailed),
            (reasons::ROLLBACK_UNSAFE, E::RollbackUnsafe),
            (reasons::WAITING_FOR_APPROVAL, E::WaitingForApproval),
            (reasons::UPSTREAM_REJECTED, E::UpstreamRejected),
            (reasons::DRIFT_CORRECTED, E::DriftCorrected),
        ];
        for (reason, event) in cases {
            assert_eq!(event_of(reason), Some(event), "{reason}");
            assert_eq!(serde_json::to_value(event).unwrap(), json!(event_name(event)), "the API's name");
        }
        for reason in [reasons::CREATED, reasons::ANALYZING, reasons::WAITING_FOR_WINDOW, "Anything"] {
            assert_eq!(event_of(reason), None, "{reason}");
        }
    }

    #[test]
    fn a_notes_id_is_stable_and_tells_notes_apart() {
        let a = note(NotificationEvent::RolledBack, "rolled back");
        assert_eq!(a.id(), a.clone().id());
        assert_eq!(a.id().len(), 64);
        assert!(a.id().chars().all(|c| c.is_ascii_hexdigit()));
        let later = Note { at: a.at + chrono::Duration::milliseconds(1), ..a.clone() };
        let other = Note { message: "rolled back again".into(), ..a.clone() };
        let no_sha = Note { sha: None, ..a.clone() };
        for n in [later, other, no_sha] {
            assert_ne!(n.id(), a.id());
        }
    }

    #[test]
    fn slack_gets_one_escaped_line() {
        let n = note(NotificationEvent::RolledBack, "error-rate 0.12 > 0.05 & <@here>\nsecond line");
        assert_eq!(
            slack_body(&n),
            json!({"text": "[RolledBack] car-rental/backend 3f9c2a1 in prod: error-rate 0.12 &gt; 0.05 &amp; &lt;@here&gt; second line"})
        );
        let no_sha = Note { sha: None, event: NotificationEvent::DriftCorrected, ..n };
        assert!(slack_body(&no_sha)["text"].as_str().unwrap().starts_with("[DriftCorrected] car-rental/backend in prod: "));
    }

    #[test]
    fn cloudevents_are_structured_mode_1_0() {
        let n = note(NotificationEvent::RolledBack, "rolled back");
        let (content_type, body) = body(NotificationFormat::CloudEvents, &n);
        assert_eq!(content_type, "application/cloudevents+json");
        assert_eq!(
            body,
            json!({
                "specversion": "1.0",
                "id": n.id(),
                "source": "/shipshape/environments/prod/namespaces/car-rental/servicereleases/backend",
                "type": "dev.shipshape.release.rolledback",
                "subject": "car-rental/backend",
                "time": "2026-05-01T10:00:00.250Z",
                "datacontenttype": "application/json",
                "data": {
                    "event": "RolledBack", "environment": "prod", "namespace": "car-rental", "name": "backend",
                    "sha": "3f9c2a1d0e", "reason": "RolledBack", "message": "rolled back",
                },
            })
        );
        let stack = Note { kind: "StackSpec".into(), event: NotificationEvent::DriftCorrected, ..n };
        let body = cloudevent_body(&stack);
        assert_eq!(body["type"], "dev.shipshape.stack.driftcorrected");
        assert_eq!(body["source"], "/shipshape/environments/prod/namespaces/car-rental/stackspecs/backend");
    }

    #[test]
    fn json_is_the_note_as_shipshape_sees_it() {
        let n = note(NotificationEvent::Promoted, "3f9c2a1d0e promoted");
        let (content_type, body) = body(NotificationFormat::Json, &n);
        assert_eq!(content_type, "application/json");
        assert_eq!(
            body,
            json!({
                "id": n.id(), "event": "Promoted", "environment": "prod", "namespace": "car-rental", "kind": "ServiceRelease",
                "name": "backend", "sha": "3f9c2a1d0e", "reason": "RolledBack", "message": "3f9c2a1d0e promoted",
                "time": "2026-05-01T10:00:00.250Z",
            })
        );
        assert_eq!(super::body(NotificationFormat::Slack, &n).0, "application/json");
    }

    #[test]
    fn retries_wait_from_500_ms_doubling_to_30_s_jittered() {
        let t = &TIMING;
        assert_eq!(backoff(t, 0, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(t, 0, 0.0), Duration::from_millis(250));
        assert_eq!(backoff(t, 3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(t, 6, 1.0), Duration::from_secs(30), "capped");
        assert_eq!(backoff(t, u32::MAX, 1.0), Duration::from_secs(30), "no overflow");
        assert_eq!(backoff(t, u32::MAX, 7.0), Duration::from_secs(30), "jitter clamped");
        assert_eq!(backoff(t, 40, 0.0), Duration::from_secs(15));
    }

    #[test]
    fn sinks_take_the_events_and_namespaces_they_list() {
        let all = sink("all", "s", NotificationFormat::Slack);
        let rollbacks = NotificationSink { events: vec![NotificationEvent::RolledBack], ..all.clone() };
        let shop = NotificationSink { namespaces: vec!["shop".into()], ..all.clone() };
        let n = note(NotificationEvent::RolledBack, "m");
        let promoted = Note { event: NotificationEvent::Promoted, ..n.clone() };
        assert!(wants(&all, &n) && wants(&all, &promoted));
        assert!(wants(&rollbacks, &n) && !wants(&rollbacks, &promoted));
        assert!(!wants(&shop, &n));
        assert!(wants(&shop, &Note { namespace: "shop".into(), ..n }));
    }

    #[tokio::test]
    async fn publishing_queues_only_for_the_sinks_that_want_the_note() {
        let (notifier, _) = notifier(&[], FAST);
        let only_shop = NotificationSink { namespaces: vec!["shop".into()], ..sink("shop", "s", NotificationFormat::Json) };
        let only_promoted =
            NotificationSink { events: vec![NotificationEvent::Promoted], ..sink("promoted", "s", NotificationFormat::Json) };
        let env = environment(vec![only_shop, only_promoted, sink("all", "s", NotificationFormat::Json)]);
        notifier.publish(&env, note(NotificationEvent::RolledBack, "m"));
        let mut workers: Vec<_> = lock(&notifier.workers).keys().cloned().collect();
        workers.sort();
        assert_eq!(workers, vec![("prod".to_string(), "all".to_string())]);
    }

    #[tokio::test]
    async fn a_failing_receiver_gets_every_message_in_order_with_the_same_id_on_each_retry() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/T0/B0/secret-token", listener.local_addr().unwrap());
        let receiver = serve(listener, 3).await;
        let (notifier, metrics) = notifier(&[("hook", &url)], FAST);
        let env = environment(vec![sink("chat", "hook", NotificationFormat::Json)]);
        let notes: Vec<Note> = (0..5).map(|i| fresh(NotificationEvent::StepPassed, &format!("step {i}"))).collect();
        for n in &notes {
            notifier.publish(&env, n.clone());
        }
        until("5 deliveries", || count(&metrics, "prod/chat", "delivered") == 5).await;
        let seen = receiver.seen();
        let ids: Vec<&str> = seen.iter().map(|(_, _, b)| b["id"].as_str().unwrap()).collect();
        let first = notes[0].id();
        assert_eq!(ids[..4], [first.as_str(); 4], "the first message, failed 3 times, then delivered");
        let delivered: Vec<String> = notes.iter().map(Note::id).collect();
        assert_eq!(ids[3..], delivered.iter().map(String::as_str).collect::<Vec<_>>()[..], "in order");
        assert!(seen.iter().all(|(path, ct, _)| path == "/hooks/T0/B0/secret-token" && ct == "application/json"));
        assert_eq!(count(&metrics, "prod/chat", "failed"), 3);
        assert_eq!(count(&metrics, "prod/chat", "dropped"), 0);
    }

    #[tokio::test]
    async fn a_receiver_not_listening_yet_gets_the_messages_once_it_listens() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let url = format!("http://{addr}/events");
        let (notifier, metrics) = notifier(&[("hook", &url)], FAST);
        let env = environment(vec![sink("incidents", "hook", NotificationFormat::CloudEvents)]);
        let notes = [fresh(NotificationEvent::RolledBack, "a"), fresh(NotificationEvent::Promoted, "b")];
        for n in &notes {
            notifier.publish(&env, n.clone());
        }
        until("2 failed attempts", || count(&metrics, "prod/incidents", "failed") >= 2).await;
        let receiver = serve(tokio::net::TcpListener::bind(addr).await.unwrap(), 0).await;
        until("2 deliveries", || count(&metrics, "prod/incidents", "delivered") == 2).await;
        let seen = receiver.seen();
        let ids: Vec<&str> = seen.iter().map(|(_, _, b)| b["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [notes[0].id(), notes[1].id()]);
        assert!(seen.iter().all(|(_, ct, _)| ct == "application/cloudevents+json"));
    }

    #[tokio::test]
    async fn a_full_queue_drops_the_new_message_and_counts_it() {
        // Nothing listens and the worker has not run yet (a current-thread runtime, no await):
        // the queue takes 1,000 messages and drops the rest.
        let (notifier, metrics) = notifier(&[("hook", "http://127.0.0.1:9/")], FAST);
        let env = environment(vec![sink("chat", "hook", NotificationFormat::Slack)]);
        for i in 0..QUEUE + 5 {
            notifier.publish(&env, fresh(NotificationEvent::StepPassed, &i.to_string()));
        }
        assert_eq!(count(&metrics, "prod/chat", "dropped"), 5);
    }

    #[tokio::test]
    async fn a_message_older_than_a_day_is_dropped_not_retried() {
        let (notifier, metrics) = notifier(&[("hook", "http://127.0.0.1:9/")], FAST);
        let env = environment(vec![sink("chat", "hook", NotificationFormat::Slack)]);
        let old = Note { at: Utc::now() - chrono::Duration::hours(25), ..note(NotificationEvent::RolledBack, "old") };
        notifier.publish(&env, old);
        until("the drop", || count(&metrics, "prod/chat", "dropped") == 1).await;
        assert_eq!(count(&metrics, "prod/chat", "failed"), 0);
    }

    #[tokio::test]
    async fn a_rotated_url_is_used_once_the_cached_one_expires() {
        let first = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let second = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (a, b) = (format!("http://{}/a", first.local_addr().unwrap()), format!("http://{}/b", second.local_addr().unwrap()));
        let (ra, rb) = (serve(first, 0).await, serve(second, 0).await);
        let (notifier, metrics) = notifier(&[("hook", &a)], Timing { url_ttl: Duration::from_millis(300), ..FAST });
        let env = environment(vec![sink("chat", "hook", NotificationFormat::Slack)]);
        notifier.publish(&env, fresh(NotificationEvent::RolledBack, "1"));
        until("1 delivery", || count(&metrics, "prod/chat", "delivered") == 1).await;
        let Urls::Fixed(urls) = &notifier.delivery.urls else { unreachable!() };
        lock(urls).insert("hook".into(), b);
        notifier.publish(&env, fresh(NotificationEvent::RolledBack, "2"));
        until("2 deliveries", || count(&metrics, "prod/chat", "delivered") == 2).await;
        tokio::time::sleep(Duration::from_millis(350)).await;
        notifier.publish(&env, fresh(NotificationEvent::RolledBack, "3"));
        until("3 deliveries", || count(&metrics, "prod/chat", "delivered") == 3).await;
        assert_eq!((ra.seen().len(), rb.seen().len()), (2, 1));
    }

    #[tokio::test]
    async fn errors_never_show_the_url() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let refused = format!("http://{addr}/services/T000/B000/XXXXsecretXXXX");
        let served = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let failing = format!("http://{}/services/T000/B000/XXXXsecretXXXX", served.local_addr().unwrap());
        serve(served, 1).await;
        let urls = [
            ("refused", refused.as_str()),
            ("failing", failing.as_str()),
            ("ftp", "ftp://example.com/XXXXsecretXXXX"),
            ("garbage", "http://exa mple.com/XXXXsecretXXXX"),
        ];
        let (notifier, _) = notifier(&urls, FAST);
        let mut errors = vec![];
        for (name, url) in urls.iter().map(|(n, u)| (n.to_string(), u.to_string())).chain([("missing".into(), String::new())]) {
            let r = KeyedSecretRef { name, namespace: Some("shop".into()), key: "url".into() };
            let e = notifier.delivery.post(&r, "application/json", "{}").await.unwrap_err();
            assert!(!e.contains("XXXXsecretXXXX") && !e.contains("/services/") && (url.is_empty() || !e.contains(&url)), "{e}");
            errors.push(e);
        }
        assert!(errors[0].starts_with("connection failed"), "{}", errors[0]);
        assert_eq!(errors[1], "HTTP 500");
        assert_eq!(errors[2], "Secret shop/ftp key url: the webhook URL is not http(s)");
        assert!(errors[3].starts_with("Secret shop/garbage key url: the webhook URL is not a URL"), "{}", errors[3]);
        assert_eq!(errors[4], "Secret shop/missing not found");
    }

    #[test]
    fn instance_metadata_is_never_a_webhook() {
        for url in ["http://169.254.169.254/latest/meta-data/", "http://[fe80::1]/hook", "http://[fd00:ec2::254]/"] {
            let e = webhook_url(url).expect_err(url);
            assert!(e.contains("link-local") && !e.contains("169.254"), "{e}");
        }
        assert!(webhook_url("https://hooks.slack.com/services/T0/B0/x").is_ok());
    }

    #[test]
    fn only_a_receiver_refusing_for_good_ends_the_retries() {
        for (e, gives_up) in [
            ("HTTP 400", true),
            ("HTTP 404", true),
            ("HTTP 410", true),
            ("HTTP 408", false),
            ("HTTP 429", false),
            ("HTTP 500", false),
            ("HTTP 503", false),
            ("timeout", false),
            ("Secret ns/x not found", false),
        ] {
            assert_eq!(Delivery::refused_for_good(e), gives_up, "{e}");
        }
    }
}
