//! Whose an existing AWS resource is, read from its tags: shipshape writes only to what it
//! created (`shipshape.dev/owner` names the object) or what it was told to adopt
//! (`shipshape.dev/adopt: "true"` on the object). Pure.

use std::collections::BTreeMap;

use crate::api::OWNER_TAG;

/// What shipshape may do with an existing resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// It carries this object's owner tag.
    Ours,
    /// It carries no owner tag and the object asks to adopt it: tag it, then manage it.
    Adopt,
    /// Another object's, or unmanaged without the adopt annotation: hands off, and why.
    Conflict(String),
}

/// The ownership of `kind name` (e.g. "ECS service api in cluster prod") with `tags`, for
/// the object `owner` (`namespace/name`) of kind `object_kind`.
pub fn check(what: &str, tags: &BTreeMap<String, String>, owner: &str, adopt: bool, object_kind: &str) -> Ownership {
    match tags.get(OWNER_TAG) {
        Some(o) if o == owner => Ownership::Ours,
        Some(other) => Ownership::Conflict(format!(
            "{what} already exists and belongs to {other} (tag {OWNER_TAG}); shipshape never takes over another owner's resource: choose another name"
        )),
        None if adopt => Ownership::Adopt,
        None => Ownership::Conflict(format!(
            "{what} already exists and is not managed by shipshape; to adopt it, annotate the {object_kind} with shipshape.dev/adopt: \"true\""
        )),
    }
}

/// The desired tags that `observed` lacks or holds with another value.
pub fn missing_tags(desired: &BTreeMap<String, String>, observed: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    desired.iter().filter(|(k, v)| observed.get(*k) != Some(v)).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(owner: Option<&str>) -> BTreeMap<String, String> {
        owner.map(|o| [(OWNER_TAG.to_string(), o.to_string())].into()).unwrap_or_default()
    }

    #[test]
    fn only_our_own_or_an_adopted_unowned_resource_may_be_written() {
        assert_eq!(check("ECS service api", &tags(Some("team-a/api")), "team-a/api", false, "ServiceRelease"), Ownership::Ours);
        let Ownership::Conflict(m) = check("ECS service api", &tags(Some("team-a/api")), "team-b/api", true, "ServiceRelease") else {
            panic!()
        };
        assert!(m.contains("belongs to team-a/api"), "adopting never takes another owner's: {m}");
        let Ownership::Conflict(m) = check("ECS service api", &tags(None), "team-b/api", false, "ServiceRelease") else { panic!() };
        assert!(m.contains("annotate the ServiceRelease with shipshape.dev/adopt"), "{m}");
        assert_eq!(check("ECS service api", &tags(None), "team-b/api", true, "ServiceRelease"), Ownership::Adopt);
    }
}
