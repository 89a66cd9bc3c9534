//! The profit-sharing endpoints: splits of a paid payment, and returns of split money.

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use super::problem::Problem;
use super::types::{
    amount_field, enum_field, opt_string, parse_body, string_field, valid_out_refund_no,
};
use super::{json_request, json_response, number_in_path, trade_no, AppState};
use crate::channels::wechatpay::transformers::RELATIONS;
use crate::domain::{ErrorCode, ReceiverType};
use crate::money::Fen;
use crate::order::views::{SplitReturnView, SplitView};
use crate::payments::{ReceiverRequest, ReturnRequest, SplitRequest, SplitReturns};

/// Most receivers in one split (WeChat Pay's bound).
const MAX_RECEIVERS: usize = 50;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    out_split_no: Value,
    #[serde(default)]
    receivers: Option<Value>,
    #[serde(default)]
    finish: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiverBody {
    #[serde(rename = "type")]
    receiver_type: Value,
    account: Value,
    amount: Value,
    description: Value,
    #[serde(default)]
    name: Option<Value>,
    #[serde(default)]
    relation: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReturnBody {
    out_return_no: Value,
    account: Value,
    amount: Value,
    #[serde(default)]
    description: Option<Value>,
}

/// A split or return number: 6 to 64 characters of ASCII letters, digits and `_`.
fn number(v: &Value, field: &str) -> Result<String, Problem> {
    match v {
        Value::String(s) if valid_out_refund_no(s) => Ok(s.clone()),
        _ => Err(Problem::field(
            ErrorCode::InvalidField,
            field,
            format!("{field} must be 6-64 characters of letters, digits and _"),
        )),
    }
}

fn receiver(i: usize, v: &Value) -> Result<ReceiverRequest, Problem> {
    let at = |f: &str| format!("receivers[{i}].{f}");
    let b: ReceiverBody = serde_json::from_value(v.clone()).map_err(|e| {
        Problem::field(
            ErrorCode::InvalidField,
            &format!("receivers[{i}]"),
            format!(
                "receivers[{i}] must be an object with type, account, amount and description: {e}"
            ),
        )
    })?;
    let relation = opt_string(&b.relation, &at("relation"), 32)?;
    // `CUSTOM` needs a text of its own, which payroute does not take.
    let known: Vec<&str> = RELATIONS
        .iter()
        .copied()
        .filter(|r| *r != "CUSTOM")
        .collect();
    if let Some(r) = relation.as_deref().filter(|r| !known.contains(r)) {
        return Err(Problem::field(
            ErrorCode::InvalidField,
            &at("relation"),
            format!(
                "{} must be one of {}, got {r}",
                at("relation"),
                known.join(", ")
            ),
        ));
    }
    Ok(ReceiverRequest {
        receiver_type: enum_field::<ReceiverType>(
            &b.receiver_type,
            &at("type"),
            ErrorCode::InvalidField,
            "merchant, openid (WeChat Pay), user, login_name (Alipay)",
        )?,
        account: string_field(&b.account, &at("account"), 64)?,
        amount: Fen(amount_field(&b.amount, &at("amount"))?),
        description: string_field(&b.description, &at("description"), 80)?,
        name: opt_string(&b.name, &at("name"), 64)?,
        relation,
    })
}

/// Parses and validates one `receivers[]` member sent alone: the part of a split that
/// registers a receiver with the channel (`name`, `relation`), checked exactly as in a split
/// (its errors name `receivers[0]`), so that the receiver fuzz target reaches its fields
/// without the split around it.
pub fn parse_receiver(body: &[u8]) -> Result<ReceiverRequest, Problem> {
    let v: Value = parse_body(body)?;
    receiver(0, &v)
}

/// Parses and validates `POST /v1/payments/{out_trade_no}/splits`.
pub fn parse_split(body: &[u8]) -> Result<SplitRequest, Problem> {
    let b: SplitBody = parse_body(body)?;
    let out_split_no = number(&b.out_split_no, "out_split_no")?;
    let finish = match &b.finish {
        None | Some(Value::Null) => false,
        Some(Value::Bool(f)) => *f,
        Some(_) => {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "finish",
                "finish must be true or false",
            ))
        }
    };
    let receivers = match &b.receivers {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| receiver(i, v))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                "receivers",
                "receivers must be an array",
            ))
        }
    };
    if receivers.is_empty() && !finish {
        return Err(Problem::field(
            ErrorCode::MissingField,
            "receivers",
            "a split needs at least one receiver (or \"finish\": true alone, to settle the rest to the merchant)",
        ));
    }
    if receivers.len() > MAX_RECEIVERS {
        return Err(Problem::field(
            ErrorCode::InvalidField,
            "receivers",
            format!("a split has at most {MAX_RECEIVERS} receivers"),
        ));
    }
    for (i, r) in receivers.iter().enumerate() {
        if receivers[..i].iter().any(|o| o.account == r.account) {
            return Err(Problem::field(
                ErrorCode::InvalidField,
                &format!("receivers[{i}].account"),
                format!(
                    "receiver {} appears twice; give each receiver one share",
                    r.account
                ),
            ));
        }
    }
    Ok(SplitRequest {
        out_split_no,
        receivers,
        finish,
    })
}

