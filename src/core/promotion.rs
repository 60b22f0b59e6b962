//! Whether a new SHA may start: its upstream stage proved it (`promotion.from`, `soak`),
//! someone approved it (`approval: Manual`), the releases it comes after are Healthy
//! (`rollout.after`), and a change window is open (the Environment's `windows`, `blackouts`).
//! Pure: the controller gathers the objects, this decides. Only the start of a new rollout
//! waits; a rollout under way finishes and a rollback never waits for anything.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::{reasons, Approval, EnvironmentSpec, Phase, RolloutOutcome, ServiceRelease, ServiceReleaseSpec, WaitingStatus};

/// A release waiting for a known time (a soak's end, a window's opening) is woken this long
/// before it, reads AWS, and starts at the time itself (see the controller's
/// `gate_when_due`): the reads are not what makes the start late.
pub const WAKE_AHEAD: Duration = Duration::from_millis(1500);

/// Why the desired SHA does not start yet (or never will, for `UpstreamRejected`).
#[derive(Clone, Debug, PartialEq)]
pub struct Hold {
    /// WaitingForUpstream, UpstreamRejected, WaitingForApproval, WaitingForOrder or
    /// WaitingForWindow.
    pub reason: &'static str,
    /// What it waits for, in words.
    pub message: String,
    /// When the wait ends by itself, where that is known (a soak's end, a window opening).
    pub until: Option<DateTime<Utc>>,
    /// The upstream stage, `namespace/name`.
    pub upstream: Option<String>,
}

impl Hold {
    fn new(reason: &'static str, message: String) -> Self {
        Hold { reason, message, until: None, upstream: None }
    }

    /// Whether it is a refusal (Stalled) rather than a wait (Reconciling).
    pub fn refused(&self) -> bool {
        self.reason == reasons::UPSTREAM_REJECTED
    }

    /// As status keeps it, for `sha`.
    pub fn status(&self, sha: &str) -> WaitingStatus {
        WaitingStatus {
            sha: sha.to_string(),
            reason: self.reason.to_string(),
            message: self.message.clone(),
            until: self.until,
            upstream: self.upstream.clone(),
        }
    }
}

