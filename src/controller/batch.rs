//! DescribeServices batching: releases reconciled at about the same time share calls, up to
//! 10 services per call as ECS allows, so N releases cost about N/10 reads per drift
//! interval instead of N.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::aws::{AwsError, Ecs};
use crate::core::rollout::ServiceObs;

type Reply = oneshot::Sender<Result<Option<ServiceObs>, AwsError>>;

struct Request {
    ecs: Arc<dyn Ecs>,
    environment: String,
    cluster: String,
    name: String,
    reply: Reply,
}

/// Collects service reads for a short window and answers them with batched calls.
#[derive(Clone)]
pub struct ServiceReader {
    tx: mpsc::Sender<Request>,
}

/// How long the first request of a batch waits for company.
const WINDOW: Duration = Duration::from_millis(25);
/// ECS's limit of services per DescribeServices call.
const PER_CALL: usize = 10;

impl ServiceReader {
    /// Starts the batching task (on the current runtime).
    pub fn start() -> Self {
        let (tx, mut rx) = mpsc::channel::<Request>(4096);
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::sleep(WINDOW);
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        _ = &mut deadline => break,
                        next = rx.recv() => match next {
                            Some(r) => batch.push(r),
                            None => break,
                        },
                    }
                }
                let mut groups: HashMap<(String, String), Vec<Request>> = HashMap::new();
                for r in batch {
                    groups.entry((r.environment.clone(), r.cluster.clone())).or_default().push(r);
                }
                for ((_, cluster), requests) in groups {
                    tokio::spawn(flush(cluster, requests));
                }
            }
        });
        ServiceReader { tx }
    }

    /// The service `name` in `cluster`, read together with others of the same environment.
    pub async fn describe(&self, ecs: Arc<dyn Ecs>, environment: &str, cluster: &str, name: &str) -> Result<Option<ServiceObs>, AwsError> {
        let (reply, rx) = oneshot::channel();
        let req = Request { ecs: ecs.clone(), environment: environment.into(), cluster: cluster.into(), name: name.into(), reply };
        if self.tx.send(req).await.is_err() {
            // The batching task is gone (shutdown): read alone.
            return ecs
                .describe_services(cluster, &[name.to_string()])
                .await
                .map(|v| v.into_iter().find(|(n, _)| n == name).map(|(_, s)| s));
        }
        rx.await.unwrap_or_else(|_| Err(AwsError::Transient { op: "DescribeServices", message: "batch dropped".into() }))
    }
}

async fn flush(cluster: String, mut requests: Vec<Request>) {
    let Some(ecs) = requests.first().map(|r| r.ecs.clone()) else { return };
    requests.sort_by(|a, b| a.name.cmp(&b.name));
    let mut names: Vec<String> = requests.iter().map(|r| r.name.clone()).collect();
    names.dedup();
    let mut found: HashMap<String, ServiceObs> = HashMap::new();
    let mut failure = None;
    for chunk in names.chunks(PER_CALL) {
        match ecs.describe_services(&cluster, chunk).await {
            Ok(list) => found.extend(list),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    for r in requests {
        let answer = match &failure {
            Some(e) => Err(e.clone()),
            None => Ok(found.get(&r.name).cloned()),
        };
        let _ = r.reply.send(answer);
    }
}

#[cfg(all(test, feature = "test-support"))]
mod tests {
    use super::*;
    use crate::aws::{AwsProvider, ServiceRequest, Target};
    use crate::testing::fakes;

    #[tokio::test]
    async fn reads_of_25_services_in_one_window_cost_3_calls() {
        let aws = fakes::FakeAws::new();
        let clients = aws.clients(&Target { environment: "e".into(), region: "eu-west-1".into(), role_arn: None }).await.unwrap();
        for i in 0..25 {
            let req = ServiceRequest {
                cluster: "c".into(),
                name: format!("s{i}"),
                task_definition: "td:1".into(),
                desired_count: 1,
                subnets: vec![],
                security_groups: vec![],
                assign_public_ip: false,
                maximum_percent: 200,
                minimum_healthy_percent: 100,
                tags: Default::default(),
                client_token: String::new(),
            };
            clients.ecs.create_service(&req).await.unwrap();
        }
        let reader = ServiceReader::start();
        let reads = (0..25).map(|i| {
            let (reader, ecs) = (reader.clone(), clients.ecs.clone());
            async move { reader.describe(ecs, "e", "c", &format!("s{i}")).await }
        });
        let results = futures::future::join_all(reads).await;
        assert!(results.iter().all(|r| r.as_ref().is_ok_and(|s| s.is_some())));
        assert_eq!(aws.count("DescribeServices"), 3);
        assert!(reader.describe(clients.ecs.clone(), "e", "c", "missing").await.unwrap().is_none());
    }
}
