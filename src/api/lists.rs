//! The list endpoints: the events feed (and the deliveries ops look after), redelivery, and
//! payments by creation time. Every list is ordered and resumable with an opaque cursor.

use std::collections::HashMap;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use http::StatusCode;
use serde_json::{json, Value};

use super::problem::Problem;
use super::types::PaymentView;
use super::{json_response, AppState};
use crate::domain::{ErrorCode, PaymentStatus};
use crate::ledger::events::{DeliveryState, DeliveryUpdate, OrderCursor, OrderQuery};
use crate::ledger::LedgerError;
use crate::order::events::parse_event_id;

/// Items per page unless `limit` says otherwise, and the most it may say.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 500;

fn query_problem(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery, detail)
}

fn ledger_problem(e: LedgerError) -> Problem {
    tracing::error!(error = %e, "ledger failure");
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::LedgerUnavailable,
        "the ledger could not be read",
    )
}

/// The query parameters, refusing any this endpoint does not know.
fn params(
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
    known: &[&str],
) -> Result<HashMap<String, String>, Problem> {
    let Query(q) = q.map_err(|e| query_problem(e.body_text()))?;
    if let Some(k) = q.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(query_problem(format!(
            "unknown query parameter `{k}`; known: {}",
            known.join(", ")
        )));
    }
    Ok(q)
}

fn limit(q: &HashMap<String, String>) -> Result<usize, Problem> {
    match q.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                query_problem(format!("limit must be an integer from 1 to {MAX_LIMIT}"))
            }),
    }
}

fn time(q: &HashMap<String, String>, name: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    q.get(name)
        .map(|s| {
            // A `+` in a query string arrives as a space unless it was written `%2B`.
            DateTime::parse_from_rfc3339(&s.replace(' ', "+"))
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    query_problem(format!(
                        "{name} must be an RFC 3339 time, e.g. 2026-01-31T08:00:00+08:00"
                    ))
                })
        })
        .transpose()
}

/// `GET /v1/events?after=&limit=&delivery=`: events oldest first after the cursor; with
/// `delivery=failed` (or `pending`) only the events whose delivery is in that state, each
/// with its `delivery` member.
pub(super) async fn list_events(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = params(q, &["after", "limit", "delivery"])?;
    let limit = limit(&q)?;
    let after = match q.get("after") {
        None => 0,
        Some(c) => c
            .parse::<u64>()
            .map_err(|_| query_problem("after must be a cursor from an earlier page"))?,
    };
    let wanted = match q.get("delivery").map(String::as_str) {
        None => None,
        Some("failed") => Some(DeliveryState::Failed),
        Some("pending") => Some(DeliveryState::Pending),
        Some(_) => return Err(query_problem("delivery must be `failed` or `pending`")),
    };
    let store = &s.events;
    let mut data: Vec<Value> = Vec::new();
    let (mut cursor, mut has_more) = (after, false);
    match wanted {
        None => {
            let events = store
                .events_after(after, limit + 1)
                .await
                .map_err(ledger_problem)?;
            has_more = events.len() > limit;
            for e in events.into_iter().take(limit) {
                cursor = e.seq;
                data.push(serde_json::from_str(&e.body).unwrap_or(Value::Null));
            }
        }
        Some(state) => {
            // The outbox is read in pages; only rows in the wanted state are answered.
            const PAGE: usize = 512;
            let mut scanned = 0;
            'pages: loop {
                let page = store.outbox(cursor, PAGE).await.map_err(ledger_problem)?;
                let full = page.len() == PAGE;
                for d in page {
                    if data.len() == limit || scanned == crate::ledger::events::LIST_SCAN_LIMIT {
                        has_more = true;
                        break 'pages;
                    }
                    scanned += 1;
                    cursor = d.seq;
                    if d.state != state {
                        continue;
                    }
                    let Some(e) = store.event(d.seq).await.map_err(ledger_problem)? else {
                        continue;
                    };
                    let mut v: Value = serde_json::from_str(&e.body).unwrap_or(Value::Null);
                    v["delivery"] = json!({
                        "state": d.state,
                        "attempts": d.attempts,
                        "next_at": d.next_at,
                        "last_error": d.last_error,
                    });
                    data.push(v);
                }
                if !full {
                    break;
                }
            }
        }
    }
    Ok(json_response(
        StatusCode::OK,
        json!({"data": data, "next_cursor": cursor.to_string(), "has_more": has_more}),
    ))
}

/// `POST /v1/events/{id}/redeliver`: delivers the event again (failed, or already delivered),
/// in its order's turn.
pub(super) async fn redeliver(
    State(s): State<AppState>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Problem> {
    let Some((id, seq)) = id
        .ok()
        .and_then(|Path(id)| parse_event_id(s.events.ledger_id(), &id).map(|seq| (id, seq)))
    else {
        return Err(Problem::not_found("event"));
    };
    let stored = s.events.event(seq).await.map_err(ledger_problem)?;
    if stored.is_none_or(|e| e.id != id) {
        return Err(Problem::not_found("event"));
    }
    if !s.events_delivered {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            ErrorCode::EventsNotConfigured,
            "events are not delivered by this payroute: set --events-url (PAYROUTE_EVENTS_URL) and --events-secret-file",
        ));
    }
    let found = s
        .events
        .record_delivery(seq, DeliveryUpdate::Redeliver { now: Utc::now() })
        .await
        .map_err(ledger_problem)?;
    if !found {
        return Err(Problem::not_found("event"));
    }
    Ok(json_response(
        StatusCode::ACCEPTED,
        json!({"id": id, "delivery": {"state": "pending", "attempts": 0}}),
    ))
}

/// `GET /v1/payments?status=&channel=&created_after=&created_before=&after=&limit=`:
/// payments newest first.
pub(super) async fn list_payments(
    State(s): State<AppState>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, Problem> {
    let q = params(
        q,
        &[
            "status",
            "channel",
            "created_after",
            "created_before",
            "after",
            "limit",
        ],
    )?;
    let status = q
        .get("status")
        .map(|v| {
            serde_json::from_value::<PaymentStatus>(Value::String(v.clone())).map_err(|_| {
                query_problem("status must be one of pending, succeeded, closed, failed, refunded, partially_refunded")
            })
        })
        .transpose()?;
    let after = q
        .get("after")
        .map(|c| {
            OrderCursor::decode(c)
                .ok_or_else(|| query_problem("after must be a cursor from an earlier page"))
        })
        .transpose()?;
    let query = OrderQuery {
        status,
        channel: q.get("channel").cloned(),
        created_after: time(&q, "created_after")?,
        created_before: time(&q, "created_before")?,
        after,
        limit: limit(&q)?,
    };
    let page = s.events.list_orders(&query).await.map_err(ledger_problem)?;
    let data: Vec<_> = page.orders.iter().map(PaymentView::of).collect();
    Ok(json_response(
        StatusCode::OK,
        json!({
            "data": data,
            "next_cursor": page.next.as_ref().map(OrderCursor::encode),
            "has_more": page.next.is_some(),
        }),
    ))
}
