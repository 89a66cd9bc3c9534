//! Settling a barcode payment whose outcome is in doubt: query, then reverse.

use super::*;

impl Payments {
    /// A barcode payment never moves to another channel: query until the outcome is known,
    /// and reverse it when it cannot be confirmed in time. Runs without the order's lock
    /// (each write re-reads the order under it), and neither an open circuit nor a rate
    /// limit holds these calls back: the customer may have been charged.
    pub(super) async fn resolve_barcode(&self, order: Order) -> Result<Order, ServiceError> {
        let no = order.request.out_trade_no.clone();
        let Some(channel) = order.channel.clone() else {
            return Ok(order);
        };
        for _ in 0..self.settings.barcode_poll_attempts {
            tokio::time::sleep(self.settings.barcode_poll_interval).await;
            let snap = self.snapshot();
            let Some(entry) = snap.channel(&channel) else {
                break;
            };
            let current = self.load(&no).await?;
            if !current.in_doubt() || current.status != PaymentStatus::Pending {
                // Settled meanwhile (a notification, a query or another resolver).
                return Ok(current);
            }
            let ctn = current.channel_trade_no.clone();
            let query = Op::Query {
                out_trade_no: &no,
                channel_trade_no: ctn.as_deref(),
            };
            if let Call::Answer(Outcome::Payment(report)) =
                self.call(entry, query, Traffic::Settle).await
            {
                if matches!(
                    report.state,
                    ChannelPayState::Paid | ChannelPayState::Closed
                ) {
                    let (order, applied) = self
                        .update_in_doubt(&no, |order| {
                            // An answer the order refuses (another amount) settles nothing.
                            let applied = self.apply_report(order, &report).is_ok();
                            if applied {
                                order.finish_attempt(AttemptOutcome::Accepted, None, Utc::now());
                            }
                            applied
                        })
                        .await?;
                    if applied {
                        return Ok(order);
                    }
                }
            }
        }
        // The reversal is sent under the order's lock: a payment reported while it is in flight
        // must find the order reversed (and go to the late-payment guard), not succeeded.
        let _guard = self.lock(&no).await?;
        let snap = self.snapshot();
        let mut current = self.load(&no).await?;
        if !current.in_doubt() || current.status != PaymentStatus::Pending {
            return Ok(current);
        }
        let Some(entry) = snap.channel(&channel) else {
            return Err(ServiceError::OutcomeUnknown {
                detail: format!(
                    "barcode payment {no}: its channel {channel} is no longer configured; query it"
                ),
                status: current.status,
            });
        };
        let ctn = current.channel_trade_no.clone();
        let cancel = Op::Cancel {
            out_trade_no: &no,
            channel_trade_no: ctn.as_deref(),
        };
        match self.call(entry, cancel, Traffic::Settle).await {
            // Reversed, or nothing was ever created there: the customer is not charged. (Should
            // the channel still report it paid, the late-payment guard refunds it.)
            Call::Answer(Outcome::Closed)
            | Call::Answer(Outcome::Payment(PaymentReport {
                state: ChannelPayState::NotFound,
                ..
            })) => {
                current.finish_attempt(
                    AttemptOutcome::Declined,
                    Some("not confirmed in time; reversed".into()),
                    Utc::now(),
                );
                current.status = PaymentStatus::Failed;
                current.failure = Some(Failure {
                    code: FailureCode::PaymentReversed,
                    message: "the customer did not confirm in time; the payment was reversed"
                        .into(),
                });
                self.ledger.put_order(&mut current).await?;
                Ok(current)
            }
            _ => Err(ServiceError::OutcomeUnknown {
                detail: format!(
                    "barcode payment {no} could not be confirmed or reversed yet; query it"
                ),
                status: current.status,
            }),
        }
    }

    /// Applies `change` to the stored order under its lock if its last attempt is still in
    /// doubt; returns the order as stored afterwards and what `change` returned (false when
    /// the order was settled meanwhile and left alone).
    pub(super) async fn update_in_doubt(
        &self,
        out_trade_no: &str,
        change: impl FnOnce(&mut Order) -> bool,
    ) -> Result<(Order, bool), ServiceError> {
        let _guard = self.lock(out_trade_no).await?;
        let mut order = self.load(out_trade_no).await?;
        if !order.in_doubt() || order.status != PaymentStatus::Pending {
            return Ok((order, false));
        }
        let applied = change(&mut order);
        self.ledger.put_order(&mut order).await?;
        Ok((order, applied))
    }
}
