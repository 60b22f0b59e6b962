//! Analysis beyond queries, judged without I/O: an HTTP check's answer (`analysis.http`) and
//! a smoke test's task (`analysis.jobs`). The controller makes the call or reads the task;
//! what passes is decided here.

use std::net::IpAddr;

use super::analysis::Verdict;
use super::rollout::TaskObs;
use crate::api::HttpCheck;

/// The bytes of an answer's body read at most (the rest is not read).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The passing status ranges of a check: its `expectStatus`, or 200-399.
pub fn status_ranges(expect: &[String]) -> Result<Vec<(u16, u16)>, String> {
    if expect.is_empty() {
        return Ok(vec![(200, 399)]);
    }
    expect
        .iter()
        .map(|e| {
            let bad =
                || format!("expectStatus {:?}: a code (204) or a range (200-399) of 100..599", e.chars().take(20).collect::<String>());
            let code = |s: &str| s.parse::<u16>().ok().filter(|c| (100..=599).contains(c)).ok_or_else(bad);
            match e.split_once('-') {
                Some((a, b)) => {
                    let (a, b) = (code(a)?, code(b)?);
                    if a > b {
                        return Err(bad());
                    }
                    Ok((a, b))
                }
                None => code(e).map(|c| (c, c)),
            }
        })
        .collect()
}

/// Why a check's URL is refused, if it is: only http and https, and never a link-local
/// address (169.254.0.0/16, fe80::/10: the cloud's instance metadata lives there, with the
/// node's credentials).
pub fn url_refused(url: &str) -> Option<String> {
    let parsed = match reqwest::Url::parse(url) {
        Ok(u) => u,
        Err(e) => return Some(format!("url {:?} is not a URL: {e}", url.chars().take(100).collect::<String>())),
    };
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Some(format!("url scheme {} is not http or https", parsed.scheme()));
    }
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    if host.parse::<IpAddr>().is_ok_and(|ip| metadata_address(&ip)) {
        return Some(format!("url host {host} is link-local (instance metadata): refused"));
    }
    if host.eq_ignore_ascii_case("metadata.google.internal") {
        return Some("url host is the instance metadata service: refused".into());
    }
    None
}

/// A link-local address (169.254.0.0/16, fe80::/10, and AWS's IPv6 instance metadata
/// fd00:ec2::/32): where instance metadata, with the node's credentials, answers.
pub fn metadata_address(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            (s[0] & 0xffc0) == 0xfe80 || (s[0] == 0xfd00 && s[1] == 0x0ec2) || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_link_local())
        }
    }
}

/// The verdict of an HTTP check on what the call gave: (status, body) or the error. Every
/// failure names the check.
pub fn judge_http(check: &HttpCheck, answer: Result<(u16, &[u8]), String>) -> Verdict {
    let name = &check.name;
    let (status, body) = match answer {
        Ok(a) => a,
        Err(e) => return Verdict::Fail(format!("http check {name}: {e}")),
    };
    let ranges = match status_ranges(&check.expect_status) {
        Ok(r) => r,
        Err(e) => return Verdict::Invalid(format!("http check {name}: {e}")),
    };
    if !ranges.iter().any(|(a, b)| (*a..=*b).contains(&status)) {
        let want = ranges.iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect::<Vec<_>>().join(", ");
        return Verdict::Fail(format!("http check {name} answered {status}, expected {want}"));
    }
    if let Some(text) = &check.body_contains {
        if !String::from_utf8_lossy(body).contains(text.as_str()) {
            return Verdict::Fail(format!("http check {name}: the body does not contain {text:?}"));
        }
    }
    if let Some(path) = &check.json_path {
        let query = match serde_json_path::JsonPath::parse(path) {
            Ok(q) => q,
            Err(e) => return Verdict::Invalid(format!("http check {name}: jsonPath {path:?}: {e}")),
        };
        let doc: serde_json::Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Verdict::Fail(format!("http check {name}: the body is not JSON ({e})")),
        };
        let found = query.query(&doc).all();
        let Some(first) = found.first() else {
            return Verdict::Fail(format!("http check {name}: {path} matched nothing"));
        };
        if let Some(want) = &check.equals {
            let got = match first {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if got != *want {
                // The value itself is not repeated: status and Events are readable more widely
                // than what the endpoint answers.
                return Verdict::Fail(format!("http check {name}: {path} is not {want:?}"));
            }
        }
    }
    Verdict::Pass
}

