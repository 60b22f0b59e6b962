//! Structural-schema handling of custom resources, as the API server does it on every write:
//! drop nulls of non-nullable fields, apply defaults, prune (or, with
//! `fieldValidation=Strict`, refuse) unknown fields, then validate types, enums, patterns,
//! ranges and lengths, then evaluate `x-kubernetes-validations` CEL rules (with `oldSelf`
//! on updates).

use regex::Regex;
use serde_json::{Map, Value};

/// One validation failure, shaped like a `StatusCause`.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// FieldValueInvalid, FieldValueRequired, FieldValueNotSupported, ...
    pub reason: &'static str,
    /// Path such as `spec.image.gitSha`.
    pub field: String,
    /// The message after the field path.
    pub message: String,
}

/// Result of normalising one object against its schema.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Validation failures (422).
    pub causes: Vec<Cause>,
    /// Unknown fields found (pruned, or refused under Strict).
    pub unknown: Vec<String>,
}

/// Defaults, prunes and validates `obj` (a whole object) against a CRD version's
/// `openAPIV3Schema`; `old` is the stored object on updates, for transition rules.
pub fn normalize(schema: &Value, obj: &mut Value, old: Option<&Value>) -> Outcome {
    let mut out = Outcome::default();
    if let (Some(props), Some(map)) = (schema.get("properties"), obj.as_object_mut()) {
        for (k, v) in map.iter_mut() {
            if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            if let Some(s) = props.get(k) {
                walk(s, v, k, &mut out);
            }
        }
        let unknown: Vec<String> = map
            .keys()
            .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && props.get(k.as_str()).is_none())
            .cloned()
            .collect();
        for k in unknown {
            map.remove(&k);
            out.unknown.push(k);
        }
    }
    if out.causes.is_empty() {
        let errors = kube_cel::Validator::new().validate(schema, obj, old);
        for e in errors {
            out.causes.push(Cause {
                reason: "FieldValueInvalid",
                field: e.field_path.trim_start_matches('.').to_string(),
                message: format!("Invalid value: \"object\": {}", e.message),
            });
        }
    }
    out
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn invalid(out: &mut Outcome, path: &str, v: &Value, detail: String) {
    out.causes.push(Cause {
        reason: "FieldValueInvalid",
        field: path.to_string(),
        message: format!("Invalid value: {}: {path} in body {detail}", shown(v)),
    });
}

