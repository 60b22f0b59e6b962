//! The alert rules are valid and fire when they should: `promtool check rules` and
//! `promtool test rules` (promtool comes with Debian's prometheus package).

use std::process::Command;

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/monitoring");
    for args in [["check", "rules", "alerts.yaml"], ["test", "rules", "alerts.test.yaml"]] {
        let out = Command::new("promtool").args(args).current_dir(dir).output().expect("promtool runs (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