/// What the gate looks at.
pub struct Gate<'a> {
    /// Now.
    pub now: DateTime<Utc>,
    /// The desired SHA.
    pub sha: &'a str,
    /// The release's own spec.
    pub spec: &'a ServiceReleaseSpec,
    /// The release's namespace.
    pub namespace: &'a str,
    /// The value of `shipshape.dev/approve`, if any.
    pub approved: Option<&'a str>,
    /// The release's own status (a SHA it promoted before needs no new proof).
    pub own: Option<&'a crate::api::ServiceReleaseStatus>,
    /// `promotion.from` as `namespace/name`, and that release when it exists.
    pub upstream: Option<(String, Option<&'a ServiceRelease>)>,
    /// `rollout.after`: each name and that release when it exists.
    pub after: Vec<(String, Option<&'a ServiceRelease>)>,
    /// The Environment's windows and blackouts.
    pub calendar: &'a Calendar,
}

/// The first thing the desired SHA waits for, or None when it may start now.
pub fn gate(g: &Gate) -> Option<Hold> {
    let promotion = g.spec.promotion.as_ref();
    // A SHA this stage already promoted (a configuration change, a revert by Git) was
    // proven and approved when it first came: only the order and the windows apply.
    let proven_here = g.own.is_some_and(|st| {
        st.stable_sha.as_deref() == Some(g.sha) || st.history.iter().any(|h| h.sha == g.sha && h.outcome == RolloutOutcome::Promoted)
    });
    if proven_here {
        return order_and_window(g);
    }
    if let Some((name, upstream)) = &g.upstream {
        // An unreadable soak (refused by the spec's check first) proves nothing.
        let soak = match promotion.and_then(|p| p.soak.as_ref()).map(|d| d.parsed()) {
            None => Duration::ZERO,
            Some(Ok(d)) => d,
            Some(Err(_)) => Duration::MAX,
        };
        let hold = match upstream {
            None => Some(Hold::new(reasons::WAITING_FOR_UPSTREAM, format!("upstream release {name} (promotion.from) does not exist"))),
            Some(up) => upstream_hold(name, up, g.spec, g.sha, soak, g.now),
        };
        if let Some(mut h) = hold {
            h.upstream = Some(name.clone());
            return Some(h);
        }
    }
    if promotion.is_some_and(|p| p.approval == Approval::Manual) && g.approved != Some(g.sha) {
        let old = match g.approved {
            Some(other) if !other.is_empty() => format!(" (the approval on record names {}, not this SHA)", short(other)),
            _ => String::new(),
        };
        let mut h = Hold::new(
            reasons::WAITING_FOR_APPROVAL,
            format!(
                "{} waits for an approval naming it: `shipshape approve NAME` (annotation shipshape.dev/approve: {}){old}",
                g.sha, g.sha
            ),
        );
        h.upstream = g.upstream.as_ref().map(|(n, _)| n.clone());
        return Some(h);
    }
    order_and_window(g)
}

/// The releases it comes after, then the windows.
fn order_and_window(g: &Gate) -> Option<Hold> {
    let waiting: Vec<String> = g.after.iter().filter_map(|(name, r)| not_ready(name, *r)).collect();
    if !waiting.is_empty() {
        return Some(Hold::new(reasons::WAITING_FOR_ORDER, format!("{} starts after {}", g.sha, waiting.join("; "))));
    }
    g.calendar.closed(g.now)
}

/// Why a release named in `rollout.after` is not ready, or None when it is Healthy at its
/// current generation.
fn not_ready(name: &str, r: Option<&ServiceRelease>) -> Option<String> {
    let Some(r) = r else { return Some(format!("{name}, which does not exist")) };
    let st = r.status.as_ref();
    let observed = st.and_then(|s| s.observed_generation);
    let phase = st.map(|s| s.phase).unwrap_or_default();
    if phase == Phase::Healthy && observed.is_some() && observed == r.metadata.generation {
        return None;
    }
    let at = if observed != r.metadata.generation { ", its latest spec not yet acted on" } else { "" };
    Some(format!("{name} (now {phase:?}{at})"))
}

/// What a release builds from, compared across stages: the image repository without its
/// registry host (stages live in different accounts' registries), or the Lambda zip's key.
pub fn artifact(spec: &ServiceReleaseSpec) -> String {
    if let Some(s3) = spec.function.as_ref().and_then(|f| f.s3.as_ref()) {
        return format!("s3 key {}", s3.key);
    }
    let repo = spec.image.repository.as_str();
    let path = match repo.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => rest,
        _ => repo,
    };
    format!("repository {path}")
}

fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// Whether `up` proved `sha`: None when it did, else why not.
fn upstream_hold(
    name: &str,
    up: &ServiceRelease,
    spec: &ServiceReleaseSpec,
    sha: &str,
    soak: Duration,
    now: DateTime<Utc>,
) -> Option<Hold> {
    let (ours, theirs) = (artifact(spec), artifact(&up.spec));
    if ours != theirs {
        return Some(Hold::new(
            reasons::UPSTREAM_REJECTED,
            format!("upstream {name} deploys another artifact than this release ({ours}): it cannot prove this release's SHAs"),
        ));
    }
    match proof(up, sha, soak, now) {
        Proof::Proven => None,
        Proof::Soaking(until) => {
            let mut h = Hold::new(
                reasons::WAITING_FOR_UPSTREAM,
                format!("{sha} is Healthy in {name}; its soak ({}) ends at {}", go(soak), until.to_rfc3339()),
            );
            h.until = Some(until);
            Some(h)
        }
        Proof::Rejected(why) => Some(Hold::new(
            reasons::UPSTREAM_REJECTED,
            format!("{sha} failed upstream in {name}: {why}; it is not rolled out here (a new SHA, or that one promoted upstream after a retry, is)"),
        )),
        Proof::NotYet(why) => Some(Hold::new(reasons::WAITING_FOR_UPSTREAM, format!("{sha} is not proven in {name} yet: {why}"))),
    }
}

/// What an upstream release shows of a SHA.
#[derive(Clone, Debug, PartialEq)]
pub enum Proof {
    /// Healthy on it for the soak.
    Proven,
    /// Healthy on it; the soak ends then.
    Soaking(DateTime<Utc>),
    /// Rolled back or failed: why.
    Rejected(String),
    /// Not (yet) Healthy on it: why.
    NotYet(String),
}

