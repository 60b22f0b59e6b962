//! The field reference (`docs/reference.md`), generated from the CRDs' OpenAPI schemas so it
//! cannot drift from them (tests/crds.rs checks the committed file).

use serde_json::Value;

/// Markdown: per kind, one table of every `spec` field with type, default, constraints and
/// description, and one of the `status` fields.
pub fn markdown() -> String {
    let mut out = String::from(
        "# Resource reference\n\nGenerated from the CRDs (`cargo run -q --example crdgen`); the same text is in \
         `kubectl explain <kind>.spec`. API group `shipshape.dev`, version `v1alpha1`.\n",
    );
    for crd in super::crds() {
        let names = &crd.spec.names;
        let v = &crd.spec.versions[0];
        let schema = serde_json::to_value(v.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref())).unwrap_or(Value::Null);
        let scope = if crd.spec.scope == "Namespaced" { "namespaced" } else { "cluster-scoped" };
        out += &format!(
            "\n## {}\n\n{} `kubectl get {}` (short name `{}`). {}\n",
            names.kind,
            scope[..1].to_uppercase() + &scope[1..] + ";",
            names.plural,
            names.short_names.as_ref().and_then(|s| s.first()).cloned().unwrap_or_default(),
            schema["properties"]["spec"]["description"].as_str().unwrap_or("")
        );
        for part in ["spec", "status"] {
            out += &format!("\n### {part}\n\n| field | type | default | description |\n|---|---|---|---|\n");
            fields(&schema["properties"][part], part, &mut out);
        }
    }
    out
}

fn type_of(s: &Value) -> String {
    match s["type"].as_str() {
        Some("array") => format!("[]{}", type_of(&s["items"])),
        Some("object") if s.get("additionalProperties").is_some() => format!("map[string]{}", type_of(&s["additionalProperties"])),
        Some(t) => t.to_string(),
        None if s.get("x-kubernetes-int-or-string").is_some() => "int-or-string".into(),
        None => "any".into(),
    }
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn fields(schema: &Value, path: &str, out: &mut String) {
    let Some(props) = schema["properties"].as_object() else { return };
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    for (name, s) in props {
        let p = format!("{path}.{name}");
        let mut notes = vec![];
        if required.contains(&name.as_str()) {
            notes.push("**required**".to_string());
        }
        if let Some(e) = s["enum"].as_array() {
            notes.push(format!(
                "one of {}",
                e.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(e) = s["items"]["enum"].as_array() {
            notes.push(format!(
                "each one of {}",
                e.iter().map(|v| format!("`{}`", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(", ")
            ));
        }
        if let Some(pat) = s["pattern"].as_str() {
            notes.push(format!("pattern `{pat}`"));
        }
        match (s["minimum"].as_f64(), s["maximum"].as_f64()) {
            (Some(a), Some(b)) => notes.push(format!("{a}–{b}")),
            (Some(a), None) => notes.push(format!("≥ {a}")),
            (None, Some(b)) => notes.push(format!("≤ {b}")),
            _ => {}
        }
        for rule in s["x-kubernetes-validations"].as_array().into_iter().flatten() {
            notes.push(rule["message"].as_str().unwrap_or_default().to_string());
        }
        let default = match &s["default"] {
            Value::Null => String::new(),
            d => format!("`{d}`"),
        };
        let desc = s["description"].as_str().unwrap_or("");
        let desc = if notes.is_empty() { desc.to_string() } else { format!("{desc} ({})", notes.join("; ")) };
        out.push_str(&format!("| `{p}` | {} | {} | {} |\n", type_of(s), escape(&default), escape(&desc)));
        let inner = if s["type"] == "array" { &s["items"] } else { s };
        fields(inner, &format!("{p}{}", if s["type"] == "array" { "[]" } else { "" }), out);
    }
}
