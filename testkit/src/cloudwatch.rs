//! CloudWatch for the Rust SDK in front of moto: aws-sdk-cloudwatch speaks only the
//! RPCv2-CBOR protocol (`POST /service/GraniteServiceVersion20100801/operation/<Op>`, a CBOR
//! body, `smithy-protocol: rpc-v2-cbor`), moto only the query protocol at `/`. The AWS test
//! proxy translates: the CBOR request becomes the query form of the same operation
//! (lists as `Name.member.N`), moto's XML answer becomes the CBOR answer (DescribeAlarms:
//! `MetricAlarms` and `CompositeAlarms` with each alarm's name, ARN, state and reason), an
//! XML error the CBOR error (`__type`, `message`) with its status. moto keeps the alarms
//! (PutMetricAlarm, SetAlarmState): the translation adds no behaviour of its own.
//! Pinned by `cloudwatch_alarms_reach_moto_through_the_rpcv2_translation` in
//! tests/function_e2e.rs.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use minicbor::data::Type;
use serde_json::Value;

/// The path prefix of CloudWatch's RPCv2-CBOR operations.
pub const PREFIX: &str = "/service/GraniteServiceVersion20100801/operation/";

/// A CBOR item as JSON (strings, numbers, booleans, arrays, maps; tags dropped).
pub(crate) fn decode(d: &mut minicbor::Decoder) -> Result<Value, minicbor::decode::Error> {
    Ok(match d.datatype()? {
        Type::Bool => Value::Bool(d.bool()?),
        Type::Null | Type::Undefined => {
            d.skip()?;
            Value::Null
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Value::from(d.u64()?),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => Value::from(d.i64()?),
        Type::F16 | Type::F32 | Type::F64 => Value::from(d.f64()?),
        Type::String => Value::String(d.str()?.to_string()),
        Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter()? {
                s.push_str(part?);
            }
            Value::String(s)
        }
        Type::Array | Type::ArrayIndef => {
            let mut out = vec![];
            match d.array()? {
                Some(n) => {
                    for _ in 0..n {
                        out.push(decode(d)?);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        out.push(decode(d)?);
                    }
                    d.skip()?;
                }
            }
            Value::Array(out)
        }
        Type::Map | Type::MapIndef => {
            let mut out = serde_json::Map::new();
            match d.map()? {
                Some(n) => {
                    for _ in 0..n {
                        let k = decode(d)?;
                        let v = decode(d)?;
                        out.insert(k.as_str().unwrap_or_default().to_string(), v);
                    }
                }
                None => {
                    while d.datatype()? != Type::Break {
                        let k = decode(d)?;
                        let v = decode(d)?;
                        out.insert(k.as_str().unwrap_or_default().to_string(), v);
                    }
                    d.skip()?;
                }
            }
            Value::Object(out)
        }
        Type::Tag => {
            d.tag()?;
            decode(d)?
        }
        _ => {
            d.skip()?;
            Value::Null
        }
    })
}

/// JSON (strings, arrays, maps) as CBOR.
fn encode(e: &mut minicbor::Encoder<Vec<u8>>, v: &Value) {
    let _ = match v {
        Value::Object(m) => {
            let _ = e.map(m.len() as u64);
            for (k, v) in m {
                let _ = e.str(k);
                encode(e, v);
            }
            Ok(())
        }
        Value::Array(a) => {
            let _ = e.array(a.len() as u64);
            for v in a {
                encode(e, v);
            }
            Ok(())
        }
        Value::String(s) => e.str(s).map(|_| ()),
        Value::Bool(b) => e.bool(*b).map(|_| ()),
        Value::Number(n) => match n.as_i64() {
            Some(i) => e.i64(i).map(|_| ()),
            None => e.f64(n.as_f64().unwrap_or_default()).map(|_| ()),
        },
        Value::Null => e.null().map(|_| ()),
    };
}

/// The query form of a decoded request: scalars as `Key=value`, lists as `Key.member.N`.
fn form(action: &str, input: &Value) -> String {
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    f.append_pair("Action", action).append_pair("Version", "2010-08-01");
    for (k, v) in input.as_object().into_iter().flatten() {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    f.append_pair(&format!("{k}.member.{}", i + 1), &scalar(item));
                }
            }
            Value::Null | Value::Object(_) => {}
            other => {
                f.append_pair(k, &scalar(other));
            }
        }
    }
    f.finish()
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Every `<name>…</name>` element's text in `xml`.
fn all<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut out = vec![];
    let mut rest = xml;
    while let Some(a) = rest.find(&open) {
        let after = &rest[a + open.len()..];
        let Some(b) = after.find(&close) else { break };
        out.push(&after[..b]);
        rest = &after[b + close.len()..];
    }
    out
}

fn first(xml: &str, name: &str) -> Option<String> {
    all(xml, name).first().map(|s| s.to_string())
}

