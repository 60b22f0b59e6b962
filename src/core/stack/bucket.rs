//! S3 buckets: a declared bucket vs what S3 reports → the calls that bring it to its declared
//! state, or the reason it may not change. Pure.

use std::collections::BTreeMap;

use crate::api::{BucketEncryption, BucketSpec, EncryptionAlgorithm, LifecycleRule, StorageClass};
use crate::core::ownership::missing_tags;

use super::plan::{
    join, join_keys, ownership_check, ownership_tags, unsupported, Call, FieldChange, ObservedBucket, PlanInputs, ResourceKind,
    ResourcePlan,
};

/// Lifecycle rules in a canonical form, so AWS's answer compares equal to the spec.
pub fn normalize_rules(rules: &[LifecycleRule]) -> Vec<LifecycleRule> {
    let mut out: Vec<LifecycleRule> = rules
        .iter()
        .map(|r| {
            let mut r = r.clone();
            r.transitions.sort_by_key(|t| t.days);
            r
        })
        .collect();
    out.sort_by(|a, b| a.prefix.cmp(&b.prefix).then(a.expire_days.cmp(&b.expire_days)));
    out
}

fn describe_rules(rules: &[LifecycleRule]) -> String {
    rules
        .iter()
        .map(|r| {
            let mut parts = vec![format!("prefix={:?}", r.prefix)];
            if let Some(d) = r.expire_days {
                parts.push(format!("expire={d}d"));
            }
            for t in &r.transitions {
                parts.push(format!("{}d->{}", t.days, storage_class_name(t.storage_class)));
            }
            parts.join(" ")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The AWS name of a storage class.
pub fn storage_class_name(c: StorageClass) -> &'static str {
    match c {
        StorageClass::StandardIa => "STANDARD_IA",
        StorageClass::OnezoneIa => "ONEZONE_IA",
        StorageClass::IntelligentTiering => "INTELLIGENT_TIERING",
        StorageClass::GlacierIr => "GLACIER_IR",
        StorageClass::Glacier => "GLACIER",
        StorageClass::DeepArchive => "DEEP_ARCHIVE",
    }
}

fn describe_encryption(e: Option<&BucketEncryption>) -> String {
    match e {
        None => String::new(),
        Some(e) => {
            let alg = match e.algorithm {
                EncryptionAlgorithm::Aes256 => "AES256",
                EncryptionAlgorithm::AwsKms => "aws:kms",
            };
            match &e.kms_key_id {
                Some(k) => format!("{alg}({k})"),
                None => alg.to_string(),
            }
        }
    }
}

/// Plans one bucket. Lifecycle rules are managed when the spec lists some; tags are
/// merged (keys others set stay).
pub fn plan_bucket(spec: &BucketSpec, observed: Option<&ObservedBucket>, ctx: &PlanInputs) -> ResourcePlan {
    let mut plan = ResourcePlan::new(ResourceKind::Bucket, &spec.name);
    let name = spec.name.clone();
    let tags = ownership_tags(ctx, &spec.tags);
    let empty = ObservedBucket::default();
    let b = match observed {
        None => {
            plan.create = true;
            plan.steps.push(Call::CreateBucket { name: name.clone(), region: ctx.region.into(), tags: tags.clone() });
            plan.steps.push(Call::EnableBucketAbac { name: name.clone() });
            &empty
        }
        Some(b) => {
            if let Some(r) = ownership_check(ResourceKind::Bucket, &spec.name, &b.tags, ctx) {
                plan.refusal = Some(r);
                return plan;
            }
            if !b.region.is_empty() && b.region != ctx.region {
                plan.refusal =
                    Some(unsupported(ResourceKind::Bucket, &name, "region", &b.region, ctx.region, "a bucket cannot move between regions"));
                return plan;
            }
            b
        }
    };
    let create = plan.create;
    let change = |plan: &mut ResourcePlan, field: &'static str, from: String, to: String, step: Call| {
        if !create {
            plan.changes.push(FieldChange { field, from, to });
        }
        plan.steps.push(step);
    };
    // A bucket made before shipshape turned ABAC on (or adopted) gets it first: its tags,
    // ownership included, then decide what IAM lets shipshape do with it.
    if !create && !b.abac {
        change(&mut plan, "abac", "Disabled".into(), "Enabled".into(), Call::EnableBucketAbac { name: name.clone() });
    }
    let missing = if create { BTreeMap::new() } else { missing_tags(&tags, &b.tags) };
    if !missing.is_empty() {
        change(&mut plan, "tags", join_keys(&b.tags, &missing), join(&missing), Call::TagBucket { name: name.clone(), tags: missing });
    }
    let enabled = b.versioning.as_deref() == Some("Enabled");
    if spec.versioning != enabled {
        let from = b.versioning.clone().unwrap_or_else(|| "Disabled".into());
        let to = if spec.versioning { "Enabled" } else { "Suspended" };
        change(&mut plan, "versioning", from, to.into(), Call::SetVersioning { name: name.clone(), enabled: spec.versioning });
    }
    if let Some(e) = &spec.encryption {
        if b.encryption.as_ref() != Some(e) {
            change(
                &mut plan,
                "encryption",
                describe_encryption(b.encryption.as_ref()),
                describe_encryption(Some(e)),
                Call::SetEncryption { name: name.clone(), encryption: e.clone() },
            );
        }
    }
    let block_differs = if spec.block_public_access { !b.public_access_blocked } else { b.public_access_block_present };
    if block_differs {
        change(
            &mut plan,
            "blockPublicAccess",
            b.public_access_blocked.to_string(),
            spec.block_public_access.to_string(),
            Call::SetPublicAccessBlock { name: name.clone(), block: spec.block_public_access },
        );
    }
    if !spec.lifecycle.is_empty() {
        let want = normalize_rules(&spec.lifecycle);
        if normalize_rules(&b.lifecycle) != want {
            change(
                &mut plan,
                "lifecycle",
                describe_rules(&normalize_rules(&b.lifecycle)),
                describe_rules(&want),
                Call::SetLifecycle { name: name.clone(), rules: want },
            );
        }
    }
    plan
}
