//! Every answer of the unified API is checked against the OpenAPI document: the operation
//! (method and path template) and its status must be documented, the content type must be one
//! the response declares, required headers must be there (and a header the document declares
//! on some responses, such as `Retry-After`, only where it is declared), and the body must
//! match the schema.
//!
//! Schemas are checked strictly: an object schema that does not say otherwise accepts no member
//! it does not declare, so a field the server adds without documenting it fails too. (The
//! document itself stays open, so that clients generated from it tolerate additions.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Map, Value};

/// The committed OpenAPI document (also what `GET /openapi.json` serves).
pub const DOCUMENT: &str = payroute::api::OPENAPI_JSON;

thread_local! {
    /// How many answers `assert_documented` has checked on this thread: each test runs on a
    /// thread of its own, so another test checking at the same time does not count.
    static CHECKED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many answers `assert_documented` has checked on this thread (shows that the harness
/// checks at all, and what it does not check).
pub fn checked() -> usize {
    CHECKED.with(std::cell::Cell::get)
}

/// An OpenAPI document prepared for checking responses.
pub struct Spec {
    doc: Value,
    /// Every header some response declares (lower case): sent only where declared.
    declared_headers: Vec<String>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// The committed document, loaded once.
pub fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| Spec::new(serde_json::from_str(DOCUMENT).expect("openapi.json is JSON")))
}

/// Panics unless the answer is documented by the committed document.
pub fn assert_documented(
    method: &str,
    path: &str,
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) {
    CHECKED.with(|c| c.set(c.get() + 1));
    if let Err(e) = spec().check(method, path, status, headers, body) {
        panic!(
            "{method} {path} answered {status} contrary to src/api/openapi.json: {e}\nbody: {}",
            String::from_utf8_lossy(body)
        );
    }
}

/// Closes every object schema that declares `properties` and says nothing about other members.
fn close_objects(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let is_object_schema = m.get("type") == Some(&json!("object"))
                && m.get("properties").is_some_and(Value::is_object)
                && !m.contains_key("additionalProperties")
                && !m.contains_key("unevaluatedProperties");
            if is_object_schema {
                m.insert("unevaluatedProperties".into(), json!(false));
            }
            m.values_mut().for_each(close_objects);
        }
        Value::Array(a) => a.iter_mut().for_each(close_objects),
        _ => {}
    }
}

/// Collects the names of the headers that the responses under `v` declare.
fn headers_declared(v: &Value, names: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::Object(h)) = m.get("headers") {
                if m.contains_key("description") {
                    for name in h.keys().map(|n| n.to_ascii_lowercase()) {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                    }
                }
            }
            m.values().for_each(|v| headers_declared(v, names));
        }
        Value::Array(a) => a.iter().for_each(|v| headers_declared(v, names)),
        _ => {}
    }
}

/// Follows a local `$ref` (`#/components/...`) until a non-reference object.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> Result<&'a Value, String> {
    for _ in 0..8 {
        let Some(r) = v.get("$ref").and_then(Value::as_str) else {
            return Ok(v);
        };
        let pointer = r
            .strip_prefix('#')
            .ok_or_else(|| format!("non-local $ref {r}"))?;
        v = doc
            .pointer(pointer)
            .ok_or_else(|| format!("dangling $ref {r}"))?;
    }
    Err("$ref chain too long".into())
}

/// Whether a concrete path (`/v1/payments/X1`) fits a template (`/v1/payments/{out_trade_no}`);
/// the number of literal segments ranks competing templates.
fn path_matches(template: &str, path: &str) -> Option<usize> {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    if t.len() != p.len() {
        return None;
    }
    let mut literal = 0;
    for (t, p) in t.iter().zip(&p) {
        if t.starts_with('{') && t.ends_with('}') {
            if p.is_empty() {
                return None;
            }
        } else if t == p {
            literal += 1;
        } else {
            return None;
        }
    }
    Some(literal)
}

