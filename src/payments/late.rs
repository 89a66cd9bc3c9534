//! The late-payment guard: money a channel took for an order payroute closed, failed or abandoned there is refunded in full.

use super::*;

impl Payments {
    /// The late-payment guard: `channel` reports `out_trade_no` paid although payroute closed
    /// or failed the order there, or abandoned its attempt there. The payment is recorded on
    /// the order (durably, before anything is sent) and refunded in full in the background,
    /// under a refund number derived from the order and channel, so that repeats and restarts
    /// never refund twice. `refund_duplicates: false` records it without refunding.
    pub(super) async fn guard_late_payment(
        &self,
        out_trade_no: &str,
        channel: &str,
        report: &PaymentReport,
        kind: LateKind,
    ) -> Result<(), ServiceError> {
        let refund_on = self.snapshot().refund_duplicates;
        let pending = {
            let _guard = self.lock(out_trade_no).await?;
            let mut order = self.load(out_trade_no).await?;
            match order.late_payments.iter().find(|l| l.channel == channel) {
                Some(known) => known.refund_status == LateRefund::Pending,
                None => {
                    let now = Utc::now();
                    let amount = report.amount.unwrap_or(order.request.amount);
                    let owner = order.channel.as_deref() == Some(channel);
                    let channel_trade_no = report
                        .channel_trade_no
                        .clone()
                        .or_else(|| owner.then(|| order.channel_trade_no.clone()).flatten());
                    let refund_status = if refund_on {
                        LateRefund::Pending
                    } else {
                        LateRefund::Off
                    };
                    order.late_payments.push(LatePayment {
                        channel: channel.to_string(),
                        kind,
                        channel_trade_no,
                        amount,
                        out_refund_no: LatePayment::refund_no(out_trade_no, channel),
                        refund_status,
                        channel_refund_no: None,
                        refund_failure: None,
                        detected_at: now,
                        updated_at: now,
                    });
                    let anomaly = match kind {
                        LateKind::AfterClose => Anomaly::PaidAfterClose,
                        LateKind::Duplicate => Anomaly::DuplicatePayment {
                            channel: channel.to_string(),
                        },
                    };
                    if !order.anomalies.contains(&anomaly) {
                        order.anomalies.push(anomaly);
                    }
                    order.updated_at = now;
                    self.ledger.put_order(&mut order).await?;
                    self.metrics.record_late_payment(channel, kind);
                    tracing::error!(
                        channel,
                        out_trade_no,
                        amount = %amount,
                        kind = ?kind,
                        order_status = ?order.status,
                        refund = refund_on,
                        "late payment: the channel took money for an order that payroute closed, failed or abandoned there"
                    );
                    refund_on
                }
            }
        };
        if pending {
            self.spawn_late_refund(out_trade_no.to_string(), channel.to_string());
        }
        Ok(())
    }

