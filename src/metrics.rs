//! Prometheus metrics. Labels are static words, plus at most an object's namespace/name.

use std::time::Duration;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// All metrics of one controller process.
#[derive(Clone)]
pub struct Metrics {
    /// Every metric, the two with a series per release (`release_phase`, `release_info`) each
    /// in a registry of its own: a scrape gathers and encodes one registry at a time, so the
    /// copy gathering makes (about 800 bytes per series) is that of one family at most, not of
    /// all 20,000 series of 10,000 releases at once.
    registries: [Registry; 3],
    /// The length of the last exposition (the next one's buffer is made that large at once).
    last_len: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Reconciles by controller and result (ok | error | stalled).
    pub reconciles: IntCounterVec,
    /// Reconcile duration by controller.
    pub reconcile_duration: HistogramVec,
    /// Failures by controller and static category.
    pub errors: IntCounterVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
    /// AWS requests by service, operation and outcome.
    pub aws_requests: IntCounterVec,
    /// AWS throttling responses by service and operation.
    pub aws_throttles: IntCounterVec,
    /// Managed fields put back after a change outside shipshape, by controller and kind.
    pub drift_corrections: IntCounterVec,
    /// 1 for a release's current phase.
    pub release_phase: IntGaugeVec,
    /// 1 while a release is held after an irreversible step succeeded (`RollbackUnsafe`):
    /// a failing rollout the controller may not roll back.
    pub rollback_unsafe: IntGaugeVec,
    /// 1 while a release's new SHA waits on a gate (its upstream's soak, an approval, its
    /// order, a change window) or is refused by its upstream.
    pub release_waiting: IntGaugeVec,
    /// Always 1; labels carry the release's SHA and stable SHA.
    pub release_info: IntGaugeVec,
    /// Percent of a release's traffic on the version being rolled out, and its step.
    pub release_traffic_weight: IntGaugeVec,
    /// Finished rollouts by outcome.
    pub rollouts: IntCounterVec,
    /// Rollbacks by reason (analysis, deployment_failed, deadline, manual).
    pub rollbacks: IntCounterVec,
    /// Last value of each analysis query.
    pub analysis_value: GaugeVec,
    /// Seconds from the failing verdict to the rollback's UpdateService call.
    pub rollback_seconds: Histogram,
    /// AWS events received, by source and detail type (bounded labels).
    pub aws_events: IntCounterVec,
    /// Seconds from an event's time to its handling.
    pub aws_event_lag: Histogram,
    /// 1 while an Environment's events flow (its heartbeat comes back), 0 while they do not.
    pub aws_events_flowing: IntGaugeVec,
    /// Times an Environment's events stopped and polling took over again.
    pub aws_event_fallbacks: IntCounterVec,
    /// Failed receives of an Environment's event queue.
    pub aws_event_receive_failures: IntCounterVec,
    /// Objects woken by an AWS event, by kind.
    pub aws_event_wakes: IntCounterVec,
    /// Rollback calls ECS refused (the bad SHA may still be serving; retried).
    pub rollback_failures: IntCounter,
    /// Notification attempts by sink (`<environment>/<sink>`) and result (delivered |
    /// failed, one per failed attempt | dropped).
    pub notifications: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        // Invariant, not data: every name, help text and label below is a constant of this
        // file (valid metric names, no duplicates), which is all prometheus checks; the
        // unwraps cannot fail at run time, and a mistake here fails every test at start.
        let registry = Registry::new_custom(Some("shipshape".into()), None).expect("registry");
        let reconciles =
            IntCounterVec::new(Opts::new("reconcile_total", "Reconciles by controller and result"), &["controller", "result"]).unwrap();
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Reconcile duration")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["controller"],
        )
        .unwrap();
        let errors = IntCounterVec::new(
            Opts::new("reconcile_errors_total", "Reconcile failures by controller and category"),
            &["controller", "category"],
        )
        .unwrap();
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease").unwrap();
        let aws_requests = IntCounterVec::new(
            Opts::new("aws_requests_total", "AWS requests by service, operation and outcome"),
            &["service", "operation", "outcome"],
        )
        .unwrap();
        let aws_throttles =
            IntCounterVec::new(Opts::new("aws_throttles_total", "AWS throttling responses"), &["service", "operation"]).unwrap();
        let drift_corrections =
            IntCounterVec::new(Opts::new("drift_corrections_total", "Managed fields put back after drift"), &["controller", "kind"])
                .unwrap();
        // Constant name and labels: cannot fail (see above).
        let release_phase = IntGaugeVec::new(
            Opts::new("release_phase", "1 for the release's current phase (the other phases have no series)"),
            &["namespace", "name", "phase"],
        )
        .unwrap();
        // Constant name and labels: cannot fail (see above).
        let rollback_unsafe = IntGaugeVec::new(
            Opts::new(
                "rollback_unsafe",
                "1 while a failing rollout is held because an irreversible preDeploy step succeeded (no series otherwise)",
            ),
            &["namespace", "name"],
        )
        .unwrap();
        // Constant name and labels: cannot fail (see above).
        let release_waiting = IntGaugeVec::new(
            Opts::new("release_waiting", "1 while the release's new SHA waits on its promotion, order or a window (no series otherwise)"),
            &["namespace", "name"],
        )
        .unwrap();
        let release_info =
            IntGaugeVec::new(Opts::new("release_info", "Release SHA and stable SHA"), &["namespace", "name", "sha", "stable_sha"]).unwrap();
        let release_traffic_weight = IntGaugeVec::new(
            Opts::new("release_traffic_weight", "Percent of the traffic on the version being rolled out (while a rollout is in flight)"),
            &["namespace", "name", "step"],
        )
        .unwrap();
        let rollouts = IntCounterVec::new(Opts::new("rollouts_total", "Finished rollouts by outcome"), &["outcome"]).unwrap();
        let rollbacks = IntCounterVec::new(Opts::new("rollbacks_total", "Rollbacks by reason"), &["reason"]).unwrap();
        let analysis_value =
            GaugeVec::new(Opts::new("analysis_value", "Last value of an analysis query"), &["namespace", "name", "query"]).unwrap();
        let rollback_seconds = Histogram::with_opts(
            HistogramOpts::new("rollback_seconds", "Seconds from the failing verdict to the rollback's UpdateService call")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .unwrap();
        let rollback_failures = IntCounter::new("rollback_failures_total", "Rollback calls ECS refused (retried with backoff)").unwrap();
        let notifications =
            IntCounterVec::new(Opts::new("notifications_total", "Notification attempts by sink and result"), &["sink", "result"]).unwrap();
        registry.register(Box::new(rollback_failures.clone())).unwrap();
        // AWS events. Constant names, help texts and label sets, registered once at start: these
        // unwraps cannot fail at run time (no data reaches them; a mistake fails every test).
        let aws_events = IntCounterVec::new(
            Opts::new("aws_events_total", "AWS events received from the Environments' event queues"),
            &["source", "detail_type"],
        )
        .unwrap();
        let aws_event_lag = Histogram::with_opts(
            HistogramOpts::new("aws_event_lag_seconds", "Seconds from an AWS event's time to its handling")
                .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )
        .unwrap();
        let aws_events_flowing = IntGaugeVec::new(
            Opts::new("aws_events_flowing", "1 while the Environment's AWS events flow (heartbeat received)"),
            &["environment"],
        )
        .unwrap();
        let aws_event_fallbacks = IntCounterVec::new(
            Opts::new("aws_event_fallbacks_total", "Times the Environment's AWS events stopped and polling took over"),
            &["environment"],
        )
        .unwrap();
        let aws_event_receive_failures =
            IntCounterVec::new(Opts::new("aws_event_receive_failures_total", "Failed receives of the event queue"), &["environment"])
                .unwrap();
        let aws_event_wakes =
            IntCounterVec::new(Opts::new("aws_event_wakes_total", "Objects woken by an AWS event, by kind"), &["kind"]).unwrap();
        registry.register(Box::new(aws_event_lag.clone())).unwrap();
        registry.register(Box::new(aws_events_flowing.clone())).unwrap();
        for c in [&aws_events, &aws_event_fallbacks, &aws_event_receive_failures, &aws_event_wakes] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        for g in [&release_traffic_weight, &rollback_unsafe, &release_waiting] {
            registry.register(Box::new(g.clone())).unwrap();
        }
        // Invariant, as above: a constant prefix, and one collector of a constant name in a
        // registry of its own (nothing to collide with); neither can fail at run time.
        let per_release = [&release_phase, &release_info].map(|g| {
            let r = Registry::new_custom(Some("shipshape".into()), None).expect("registry");
            r.register(Box::new(g.clone())).unwrap();
            r
        });
        registry.register(Box::new(analysis_value.clone())).unwrap();
        registry.register(Box::new(rollback_seconds.clone())).unwrap();
        for c in [&reconciles, &errors, &aws_requests, &aws_throttles, &drift_corrections, &rollouts, &rollbacks, &notifications] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        registry.register(Box::new(reconcile_duration.clone())).unwrap();
        registry.register(Box::new(leader.clone())).unwrap();
        let [phases, infos] = per_release;
        Metrics {
            registries: [registry, phases, infos],
            last_len: Default::default(),
            reconciles,
            reconcile_duration,
            errors,
            leader,
            aws_requests,
            aws_throttles,
            drift_corrections,
            release_phase,
            rollback_unsafe,
            release_waiting,
            release_info,
            release_traffic_weight,
            rollouts,
            rollbacks,
            analysis_value,
            rollback_seconds,
            rollback_failures,
            notifications,
            aws_events,
            aws_event_lag,
            aws_events_flowing,
            aws_event_fallbacks,
            aws_event_receive_failures,
            aws_event_wakes,
        }
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, controller: &str, result: &str, took: Duration) {
        self.reconciles.with_label_values(&[controller, result]).inc();
        self.reconcile_duration.with_label_values(&[controller]).observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        use std::sync::atomic::Ordering::Relaxed;
        let mut buf = Vec::with_capacity(self.last_len.load(Relaxed).saturating_add(4096));
        for registry in &self.registries {
            // Invariant: encoding fails only on a family without metrics or a write error, and
            // gather() leaves out empty families while writing to a Vec cannot fail; the labels'
            // values (namespaces, names, SHAs) are escaped by the encoder, not checked.
            TextEncoder::new().encode(&registry.gather(), &mut buf).expect("metrics encode");
        }
        self.last_len.store(buf.len(), Relaxed);
        String::from_utf8(buf).expect("metrics are utf-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The per-release families, gathered from registries of their own, are in the one
    /// exposition with their prefix, once each, beside the others.
    #[test]
    fn one_exposition_of_every_registry() {
        let m = Metrics::new();
        m.release_phase.with_label_values(&["team", "api", "Healthy"]).set(1);
        m.release_info.with_label_values(&["team", "api", "abcdef1", "abcdef0"]).set(1);
        m.leader.set(1);
        let text = m.render();
        for family in ["shipshape_release_phase", "shipshape_release_info", "shipshape_leader"] {
            assert_eq!(text.matches(&format!("# TYPE {family} gauge\n")).count(), 1, "{family} once: {text}");
        }
        assert!(text.contains("shipshape_release_phase{name=\"api\",namespace=\"team\",phase=\"Healthy\"} 1\n"), "{text}");
        assert!(text.contains("shipshape_release_info{name=\"api\",namespace=\"team\",sha=\"abcdef1\",stable_sha=\"abcdef0\"} 1\n"));
        assert_eq!(m.render(), text, "the same twice (the buffer sized from the last one)");
    }
}
