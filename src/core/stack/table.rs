//! DynamoDB table plan: a declared table vs what DynamoDB reports → the calls that bring it
//! to its declared state, or the reason it may not change. Pure.
//!
//! DynamoDB's rules the plan follows (DynamoDB API Reference, UpdateTable): the key schema
//! is fixed at creation; an UpdateTable call makes one kind of change (throughput and
//! billing, one index created or deleted, streams, encryption, deletion protection) and
//! leaves the table UPDATING, and no other UpdateTable is accepted until it is ACTIVE again —
//! so the plan makes one UpdateTable per pass and waits for the rest. Point-in-time recovery
//! (UpdateContinuousBackups), TTL (UpdateTimeToLive) and tags (TagResource) are separate
//! APIs. A stream's view type cannot change while it is enabled: it is disabled first.
//! TTL accepts one change per table per hour: a new attribute name is disabled first and
//! enabled on a later pass.

use std::collections::BTreeMap;

use crate::api::{reasons, AttributeType, Billing, Capacity, IndexSpec, KeyAttribute, Projection, StreamView, TableEncryption, TableSpec};

use super::plan::{
    add_missing_tags, ownership_check, ownership_tags, unsupported, Call, FieldChange, ObservedTable, PlanInputs, Refusal, ResourceKind,
    ResourcePlan, TableUpdate,
};
use crate::core::requeue::Category;

/// The DynamoDB name of a stream view type.
pub fn stream_view_name(v: StreamView) -> &'static str {
    match v {
        StreamView::KeysOnly => "KEYS_ONLY",
        StreamView::NewImage => "NEW_IMAGE",
        StreamView::OldImage => "OLD_IMAGE",
        StreamView::NewAndOldImages => "NEW_AND_OLD_IMAGES",
    }
}

/// The DynamoDB name of an attribute type.
pub fn attribute_type_name(t: AttributeType) -> &'static str {
    match t {
        AttributeType::S => "S",
        AttributeType::N => "N",
        AttributeType::B => "B",
    }
}

fn key(k: Option<&KeyAttribute>) -> String {
    k.map(|k| format!("{}({})", k.name, attribute_type_name(k.type_))).unwrap_or_default()
}

fn capacity(c: Option<Capacity>) -> String {
    c.map(|c| format!("read={} write={}", c.read, c.write)).unwrap_or_default()
}

fn billing_name(b: Billing) -> &'static str {
    match b {
        Billing::OnDemand => "OnDemand",
        Billing::Provisioned => "Provisioned",
    }
}

fn encryption_name(e: TableEncryption) -> &'static str {
    match e {
        TableEncryption::AwsOwned => "AwsOwned",
        TableEncryption::AwsManaged => "AwsManaged",
        TableEncryption::CustomerKey => "CustomerKey",
    }
}

/// Every key attribute of a table and its indexes with its type, or the attribute declared
/// with two types (DynamoDB's AttributeDefinitions hold one type per name).
pub fn attribute_definitions(spec: &TableSpec) -> Result<BTreeMap<String, AttributeType>, String> {
    let mut defs = BTreeMap::new();
    let keys = [Some(&spec.partition_key), spec.sort_key.as_ref()]
        .into_iter()
        .chain(spec.global_secondary_indexes.iter().flat_map(|i| [Some(&i.partition_key), i.sort_key.as_ref()]))
        .flatten();
    for k in keys {
        if let Some(t) = defs.insert(k.name.clone(), k.type_) {
            if t != k.type_ {
                return Err(format!(
                    "attribute {} is declared both {} and {}",
                    k.name,
                    attribute_type_name(t),
                    attribute_type_name(k.type_)
                ));
            }
        }
    }
    Ok(defs)
}

/// An index's capacity: its own, else the table's (Provisioned only).
pub fn index_capacity(spec: &TableSpec, index: &IndexSpec) -> Option<Capacity> {
    (spec.billing == Billing::Provisioned).then(|| index.capacity.or(spec.capacity)).flatten()
}

/// Whether the observed encryption is what the spec asks for. DynamoDB reports the key's
/// ARN; a spec naming an alias matches any KMS key (KMS would have to resolve it).
fn encryption_matches(spec: &TableSpec, t: &ObservedTable) -> bool {
    match spec.encryption {
        TableEncryption::AwsOwned => t.encryption == TableEncryption::AwsOwned,
        TableEncryption::AwsManaged => t.encryption != TableEncryption::AwsOwned,
        TableEncryption::CustomerKey => {
            let Some(want) = spec.kms_key_id.as_deref() else { return false };
            t.encryption != TableEncryption::AwsOwned
                && (want.starts_with("alias/")
                    || t.kms_key_arn.as_deref().is_some_and(|arn| arn == want || arn.ends_with(&format!("/{want}"))))
        }
    }
}