/// Parses and validates `POST /v1/splits/{out_split_no}/returns`.
pub fn parse_return(body: &[u8]) -> Result<ReturnRequest, Problem> {
    let b: ReturnBody = parse_body(body)?;
    Ok(ReturnRequest {
        out_return_no: number(&b.out_return_no, "out_return_no")?,
        account: string_field(&b.account, "account", 64)?,
        amount: Fen(amount_field(&b.amount, "amount")?),
        description: opt_string(&b.description, "description", 80)?,
    })
}

/// The `split_returns` member of a refund: `"auto"` or the numbers of returns.
pub fn parse_split_returns(v: &Option<Value>) -> Result<Option<SplitReturns>, Problem> {
    let bad = || {
        Problem::field(
            ErrorCode::InvalidField,
            "split_returns",
            "split_returns must be \"auto\" or an array of 1-20 split return numbers",
        )
    };
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "auto" => Ok(Some(SplitReturns::Auto)),
        Some(Value::Array(items)) if (1..=20).contains(&items.len()) => {
            let mut names = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(s) if valid_out_refund_no(s) && !names.contains(s) => {
                        names.push(s.clone())
                    }
                    _ => return Err(bad()),
                }
            }
            Ok(Some(SplitReturns::Listed(names)))
        }
        Some(_) => Err(bad()),
    }
}

pub(super) async fn create_split(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let no = trade_no(no)?;
    let req = json_request(headers, body, parse_split)?;
    let split = s.payments.split(&no, req).await?;
    Ok(json_response(StatusCode::CREATED, SplitView::of(&split)))
}

pub(super) async fn get_split(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let no = number_in_path(no, "out_split_no", ErrorCode::InvalidPath)?;
    let split = s.payments.split_query(&no).await?;
    Ok(json_response(StatusCode::OK, SplitView::of(&split)))
}

pub(super) async fn create_return(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Problem> {
    let no = number_in_path(no, "out_split_no", ErrorCode::InvalidPath)?;
    let req = json_request(headers, body, parse_return)?;
    let ret = s.payments.split_return(&no, req).await?;
    Ok(json_response(
        StatusCode::CREATED,
        SplitReturnView::of(&ret),
    ))
}

pub(super) async fn get_return(
    State(s): State<AppState>,
    no: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let no = number_in_path(no, "out_return_no", ErrorCode::InvalidPath)?;
    let ret = s.payments.split_return_query(&no).await?;
    Ok(json_response(StatusCode::OK, SplitReturnView::of(&ret)))
}
