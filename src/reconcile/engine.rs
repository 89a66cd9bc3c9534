//! The comparison: every statement line against the ledger, then every ledger entry of the day
//! against the lines seen. Memory stays small however long the statement is: lines are read as
//! a stream and only an 8-byte digest of each number seen is kept (sorted, searched).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use tokio::runtime::Handle;

use super::report::{Discrepancy, DiscrepancyKind, Report, Subject};
use crate::bills::{BillError, BillLine, LineKind, Lines};
use crate::config::FeeSchedule;
use crate::domain::{PaymentStatus, RefundStatus};
use crate::ledger::events::{EventStore, OrderQuery};
use crate::ledger::{LateRefund, Ledger, Order};
use crate::money::Fen;

/// What the comparison reads besides the statement.
pub struct Inputs<'a> {
    pub channel: &'a str,
    pub ledger: &'a dyn Ledger,
    pub events: &'a dyn EventStore,
    /// The channel's fee schedule in routes.yaml (for the estimate), if it is still configured.
    pub fee: Option<&'a FeeSchedule>,
    /// The day, as [start, end) in UTC.
    pub day: (DateTime<Utc>, DateTime<Utc>),
    pub progress: &'a AtomicU64,
}

/// The numbers seen, as 8-byte digests in fixed-size chunks (a million: 8 MB, never copied
/// to grow), each chunk sorted once the statement is read.
#[derive(Default)]
struct Digests {
    chunks: Vec<Vec<u64>>,
}

impl Digests {
    const CHUNK: usize = 1 << 16;

    fn push(&mut self, d: u64) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < Self::CHUNK => c.push(d),
            _ => {
                let mut c = Vec::with_capacity(Self::CHUNK);
                c.push(d);
                self.chunks.push(c);
            }
        }
    }

    fn seal(&mut self) {
        for c in &mut self.chunks {
            c.sort_unstable();
        }
    }

    fn contains(&self, d: u64) -> bool {
        self.chunks.iter().any(|c| c.binary_search(&d).is_ok())
    }
}

