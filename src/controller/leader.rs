//! Leader election on a `coordination.k8s.io/v1` Lease, the way client-go does it:
//! optimistic concurrency on the Lease's resourceVersion, takeover once the record has not
//! changed for `leaseDurationSeconds` *as observed locally* (never by comparing another
//! replica's `renewTime` with this replica's clock: clocks differ), and a voluntary release
//! on shutdown.
//!
//! Fencing: [`Leadership`] says whether this replica may act right now — only within 2/3 of
//! a lease since its last successful renewal, by the local monotonic clock, so a replica
//! paused past its lease (GC, SIGSTOP, a slow node) stops acting before it could overlap a
//! new leader; the process then cancels its in-flight reconciles and exits.
//!
//! kube-lease-manager (the kube 5 crate) relies on server-side-apply field conflicts; the
//! resourceVersion protocol here is the one every Kubernetes controller uses and needs
//! nothing but get/create/replace.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
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

/// Decides from the lease's spec and how long this replica has seen that same record
/// unchanged (by its own clock), pure.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration) -> Decision {
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
    let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15));
    if unchanged_for >= duration {
        Decision::Take
    } else {
        Decision::Wait
    }
}

/// Whether this replica may act now (see the module docs).
#[derive(Debug)]
pub struct Leadership {
    renewed: Mutex<Option<Instant>>,
    valid_for: Duration,
    lost: AtomicBool,
}

impl Leadership {
    /// Leadership that stays valid for `valid_for` after each renewal.
    pub fn new(valid_for: Duration) -> Self {
        Leadership { renewed: Mutex::new(None), valid_for, lost: AtomicBool::new(false) }
    }

    /// A successful acquisition or renewal, now.
    pub fn renewed(&self) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some(Instant::now());
        }
    }

    /// Leadership is gone for good (another holder, or renewal too late).
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    /// True while renewed recently enough and never lost.
    pub fn is_valid(&self) -> bool {
        !self.lost.load(Ordering::SeqCst) && self.renewed.lock().ok().and_then(|r| *r).is_some_and(|at| at.elapsed() < self.valid_for)
    }
}

/// The lease record as this replica last saw it change, and when (locally).
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    transitions: Option<i32>,
}

/// A participant in the election.
pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    seen: Mutex<Option<(Seen, Instant)>>,
}

impl Elector {
    /// A participant using `client`.
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> Self {
        Elector { api: Api::namespaced(client, &cfg.namespace), cfg, seen: Mutex::new(None) }
    }

    /// How long the record has been unchanged, as this replica observed it.
    fn unchanged_for(&self, spec: Option<&LeaseSpec>) -> Duration {
        let now = Instant::now();
        let record = Seen {
            holder: spec.and_then(|s| s.holder_identity.clone()),
            renew_time: spec.and_then(|s| s.renew_time.as_ref().map(|t| t.0)),
            transitions: spec.and_then(|s| s.lease_transitions),
        };
        let Ok(mut seen) = self.seen.lock() else { return Duration::ZERO };
        match seen.as_ref() {
            Some((r, at)) if *r == record => now.saturating_duration_since(*at),
            _ => {
                *seen = Some((record, now));
                Duration::ZERO
            }
        }
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
        let decision = decide(lease.spec.as_ref(), &self.cfg.identity, self.unchanged_for(lease.spec.as_ref()));
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
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
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

    fn lease(holder: Option<&str>, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(String::from),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..Default::default()
        }
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", Duration::ZERO), Decision::Take);
        assert_eq!(decide(Some(&lease(None, 15)), "a", Duration::ZERO), Decision::Take);
        assert_eq!(decide(Some(&lease(Some(""), 15)), "a", Duration::ZERO), Decision::Take);
    }

    #[test]
    fn the_holder_renews_its_own_lease() {
        assert_eq!(decide(Some(&lease(Some("a"), 15)), "a", Duration::from_secs(100)), Decision::Renew);
    }

    /// Expiry is judged by how long this replica saw the record unchanged, whatever the
    /// holder's `renewTime` says (its clock may be hours off ours).
    #[test]
    fn another_holders_lease_is_respected_until_it_is_seen_unchanged_for_its_duration() {
        let mut skewed = lease(Some("b"), 15);
        skewed.renew_time = Some(MicroTime(Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(3600)));
        assert_eq!(decide(Some(&skewed), "a", Duration::from_secs(5)), Decision::Wait, "an old renewTime alone is no expiry");
        assert_eq!(decide(Some(&lease(Some("b"), 15)), "a", Duration::from_secs(15)), Decision::Take);
    }

    #[test]
    fn leadership_is_valid_only_soon_after_a_renewal_and_never_after_it_is_lost() {
        let l = Leadership::new(Duration::from_millis(50));
        assert!(!l.is_valid(), "not before the first renewal");
        l.renewed();
        assert!(l.is_valid());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!l.is_valid(), "a replica paused past its lease may not act");
        l.renewed();
        l.lose();
        assert!(!l.is_valid());
    }
}
