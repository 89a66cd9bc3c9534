//! The order and the refund as the app sees them: the resources the API answers with and app
//! events carry (one rendering, so a pulled and a pushed payment read the same).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::splits::{Split, SplitReturn, SplitStatus};
use super::{Anomaly, Attempt, AttemptOutcome, Failure, LatePayment, Order, Refund};
use crate::domain::{
    ClientAction, Currency, PayMethod, PaymentStatus, ReceiverType, RefundStatus, Scene,
};
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
    /// For a split payment: what went to receivers and came back, and what the merchant holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub splits: Option<SplitTotals>,
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
            splits: o.request.split.then(|| SplitTotals {
                split_amount: o.split_reserved,
                returned_amount: o.split_returned,
                held_amount: o.held(),
                finished: o.split_finished,
            }),
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

/// The `splits` member of a split payment.
#[derive(Debug, Serialize)]
pub struct SplitTotals {
    /// Shares pending or succeeded (fen).
    pub split_amount: Fen,
    /// Returned by receivers (fen).
    pub returned_amount: Fen,
    /// What a further split or refund may take (fen).
    pub held_amount: Fen,
    /// A split with `finish` settled the rest to the merchant.
    pub finished: bool,
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
    /// The split returns that fund this refund.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub split_returns: &'a [String],
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
            split_returns: &r.funded_by,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// A split as the API returns it.
#[derive(Debug, Serialize)]
pub struct SplitView<'a> {
    pub out_split_no: &'a str,
    pub out_trade_no: &'a str,
    pub channel: &'a str,
    pub status: SplitStatus,
    pub amount: Fen,
    pub finish: bool,
    pub receivers: Vec<ShareView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_split_no: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One receiver of a split and its result.
#[derive(Debug, Serialize)]
pub struct ShareView<'a> {
    #[serde(rename = "type")]
    pub receiver_type: ReceiverType,
    pub account: &'a str,
    pub amount: Fen,
    pub description: &'a str,
    pub status: SplitStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<&'a str>,
    /// Returned or being returned from this receiver (fen).
    pub returned_amount: Fen,
}

impl<'a> SplitView<'a> {
    /// The view of a ledger split (receivers' names are not shown).
    pub fn of(s: &'a Split) -> Self {
        SplitView {
            out_split_no: &s.out_split_no,
            out_trade_no: &s.out_trade_no,
            channel: &s.channel,
            status: s.status,
            amount: s.total(),
            finish: s.finish,
            receivers: s
                .shares
                .iter()
                .map(|sh| ShareView {
                    receiver_type: sh.receiver_type,
                    account: &sh.account,
                    amount: sh.amount,
                    description: &sh.description,
                    status: sh.status,
                    fail_reason: sh.fail_reason.as_deref(),
                    returned_amount: sh.returned,
                })
                .collect(),
            channel_split_no: s.channel_split_no.as_deref(),
            failure: s.failure.as_ref(),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A split return as the API returns it.
#[derive(Debug, Serialize)]
pub struct SplitReturnView<'a> {
    pub out_return_no: &'a str,
    pub out_split_no: &'a str,
    pub out_trade_no: &'a str,
    pub channel: &'a str,
    pub account: &'a str,
    pub amount: Fen,
    pub status: SplitStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_refund_no: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel_return_no: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<&'a Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl<'a> SplitReturnView<'a> {
    /// The view of a ledger return.
    pub fn of(r: &'a SplitReturn) -> Self {
        SplitReturnView {
            out_return_no: &r.out_return_no,
            out_split_no: &r.out_split_no,
            out_trade_no: &r.out_trade_no,
            channel: &r.channel,
            account: &r.account,
            amount: r.amount,
            status: r.status,
            out_refund_no: r.refund.as_deref(),
            channel_return_no: r.channel_return_no.as_deref(),
            failure: r.failure.as_ref(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}
