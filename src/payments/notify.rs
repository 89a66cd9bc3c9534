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
        let guard = self.lock(out_trade_no).await?;
        let Some(mut order) = self.ledger.get_order(out_trade_no).await? else {
            warn!(channel, out_trade_no, "notification for an unknown order");
            return Ok(false);
        };
        let paid = report.state == ChannelPayState::Paid;
        if paid && report.amount.is_some_and(|a| a != order.request.amount) {
            warn!(channel, out_trade_no, reported = ?report.amount, amount = %order.request.amount, "notification rejected: the paid amount differs from the order's");
            return Ok(false);
        }
        // Money the order does not keep (closed or failed here, or abandoned here): refunded.
        if let Some(kind) = order.late_payment(channel, report) {
            drop(guard);
            self.guard_late_payment(out_trade_no, channel, report, kind)
                .await?;
            return Ok(true);
        }
        if order.channel.as_deref() != Some(channel) {
            if order.abandoned_at(channel) {
                // Acknowledged: not paid there, and nothing to do about it.
                return Ok(true);
            }
            warn!(
                channel,
                out_trade_no, "notification from a channel that does not own the order"
            );
            return Ok(false);
        }
        let before = order.clone();
        if let Err(e) = self.apply_report(&mut order, report) {
            warn!(channel, out_trade_no, %e, "notification rejected");
            return Ok(false);
        }
        if order != before {
            order.adopt_last_attempt(Utc::now());
            self.ledger.put_order(&mut order).await?;
            info!(channel, out_trade_no, status = ?order.status, "notification applied");
        }
        Ok(true)
    }
}