fn walk(schema: &Value, v: &mut Value, path: &str, out: &mut Outcome) {
    let s = |k: &str| schema.get(k);
    let int_or_string = s("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let preserve = s("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
    if let Some(want) = s("type").and_then(Value::as_str) {
        let got = type_of(v);
        let ok = got == want || (want == "number" && got == "integer") || (int_or_string && (got == "integer" || got == "string"));
        if !ok {
            out.causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                field: path.to_string(),
                message: format!(
                    "Invalid value: {}: {path} in body must be of type {want}: {}",
                    shown(v),
                    shown(&Value::String(got.into()))
                ),
            });
            return;
        }
    }
    if let Some(options) = s("enum").and_then(Value::as_array) {
        if !options.contains(v) {
            let list: Vec<String> = options.iter().map(shown).collect();
            out.causes.push(Cause {
                reason: "FieldValueNotSupported",
                field: path.to_string(),
                message: format!("Unsupported value: {}: supported values: {}", shown(v), list.join(", ")),
            });
        }
    }
    match v {
        Value::Object(map) => object(schema, map, path, preserve, out),
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = s("minItems").and_then(Value::as_u64).filter(|m| n < *m) {
                invalid(out, path, &Value::from(n), format!("should have at least {min} items"));
            }
            if let Some(max) = s("maxItems").and_then(Value::as_u64).filter(|m| n > *m) {
                out.causes.push(Cause {
                    reason: "FieldValueTooMany",
                    field: path.into(),
                    message: format!("Too many: {n}: must have at most {max} items"),
                });
            }
            if let Some(item_schema) = s("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if let Some(min) = s("minLength").and_then(Value::as_u64).filter(|m| len < *m) {
                invalid(out, path, v, format!("should be at least {min} chars long"));
                return;
            }
            if let Some(max) = s("maxLength").and_then(Value::as_u64).filter(|m| len > *m) {
                out.causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: path.into(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(p) = s("pattern").and_then(Value::as_str) {
                match Regex::new(p) {
                    Ok(re) if !re.is_match(text) => invalid(out, path, v, format!("should match '{p}'")),
                    _ => {}
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(0.0);
            let excl_min = s("exclusiveMinimum").and_then(Value::as_bool) == Some(true);
            let excl_max = s("exclusiveMaximum").and_then(Value::as_bool) == Some(true);
            if let Some(min) = s("minimum").and_then(Value::as_f64) {
                if x < min || (excl_min && x == min) {
                    let rel = if excl_min { "greater than" } else { "greater than or equal to" };
                    invalid(out, path, v, format!("should be {rel} {}", num(min)));
                }
            }
            if let Some(max) = s("maximum").and_then(Value::as_f64) {
                if x > max || (excl_max && x == max) {
                    let rel = if excl_max { "less than" } else { "less than or equal to" };
                    invalid(out, path, v, format!("should be {rel} {}", num(max)));
                }
            }
        }
        _ => {}
    }
}

fn num(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

fn object(schema: &Value, map: &mut Map<String, Value>, path: &str, preserve: bool, out: &mut Outcome) {
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    // Nulls of non-nullable fields are dropped before defaulting, as the server does.
    if let Some(props) = props {
        map.retain(|k, v| !(v.is_null() && props.get(k).and_then(|p| p.get("nullable")).and_then(Value::as_bool) != Some(true)));
        for (k, p) in props {
            if let (false, Some(d)) = (map.contains_key(k), p.get("default")) {
                map.insert(k.clone(), d.clone());
            }
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(r) {
                out.causes.push(Cause { reason: "FieldValueRequired", field: format!("{path}.{r}"), message: "Required value".into() });
            }
        }
    }
    let keys: Vec<String> = map.keys().cloned().collect();
    for k in keys {
        let child = format!("{path}.{k}");
        let sub = props.and_then(|p| p.get(&k)).or(additional);
        match sub {
            Some(sub) => {
                if let Some(v) = map.get_mut(&k) {
                    if !(v.is_null() && sub.get("nullable").and_then(Value::as_bool) == Some(true)) {
                        walk(sub, v, &child, out);
                    }
                }
            }
            None if preserve || schema.get("additionalProperties") == Some(&Value::Bool(true)) => {}
            None => {
                map.remove(&k);
                out.unknown.push(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "required": ["sha"], "properties": {
            "sha": {"type": "string", "pattern": "^[0-9a-f]{7,40}$"},
            "replicas": {"type": "integer", "minimum": 0, "default": 1},
            "policy": {"type": "string", "enum": ["Retain", "Delete"]},
            "note": {"type": "string", "nullable": true},
        }}}})
    }

    #[test]
    fn defaults_are_applied_and_unknown_fields_pruned() {
        let mut o = json!({"spec": {"sha": "abcdef1", "extra": 1}});
        let out = normalize(&schema(), &mut o, None);
        assert!(out.causes.is_empty(), "{:?}", out.causes);
        assert_eq!(o, json!({"spec": {"sha": "abcdef1", "replicas": 1}}));
        assert_eq!(out.unknown, vec!["spec.extra"]);
    }

    #[test]
    fn messages_read_like_the_api_servers() {
        let mut o = json!({"spec": {"sha": "XYZ", "replicas": -1, "policy": "Keep"}});
        let out = normalize(&schema(), &mut o, None);
        let msgs: Vec<String> = out.causes.iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        assert!(
            msgs.contains(&r#"spec.sha: Invalid value: "XYZ": spec.sha in body should match '^[0-9a-f]{7,40}$'"#.to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs.contains(&"spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0".to_string()),
            "{msgs:?}"
        );
        assert!(msgs.contains(&r#"spec.policy: Unsupported value: "Keep": supported values: "Retain", "Delete""#.to_string()), "{msgs:?}");
    }
}