/// What `up`'s status shows of `sha`, soaked for `soak`, at `now`.
pub fn proof(up: &ServiceRelease, sha: &str, soak: Duration, now: DateTime<Utc>) -> Proof {
    let st = up.status.clone().unwrap_or_default();
    if let Some(r) = st.rollout.as_ref().filter(|r| r.sha == sha) {
        if let Some(rb) = st.rollback.as_ref() {
            return Proof::Rejected(format!("being rolled back: {}", rb.reason));
        }
        let held = r.held.clone().map(|h| format!(", held: {h}")).unwrap_or_default();
        return Proof::NotYet(format!("its rollout there is {:?}{held}", st.phase));
    }
    // Newest first: the latest judgement of the SHA counts (a retry promoted upstream
    // after a rollback proves it again).
    let Some(i) = st.history.iter().position(|h| h.sha == sha && h.outcome != RolloutOutcome::Superseded) else {
        let runs = st.stable_sha.clone().unwrap_or_else(|| "nothing yet".into());
        return Proof::NotYet(format!("it has not been rolled out there (it runs {runs})"));
    };
    let entry = &st.history[i];
    match entry.outcome {
        RolloutOutcome::RolledBack | RolloutOutcome::Failed => {
            let measured = st
                .last_measurement
                .as_ref()
                .filter(|m| entry.finished_at.is_none_or(|f| m.at <= f))
                .map(|m| {
                    let value = m.value.map(|v| format!(" = {v}")).unwrap_or_default();
                    format!(" (last measurement: {}{value}, {})", m.query, m.verdict)
                })
                .unwrap_or_default();
            let how = if entry.outcome == RolloutOutcome::RolledBack { "rolled back" } else { "failed" };
            Proof::Rejected(format!("{how}: {}{measured}", entry.reason))
        }
        RolloutOutcome::Superseded => Proof::NotYet("its rollout there was superseded".into()),
        RolloutOutcome::Promoted => {
            let promoted = entry.finished_at.unwrap_or(entry.started_at);
            let Some(end) = chrono::Duration::from_std(soak).ok().and_then(|d| promoted.checked_add_signed(d)) else {
                return Proof::NotYet(format!("its soak ({}) cannot be counted", go(soak)));
            };
            // Stable since `promoted` until the next promoted rollout there started (a
            // rolled-back one left this SHA serving).
            let replaced = st.history[..i].iter().rev().find(|h| h.outcome == RolloutOutcome::Promoted).map(|h| h.started_at);
            let replaced = replaced.or_else(|| st.rollout.as_ref().filter(|_| st.stable_sha.as_deref() != Some(sha)).map(|r| r.started_at));
            match replaced {
                Some(at) if at < end => Proof::NotYet(format!(
                    "it was Healthy there only {} before the next version replaced it, less than the soak ({})",
                    go(at.signed_duration_since(promoted).to_std().unwrap_or_default()),
                    go(soak)
                )),
                Some(_) => Proof::Proven,
                None if now >= end => Proof::Proven,
                None => Proof::Soaking(end),
            }
        }
    }
}

