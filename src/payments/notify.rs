//! Applying a verified channel notification.

use super::*;

impl Payments {
    /// Applies a verified notification. `Ok(false)` when the order is unknown or does not match.
    pub async fn apply_notification(
        &self,
        channel: &str,
        out_trade_no: &str,
        report: &PaymentReport,
    ) -> Result<bool, ServiceError> {
        let guard = self.locks.lock(out_trade_no).await;
        let Some(mut order) = self.ledger.get_order(out_trade_no).await? else {
            warn!(channel, out_trade_no, "notification for an unknown order");
            return Ok(false);
        };
        let paid = report.state == ChannelPayState::Paid;
        if paid && report.amount.is_some_and(|a| a != order.request.amount) {
            warn!(channel, out_trade_no, reported = ?report.amount, amount = %order.request.amount, "notification rejected: the paid amount differs from the order's");
            return Ok(false);
        }
        let owner = order.channel.as_deref() == Some(channel);
        let abandoned_here = order
            .attempts
            .iter()
            .any(|a| a.channel == channel && a.outcome == AttemptOutcome::Abandoned);
        if !owner && abandoned_here {
            if paid {
                drop(guard);
                self.guard_late_payment(out_trade_no, channel, report, LateKind::Duplicate)
                    .await?;
            }
            // Acknowledged: the channel has told us, and the duplicate is on record.
            return Ok(true);
        }
        if !owner {
            warn!(
                channel,
                out_trade_no, "notification from a channel that does not own the order"
            );
            return Ok(false);
        }
        if paid && matches!(order.status, PaymentStatus::Closed | PaymentStatus::Failed) {
            drop(guard);
            self.guard_late_payment(out_trade_no, channel, report, LateKind::AfterClose)
                .await?;
            return Ok(true);
        }
        let before = order.clone();
        if let Err(e) = self.apply_report(&mut order, report) {
            warn!(channel, out_trade_no, %e, "notification rejected");
            return Ok(false);
        }
        if order != before {
            order.adopt_last_attempt(Utc::now());
            self.ledger.put_order(&order).await?;
            info!(channel, out_trade_no, status = ?order.status, "notification applied");
        }
        Ok(true)
    }
}
