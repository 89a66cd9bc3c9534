//! The order and the refund as the app sees them: the resources the API answers with and app
//! events carry (one rendering, so a pulled and a pushed payment read the same).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{Anomaly, Attempt, AttemptOutcome, Failure, LatePayment, Order, Refund};
use crate::domain::{ClientAction, Currency, PayMethod, PaymentStatus, RefundStatus, Scene};
use crate::money::Fen;

/// One attempt in a response's `route`.
#[derive(Debug, Serialize)]
pub struct AttemptView<'a> {
    pub channel: &'a str,
    pub outcome: AttemptOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    pub started_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// The `route` member: the rule that matched and every attempt.
#[derive(Debug, Serialize)]
pub struct RouteView<'a> {
    pub rule: Option<&'a str>,
    pub attempts: Vec<AttemptView<'a>>,
}

/// A payment as the API returns it.
#[derive(Debug, Serialize)]
pub struct PaymentView<'a> {
    pub out_trade_no: &'a str,
    pub status: PaymentStatus,
    pub amount: Fen,
    pub currency: Currency,
    pub method: PayMethod,
    pub scene: Scene,
    pub subject: &'a str,
    pub channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_trade_no: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'a ClientAction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fee: Option<Fen>,
    pub refunded_amount: Fen,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a Failure>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: &'a BTreeMap<String, String>,
    /// Created for profit sharing; shown only when true (like the request's other optional
    /// members), so that views of other payments stay as they were.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub split: bool,
    /// When the order stops being payable at its channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Things that need reconciliation (e.g. `paid_after_close`).
    #[serde(skip_serializing_if = "<[Anomaly]>::is_empty")]
    pub anomalies: &'a [Anomaly],
    /// On a closed order: whether the channel confirmed that it can no longer be paid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub close_confirmed: Option<bool>,
    /// Payments that arrived after the order was closed, failed or abandoned at a channel,
    /// and their automatic refunds.
    #[serde(skip_serializing_if = "<[LatePayment]>::is_empty")]
    pub late_payments: &'a [LatePayment],
    pub route: RouteView<'a>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl<'a> PaymentView<'a> {
    /// The view of a ledger order.
    pub fn of(o: &'a Order) -> Self {
        let attempt = |a: &'a Attempt| AttemptView {
            channel: &a.channel,
            outcome: a.outcome,
            reason: a.reason.as_deref(),
            started_at: a.started_at,
            finished_at: a.finished_at,
        };
        PaymentView {
            out_trade_no: &o.request.out_trade_no,
            status: o.status,
            amount: o.request.amount,
            currency: o.request.currency,
            method: o.request.method,
            scene: o.request.scene,
            subject: &o.request.subject,
            channel: o.channel.as_deref(),
            channel_trade_no: o.channel_trade_no.as_deref(),
            action: o.action.as_ref(),
            fee: o.fee,
            refunded_amount: o.refunded,
            failure: o.failure.as_ref(),
            metadata: &o.request.metadata,
            split: o.request.split,
            anomalies: &o.anomalies,
            close_confirmed: o.close_confirmed,
            late_payments: &o.late_payments,
            expires_at: o.expires_at,
            route: RouteView {
                rule: o.rule.as_deref(),
                attempts: o.attempts.iter().map(attempt).collect(),
            },
            created_at: o.created_at,
            updated_at: o.updated_at,
        }
    }
}

/// A refund as the API returns it.
#[derive(Debug, Serialize)]
pub struct RefundView<'a> {
    pub out_refund_no: &'a str,
    pub out_trade_no: &'a str,
    pub amount: Fen,
    pub status: RefundStatus,
    pub channel: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_refund_no: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl<'a> RefundView<'a> {
    /// The view of a ledger refund.
    pub fn of(r: &'a Refund) -> Self {
        RefundView {
            out_refund_no: &r.out_refund_no,
            out_trade_no: &r.out_trade_no,
            amount: r.amount,
            status: r.status,
            channel: &r.channel,
            reason: r.reason.as_deref(),
            channel_refund_no: r.channel_refund_no.as_deref(),
            failure: r.failure.as_ref(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
