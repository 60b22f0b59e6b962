//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it:
//! optimistic concurrency on the Lease's resourceVersion, takeover once `renewTime +
//! leaseDurationSeconds` has passed, and a voluntary release on shutdown.
//!
//! kube-lease-manager (the kube 5 crate) relies on server-side-apply field conflicts; the
//! resourceVersion protocol here is the one every Kubernetes controller uses and needs
//! nothing but get/create/replace.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

/// Leader election settings.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Lease name.
    pub name: String,
    /// Lease namespace.
    pub namespace: String,
    /// This replica's identity (pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub duration: Duration,
    /// How often the holder renews, and others retry.
    pub retry_period: Duration,
}

/// What to do with the lease as found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it (a new transition).
    Take,
    /// Someone else holds a valid lease.
    Wait,
}

/// Decides from the lease's spec, pure.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Take;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder == me {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::Take;
    }
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15) as i64);
    match &spec.renew_time {
        Some(MicroTime(t)) if t.checked_add(duration).map(|e| e > now).unwrap_or(true) => Decision::Wait,
        _ => Decision::Take,
    }
}

/// A participant in the election.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
}

impl Elector {
    /// A participant using `client`.
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Elector { api: Api::namespaced(client, &cfg.namespace), cfg }
    }

    /// The settings.
    pub fn config(&self) -> &LeaseConfig {
        &self.cfg
    }

    /// One round: acquire or renew; true when this replica holds the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.cfg.name).await?;
        let secs = self.cfg.duration.as_secs().max(1) as i32;
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(self.cfg.name.clone()), ..Default::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.cfg.identity.clone()),
                    lease_duration_seconds: Some(secs),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let decision = decide(lease.spec.as_ref(), &self.cfg.identity, now);
        let spec = lease.spec.get_or_insert_with(Default::default);
        match decision {
            Decision::Wait => return Ok(false),
            Decision::Renew => {
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(secs);
            }
            Decision::Take => {
                spec.holder_identity = Some(self.cfg.identity.clone());
                spec.acquire_time = Some(MicroTime(now));
                spec.renew_time = Some(MicroTime(now));
                spec.lease_duration_seconds = Some(secs);
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
            }
        }
        // The resourceVersion read above makes this a compare-and-swap: a 409 means another
        // replica got there first.
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up so another replica can take over at once.
    pub async fn release(&self) -> Result<(), kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self.api.replace(&self.cfg.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(Timestamp::now() - SignedDuration::from_secs(renewed_secs_ago))),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Decision::Take);
        assert_eq!(decide(Some(&lease(None, 0, 15)), "a", now), Decision::Take);
        assert_eq!(decide(Some(&lease(Some(""), 0, 15)), "a", now), Decision::Take);
    }

    #[test]
    fn the_holder_renews_its_own_lease() {
        assert_eq!(decide(Some(&lease(Some("a"), 100, 15)), "a", Timestamp::now()), Decision::Renew);
    }

    #[test]
    fn another_holders_lease_is_respected_until_it_expires() {
        let now = Timestamp::now();
        assert_eq!(decide(Some(&lease(Some("b"), 5, 15)), "a", now), Decision::Wait);
        assert_eq!(decide(Some(&lease(Some("b"), 16, 15)), "a", now), Decision::Take);
    }
}
