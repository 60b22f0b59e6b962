//! AWS's own API models (botocore's `service-2.json`, installed with moto) in the AWS test
//! proxy: each request the controller sends is decoded from its wire protocol (JSON, query,
//! REST-JSON, REST-XML, RPCv2-CBOR) into the operation's input, and checked the way AWS
//! checks it — required members, types, enums, lengths and ranges — because moto accepts
//! requests AWS refuses. The decoded input also feeds the IAM evaluation (`iam.rs`).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Map, Value};

/// One service's model.
pub struct Service {
    /// The model's JSON (`metadata`, `operations`, `shapes`).
    json: Value,
}

/// Where botocore keeps its models (asked of the Python that has moto).
fn botocore_data() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::process::Command::new("python3")
            .args(["-c", "import botocore, os; print(os.path.join(os.path.dirname(botocore.__file__), 'data'))"])
            .output()
            .ok()?;
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        dir.is_dir().then_some(dir)
    })
    .clone()
}

/// The model of `service` (botocore's name: ecs, rds, s3, s3control, lambda, ...), loaded once
/// per process; None when botocore or the service is not there.
pub fn service(name: &str) -> Option<Arc<Service>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Arc<Service>>>>> = OnceLock::new();
    let mut cache = CACHE.get_or_init(Mutex::default).lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(name.to_string())
        .or_insert_with(|| {
            let dir = botocore_data()?.join(name);
            // The newest API version's directory (they are dates).
            let mut versions: Vec<PathBuf> = std::fs::read_dir(&dir).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            versions.sort();
            let version = versions.pop()?;
            let json = if let Ok(f) = std::fs::File::open(version.join("service-2.json.gz")) {
                let mut s = String::new();
                flate2::read::GzDecoder::new(f).read_to_string(&mut s).ok()?;
                s
            } else {
                std::fs::read_to_string(version.join("service-2.json")).ok()?
            };
            Some(Arc::new(Service { json: serde_json::from_str(&json).ok()? }))
        })
        .clone()
}

/// botocore's model name for a SigV4 signing name (and, for S3, the path that tells S3
/// Control apart).
pub fn model_name(signing: &str, path: &str) -> &'static str {
    match signing {
        "s3" if path.starts_with("/v20180820/") => "s3control",
        "ecs" => "ecs",
        "rds" => "rds",
        "s3" => "s3",
        "lambda" => "lambda",
        "dynamodb" => "dynamodb",
        "elasticache" => "elasticache",
        "sts" => "sts",
        "monitoring" | "cloudwatch" => "cloudwatch",
        "logs" => "logs",
        "sqs" => "sqs",
        "events" => "events",
        "iam" => "iam",
        "elasticloadbalancing" => "elbv2",
        "ec2" => "ec2",
        _ => "",
    }
}

impl Service {
    fn shape(&self, name: &str) -> &Value {
        &self.json["shapes"][name]
    }

    /// The operation's model, if the service has it.
    pub fn operation(&self, name: &str) -> Option<&Value> {
        self.json["operations"].get(name)
    }

    /// The wire protocol (json, query, rest-json, rest-xml, smithy-rpc-v2-cbor).
    pub fn protocol(&self) -> &str {
        self.json["metadata"]["protocol"].as_str().unwrap_or("")
    }

