//! Querying a payment, refreshed from its channel while that can change the answer.

use super::*;

impl Payments {
    /// The order, refreshed from its channel while it is pending, or while the channel may yet
    /// take money for an order payroute closed or failed there (see
    /// [`Order::watched_for_late_payment`]): a late payment found this way goes to the same
    /// guard as a notified one, and is refunded automatically.
    pub async fn query(&self, out_trade_no: &str) -> Result<Order, ServiceError> {
        self.refresh(out_trade_no, Traffic::New).await
    }

    pub(super) async fn refresh(
        &self,
        out_trade_no: &str,
        traffic: Traffic,
    ) -> Result<Order, ServiceError> {
        let (order, late) = {
            let _guard = self.lock(out_trade_no).await?;
            let mut order = self.load(out_trade_no).await?;
            let watched = order.watched_for_late_payment();
            if order.status != PaymentStatus::Pending && !watched {
                return Ok(order);
            }
            let ctn = order.channel_trade_no.clone();
            let snap = self.snapshot();
            let Some(entry) = order.channel.as_deref().and_then(|c| snap.channel(c)) else {
                return Ok(order);
            };
            let query = Op::Query {
                out_trade_no,
                channel_trade_no: ctn.as_deref(),
            };
            let Call::Answer(Outcome::Payment(report)) = self.call(entry, query, traffic).await
            else {
                return Ok(order);
            };
            if watched {
                let late = order.late_payment(&entry.name, &report);
                (order, late.map(|kind| (entry.name.clone(), report, kind)))
            } else {
                let before = order.clone();
                // The channel has the order: adopted, unless its answer is refused (another
                // amount), which settles nothing.
                match self.apply_report(&mut order, &report) {
                    Ok(()) if report.state != ChannelPayState::NotFound => {
                        order.adopt_last_attempt(Utc::now())
                    }
                    Ok(()) => {}
                    Err(e) => {
                        warn!(out_trade_no, channel = entry.name.as_str(), %e, "query answer rejected")
                    }
                }
                if order != before {
                    self.ledger.put_order(&mut order).await?;
                }
                (order, None)
            }
        };
        match late {
            Some((channel, report, kind)) => {
                self.guard_late_payment(out_trade_no, &channel, &report, kind)
                    .await?;
                self.load(out_trade_no).await
            }
            None => Ok(order),
        }
    }
}
