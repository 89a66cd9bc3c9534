//! Request parsing and validation, and the response bodies of the unified API v1.

use crate::domain::ErrorCode;
use crate::money::Fen;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use super::problem::Problem;
use crate::domain::{Currency, PayMethod, Scene};
use crate::ledger::OrderRequest;
use crate::money::MAX_AMOUNT_FEN;
pub use crate::order::views::{PaymentView, RefundView};

/// `POST /v1/payments` as sent; types are checked by hand for precise messages.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePaymentBody {
    out_trade_no: Value,
    amount: Value,
    currency: Value,
    method: Value,
    scene: Value,
    subject: Value,
    #[serde(default)]
    description: Option<Value>,
    #[serde(default)]
    payer_id: Option<Value>,
    #[serde(default)]
    auth_code: Option<Value>,
    #[serde(default)]
    client_ip: Option<Value>,
    #[serde(default)]
    expires_at: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
    #[serde(default)]
    split: Option<Value>,
}

/// `POST /v1/payments/{out_trade_no}/refunds` as sent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    out_refund_no: Value,
    amount: Value,
    #[serde(default)]
    reason: Option<Value>,
    #[serde(default)]
    split_returns: Option<Value>,
}

/// Parses a JSON body strictly: unknown or missing fields are errors that name the field.
pub(super) fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if body.is_empty() {
        return Err(Problem::new(
            http::StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            "the request body is empty; send a JSON object",
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let msg = e.inner().to_string();
        let quoted = msg.split('`').nth(1).unwrap_or_default().to_string();
        if msg.starts_with("unknown field") {
            Problem::field(
                ErrorCode::UnknownField,
                &quoted,
                format!("unknown field `{quoted}`"),
            )
        } else if msg.starts_with("missing field") {
            Problem::field(
                ErrorCode::MissingField,
                &quoted,
                format!("missing field `{quoted}`"),
            )
        } else if e.inner().is_syntax() || e.inner().is_eof() {
            Problem::new(
                http::StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("malformed JSON: {msg}"),
            )
        } else {
            Problem::new(
                http::StatusCode::BAD_REQUEST,
                ErrorCode::InvalidJson,
                format!("the body must be a JSON object: {msg}"),
            )
        }
    })?;
    // One JSON value and nothing after it (but whitespace): `{…} xyz` is not a request.
    de.end().map_err(|e| {
        Problem::new(
            http::StatusCode::BAD_REQUEST,
            ErrorCode::InvalidJson,
            format!("malformed JSON: unexpected data after the JSON body ({e})"),
        )
    })?;
    Ok(value)
}

/// The unified merchant number rule: what every channel accepts — 6 to 32 characters of
/// ASCII letters, digits and `_` (Alipay allows letters/digits/`_` up to 64, WeChat Pay 6–32).
pub fn valid_out_trade_no(s: &str) -> bool {
    (6..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Refund numbers: 6 to 64 characters of ASCII letters, digits and `_`.
pub fn valid_out_refund_no(s: &str) -> bool {
    (6..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

pub(super) fn string_field(v: &Value, field: &str, max_chars: usize) -> Result<String, Problem> {
    match v {
        Value::String(s) if !s.trim().is_empty() && s.chars().count() <= max_chars => Ok(s.clone()),
        Value::String(s) if s.trim().is_empty() => Err(Problem::field(
            ErrorCode::InvalidField,
            field,
            format!("{field} must not be empty"),
        )),
        Value::String(_) => Err(Problem::field(
            ErrorCode::InvalidField,
            field,
            format!("{field} is longer than {max_chars} characters"),
        )),
        _ => Err(Problem::field(
            ErrorCode::InvalidField,
            field,
            format!("{field} must be a string"),
        )),
    }
}

pub(super) fn opt_string(
    v: &Option<Value>,
    field: &str,
    max_chars: usize,
) -> Result<Option<String>, Problem> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => string_field(v, field, max_chars).map(Some),
    }
}

/// A positive integer amount in fen, at most `MAX_AMOUNT_FEN`.
pub(super) fn amount_field(v: &Value, field: &str) -> Result<u64, Problem> {
    let bad = |why: &str| Problem::field(ErrorCode::InvalidAmount, field, format!("{field} {why}"));
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(0) => Err(bad("must be greater than 0")),
            Some(a) if a > MAX_AMOUNT_FEN => {
                Err(bad(&format!("must be at most {MAX_AMOUNT_FEN} fen")))
            }
            Some(a) => Ok(a),
            None if n.is_i64() => Err(bad("must be greater than 0")),
            None => Err(bad("must be an integer number of fen (no decimals)")),
        },
        _ => Err(bad("must be an integer number of fen")),
    }
}

pub(super) fn enum_field<T: serde::de::DeserializeOwned>(
    v: &Value,
    field: &str,
    code: ErrorCode,
    allowed: &str,
) -> Result<T, Problem> {
    serde_json::from_value(v.clone()).map_err(|_| {
        Problem::field(
            code,
            field,
            format!("{field} must be one of {allowed}, got {v}"),
        )
    })
}