    /// The operation's input decoded from the request as the service receives it.
    pub fn decode(&self, operation: &str, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
        let op = self.operation(operation).ok_or_else(|| format!("{operation} is not an operation of this service"))?;
        let Some(input) = op["input"]["shape"].as_str() else { return Ok(Value::Object(Map::new())) };
        let cbor = headers.get("smithy-protocol").is_some_and(|v| v == "rpc-v2-cbor");
        if cbor {
            let mut d = minicbor::Decoder::new(body);
            return if body.is_empty() {
                Ok(Value::Object(Map::new()))
            } else {
                crate::cloudwatch::decode(&mut d).map_err(|e| e.to_string())
            };
        }
        match self.protocol() {
            "json" => {
                if body.is_empty() {
                    Ok(Value::Object(Map::new()))
                } else {
                    serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))
                }
            }
            "query" | "ec2" => {
                let mut form = BTreeMap::new();
                for (k, v) in url::form_urlencoded::parse(body).chain(url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())) {
                    if k != "Action" && k != "Version" {
                        form.insert(k.into_owned(), v.into_owned());
                    }
                }
                Ok(self.query_value(input, "", &form, true).unwrap_or_else(|| Value::Object(Map::new())))
            }
            "rest-json" | "rest-xml" => self.rest(op, input, method, uri, headers, body),
            other => Err(format!("protocol {other} is not decoded")),
        }
    }

    /// A query-protocol value of `shape` at `prefix` (botocore's QuerySerializer, reversed).
    fn query_value(&self, shape: &str, prefix: &str, form: &BTreeMap<String, String>, top: bool) -> Option<Value> {
        let s = self.shape(shape);
        let join = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
        match s["type"].as_str()? {
            "structure" => {
                let mut out = Map::new();
                for (name, m) in s["members"].as_object()? {
                    let wire = m["locationName"].as_str().unwrap_or(name);
                    if let Some(v) = self.query_value(m["shape"].as_str()?, &join(wire), form, false) {
                        out.insert(name.clone(), v);
                    }
                }
                (top || !out.is_empty()).then_some(Value::Object(out))
            }
            "list" => {
                if form.get(prefix).is_some_and(|v| v.is_empty()) {
                    return Some(Value::Array(vec![]));
                }
                let member = &s["member"];
                let list_prefix = if s["flattened"].as_bool() == Some(true) {
                    match member["locationName"].as_str() {
                        Some(n) => match prefix.rsplit_once('.') {
                            Some((head, _)) => format!("{head}.{n}"),
                            None => n.to_string(),
                        },
                        None => prefix.to_string(),
                    }
                } else {
                    format!("{prefix}.{}", member["locationName"].as_str().unwrap_or("member"))
                };
                let mut items = vec![];
                for i in 1.. {
                    match self.query_value(member["shape"].as_str()?, &format!("{list_prefix}.{i}"), form, false) {
                        Some(v) => items.push(v),
                        None => break,
                    }
                }
                (!items.is_empty()).then_some(Value::Array(items))
            }
            "map" => {
                let flat = s["flattened"].as_bool() == Some(true);
                let (k, v) = (s["key"]["locationName"].as_str().unwrap_or("key"), s["value"]["locationName"].as_str().unwrap_or("value"));
                let mut out = Map::new();
                for i in 1.. {
                    let entry = if flat { format!("{prefix}.{i}") } else { format!("{prefix}.entry.{i}") };
                    let Some(key) = form.get(&format!("{entry}.{k}")) else { break };
                    let value =
                        self.query_value(s["value"]["shape"].as_str()?, &format!("{entry}.{v}"), form, false).unwrap_or(Value::Null);
                    out.insert(key.clone(), value);
                }
                (!out.is_empty()).then_some(Value::Object(out))
            }
            _ => form.get(prefix).map(|v| Value::String(v.clone())),
        }
    }

    /// A REST request: labels from the path, members from the query string and headers, the
    /// rest (or the payload member) from the JSON or XML body.
    fn rest(&self, op: &Value, input: &str, _method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Value, String> {
        let template = op["http"]["requestUri"].as_str().unwrap_or("/");
        let (template_path, _) = template.split_once('?').unwrap_or((template, ""));
        let labels = match_path(template_path, uri.path()).ok_or_else(|| format!("{} does not match {template}", uri.path()))?;
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        let s = self.shape(input);
        let mut out = Map::new();
        let mut body_members = Map::new();
        let payload = s["payload"].as_str();
        for (name, m) in s["members"].as_object().into_iter().flatten() {
            let wire = m["locationName"].as_str().unwrap_or(name);
            match m["location"].as_str() {
                Some("uri") => {
                    if let Some(v) = labels.get(wire) {
                        out.insert(name.clone(), Value::String(v.clone()));
                    }
                }
                Some("querystring") => {
                    let values: Vec<Value> = query.iter().filter(|(k, _)| k == wire).map(|(_, v)| Value::String(v.clone())).collect();
                    let list = self.shape(m["shape"].as_str().unwrap_or(""))["type"] == "list";
                    match (list, values.len()) {
                        (_, 0) => {}
                        (true, _) => {
                            out.insert(name.clone(), Value::Array(values));
                        }
                        (false, _) => {
                            out.insert(name.clone(), values[0].clone());
                        }
                    }
                }
                Some("header") => {
                    if let Some(v) = headers.get(wire).and_then(|v| v.to_str().ok()) {
                        out.insert(name.clone(), Value::String(v.to_string()));
                    }
                }
                Some(_) => {}
                None => {
                    if payload != Some(name.as_str()) {
                        body_members.insert(name.clone(), m.clone());
                    }
                }
            }
        }
        if body.is_empty() {
            return Ok(Value::Object(out));
        }
        let xml = self.protocol() == "rest-xml";
        match payload {
            Some(p) => {
                let m = &s["members"][p];
                let shape = m["shape"].as_str().unwrap_or("");
                let value = if self.shape(shape)["type"] != "structure" {
                    Value::String(String::from_utf8_lossy(body).into_owned())
                } else if xml {
                    self.xml_value(shape, &xml_root(body)?)
                } else {
                    serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?
                };
                out.insert(p.to_string(), value);
            }
            None if xml => {
                let root = xml_root(body)?;
                if let Value::Object(m) = self.xml_value(input, &root) {
                    for (k, v) in m {
                        if body_members.contains_key(&k) {
                            out.insert(k, v);
                        }
                    }
                }
            }
            None => {
                let v: Value = serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
                for (k, v) in v.as_object().into_iter().flatten() {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        Ok(Value::Object(out))
    }

    /// An XML element as a value of `shape` (botocore's RestXML serializer, reversed).
    fn xml_value(&self, shape: &str, node: &Xml) -> Value {
        let s = self.shape(shape);
        match s["type"].as_str().unwrap_or("") {
            "structure" => {
                let mut out = Map::new();
                for (name, m) in s["members"].as_object().into_iter().flatten() {
                    let wire = m["locationName"].as_str().unwrap_or(name);
                    let ms = m["shape"].as_str().unwrap_or("");
                    let flat_list = self.shape(ms)["type"] == "list" && self.shape(ms)["flattened"].as_bool() == Some(true);
                    if flat_list {
                        let member = self.shape(ms)["member"]["shape"].as_str().unwrap_or("");
                        let items: Vec<Value> =
                            node.children.iter().filter(|c| c.name == wire).map(|c| self.xml_value(member, c)).collect();
                        if !items.is_empty() {
                            out.insert(name.clone(), Value::Array(items));
                        }
                    } else if let Some(child) = node.children.iter().find(|c| c.name == wire) {
                        out.insert(name.clone(), self.xml_value(ms, child));
                    }
                }
                Value::Object(out)
            }
            "list" => {
                let member = s["member"]["shape"].as_str().unwrap_or("");
                let wire = s["member"]["locationName"].as_str().unwrap_or("member");
                Value::Array(node.children.iter().filter(|c| c.name == wire).map(|c| self.xml_value(member, c)).collect())
            }
            "map" => {
                let mut out = Map::new();
                for entry in node.children.iter().filter(|c| c.name == "entry") {
                    let k = entry.children.iter().find(|c| c.name == "key").map(|c| c.text.clone()).unwrap_or_default();
                    let v = entry.children.iter().find(|c| c.name == "value").map(|c| Value::String(c.text.clone())).unwrap_or(Value::Null);
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            _ => Value::String(node.text.clone()),
        }
    }

    /// What AWS would refuse in `input` for `operation`: each problem as `Member.Path: why`.
    pub fn validate(&self, operation: &str, input: &Value) -> Vec<String> {
        let mut problems = vec![];
        match self.operation(operation) {
            None => problems.push(format!("{operation} is not an operation of this service")),
            Some(op) => {
                if let Some(shape) = op["input"]["shape"].as_str() {
                    self.check(shape, input, operation, &mut problems);
                }
            }
        }
        problems
    }

    fn check(&self, shape: &str, v: &Value, path: &str, problems: &mut Vec<String>) {
        let s = self.shape(shape);
        let ty = s["type"].as_str().unwrap_or("");
        let min = s["min"].as_f64();
        let max = s["max"].as_f64();
        let mut bad = |why: String| problems.push(format!("{path}: {why}"));
        match ty {
            "structure" => {
                let Some(obj) = v.as_object() else { return bad(format!("expected a structure ({shape}), got {v}")) };
                for r in s["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                    if obj.get(r).is_none_or(Value::is_null) {
                        bad(format!("missing required member {r}"));
                    }
                }
                for (k, val) in obj {
                    match s["members"].get(k) {
                        Some(m) => {
                            if !val.is_null() {
                                self.check(m["shape"].as_str().unwrap_or(""), val, &format!("{path}.{k}"), problems);
                            }
                        }
                        None => problems.push(format!("{path}: unknown member {k} (not in {shape})")),
                    }
                }
            }
            "list" => {
                let Some(items) = v.as_array() else { return bad(format!("expected a list, got {v}")) };
                let n = items.len() as f64;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    bad(format!("{n} items, allowed {}..{}", min.unwrap_or(0.0), max.map_or("".into(), |m| m.to_string())));
                }
                let member = s["member"]["shape"].as_str().unwrap_or("");
                for (i, item) in items.iter().enumerate() {
                    self.check(member, item, &format!("{path}[{i}]"), problems);
                }
            }
            "map" => {
                let Some(obj) = v.as_object() else { return bad(format!("expected a map, got {v}")) };
                let n = obj.len() as f64;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    bad(format!("{n} entries, allowed {}..{}", min.unwrap_or(0.0), max.map_or("".into(), |m| m.to_string())));
                }
                let (ks, vs) = (s["key"]["shape"].as_str().unwrap_or(""), s["value"]["shape"].as_str().unwrap_or(""));
                for (k, val) in obj {
                    self.check(ks, &Value::String(k.clone()), &format!("{path}.<key {k}>"), problems);
                    self.check(vs, val, &format!("{path}.{k}"), problems);
                }
            }
            "string" => {
                let Some(text) = v.as_str() else { return bad(format!("expected a string, got {v}")) };
                let n = text.chars().count() as f64;
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    bad(format!("length {n}, allowed {}..{}", min.unwrap_or(0.0), max.map_or("".into(), |m| m.to_string())));
                }
                if let Some(values) = s["enum"].as_array() {
                    if !values.iter().any(|e| e.as_str() == Some(text)) {
                        bad(format!("{text:?} is not one of {}", values.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")));
                    }
                }
            }
            "integer" | "long" | "double" | "float" => {
                let n = match v {
                    Value::Number(n) => n.as_f64(),
                    Value::String(t) => t.parse::<f64>().ok(),
                    _ => None,
                };
                let Some(n) = n else { return bad(format!("expected a number, got {v}")) };
                if (ty == "integer" || ty == "long") && n.fract() != 0.0 {
                    bad(format!("{n} is not an integer"));
                }
                if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                    bad(format!("{n} outside {}..{}", min.map_or("".into(), |m| m.to_string()), max.map_or("".into(), |m| m.to_string())));
                }
            }
            "boolean" => {
                let ok = v.is_boolean() || matches!(v.as_str(), Some("true" | "false"));
                if !ok {
                    bad(format!("expected a boolean, got {v}"));
                }
            }
            "blob" if !(v.is_string() || v.is_array()) => bad(format!("expected a blob, got {v}")),
            "timestamp" if !(v.is_string() || v.is_number()) => bad(format!("expected a timestamp, got {v}")),
            _ => {}
        }
    }
}

/// The labels of `path` under a REST template (`/{Bucket}`, `/v20180820/tags/{ResourceArn+}`),
/// percent-decoded; None when it does not match.
fn match_path(template: &str, path: &str) -> Option<HashMap<String, String>> {
    let decode = |s: &str| percent_decode(s);
    let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let mut labels = HashMap::new();
    for (i, seg) in t.iter().enumerate() {
        if let Some(label) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            if let Some(greedy) = label.strip_suffix('+') {
                labels.insert(greedy.to_string(), decode(&p.get(i..)?.join("/")));
                return Some(labels);
            }
            let v = p.get(i)?;
            if v.is_empty() {
                return None;
            }
            labels.insert(label.to_string(), decode(v));
        } else if p.get(i).copied().unwrap_or("") != *seg {
            return None;
        }
    }
    (p.len() == t.len() || (p.len() == t.len() + 1 && p.last() == Some(&""))).then_some(labels)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// A parsed XML element (names without namespace prefixes).
#[derive(Debug, Default)]
struct Xml {
    name: String,
    text: String,
    children: Vec<Xml>,
}

fn xml_root(body: &[u8]) -> Result<Xml, String> {
    let text = std::str::from_utf8(body).map_err(|e| format!("body is not UTF-8: {e}"))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("body is not XML: {e}"))?;
    fn walk(n: roxmltree::Node) -> Xml {
        Xml {
            name: n.tag_name().name().to_string(),
            text: n.children().filter(|c| c.is_text()).filter_map(|c| c.text()).collect::<String>().trim().to_string(),
            children: n.children().filter(|c| c.is_element()).map(walk).collect(),
        }
    }
    Ok(walk(doc.root_element()))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::awsproxy::test_headers as h;

    #[test]
    fn query_lists_maps_and_structures_decode_as_botocore_serializes_them() {
        let Some(rds) = service("rds") else { return };
        let body = b"Action=CreateDBInstance&Version=2014-10-31&DBInstanceIdentifier=db1&DBInstanceClass=db.t4g.micro&Engine=postgres&AllocatedStorage=20&Tags.Tag.1.Key=a&Tags.Tag.1.Value=b&Tags.Tag.2.Key=c&Tags.Tag.2.Value=d&VpcSecurityGroupIds.VpcSecurityGroupId.1=sg-1";
        let v = rds.decode("CreateDBInstance", &Method::POST, &"/".parse().unwrap(), &h(&[]), body).unwrap();
        assert_eq!(v["Tags"][1]["Key"], "c");
        assert_eq!(v["VpcSecurityGroupIds"][0], "sg-1");
        assert!(rds.validate("CreateDBInstance", &v).is_empty(), "{:?}", rds.validate("CreateDBInstance", &v));
        let mut bad = v.clone();
        bad["AllocatedStorage"] = "lots".into();
        bad.as_object_mut().unwrap().remove("DBInstanceClass");
        let problems = rds.validate("CreateDBInstance", &bad);
        assert!(problems.iter().any(|p| p.contains("missing required member DBInstanceClass")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("AllocatedStorage: expected a number")), "{problems:?}");
    }

    #[test]
    fn rest_labels_query_headers_and_xml_payloads_decode() {
        let Some(s3) = service("s3") else { return };
        let body = br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>eu-west-1</LocationConstraint><Tags><Tag><Key>k</Key><Value>v</Value></Tag></Tags></CreateBucketConfiguration>"#;
        let v = s3.decode("CreateBucket", &Method::PUT, &"/my-bucket".parse().unwrap(), &h(&[]), body).unwrap();
        assert_eq!(v["Bucket"], "my-bucket");
        assert_eq!(v["CreateBucketConfiguration"]["LocationConstraint"], "eu-west-1");
        assert_eq!(v["CreateBucketConfiguration"]["Tags"][0]["Key"], "k");
        assert!(s3.validate("CreateBucket", &v).is_empty(), "{:?}", s3.validate("CreateBucket", &v));
        let Some(lambda) = service("lambda") else { return };
        let v = lambda
            .decode(
                "UpdateAlias",
                &Method::PUT,
                &"/2015-03-31/functions/f/aliases/live".parse().unwrap(),
                &h(&[]),
                br#"{"FunctionVersion":"3"}"#,
            )
            .unwrap();
        assert_eq!((v["FunctionName"].as_str(), v["Name"].as_str(), v["FunctionVersion"].as_str()), (Some("f"), Some("live"), Some("3")));
        let bad = lambda
            .decode(
                "UpdateAlias",
                &Method::PUT,
                &"/2015-03-31/functions/f/aliases/live".parse().unwrap(),
                &h(&[]),
                br#"{"FunctionVersion":""}"#,
            )
            .unwrap();
        assert!(lambda.validate("UpdateAlias", &bad).iter().any(|p| p.contains("FunctionVersion: length 0")));
    }

    #[test]
    fn json_enums_and_ranges_are_checked() {
        let Some(ecs) = service("ecs") else { return };
        let ok = serde_json::json!({"cluster": "c", "service": "s", "desiredCount": 2});
        assert!(ecs.validate("UpdateService", &ok).is_empty());
        let bad = serde_json::json!({"cluster": "c", "service": "s", "deploymentConfiguration": {"strategy": "SIDEWAYS"}});
        let problems = ecs.validate("UpdateService", &bad);
        assert!(problems.iter().any(|p| p.contains("\"SIDEWAYS\" is not one of")), "{problems:?}");
    }

    #[test]
    fn rest_templates_match_labels_and_greedy_labels() {
        let l = match_path("/v20180820/tags/{ResourceArn+}", "/v20180820/tags/arn%3Aaws%3As3%3A%3A%3Ab").unwrap();
        assert_eq!(l["ResourceArn"], "arn:aws:s3:::b");
        assert!(match_path("/{Bucket}", "/b/key").is_none());
        assert_eq!(match_path("/{Bucket}/{Key+}", "/b/a/b.zip").unwrap()["Key"], "a/b.zip");
    }
}
