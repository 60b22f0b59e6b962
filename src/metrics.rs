//! Prometheus metrics. Labels are static words, plus at most an object's namespace/name.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// All metrics of one controller process.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
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
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
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
        for c in [&reconciles, &errors, &aws_requests, &aws_throttles, &drift_corrections] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        registry.register(Box::new(reconcile_duration.clone())).unwrap();
        registry.register(Box::new(leader.clone())).unwrap();
        Metrics { registry, reconciles, reconcile_duration, errors, leader, aws_requests, aws_throttles, drift_corrections }
    }

    /// Records one finished reconcile.
    pub fn reconciled(&self, controller: &str, result: &str, took: Duration) {
        self.reconciles.with_label_values(&[controller, result]).inc();
        self.reconcile_duration.with_label_values(&[controller]).observe(took.as_secs_f64());
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = vec![];
        TextEncoder::new().encode(&self.registry.gather(), &mut buf).expect("metrics encode");
        String::from_utf8(buf).expect("metrics are utf-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
