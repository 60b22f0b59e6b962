//! DescribeTasks for the one-off tasks of steps before traffic and smoke tests, shared by
//! the releases of a cluster: a release asking about its task gets the answer another
//! release's call brought in less than [`FRESH`] ago, or makes one call that also reads the
//! cluster's other tasks still running (ECS answers up to 100 per call). N releases waiting
//! on a migration each second cost about one call per [`FRESH`], not N, so the rate limit
//! does not delay the moment a task is seen stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::{AwsError, Ecs};
use crate::core::rollout::TaskObs;

/// How old an answer may be.
pub const FRESH: Duration = Duration::from_millis(250);

/// Tasks per DescribeTasks call (ECS's maximum).
const PER_CALL: usize = 100;

/// Answers nobody asked about for this long are dropped.
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Task ARN → (what ECS said, when, when last asked about).
type ClusterTasks = HashMap<String, (Option<TaskObs>, Instant, Instant)>;

/// The tasks of each (environment, cluster).
#[derive(Default)]
pub struct TaskReader {
    cache: Mutex<HashMap<(String, String), ClusterTasks>>,
}

impl TaskReader {
    /// Task `arn` of `cluster`, read at most [`FRESH`] ago (None: ECS does not know it).
    pub async fn describe(&self, ecs: Arc<dyn Ecs>, environment: &str, cluster: &str, arn: &str) -> Result<Option<TaskObs>, AwsError> {
        let key = (environment.to_string(), cluster.to_string());
        let now = Instant::now();
        let batch = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            let tasks = cache.entry(key.clone()).or_default();
            tasks.retain(|_, (_, _, asked)| asked.elapsed() < FORGET_AFTER);
            if let Some((obs, at, asked)) = tasks.get_mut(arn) {
                *asked = now;
                if at.elapsed() < FRESH {
                    return Ok(obs.clone());
                }
            }
            // This task, and the cluster's others not yet seen stopped, stalest first.
            let mut others: Vec<(Instant, String)> = tasks
                .iter()
                .filter(|(a, (obs, _, _))| *a != arn && obs.as_ref().is_none_or(|t| t.last_status != "STOPPED"))
                .map(|(a, (_, at, _))| (*at, a.clone()))
                .collect();
            others.sort();
            let mut batch = vec![arn.to_string()];
            batch.extend(others.into_iter().take(PER_CALL - 1).map(|(_, a)| a));
            batch
        };
        let answer = ecs.describe_tasks(cluster, &batch).await?;
        let at = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let tasks = cache.entry(key).or_default();
        for a in &batch {
            let obs = answer.iter().find(|t| t.arn == *a).cloned();
            let asked = tasks.get(a).map(|(_, _, asked)| *asked).unwrap_or(now);
            tasks.insert(a.clone(), (obs, at, asked.max(if a == arn { now } else { asked })));
        }
        Ok(answer.into_iter().find(|t| t.arn == arn))
    }
}
