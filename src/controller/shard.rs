//! Shards for installations that outgrow one replica, the way Argo CD shards its
//! application controller: each shard owns the StackSpecs and ServiceReleases whose
//! namespace hashes to it (so a team's objects stay together) and holds a Lease of its own;
//! shard 0 also owns the Environments. No other coordination.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// This process's shard: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based.
    pub index: u32,
    /// How many shards there are (1: no sharding).
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl Shard {
    /// The shard a namespace belongs to: stable across processes and versions (SHA-256).
    pub fn of_namespace(namespace: &str, count: u32) -> u32 {
        let digest = Sha256::digest(namespace.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u32::try_from(u64::from_be_bytes(first) % u64::from(count.max(1))).unwrap_or(0)
    }

    /// Whether this shard reconciles objects of `namespace` (None: cluster-scoped, which
    /// shard 0 owns).
    pub fn owns(&self, namespace: Option<&str>) -> bool {
        match namespace {
            Some(ns) => Self::of_namespace(ns, self.count) == self.index,
            None => self.index == 0,
        }
    }

    /// The Lease name of this shard: `base` alone without sharding, `base-N` with.
    pub fn lease_name(&self, base: &str) -> String {
        if self.count <= 1 {
            base.to_string()
        } else {
            format!("{base}-{}", self.index)
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Why a `--shard` value is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not a shard: write N/M with 0 <= N < M, e.g. 0/2")]
pub struct InvalidShard(pub String);

impl FromStr for Shard {
    type Err = InvalidShard;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || InvalidShard(s.to_string());
        let (n, m) = s.split_once('/').ok_or_else(err)?;
        let (index, count): (u32, u32) = (n.trim().parse().map_err(|_| err())?, m.trim().parse().map_err(|_| err())?);
        if count == 0 || index >= count || count > 1024 {
            return Err(err());
        }
        Ok(Shard { index, count })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_namespace_has_exactly_one_shard_and_environments_belong_to_shard_0() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
        let mut per_shard = [0usize; 3];
        for i in 0..300 {
            let ns = format!("team-{i}");
            let owners: Vec<&Shard> = shards.iter().filter(|s| s.owns(Some(&ns))).collect();
            assert_eq!(owners.len(), 1, "{ns}");
            per_shard[owners[0].index as usize] += 1;
        }
        assert!(per_shard.iter().all(|n| *n > 60), "roughly even: {per_shard:?}");
        assert!(shards[0].owns(None) && !shards[1].owns(None) && !shards[2].owns(None));
        assert!(Shard::default().owns(Some("anything")) && Shard::default().owns(None));
    }

    #[test]
    fn shards_parse_as_n_of_m_and_name_their_lease() {
        assert_eq!("1/2".parse::<Shard>(), Ok(Shard { index: 1, count: 2 }));
        for bad in ["2/2", "0/0", "x/2", "1", "-1/2", "0/5000"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
        assert_eq!(Shard::default().lease_name("shipshape-controller"), "shipshape-controller");
        assert_eq!(Shard { index: 1, count: 2 }.lease_name("shipshape-controller"), "shipshape-controller-1");
    }
}
