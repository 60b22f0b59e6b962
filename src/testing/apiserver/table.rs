//! Server-side printing: the `meta.k8s.io/v1` Table kubectl asks for, from a CRD's
//! additionalPrinterColumns.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`,
/// and `.a[?(@.k=="v")].b`.
pub fn jsonpath(obj: &Value, path: &str) -> Vec<Value> {
    let mut current = vec![obj.clone()];
    let mut rest = path.trim().trim_start_matches('{').trim_end_matches('}');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let key = &r[..end];
            current = current.iter().filter_map(|v| v.get(key).cloned()).collect();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return vec![];
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            if let Some(filter) = inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')')) {
                let Some((k, v)) = filter.split_once("==") else {
                    return vec![];
                };
                let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
                current = current
                    .iter()
                    .flat_map(|arr| arr.as_array().cloned().unwrap_or_default())
                    .filter(|item| item.get(k.trim()).and_then(Value::as_str) == Some(v))
                    .collect();
            } else if let Ok(i) = inner.parse::<usize>() {
                current = current.iter().filter_map(|v| v.get(i).cloned()).collect();
            } else if inner == "*" {
                current = current.iter().flat_map(|v| v.as_array().cloned().unwrap_or_default()).collect();
            } else {
                return vec![];
            }
        } else {
            return vec![];
        }
    }
    current
}

/// How kubectl shows an age: the apimachinery `HumanDuration` rules.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        s if s < 120 => format!("{s}s"),
        s if s < 600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 3 * 3600 => format!("{}m", s / 60),
        s if s < 8 * 3600 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s if s < 8 * 86400 => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn cell(values: Vec<Value>, type_: &str, now: DateTime<Utc>) -> Value {
    let Some(first) = values.first() else {
        return json!("<none>");
    };
    if type_ == "date" {
        if let Some(t) = first.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
            return json!(human_duration((now - t.with_timezone(&Utc)).num_seconds()));
        }
    }
    match first {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => {
            if values.len() == 1 {
                first.clone()
            } else {
                json!(values.iter().map(|v| v.as_str().map(String::from).unwrap_or(v.to_string())).collect::<Vec<_>>().join(","))
            }
        }
        other => json!(other.to_string()),
    }
}

/// Builds a Table of `objects` with `columns` (CRD additionalPrinterColumns; empty gives Age).
pub fn table(objects: &[Value], columns: &[Value], resource_version: &str) -> Value {
    let now = Utc::now();
    let mut defs = vec![json!({"name": "Name", "type": "string", "format": "name", "description": "Name", "priority": 0})];
    let mut cols: Vec<(String, String)> = columns
        .iter()
        .map(|c| (c["jsonPath"].as_str().unwrap_or("").to_string(), c["type"].as_str().unwrap_or("string").to_string()))
        .collect();
    let mut descr: Vec<Value> = columns
        .iter()
        .map(|c| json!({"name": c["name"], "type": c["type"], "format": c.get("format").cloned().unwrap_or(json!("")), "description": c.get("description").cloned().unwrap_or(json!("")), "priority": c.get("priority").cloned().unwrap_or(json!(0))}))
        .collect();
    if columns.is_empty() {
        cols.push((".metadata.creationTimestamp".into(), "date".into()));
        descr.push(json!({"name": "Age", "type": "date", "format": "", "description": "Age", "priority": 0}));
    }
    defs.extend(descr);
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let mut cells = vec![o["metadata"]["name"].clone()];
            cells.extend(cols.iter().map(|(p, t)| cell(jsonpath(o, p), t, now)));
            json!({
                "cells": cells,
                "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]},
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonpath_filters_conditions_by_type() {
        let o = json!({"status": {"conditions": [{"type": "Stalled", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(jsonpath(&o, r#".status.conditions[?(@.type=="Ready")].status"#), vec![json!("True")]);
        assert_eq!(jsonpath(&o, ".status.phase"), Vec::<Value>::new());
    }

    #[test]
    fn ages_print_like_kubectl() {
        assert_eq!(human_duration(42), "42s");
        assert_eq!(human_duration(200), "3m20s");
        assert_eq!(human_duration(3 * 3600 + 5), "3h0m");
        assert_eq!(human_duration(9 * 86400), "9d");
    }
}