impl Spec {
    /// Prepares a document; panics when it is not a usable OpenAPI 3.1 document.
    pub fn new(doc: Value) -> Spec {
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1.")),
            "an OpenAPI 3.1 document"
        );
        let mut doc = doc;
        close_objects(&mut doc);
        let mut declared_headers = vec![];
        headers_declared(&doc["paths"], &mut declared_headers);
        headers_declared(&doc["components"]["responses"], &mut declared_headers);
        Spec {
            doc,
            declared_headers,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The responses that document `method path`: the operation's, or the document's
    /// `NotFound` / `MethodNotAllowed` responses for an unknown path or method.
    fn responses(&self, method: &str, path: &str) -> Result<(String, Map<String, Value>), String> {
        let paths = self.doc["paths"].as_object().ok_or("no paths")?;
        let best = paths
            .iter()
            .filter_map(|(t, item)| path_matches(t, path).map(|rank| (rank, t, item)))
            .max_by_key(|(rank, _, _)| *rank);
        let fallback = |name: &str, status: &str| {
            let r = format!("#/components/responses/{name}");
            let mut m = Map::new();
            m.insert(status.into(), json!({ "$ref": r }));
            Ok((format!("{name} response"), m))
        };
        let Some((_, template, item)) = best else {
            return fallback("NotFound", "404");
        };
        let Some(op) = item.get(method.to_ascii_lowercase()) else {
            return fallback("MethodNotAllowed", "405");
        };
        let responses = op["responses"]
            .as_object()
            .ok_or_else(|| format!("{method} {template} has no responses"))?;
        Ok((format!("{method} {template}"), responses.clone()))
    }

    /// Checks one answer; the error says what is undocumented or wrong.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let (op, responses) = self.responses(method, path)?;
        let status_key = status.to_string();
        let range_key = format!("{}XX", status / 100);
        let response = [status_key.as_str(), range_key.as_str(), "default"]
            .iter()
            .find_map(|k| responses.get(*k))
            .ok_or_else(|| format!("{op} does not document status {status}"))?;
        let response = resolve(&self.doc, response)?;
        self.check_headers(response, headers)?;
        let media = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                ct.split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase()
            });
        let Some(content) = response.get("content").and_then(Value::as_object) else {
            return if body.is_empty() {
                Ok(())
            } else {
                Err(format!("{op} {status} documents no body, got one"))
            };
        };
        let media = media.ok_or_else(|| format!("{op} {status} has no content type"))?;
        let declared = content.get(&media).ok_or_else(|| {
            let known: Vec<&String> = content.keys().collect();
            format!("{op} {status}: content type {media} is not among {known:?}")
        })?;
        let Some(schema) = declared.get("schema") else {
            return Ok(());
        };
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| format!("{op} {status}: the {media} body is not JSON: {e}"))?;
        let validator = self.validator(schema)?;
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect();
        if !errors.is_empty() {
            return Err(format!("{op} {status}: {}", errors.join("; ")));
        }
        if media == "application/problem+json" {
            // What the Problem schema's descriptions promise but JSON Schema cannot say.
            if value["status"] != json!(status) {
                return Err(format!(
                    "problem status {} on a {status} response",
                    value["status"]
                ));
            }
            let code = value["code"].as_str().unwrap_or_default();
            if value["type"] != json!(format!("urn:payroute:problem:{code}")) {
                return Err(format!(
                    "problem type {} does not name code {code}",
                    value["type"]
                ));
            }
        }
        Ok(())
    }

    /// Checks a value against a named schema of `components.schemas` (strictly, as answers are).
    pub fn check_schema(&self, name: &str, value: &Value) -> Result<(), String> {
        let schema = json!({ "$ref": format!("#/components/schemas/{name}") });
        let errors: Vec<String> = self
            .validator(&schema)?
            .iter_errors(value)
            .map(|e| format!("at {}: {e}", e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{name}: {}", errors.join("; ")))
        }
    }

    fn check_headers(&self, response: &Value, headers: &http::HeaderMap) -> Result<(), String> {
        let empty = Map::new();
        let declared = response
            .get("headers")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        if let Some(name) = self.declared_headers.iter().find(|name| {
            headers.contains_key(name.as_str())
                && !declared.keys().any(|d| d.eq_ignore_ascii_case(name))
        }) {
            return Err(format!(
                "header {name} is sent but this response does not declare it"
            ));
        }
        for (name, header) in declared {
            let header = resolve(&self.doc, header)?;
            let Some(value) = headers.get(name.as_str()) else {
                if header["required"] == json!(true) {
                    return Err(format!("required header {name} is missing"));
                }
                continue;
            };
            let Some(schema) = header.get("schema") else {
                continue;
            };
            let text = value
                .to_str()
                .map_err(|_| format!("header {name} is not text"))?;
            let value = match schema["type"].as_str() {
                Some("integer" | "number") => serde_json::from_str(text)
                    .map_err(|_| format!("header {name}: {text} is not a number"))?,
                _ => json!(text),
            };
            let validator = self.validator(schema)?;
            if let Err(e) = validator.validate(&value) {
                return Err(format!("header {name}: {e}"));
            }
        }
        Ok(())
    }

    /// A validator for a schema of the document; its `$ref`s resolve against the document's
    /// components, carried along as an unknown keyword (JSON pointers reach into it).
    fn validator(&self, schema: &Value) -> Result<Arc<jsonschema::Validator>, String> {
        let key = schema.to_string();
        let mut cache = self.validators.lock().unwrap();
        if let Some(v) = cache.get(&key) {
            return Ok(v.clone());
        }
        let root = json!({
            "allOf": [schema],
            "components": self.doc["components"],
        });
        let v = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .map_err(|e| format!("the schema {key} does not compile: {e}"))?;
        let v = Arc::new(v);
        cache.insert(key, v.clone());
        Ok(v)
    }
}