/// A duration in whole units, as Go prints short ones (`90s`, `10m`, `2h30m`).
fn go(d: Duration) -> String {
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, (s % 3600) / 60, s % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// An Environment's change windows and blackouts, parsed.
#[derive(Clone, Debug, Default)]
pub struct Calendar {
    windows: Vec<Window>,
    blackouts: Vec<(DateTime<Utc>, DateTime<Utc>, String)>,
}

#[derive(Clone, Debug)]
struct Window {
    schedule: croner::Cron,
    text: String,
    duration: chrono::Duration,
    zone: chrono_tz::Tz,
}

/// How far ahead the next opening is looked for (a window that opens once a year is
/// found; one that never opens, e.g. `0 0 30 2 *`, is not).
const LOOKAHEAD_STEPS: usize = 64;

impl Calendar {
    /// Parses the Environment's `windows` and `blackouts`; a bad schedule, duration or time
    /// zone is an error naming its field.
    pub fn of(env: &EnvironmentSpec) -> Result<Calendar, String> {
        let parser = croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Disallowed)
            .year(croner::parser::Year::Disallowed)
            .build();
        let mut windows = Vec::new();
        for (i, w) in env.windows.iter().enumerate() {
            let field = format!("windows[{i}]");
            let schedule = parser
                .parse(&w.schedule)
                .map_err(|e| format!("{field}.schedule {:?} is not a 5-field cron expression: {e}", w.schedule))?;
            let zone_name = w.time_zone.as_deref().unwrap_or("UTC");
            let zone =
                chrono_tz::Tz::from_str(zone_name).map_err(|_| format!("{field}.timeZone {zone_name:?} is not an IANA time zone"))?;
            let duration = w.duration.get(&format!("{field}.duration"), crate::api::bounds::WINDOW_DURATION).map_err(|e| e.to_string())?;
            let duration = chrono::Duration::from_std(duration).map_err(|e| format!("{field}.duration: {e}"))?;
            // A schedule that never fires would hold every rollout for good.
            let probe = Utc::now().with_timezone(&zone);
            if schedule.find_next_occurrence(&probe, false).is_err() {
                return Err(format!("{field}.schedule {:?} never opens", w.schedule));
            }
            windows.push(Window { schedule, text: w.schedule.clone(), duration, zone });
        }
        let blackouts = env.blackouts.iter().map(|b| (b.start, b.end, b.reason.clone())).collect();
        Ok(Calendar { windows, blackouts })
    }

    /// The window open at `at` and when it closes, if any.
    fn open_window(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.windows
            .iter()
            .filter_map(|w| {
                // The latest opening at or before `at` closes last.
                let prev = w.schedule.find_previous_occurrence(&at.with_timezone(&w.zone), true).ok()?;
                let closes = prev.with_timezone(&Utc).checked_add_signed(w.duration)?;
                (at < closes).then_some(closes)
            })
            .max()
    }

    /// The next opening of any window after `at`.
    fn next_opening(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.windows
            .iter()
            .filter_map(|w| w.schedule.find_next_occurrence(&at.with_timezone(&w.zone), false).ok().map(|t| t.with_timezone(&Utc)))
            .min()
    }

    /// The blackout under way at `at`: its end and reason.
    fn blackout(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, &str)> {
        self.blackouts.iter().filter(|(s, e, _)| *s <= at && at < *e).max_by_key(|(_, e, _)| *e).map(|(_, e, r)| (*e, r.as_str()))
    }

    /// None when a rollout may start at `now`; else why not and when it may.
    pub fn closed(&self, now: DateTime<Utc>) -> Option<Hold> {
        let blackout = self.blackout(now);
        let in_window = self.windows.is_empty() || self.open_window(now).is_some();
        if blackout.is_none() && in_window {
            return None;
        }
        let opens = self.opening(now);
        let when = opens.map(|t| format!("; next opening {}", t.to_rfc3339())).unwrap_or_else(|| "; no opening found".into());
        let message = match blackout {
            Some((end, why)) => {
                let why = if why.is_empty() { String::new() } else { format!(" ({why})") };
                format!("a blackout{why} holds new rollouts until {}{when}", end.to_rfc3339())
            }
            None => {
                let all: Vec<&str> = self.windows.iter().map(|w| w.text.as_str()).collect();
                format!("no change window is open (windows: {}){when}", all.join(", "))
            }
        };
        Some(Hold { reason: reasons::WAITING_FOR_WINDOW, message, until: opens, upstream: None })
    }

    /// The first time at or after `now` inside a window (when any are set) and outside every
    /// blackout.
    pub fn opening(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut t = now;
        for _ in 0..LOOKAHEAD_STEPS {
            if let Some((end, _)) = self.blackout(t) {
                t = end;
                continue;
            }
            if self.windows.is_empty() || self.open_window(t).is_some() {
                return Some(t);
            }
            t = self.next_opening(t)?;
        }
        None
    }
}

/// A cycle through `start` following `edges`, as the names along it, if there is one.
/// Bounded: at most `limit` names are visited.
pub fn cycle(start: &str, edges: impl Fn(&str) -> Vec<String>, limit: usize) -> Option<Vec<String>> {
    // Depth-first, iterative, with the path kept for the message.
    let mut stack: Vec<(String, Vec<String>)> = edges(start).into_iter().map(|n| (n, vec![start.to_string()])).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        if node == start {
            let mut p = path;
            p.push(node);
            return Some(p);
        }
        if !seen.insert(node.clone()) || seen.len() > limit {
            continue;
        }
        let mut next_path = path.clone();
        next_path.push(node.clone());
        for n in edges(&node) {
            stack.push((n, next_path.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests;
