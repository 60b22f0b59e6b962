//! DescribeDBInstances listed once per Environment for drift checks: RDS answers 100
//! instances per page, so N StackSpecs' drift checks cost about N/100 reads per listing
//! instead of N. A drift check accepts a listing younger than half its interval; anything
//! else (a new spec, a database being created or changed) reads its instance afresh, and a
//! database shipshape has just changed is read afresh until a listing taken after the change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::{AwsError, Rds};
use crate::core::stack::ObservedDatabase;

#[derive(Default)]
struct Listing {
    /// When the last complete listing started, and what it found.
    taken: Option<Instant>,
    found: HashMap<String, ObservedDatabase>,
    /// Databases changed by shipshape, and when: a listing older than that is not believed.
    changed: HashMap<String, Instant>,
}

impl Listing {
    fn answer(&self, name: &str, max_age: Duration) -> Option<Option<ObservedDatabase>> {
        let taken = self.taken?;
        if taken.elapsed() > max_age || self.changed.get(name).is_some_and(|at| *at >= taken) {
            return None;
        }
        Some(self.found.get(name).cloned())
    }
}

/// The per-Environment listings of DB instances.
#[derive(Clone, Default)]
pub struct DatabaseReader {
    listings: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<Listing>>>>>,
}

impl DatabaseReader {
    fn listing(&self, environment: &str) -> Arc<tokio::sync::Mutex<Listing>> {
        match self.listings.lock() {
            Ok(mut l) => l.entry(environment.to_string()).or_default().clone(),
            Err(_) => Arc::default(),
        }
    }

    /// The instance `name` as RDS reported it at most `max_age` ago (zero: read it now,
    /// alone). One listing of the Environment's account and Region runs at a time; the
    /// drift checks waiting for it share its answer.
    pub async fn describe(
        &self,
        rds: &dyn Rds,
        environment: &str,
        name: &str,
        max_age: Duration,
    ) -> Result<Option<ObservedDatabase>, AwsError> {
        if max_age.is_zero() {
            return rds.describe_db_instance(name).await;
        }
        let listing = self.listing(environment);
        let mut l = listing.lock().await;
        if let Some(answer) = l.answer(name, max_age) {
            return Ok(answer);
        }
        if l.changed.get(name).is_some_and(|at| at.elapsed() <= max_age) {
            // Changed since any listing could show it: read it alone (a new listing would
            // cost a page per 100 instances for one answer).
            drop(l);
            return rds.describe_db_instance(name).await;
        }
        let started = Instant::now();
        let all = rds.list_db_instances().await?;
        l.found = all.into_iter().map(|d| (d.name.clone(), d)).collect();
        l.taken = Some(started);
        l.changed.retain(|_, at| *at >= started);
        Ok(l.answer(name, max_age).unwrap_or_else(|| l.found.get(name).cloned()))
    }

    /// Marks `name` as changed by shipshape: listings taken before now no longer answer for it.
    pub async fn changed(&self, environment: &str, name: &str) {
        let listing = self.listing(environment);
        listing.lock().await.changed.insert(name.to_string(), Instant::now());
    }
}