/// Parses and validates `POST /v1/payments`.
pub fn parse_create(body: &[u8], now: DateTime<Utc>) -> Result<OrderRequest, Problem> {
    let b: CreatePaymentBody = parse_body(body)?;
    let out_trade_no = match &b.out_trade_no {
        Value::String(s) if valid_out_trade_no(s) => s.clone(),
        _ => {
            return Err(Problem::field(
                ErrorCode::InvalidOutTradeNo,
                "out_trade_no",
                "out_trade_no must be 6-32 characters of letters, digits and _ (the rule every channel accepts)",
            ))
        }
    };
    let amount = amount_field(&b.amount, "amount")?;
    let currency: Currency = enum_field(
        &b.currency,
        "currency",
        ErrorCode::UnsupportedCurrency,
        "CNY",
    )?;
    let method: PayMethod = enum_field(
        &b.method,
        "method",
        ErrorCode::UnsupportedMethod,
        "alipay, wechat",
    )?;
    let scene: Scene = enum_field(
        &b.scene,
        "scene",
        ErrorCode::UnsupportedScene,
        "qr, app, h5, jsapi, page, barcode",
    )?;
    let subject = string_field(&b.subject, "subject", 127)?;
    let description = opt_string(&b.description, "description", 128)?;
    let payer_id = opt_string(&b.payer_id, "payer_id", 128)?;
    let auth_code = opt_string(&b.auth_code, "auth_code", 32)?;
    let client_ip = opt_string(&b.client_ip, "client_ip", 45)?;
    if let Some(ip) = &client_ip {
        if ip.parse::<std::net::IpAddr>().is_err() {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "client_ip",
                "client_ip must be an IPv4 or IPv6 address",
            ));
        }
    }
    match (scene, &auth_code) {
        (Scene::Barcode, None) => {
            return Err(Problem::field(
                ErrorCode::MissingField,
                "auth_code",
                "barcode payments need auth_code (the customer's payment code)",
            ))
        }
        (Scene::Barcode, Some(c))
            if !(10..=32).contains(&c.len()) || !c.bytes().all(|b| b.is_ascii_digit()) =>
        {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "auth_code",
                "auth_code must be the 10-32 digit payment code",
            ))
        }
        (s, Some(_)) if s != Scene::Barcode => {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "auth_code",
                "auth_code is only for the barcode scene",
            ))
        }
        _ => {}
    }
    if method == PayMethod::Wechat && scene == Scene::H5 && client_ip.is_none() {
        return Err(Problem::field(
            ErrorCode::MissingField,
            "client_ip",
            "WeChat H5 payments need client_ip (the payer's IP address)",
        ));
    }
    if scene == Scene::Jsapi && payer_id.is_none() {
        return Err(Problem::field(
            ErrorCode::MissingField,
            "payer_id",
            "jsapi payments need payer_id (the payer's openid)",
        ));
    }
    let expires_at = match &b.expires_at {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            let t = DateTime::parse_from_rfc3339(s)
                .map_err(|_| {
                    Problem::field(
                        ErrorCode::InvalidField,
                        "expires_at",
                        "expires_at must be an RFC 3339 timestamp",
                    )
                })?
                .with_timezone(&Utc);
            if t <= now {
                return Err(Problem::field(
                    ErrorCode::InvalidField,
                    "expires_at",
                    "expires_at is in the past",
                ));
            }
            Some(t)
        }
        Some(_) => {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "expires_at",
                "expires_at must be an RFC 3339 timestamp",
            ))
        }
    };
    let metadata = parse_metadata(&b.metadata)?;
    let split = match &b.split {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "split",
                "split must be true or false",
            ))
        }
    };
    Ok(OrderRequest {
        out_trade_no,
        amount: Fen(amount),
        currency,
        method,
        scene,
        subject,
        description,
        payer_id,
        auth_code,
        client_ip,
        expires_at,
        metadata,
        split,
    })
}

fn parse_metadata(v: &Option<Value>) -> Result<BTreeMap<String, String>, Problem> {
    let bad = |why: &str| {
        Problem::field(
            ErrorCode::InvalidField,
            "metadata",
            format!("metadata {why}"),
        )
    };
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => {
            if m.len() > 20 {
                return Err(bad("may have at most 20 keys"));
            }
            m.iter()
                .map(|(k, v)| match v {
                    Value::String(s) if k.len() <= 64 && s.len() <= 256 => {
                        Ok((k.clone(), s.clone()))
                    }
                    Value::String(_) => {
                        Err(bad("keys are at most 64 bytes and values at most 256"))
                    }
                    _ => Err(bad("values must be strings")),
                })
                .collect()
        }
        Some(_) => Err(bad("must be an object of strings")),
    }
}

/// Parses and validates a refund request.
pub fn parse_refund(body: &[u8]) -> Result<crate::payments::RefundRequest, Problem> {
    let b: RefundBody = parse_body(body)?;
    let out_refund_no = match &b.out_refund_no {
        Value::String(s) if valid_out_refund_no(s) => s.clone(),
        _ => {
            return Err(Problem::field(
                ErrorCode::InvalidOutRefundNo,
                "out_refund_no",
                "out_refund_no must be 6-64 characters of letters, digits and _",
            ))
        }
    };
    Ok(crate::payments::RefundRequest {
        out_refund_no,
        amount: Fen(amount_field(&b.amount, "amount")?),
        reason: opt_string(&b.reason, "reason", 256)?,
        split_returns: super::splits::parse_split_returns(&b.split_returns)?,
    })
}
