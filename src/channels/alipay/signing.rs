//! How Alipay OpenAPI 2.0 signs: sign strings, signed forms, the `*_response` extractor and
//! response verification, notification signatures. Pure functions only; the simulator in
//! `sandbox::alipay` uses the same functions from the gateway's side.

use std::collections::BTreeMap;

use super::transformers::ResultCode;
use crate::crypto::{PrivateKey, PublicKey};

/// SHA256withRSA.
pub const SIGN_TYPE: &str = "RSA2";

/// The string that is signed: every parameter except `sign` (and those in `exclude`),
/// empty values dropped, sorted by key, `k=v` joined with `&`, nothing encoded.
pub fn sign_content<'a, I>(params: I, exclude: &[&str]) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let sorted: BTreeMap<&str, &str> = params
        .into_iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty() && *k != "sign" && !exclude.contains(k))
        .collect();
    let mut out = String::new();
    for (k, v) in sorted {
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

/// Request parameters in the order they were added (the order does not affect the signature).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// Adds a parameter unless its value is empty (the gateway drops empty values when verifying).
    pub fn push(&mut self, key: &str, value: impl Into<String>) {
        let value = value.into();
        if !value.is_empty() {
            self.0.push((key.to_string(), value));
        }
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Iterates as `(&str, &str)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Signs the parameters and appends `sign`.
    pub fn sign(&mut self, key: &PrivateKey) {
        let content = sign_content(self.iter(), &[]);
        let sign = key.sign_sha256_b64(content.as_bytes());
        self.0.push(("sign".into(), sign));
    }

    /// `application/x-www-form-urlencoded` text of the given keys (or all when `keys` is None).
    pub fn encode(&self, keep: impl Fn(&str) -> bool) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.iter().filter(|(k, _)| keep(k)) {
            ser.append_pair(k, v);
        }
        ser.finish()
    }

    /// Whether some key appears more than once (such input is refused: the signature would
    /// cover one value and a reader might take the other).
    pub fn has_duplicate_keys(&self) -> bool {
        let mut seen = std::collections::HashSet::new();
        !self.0.iter().all(|(k, _)| seen.insert(k.as_str()))
    }

    /// `k=v&…` in insertion order with JavaScript `encodeURIComponent` escaping (space → `%20`),
    /// the form Alipay's app SDK receives from the official server SDKs.
    pub fn encode_component(&self) -> String {
        const KEEP: &[u8] = b"-_.!~*'()";
        let enc = |text: &str| {
            let mut out = String::with_capacity(text.len());
            for b in text.bytes() {
                if b.is_ascii_alphanumeric() || KEEP.contains(&b) {
                    out.push(char::from(b));
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        };
        self.iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Parses form-encoded text (decoding once).
    pub fn decode(text: &[u8]) -> Params {
        Params(
            form_urlencoded::parse(text)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
}

/// Parameters that travel in the URL query string; everything else goes in the form body.
pub const URL_PARAMS: &[&str] = &[
    "app_id",
    "method",
    "format",
    "charset",
    "sign_type",
    "sign",
    "timestamp",
    "version",
    "notify_url",
    "return_url",
    "auth_token",
    "app_auth_token",
    "app_cert_sn",
    "alipay_root_cert_sn",
    "ws_service_url",
];

/// The top-level key of a method's response: `alipay.trade.query` → `alipay_trade_query_response`.
pub fn response_key(method: &str) -> String {
    format!("{}_response", method.replace('.', "_"))
}

/// The exact bytes of the JSON object that is the value of `key` at the top level of `body`:
/// from its `{` to the matching `}`, braces inside strings ignored. Nothing is re-serialized.
pub fn extract_object<'a>(body: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!("\"{key}\"");
    let start_key = body.find(&needle)?;
    let rest = &body[start_key + needle.len()..];
    let colon = rest.find(':')?;
    if !rest[..colon].trim().is_empty() {
        return None;
    }
    let after = &rest[colon + 1..];
    let open = after.find('{')?;
    if !after[..open].trim().is_empty() {
        return None;
    }
    let obj = &after[open..];
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, c) in obj.char_indices() {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&obj[..=i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// Why a synchronous response could not be trusted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("HTTP status {0}")]
    Status(u16),
    #[error("response is not JSON with a {0} object")]
    Shape(String),
    #[error("response is not signed")]
    Unsigned,
    #[error("response signature is invalid")]
    BadSignature,
}

/// A response object whose signature checked out: its result code, and its exact text for
/// reading the operation's own fields.
#[derive(Debug, Clone)]
pub struct VerifiedResponse<'a> {
    pub code: String,
    pub msg: String,
    pub sub_code: Option<String>,
    pub sub_msg: Option<String>,
    raw: &'a str,
}

impl VerifiedResponse<'_> {
    /// The operation's fields, read from the verified text; `None` when they do not fit `T`.
    pub fn fields<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_str(self.raw).ok()
    }
}

/// Verifies a synchronous gateway response over the exact raw `*_response` text.
pub fn verify_response<'a>(
    status: u16,
    body: &'a [u8],
    method: &str,
    alipay_public_key: &PublicKey,
) -> Result<VerifiedResponse<'a>, ResponseError> {
    if status != 200 {
        return Err(ResponseError::Status(status));
    }
    let key = response_key(method);
    let text = std::str::from_utf8(body).map_err(|_| ResponseError::Shape(key.clone()))?;
    let top: serde_json::Value =
        serde_json::from_str(text).map_err(|_| ResponseError::Shape(key.clone()))?;
    let (used_key, raw) = match extract_object(text, &key) {
        Some(raw) if top.get(&key).is_some() => (key.clone(), raw),
        _ => match extract_object(text, "error_response") {
            Some(raw) if top.get("error_response").is_some() => ("error_response".into(), raw),
            _ => return Err(ResponseError::Shape(key)),
        },
    };
    let sign = top
        .get("sign")
        .and_then(|s| s.as_str())
        .ok_or(ResponseError::Unsigned)?;
    if !alipay_public_key.verify_sha256_b64(raw.as_bytes(), sign) {
        return Err(ResponseError::BadSignature);
    }
    // Read the fields from the very bytes that were verified (a body repeating the key must not
    // be verified on one copy and read from another).
    let result: ResultCode =
        serde_json::from_str(raw).map_err(|_| ResponseError::Shape(used_key))?;
    Ok(VerifiedResponse {
        code: result.code,
        msg: result.msg,
        sub_code: result.sub_code,
        sub_msg: result.sub_msg,
        raw,
    })
}

/// Signs a response object as the gateway does and wraps it: `{"<key>":<obj>,"sign":"…"}`.
pub fn sign_response(key: &str, object_json: &str, platform_key: &PrivateKey) -> String {
    let sign = platform_key.sign_sha256_b64(object_json.as_bytes());
    format!("{{\"{key}\":{object_json},\"sign\":\"{sign}\"}}")
}

/// Verifies an asynchronous notification (rule "V1": `sign` and `sign_type` excluded).
pub fn verify_notification(params: &Params, alipay_public_key: &PublicKey) -> bool {
    if params.has_duplicate_keys() {
        return false;
    }
    let Some(sign) = params.get("sign") else {
        return false;
    };
    let content = sign_content(params.iter(), &["sign_type"]);
    alipay_public_key.verify_sha256_b64(content.as_bytes(), sign)
}

/// Signs notification parameters as Alipay does (V1) and appends `sign` and `sign_type`.
pub fn sign_notification(params: &mut Params, platform_key: &PrivateKey) {
    let content = sign_content(params.iter(), &["sign_type"]);
    let sign = platform_key.sign_sha256_b64(content.as_bytes());
    params.push("sign_type", SIGN_TYPE);
    params.push("sign", sign);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_content_drops_empty_and_sign_and_sorts() {
        let params = [
            ("b", "2"),
            ("a", "1"),
            ("sign", "x"),
            ("e", ""),
            ("sign_type", "RSA2"),
        ];
        assert_eq!(sign_content(params, &[]), "a=1&b=2&sign_type=RSA2");
        assert_eq!(sign_content(params, &["sign_type"]), "a=1&b=2");
    }

    #[test]
    fn extractor_ignores_braces_in_strings_and_keeps_bytes() {
        let body = r#"{"x_response":{"a":"}{\"","b":{"c":"\/"}},"sign":"s"}"#;
        assert_eq!(
            extract_object(body, "x_response"),
            Some(r#"{"a":"}{\"","b":{"c":"\/"}}"#)
        );
        assert_eq!(extract_object(body, "missing"), None);
        assert_eq!(
            extract_object(r#"{"x_response":"str"}"#, "x_response"),
            None
        );
    }
}