fn invalid(name: &str, message: String) -> Refusal {
    Refusal { reason: reasons::INVALID_SPEC, message: format!("Table {name}: {message}"), category: Category::InvalidSpec }
}

/// Plans one table.
pub fn plan_table(spec: &TableSpec, observed: Option<&ObservedTable>, ctx: &PlanInputs) -> ResourcePlan {
    let mut plan = ResourcePlan::new(ResourceKind::Table, &spec.name);
    let name = spec.name.clone();
    if let Err(e) = attribute_definitions(spec) {
        plan.refusal = Some(invalid(&name, e));
        return plan;
    }
    if spec.billing == Billing::Provisioned && spec.capacity.is_none() {
        plan.refusal = Some(invalid(&name, "billing: Provisioned needs capacity: {read, write}".into()));
        return plan;
    }
    if spec.encryption == TableEncryption::CustomerKey && spec.kms_key_id.is_none() {
        plan.refusal = Some(invalid(&name, "encryption: CustomerKey needs kmsKeyId".into()));
        return plan;
    }
    let mut names: Vec<&str> = spec.global_secondary_indexes.iter().map(|i| i.name.as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|w| w[0] == w[1]) {
        plan.refusal = Some(invalid(&name, "two globalSecondaryIndexes share a name".into()));
        return plan;
    }
    let tags = ownership_tags(ctx, &spec.tags);
    let Some(t) = observed else {
        plan.create = true;
        plan.steps.push(Call::CreateTable { spec: spec.clone(), tags });
        // Point-in-time recovery and TTL are set once the table is ACTIVE.
        if spec.point_in_time_recovery || spec.ttl_attribute.is_some() {
            plan.waiting = Some("CREATING".into());
        }
        return plan;
    };
    if let Some(r) = ownership_check(ResourceKind::Table, &name, &t.tags, ctx) {
        plan.refusal = Some(r);
        return plan;
    }
    let refuse = |field: &str, from: String, to: String, why: &str| unsupported(ResourceKind::Table, &name, field, from, to, why);
    const KEYS: &str = "a table's key schema is fixed at creation; create a new table and copy the items";
    if t.partition_key.as_ref() != Some(&spec.partition_key) {
        plan.refusal = Some(refuse("partitionKey", key(t.partition_key.as_ref()), key(Some(&spec.partition_key)), KEYS));
        return plan;
    }
    if t.sort_key != spec.sort_key {
        plan.refusal = Some(refuse("sortKey", key(t.sort_key.as_ref()), key(spec.sort_key.as_ref()), KEYS));
        return plan;
    }
    for i in &spec.global_secondary_indexes {
        let Some(o) = t.indexes.iter().find(|o| o.name == i.name) else { continue };
        let mut want_attrs = i.non_key_attributes.clone();
        want_attrs.sort();
        if o.partition_key.as_ref() != Some(&i.partition_key)
            || o.sort_key != i.sort_key
            || o.projection != i.projection
            || (i.projection == Projection::Include && o.non_key_attributes != want_attrs)
        {
            plan.refusal = Some(refuse(
                "globalSecondaryIndexes",
                format!("{} on {} {}", i.name, key(o.partition_key.as_ref()), key(o.sort_key.as_ref())),
                format!("{} on {} {}", i.name, key(Some(&i.partition_key)), key(i.sort_key.as_ref())),
                "an index's keys and projection are fixed; add an index under a new name and remove this one",
            ));
            return plan;
        }
    }

    // UpdateTable changes, most important first; one is made per pass.
    let mut updates: Vec<(FieldChange, TableUpdate)> = vec![];
    let index_caps: Vec<(String, Capacity)> = spec
        .global_secondary_indexes
        .iter()
        .filter(|i| t.indexes.iter().any(|o| o.name == i.name))
        .filter_map(|i| index_capacity(spec, i).map(|c| (i.name.clone(), c)))
        .collect();
    let want_cap = if spec.billing == Billing::Provisioned { spec.capacity } else { None };
    let caps_differ = index_caps.iter().any(|(n, c)| t.indexes.iter().find(|o| &o.name == n).and_then(|o| o.capacity) != Some(*c));
    if t.billing != spec.billing || t.capacity != want_cap || caps_differ {
        updates.push((
            FieldChange {
                field: "billing",
                from: format!("{} {}", billing_name(t.billing), capacity(t.capacity)).trim().to_string(),
                to: format!("{} {}", billing_name(spec.billing), capacity(want_cap)).trim().to_string(),
            },
            TableUpdate::Billing { billing: spec.billing, capacity: want_cap, indexes: index_caps },
        ));
    }
    if t.deletion_protection != spec.deletion_protection {
        updates.push((
            FieldChange { field: "deletionProtection", from: t.deletion_protection.to_string(), to: spec.deletion_protection.to_string() },
            TableUpdate::DeletionProtection(spec.deletion_protection),
        ));
    }
    for i in spec.global_secondary_indexes.iter().filter(|i| !t.indexes.iter().any(|o| o.name == i.name)) {
        updates.push((
            FieldChange { field: "globalSecondaryIndexes", from: String::new(), to: format!("+{}", i.name) },
            TableUpdate::CreateIndex { index: i.clone(), capacity: index_capacity(spec, i) },
        ));
    }
    for o in t.indexes.iter().filter(|o| !spec.global_secondary_indexes.iter().any(|i| i.name == o.name)) {
        updates.push((
            FieldChange { field: "globalSecondaryIndexes", from: o.name.clone(), to: format!("-{}", o.name) },
            TableUpdate::DeleteIndex { name: o.name.clone() },
        ));
    }
    if t.stream != spec.stream {
        let show = |s: Option<StreamView>| s.map(stream_view_name).unwrap_or("off").to_string();
        // A view type cannot change while a stream is on: off first, the new one next pass.
        let next = if t.stream.is_some() && spec.stream.is_some() { None } else { spec.stream };
        updates.push((FieldChange { field: "stream", from: show(t.stream), to: show(spec.stream) }, TableUpdate::Stream(next)));
    }
    if !encryption_matches(spec, t) {
        let show = |e: TableEncryption, k: Option<&str>| match k {
            Some(k) if e != TableEncryption::AwsOwned => format!("{}({k})", encryption_name(e)),
            _ => encryption_name(e).to_string(),
        };
        updates.push((
            FieldChange {
                field: "encryption",
                from: show(t.encryption, t.kms_key_arn.as_deref()),
                to: show(spec.encryption, spec.kms_key_id.as_deref()),
            },
            TableUpdate::Encryption { encryption: spec.encryption, kms_key_id: spec.kms_key_id.clone() },
        ));
    }
    let busy = t.status != "ACTIVE" || t.indexes.iter().any(|o| o.status != "ACTIVE");
    let more_after_one = updates.len() > 1 || matches!(updates.first(), Some((_, TableUpdate::Stream(None))) if spec.stream.is_some());
    let mut first = true;
    for (change, update) in updates {
        plan.changes.push(change);
        if first && !busy {
            plan.steps.push(Call::UpdateTable { name: name.clone(), update });
        }
        first = false;
    }
    if busy && !plan.changes.is_empty() {
        plan.waiting = Some(t.status.clone());
    } else if more_after_one {
        // DynamoDB takes the next UpdateTable once the table is ACTIVE again.
        plan.waiting = Some("UPDATING".into());
    }

    if t.point_in_time_recovery != spec.point_in_time_recovery {
        plan.changes.push(FieldChange {
            field: "pointInTimeRecovery",
            from: t.point_in_time_recovery.to_string(),
            to: spec.point_in_time_recovery.to_string(),
        });
        if t.status == "ACTIVE" {
            plan.steps.push(Call::SetPointInTimeRecovery { name: name.clone(), enabled: spec.point_in_time_recovery });
        } else {
            plan.waiting.get_or_insert_with(|| t.status.clone());
        }
    }
    let ttl_on = t.ttl.as_ref().filter(|(_, s)| s == "ENABLED" || s == "ENABLING").map(|(a, _)| a.clone());
    let ttl_moving = t.ttl.as_ref().is_some_and(|(_, s)| s == "ENABLING" || s == "DISABLING");
    if ttl_on != spec.ttl_attribute {
        plan.changes.push(FieldChange {
            field: "ttlAttribute",
            from: ttl_on.clone().unwrap_or_default(),
            to: spec.ttl_attribute.clone().unwrap_or_default(),
        });
        if t.status != "ACTIVE" {
            plan.waiting.get_or_insert_with(|| t.status.clone());
        } else if ttl_moving {
            plan.waiting.get_or_insert_with(|| "TTL changing".into());
        } else {
            match (&ttl_on, &spec.ttl_attribute) {
                // Another attribute: TTL off first (it names the attribute it turns off).
                (Some(old), Some(_)) => {
                    plan.steps.push(Call::SetTtl { name: name.clone(), attribute: old.clone(), enabled: false });
                    plan.waiting.get_or_insert_with(|| "TTL changing".into());
                }
                (None, Some(new)) => plan.steps.push(Call::SetTtl { name: name.clone(), attribute: new.clone(), enabled: true }),
                (Some(old), None) => plan.steps.push(Call::SetTtl { name: name.clone(), attribute: old.clone(), enabled: false }),
                (None, None) => {}
            }
        }
    }
    add_missing_tags(&mut plan, &tags, &t.tags, |tags| Call::TagTable { arn: t.arn.clone(), tags });
    plan
}

#[cfg(test)]
mod tests;
