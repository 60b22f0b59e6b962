//! The committed CRDs are what the code generates: `shipshape crd` == `cat crds/*.yaml`.

use std::process::Command;

#[test]
fn committed_crds_match_the_generator() {
    let out = Command::new(env!("CARGO_BIN_EXE_shipshape")).arg("crd").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crds");
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    let committed: String = files.iter().map(|f| std::fs::read_to_string(f).unwrap()).collect();
    assert!(generated == committed, "crds/ is stale: regenerate with `cargo run -q --example crdgen` (or fix the types)");
    for crd in shipshape::api::crds() {
        let name = crd.spec.names.plural.clone();
        let path = format!("{dir}/{name}.yaml");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), shipshape::api::crd_yaml(&crd), "{path}");
    }
}

#[test]
fn the_field_reference_is_generated_from_the_crds() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md")).unwrap_or_default();
    assert!(committed == shipshape::api::reference::markdown(), "docs/reference.md is stale: `cargo run -q --example crdgen`");
    for field in
        ["spec.image.gitSha", "spec.rollout.analysis.queries[].prometheus", "spec.buckets[].lifecycle[].transitions[].storageClass"]
    {
        assert!(committed.contains(&format!("`{field}`")), "{field} missing from the reference");
    }
}

#[test]
fn crds_declare_short_names_category_status_and_printer_columns() {
    for crd in shipshape::api::crds() {
        let names = &crd.spec.names;
        assert_eq!(names.categories.as_deref(), Some(&["shipshape".to_string()][..]));
        assert_eq!(names.short_names.as_ref().map(|s| s.len()), Some(1));
        let v = &crd.spec.versions[0];
        assert!(v.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{} has a status subresource", names.kind);
    }
    let release = shipshape::api::crds().into_iter().find(|c| c.spec.names.kind == "ServiceRelease").unwrap();
    let cols: Vec<String> = release.spec.versions[0].additional_printer_columns.clone().unwrap().into_iter().map(|c| c.name).collect();
    assert_eq!(cols, ["Phase", "SHA", "Stable", "Weight", "Step", "Stage", "Ready", "Reason", "Age"]);
    assert_eq!(release.spec.names.short_names, Some(vec!["release".to_string()]));
}