/// The verdict of a smoke test's task: running (inconclusive), or stopped: exit 0 passes
/// unless shipshape stopped it at its timeout.
pub fn judge_job(name: &str, task: &TaskObs) -> Verdict {
    if task.last_status != "STOPPED" {
        return Verdict::Inconclusive(format!("job {name} is {}", task.last_status));
    }
    let stopped_by_us = task.stopped_reason.as_deref().is_some_and(|r| r.contains("shipshape: job"));
    match task.exit_code {
        Some(0) if !stopped_by_us => Verdict::Pass,
        code => {
            let how = match code {
                Some(c) => format!("exited {c}"),
                None => "never ran its command".to_string(),
            };
            let ecs = [task.stop_code.clone(), task.stopped_reason.clone()].into_iter().flatten().collect::<Vec<_>>().join(": ");
            let tail = task.log_tail.last().map(|l| format!("; last line: {l}")).unwrap_or_default();
            Verdict::Fail(format!("job {name} {how} ({ecs}){tail}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(json: serde_json::Value) -> HttpCheck {
        let mut v = serde_json::json!({"name": "health", "url": "http://api:8080/health"});
        if let (Some(o), Some(extra)) = (v.as_object_mut(), json.as_object()) {
            o.extend(extra.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_status_outside_the_ranges_or_a_body_without_the_text_fails() {
        let c = check(serde_json::json!({}));
        assert_eq!(judge_http(&c, Ok((204, b""))), Verdict::Pass);
        assert!(matches!(judge_http(&c, Ok((503, b""))), Verdict::Fail(m) if m.contains("answered 503, expected 200-399")));
        assert!(matches!(judge_http(&c, Err("connection refused".into())), Verdict::Fail(m) if m.contains("connection refused")));
        let c = check(serde_json::json!({"expectStatus": ["200", "418-420"], "bodyContains": "ok"}));
        assert_eq!(judge_http(&c, Ok((419, b"all ok"))), Verdict::Pass);
        assert!(matches!(judge_http(&c, Ok((204, b"ok"))), Verdict::Fail(_)));
        assert!(matches!(judge_http(&c, Ok((200, b"degraded"))), Verdict::Fail(m) if m.contains("does not contain")));
    }

    #[test]
    fn a_json_path_must_match_and_equal() {
        let c = check(serde_json::json!({"jsonPath": "$.checks.db.status", "equals": "up"}));
        assert_eq!(judge_http(&c, Ok((200, br#"{"checks":{"db":{"status":"up"}}}"#))), Verdict::Pass);
        assert!(
            matches!(judge_http(&c, Ok((200, br#"{"checks":{"db":{"status":"down"}}}"#))), Verdict::Fail(m) if m.contains("is not \"up\"") && !m.contains("down"))
        );
        assert!(matches!(judge_http(&c, Ok((200, br#"{"checks":{}}"#))), Verdict::Fail(m) if m.contains("matched nothing")));
        assert!(matches!(judge_http(&c, Ok((200, b"<html>"))), Verdict::Fail(m) if m.contains("not JSON")));
        let n = check(serde_json::json!({"jsonPath": "$.replicas", "equals": "3"}));
        assert_eq!(judge_http(&n, Ok((200, br#"{"replicas":3}"#))), Verdict::Pass, "a number compares by its text");
        let bad = check(serde_json::json!({"jsonPath": "$[", "equals": "x"}));
        assert!(matches!(judge_http(&bad, Ok((200, b"{}"))), Verdict::Invalid(_)));
    }

    #[test]
    fn metadata_addresses_and_other_schemes_are_refused() {
        assert!(url_refused("http://169.254.169.254/latest/meta-data/").is_some());
        assert!(url_refused("http://[fe80::1]/").is_some());
        assert!(url_refused("http://[::ffff:169.254.169.254]/").is_some());
        assert!(url_refused("http://[fd00:ec2::254]/latest/meta-data/").is_some());
        assert!(url_refused("file:///etc/passwd").is_some());
        assert!(url_refused("http://metadata.google.internal/").is_some());
        assert!(url_refused("http://api.shop.svc:8080/health").is_none());
        assert!(url_refused("https://10.0.0.5/health").is_none());
    }

    #[test]
    fn a_job_passes_on_exit_0_and_fails_otherwise_or_when_stopped_at_its_timeout() {
        let t = |status: &str, code: Option<i32>, reason: Option<&str>| TaskObs {
            arn: "t".into(),
            last_status: status.into(),
            exit_code: code,
            stopped_reason: reason.map(String::from),
            ..TaskObs::default()
        };
        assert!(matches!(judge_job("smoke", &t("RUNNING", None, None)), Verdict::Inconclusive(_)));
        assert_eq!(judge_job("smoke", &t("STOPPED", Some(0), None)), Verdict::Pass);
        assert!(
            matches!(judge_job("smoke", &t("STOPPED", Some(1), Some("Essential container in task exited"))), Verdict::Fail(m) if m.contains("exited 1"))
        );
        assert!(matches!(judge_job("smoke", &t("STOPPED", Some(0), Some("shipshape: job smoke timed out"))), Verdict::Fail(_)));
        assert!(
            matches!(judge_job("smoke", &t("STOPPED", None, Some("CannotPullContainerError"))), Verdict::Fail(m) if m.contains("never ran"))
        );
    }

    proptest! {
        #[test]
        fn status_ranges_never_panic_and_accept_only_codes_of_100_to_599(e in "\\PC{0,12}") {
            if let Ok(r) = status_ranges(std::slice::from_ref(&e)) {
                prop_assert!(r.iter().all(|(a, b)| (100..=599).contains(a) && (100..=599).contains(b) && a <= b));
            }
        }

        #[test]
        fn urls_never_panic(u in "\\PC{0,80}") {
            let _ = url_refused(&u);
        }

        #[test]
        fn any_json_body_is_judged_without_panic(body in proptest::collection::vec(any::<u8>(), 0..200), path in "\\$[.a-z\\[\\]0-9*]{0,12}") {
            let c = check(serde_json::json!({"jsonPath": path, "equals": "x"}));
            let _ = judge_http(&c, Ok((200, &body)));
        }
    }
}