fn digest(text: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

fn storage(e: impl std::fmt::Display) -> BillError {
    BillError::Io(format!("ledger: {e}"))
}

/// Fills `report` from the statement `lines` (on a blocking thread: `rt` runs the ledger reads).
pub fn compare(
    lines: Lines,
    inp: &Inputs<'_>,
    report: &mut Report,
    rt: &Handle,
) -> Result<(), BillError> {
    let mut seen_payments = Digests::default();
    let mut seen_refunds = Digests::default();
    let (mut paid, mut fee_charged, mut fee_back, mut estimated) = (0u64, 0u64, 0u64, 0u64);
    for line in lines {
        let line = line?;
        inp.progress.fetch_add(1, Ordering::Relaxed);
        report.lines_read += 1;
        match line.kind {
            LineKind::Payment => {
                seen_payments.push(digest(&line.out_trade_no));
                paid += line.amount.get();
                fee_charged += line.fee.get();
                estimated += inp.fee.map_or(0, |f| f.estimate(line.amount.get()));
                let order = rt
                    .block_on(inp.ledger.get_order(&line.out_trade_no))
                    .map_err(storage)?;
                match payment_finding(inp.channel, &line, order.as_ref()) {
                    None => report.payments.add(None),
                    Some(d) => report.note(d),
                }
            }
            LineKind::Refund => {
                fee_back += line.fee.get();
                let Some(no) = line.out_refund_no.clone() else {
                    report.note(finding(DiscrepancyKind::MissingInLedger, Subject::Refund, &line, None, None,
                        "a refund without a refund number on the statement: look it up at the channel".into()));
                    continue;
                };
                seen_refunds.push(digest(&no));
                let refund = rt.block_on(inp.ledger.get_refund(&no)).map_err(storage)?;
                let finding = match refund {
                    Some(r) => refund_finding(&line, r.amount, r.status),
                    None => {
                        // A late payment's automatic refund is the order's, not a refund record.
                        let order = rt
                            .block_on(inp.ledger.get_order(&line.out_trade_no))
                            .map_err(storage)?;
                        let late = order.as_ref().and_then(|o| {
                            o.late_payments
                                .iter()
                                .find(|l| l.out_refund_no == no && l.channel == inp.channel)
                        });
                        match late {
                            Some(l) if l.refund_status == LateRefund::Succeeded => None,
                            Some(_) => Some(finding(DiscrepancyKind::StatusMismatch, Subject::Refund, &line, Some(line.amount), Some("late_payment_refund_pending".into()),
                                format!("the automatic refund of a late payment of {} is not confirmed in payroute: GET /v1/payments/{} to confirm it", line.out_trade_no, line.out_trade_no))),
                            None => Some(finding(DiscrepancyKind::MissingInLedger, Subject::Refund, &line, None, None,
                                format!("refund {no} of {} is not payroute's: it was made outside payroute — check who made it", line.out_trade_no))),
                        }
                    }
                };
                match finding {
                    None => report.refunds.add(None),
                    Some(d) => report.note(d),
                }
            }
        }
    }
    seen_payments.seal();
    seen_refunds.seal();
    missing_at_channel(inp, report, rt, &seen_payments, &seen_refunds)?;
    let actual = fee_charged.saturating_sub(fee_back);
    report.fees.paid_amount = Fen(paid);
    report.fees.actual_fee = Fen(actual);
    report.fees.estimated_fee = Fen(estimated);
    let ppm =
        |fee: u64| (paid > 0).then(|| (u128::from(fee) * 1_000_000 / u128::from(paid)) as u64);
    report.fees.effective_rate_ppm = ppm(actual);
    report.fees.estimated_rate_ppm = ppm(estimated);
    report.fees.schedule = inp.fee.map(|f| f.describe());
    Ok(())
}

fn finding(
    kind: DiscrepancyKind,
    subject: Subject,
    line: &BillLine,
    ledger_amount: Option<Fen>,
    ledger_status: Option<String>,
    action: String,
) -> Discrepancy {
    Discrepancy {
        kind,
        subject,
        out_trade_no: line.out_trade_no.clone(),
        out_refund_no: line.out_refund_no.clone(),
        channel_amount: Some(line.amount),
        ledger_amount,
        ledger_status,
        action,
    }
}

fn status_text(s: PaymentStatus) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// What a payment line says against the ledger (`None`: they agree).
fn payment_finding(channel: &str, line: &BillLine, order: Option<&Order>) -> Option<Discrepancy> {
    let no = &line.out_trade_no;
    let Some(o) = order else {
        return Some(finding(DiscrepancyKind::MissingInLedger, Subject::Payment, line, None, None,
            format!("money without an order: payroute has no order {no}; refund it at the channel (payroute does not refund what it never created)")));
    };
    let (amount, status) = (o.request.amount, Some(status_text(o.status)));
    // A payment the late-payment guard took care of.
    if let Some(late) = o.late_payments.iter().find(|l| l.channel == channel) {
        if late.amount != line.amount {
            return Some(finding(DiscrepancyKind::AmountMismatch, Subject::Payment, line, Some(late.amount), status,
                format!("the late payment of {no} was recorded for another amount: check the payment at the channel")));
        }
        return match late.refund_status {
            LateRefund::Succeeded | LateRefund::Pending => None,
            LateRefund::Failed | LateRefund::Off => Some(finding(DiscrepancyKind::StatusMismatch, Subject::Payment, line, Some(late.amount), Some("late_payment_not_refunded".into()),
                format!("a payment that arrived after {no} was closed is not refunded: refund it at the channel"))),
        };
    }
    if o.channel.as_deref() != Some(channel) {
        return Some(finding(DiscrepancyKind::StatusMismatch, Subject::Payment, line, Some(amount), status,
            format!("{no} belongs to channel {} in payroute, yet {channel} took a payment for it: a duplicate payment — GET /v1/payments/{no} lets the late-payment guard see it, or refund it at the channel", o.channel.as_deref().unwrap_or("none"))));
    }
    if amount != line.amount {
        return Some(finding(DiscrepancyKind::AmountMismatch, Subject::Payment, line, Some(amount), status,
            format!("the channel took {} fen for {no}, the order is for {amount} fen: check the payment at the channel", line.amount)));
    }
    match o.status {
        s if s.is_paid() => None,
        PaymentStatus::Pending => Some(finding(DiscrepancyKind::StatusMismatch, Subject::Payment, line, Some(amount), status,
            format!("paid at the channel, pending in payroute: GET /v1/payments/{no} queries the channel and records it"))),
        _ => Some(finding(DiscrepancyKind::StatusMismatch, Subject::Payment, line, Some(amount), status,
            format!("paid at the channel after payroute closed {no}: GET /v1/payments/{no} (or the channel's notification) lets the late-payment guard refund it"))),
    }
}

fn refund_finding(line: &BillLine, amount: Fen, status: RefundStatus) -> Option<Discrepancy> {
    let no = line.out_refund_no.clone().unwrap_or_default();
    let text = serde_json::to_value(status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    if amount != line.amount {
        return Some(finding(DiscrepancyKind::AmountMismatch, Subject::Refund, line, Some(amount), text,
            format!("the channel refunded {} fen under {no}, payroute asked {amount} fen: check the refund at the channel", line.amount)));
    }
    match status {
        RefundStatus::Succeeded => None,
        RefundStatus::Pending => Some(finding(DiscrepancyKind::StatusMismatch, Subject::Refund, line, Some(amount), text,
            format!("refunded at the channel, pending in payroute: GET /v1/refunds/{no} confirms it"))),
        RefundStatus::Failed => Some(finding(DiscrepancyKind::StatusMismatch, Subject::Refund, line, Some(amount), text,
            format!("refunded at the channel although payroute recorded {no} as failed: the money went back to the buyer; correct the books"))),
    }
}

/// Ledger entries of the day settled at the channel that the statement did not show.
fn missing_at_channel(
    inp: &Inputs<'_>,
    report: &mut Report,
    rt: &Handle,
    seen_payments: &Digests,
    seen_refunds: &Digests,
) -> Result<(), BillError> {
    let mut query = OrderQuery {
        status: None,
        channel: Some(inp.channel.to_string()),
        created_after: Some(inp.day.0),
        created_before: Some(inp.day.1),
        after: None,
        limit: 500,
    };
    loop {
        let page = rt
            .block_on(inp.events.list_orders(&query))
            .map_err(storage)?;
        for o in &page.orders {
            let no = &o.request.out_trade_no;
            if !o.status.is_paid() || seen_payments.contains(digest(no)) {
                continue;
            }
            report.note(Discrepancy {
                kind: DiscrepancyKind::MissingAtChannel,
                subject: Subject::Payment,
                out_trade_no: no.clone(),
                out_refund_no: None,
                channel_amount: None,
                ledger_amount: Some(o.request.amount),
                ledger_status: Some(status_text(o.status)),
                action: format!("paid in payroute, not on {}'s statement: query the channel (GET /v1/payments/{no}); if it was paid after midnight it is on the next day's statement", inp.channel),
            });
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    let refunds = rt
        .block_on(inp.ledger.refunds_between(inp.day.0, inp.day.1))
        .map_err(storage)?;
    for r in refunds {
        if r.channel != inp.channel
            || r.status != RefundStatus::Succeeded
            || seen_refunds.contains(digest(&r.out_refund_no))
        {
            continue;
        }
        report.note(Discrepancy {
            kind: DiscrepancyKind::MissingAtChannel,
            subject: Subject::Refund,
            out_trade_no: r.out_trade_no.clone(),
            out_refund_no: Some(r.out_refund_no.clone()),
            channel_amount: None,
            ledger_amount: Some(r.amount),
            ledger_status: Some("succeeded".into()),
            action: format!("refunded in payroute, not on {}'s statement: check refund {} at the channel (GET /v1/refunds/{})", inp.channel, r.out_refund_no, r.out_refund_no),
        });
    }
    Ok(())
}