    pub(super) fn spawn_late_refund(&self, out_trade_no: String, channel: String) {
        let Some(me) = self.me.upgrade() else { return };
        let key = (out_trade_no, channel);
        {
            let mut running = self.late_refunds.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(key.clone()) {
                return; // Already being refunded by this process.
            }
        }
        tokio::spawn(async move {
            me.refund_late_payment(&key.0, &key.1).await;
            me.late_refunds
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&key);
        });
    }

    /// Refunds a recorded late payment, with doubling retries; recovery resumes it after a
    /// restart.
    pub(super) async fn refund_late_payment(&self, out_trade_no: &str, channel: &str) {
        let mut delay = self.settings.abandon_retry;
        for _ in 0..6 {
            match self.try_late_refund(out_trade_no, channel).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => warn!(out_trade_no, channel, %e, "late payment refund: ledger failure"),
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        warn!(
            out_trade_no,
            channel, "late payment refund not confirmed yet; recovery will retry"
        );
    }

    /// One try at refunding a late payment; `true` once its refund is settled.
    pub(super) async fn try_late_refund(
        &self,
        out_trade_no: &str,
        channel: &str,
    ) -> Result<bool, ServiceError> {
        let order = self.load(out_trade_no).await?;
        let Some(late) = order
            .late_payments
            .iter()
            .find(|l| l.channel == channel && l.refund_status == LateRefund::Pending)
            .cloned()
        else {
            return Ok(true);
        };
        let snap = self.snapshot();
        let Some(entry) = snap.channel(channel) else {
            warn!(
                out_trade_no,
                channel, "late payment refund: the channel is no longer configured"
            );
            return Ok(false);
        };
        let ri = RefundIntent {
            out_trade_no: out_trade_no.to_string(),
            channel_trade_no: late.channel_trade_no.clone(),
            channel_refund_no: late.channel_refund_no.clone(),
            out_refund_no: late.out_refund_no.clone(),
            amount: late.amount,
            total: late.amount,
            reason: Some("payment arrived after the order was closed".into()),
            returns: vec![],
        };
        let (status, channel_refund_no, failure) =
            match self.call(entry, Op::Refund(&ri), Traffic::Settle).await {
                Call::Answer(Outcome::Refund(r)) if r.state == ChannelRefundState::Succeeded => {
                    (LateRefund::Succeeded, r.channel_refund_no, None)
                }
                Call::Answer(Outcome::Refund(r)) => {
                    // Accepted, not confirmed: ask with the same refund number.
                    let ri = RefundIntent {
                        channel_refund_no: r.channel_refund_no.clone().or(ri.channel_refund_no),
                        ..ri
                    };
                    match self
                        .call(entry, Op::RefundQuery(&ri), Traffic::Settle)
                        .await
                    {
                        Call::Answer(Outcome::Refund(q))
                            if q.state == ChannelRefundState::Succeeded =>
                        {
                            (
                                LateRefund::Succeeded,
                                q.channel_refund_no.or(ri.channel_refund_no),
                                None,
                            )
                        }
                        _ => (LateRefund::Pending, ri.channel_refund_no, None),
                    }
                }
                other => {
                    // Refused or unknown. A trade the channel shows closed has nothing left to
                    // refund (a reversal already returned the money, or a refund went through).
                    let query = Op::Query {
                        out_trade_no,
                        channel_trade_no: late.channel_trade_no.as_deref(),
                    };
                    let closed = matches!(
                        self.call(entry, query, Traffic::Settle).await,
                        Call::Answer(Outcome::Payment(PaymentReport {
                            state: ChannelPayState::Closed,
                            ..
                        }))
                    );
                    match other {
                        _ if closed => (LateRefund::Succeeded, None, None),
                        Call::Answer(Outcome::Declined { code, message }) => (
                            LateRefund::Failed,
                            None,
                            Some(Failure {
                                code: FailureCode::Channel(code),
                                message,
                            }),
                        ),
                        _ => (LateRefund::Pending, None, None),
                    }
                }
            };
        let settled_here = {
            let _guard = self.lock(out_trade_no).await?;
            let mut order = self.load(out_trade_no).await?;
            match order
                .late_payments
                .iter_mut()
                .find(|l| l.channel == channel && l.refund_status == LateRefund::Pending)
            {
                Some(l) => {
                    l.refund_status = status;
                    l.channel_refund_no = channel_refund_no.or(l.channel_refund_no.take());
                    l.refund_failure = failure;
                    l.updated_at = Utc::now();
                    order.updated_at = l.updated_at;
                    self.ledger.put_order(&mut order).await?;
                    status != LateRefund::Pending
                }
                None => false,
            }
        };
        if !settled_here {
            return Ok(status != LateRefund::Pending);
        }
        match status {
            LateRefund::Succeeded => info!(
                out_trade_no,
                channel,
                amount = %late.amount,
                out_refund_no = late.out_refund_no.as_str(),
                "late payment refunded"
            ),
            LateRefund::Failed => tracing::error!(
                out_trade_no,
                channel,
                amount = %late.amount,
                "late payment refund refused by the channel: the money needs a person"
            ),
            LateRefund::Pending | LateRefund::Off => {}
        }
        self.metrics.record_late_refund(channel, status);
        Ok(true)
    }
}
