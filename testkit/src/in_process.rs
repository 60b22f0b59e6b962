//! The controllers in process: one reconcile at a time of an Environment, a StackSpec or a
//! ServiceRelease, as the runtime calls it, against the in-memory AWS ([`FakeAws`]) and the
//! API server double ([`ApiDouble`]), both writing into one [`Journal`]. For the cases where
//! the order of the controller's effects is the behaviour (a decision written before the AWS
//! call it decides, nothing written to what is not ours); the e2e suite runs the same code
//! against the real control plane and moto.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

use shipshape::api::{finalizer_name, Environment, EnvironmentStatus, StackSpec};
use shipshape::controller::reconcile::{reconcile, Kind};
use shipshape::controller::{Context, Error, Settings, Stores};
use shipshape::metrics::Metrics;

use crate::fakes::FakeAws;
use crate::kube_double::{ApiDouble, Journal};

/// The controllers' world: the API server, AWS, the journal of both, the reconcile context.
pub struct InProcess {
    /// The API server double.
    pub api: ApiDouble,
    /// The in-memory AWS account.
    pub aws: FakeAws,
    /// Every effect on either side, in order.
    pub journal: Journal,
    /// What the reconciles get (metrics, caches, settings).
    pub ctx: Arc<Context>,
}

impl InProcess {
    /// A world whose caches hold `environments` and `stacks` (as the watches would), each
    /// Environment's cluster already there (its status names it).
    pub fn new(environments: Vec<Environment>, stacks: Vec<StackSpec>) -> Self {
        let journal = Journal::default();
        let api = ApiDouble::new(journal.clone());
        let aws = FakeAws::with_journal(journal.clone());
        let environments: Vec<Environment> = environments
            .into_iter()
            .map(|mut e| {
                let arn = format!("arn:aws:ecs:{}:123456789012:cluster/{}", e.spec.region, e.spec.ecs_cluster.name);
                e.status.get_or_insert_with(EnvironmentStatus::default).cluster_arn.get_or_insert(arn);
                api.put(&e)
            })
            .collect();
        let settings = Settings { namespace: "shipshape".into(), ..Settings::default() };
        let stores = Stores::holding(environments, stacks, vec![]);
        let ctx = Context::new(api.client(), Arc::new(aws.clone()), Metrics::new(), settings, None, stores);
        InProcess { api, aws, journal, ctx: Arc::new(ctx) }
    }

    /// Stores `obj` with shipshape's finalizer already on it (as after the first reconcile),
    /// and returns it as stored.
    pub fn put<K: Kind>(&self, obj: &K) -> K {
        let mut obj = obj.clone();
        let finalizer = finalizer_name::<K>();
        let finalizers = obj.meta_mut().finalizers.get_or_insert_with(Vec::new);
        if !finalizers.contains(&finalizer) {
            finalizers.push(finalizer);
        }
        self.api.put(&obj)
    }

    /// The stored version of `obj` (None once it is gone).
    pub fn stored<K: Resource<DynamicType = ()> + DeserializeOwned>(&self, obj: &K) -> Option<K> {
        self.api.get(obj)
    }

    /// One reconcile of the stored version of `obj`, as the runtime runs it.
    pub async fn reconcile<K: Kind + Serialize>(&self, obj: &K) -> Result<Action, Error> {
        let stored = self.stored(obj).expect("the object is stored (InProcess::put)");
        reconcile::<K>(Arc::new(stored), self.ctx.clone()).await
    }

    /// Marks the stored `obj` deleted (its finalizers keep it until they go).
    pub fn delete<K: Kind>(&self, obj: &K) {
        let mut stored = self.stored(obj).expect("the object is stored");
        stored.meta_mut().deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()));
        self.api.put(&stored);
    }
}