/// The alarms of a `<MetricAlarms>` or `<CompositeAlarms>` list.
fn alarms(xml: &str, list: &str) -> Value {
    let Some(block) = all(xml, list).into_iter().next() else { return Value::Array(vec![]) };
    let members = all(block, "member")
        .into_iter()
        .map(|m| {
            let mut alarm = serde_json::Map::new();
            for field in ["AlarmName", "AlarmArn", "StateValue", "StateReason", "AlarmDescription"] {
                if let Some(v) = first(m, field) {
                    alarm.insert(field.into(), Value::String(v));
                }
            }
            Value::Object(alarm)
        })
        .collect();
    Value::Array(members)
}

/// A CloudWatch error in RPCv2-CBOR (`__type`, `message`).
pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    cbor_response(status, &serde_json::json!({"__type": code, "message": message}))
}

fn cbor_response(status: StatusCode, v: &Value) -> Response {
    let mut e = minicbor::Encoder::new(Vec::new());
    encode(&mut e, v);
    let mut r = (status, e.into_writer()).into_response();
    r.headers_mut().insert("content-type", HeaderValue::from_static("application/cbor"));
    r.headers_mut().insert("smithy-protocol", HeaderValue::from_static("rpc-v2-cbor"));
    r
}

/// Answers one RPCv2-CBOR CloudWatch call through moto's query protocol.
pub async fn translate(http: &reqwest::Client, upstream: &str, operation: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let input = if body.is_empty() {
        Value::Object(Default::default())
    } else {
        match decode(&mut minicbor::Decoder::new(body)) {
            Ok(v) => v,
            Err(e) => {
                let err = serde_json::json!({"__type": "SerializationException", "message": format!("not CBOR: {e}")});
                return cbor_response(StatusCode::BAD_REQUEST, &err);
            }
        }
    };
    let mut req =
        http.post(format!("{upstream}/")).header("content-type", "application/x-www-form-urlencoded").body(form(operation, &input));
    if let Some(auth) = headers.get("authorization") {
        req = req.header("authorization", auth);
    }
    let (status, xml) = match req.send().await {
        Ok(r) => (r.status(), r.text().await.unwrap_or_default()),
        Err(e) => {
            let err = serde_json::json!({"__type": "ServiceUnavailable", "message": format!("moto: {e}")});
            return cbor_response(StatusCode::SERVICE_UNAVAILABLE, &err);
        }
    };
    if !status.is_success() {
        let code = first(&xml, "Code").unwrap_or_else(|| "InternalFailure".into());
        let message = first(&xml, "Message").unwrap_or_default();
        return cbor_response(status, &serde_json::json!({"__type": code, "message": message}));
    }
    let mut out = serde_json::Map::new();
    if operation == "DescribeAlarms" {
        out.insert("MetricAlarms".into(), alarms(&xml, "MetricAlarms"));
        out.insert("CompositeAlarms".into(), alarms(&xml, "CompositeAlarms"));
        if let Some(t) = first(&xml, "NextToken").filter(|t| !t.is_empty()) {
            out.insert("NextToken".into(), Value::String(t));
        }
    }
    cbor_response(StatusCode::OK, &Value::Object(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cbor_request_becomes_the_query_form_and_json_round_trips_through_cbor() {
        let v = serde_json::json!({"AlarmNames": ["a", "b c"], "MaxRecords": 100, "Nested": {"x": true}});
        let mut e = minicbor::Encoder::new(Vec::new());
        encode(&mut e, &v);
        let back = decode(&mut minicbor::Decoder::new(&e.into_writer())).unwrap();
        assert_eq!(back, v);
        let f = form("DescribeAlarms", &back);
        assert!(f.contains("Action=DescribeAlarms") && f.contains("AlarmNames.member.1=a") && f.contains("AlarmNames.member.2=b+c"), "{f}");
        assert!(f.contains("MaxRecords=100") && !f.contains("Nested"), "{f}");
    }

    #[test]
    fn moto_alarms_are_read_from_its_xml() {
        let xml = "<DescribeAlarmsResponse><DescribeAlarmsResult><MetricAlarms><member><AlarmName>api-5xx</AlarmName><StateValue>ALARM</StateValue><Dimensions><member><Name>x</Name></member></Dimensions></member><member><AlarmName>api-p99</AlarmName><StateValue>OK</StateValue></member></MetricAlarms><CompositeAlarms></CompositeAlarms></DescribeAlarmsResult></DescribeAlarmsResponse>";
        let a = alarms(xml, "MetricAlarms");
        assert_eq!(a[0]["AlarmName"], "api-5xx");
        assert_eq!(a[0]["StateValue"], "ALARM");
        assert_eq!(a[1]["StateValue"], "OK");
        assert_eq!(alarms(xml, "CompositeAlarms"), Value::Array(vec![]));
    }
}
