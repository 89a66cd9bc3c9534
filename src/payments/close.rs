//! Closing an unpaid order so that it can no longer be paid.

use super::*;

impl Payments {
    /// Closes an unpaid order so that it can no longer be paid. Where the channel cannot
    /// confirm that (it cannot close, or has no trade yet for a QR code that stays payable),
    /// the order is closed here with `close_confirmed: false`, and a payment that still
    /// arrives is refunded automatically.
    pub async fn close(&self, out_trade_no: &str) -> Result<Order, ServiceError> {
        let _guard = self.lock(out_trade_no).await?;
        let mut order = self.load(out_trade_no).await?;
        match order.status {
            PaymentStatus::Closed | PaymentStatus::Failed => return Ok(order),
            s if s.is_paid() => return Err(paid_conflict(out_trade_no)),
            _ => {}
        }
        let ctn = order.channel_trade_no.clone();
        let snap = self.snapshot();
        let Some(entry) = order.channel.as_deref().and_then(|c| snap.channel(c)) else {
            return Err(ServiceError::ChannelUnavailable {
                detail: format!("the channel that owns {out_trade_no} is not configured"),
                retry_after: None,
            });
        };
        let channel = entry.name.as_str();
        let close = Op::Close {
            out_trade_no,
            channel_trade_no: ctn.as_deref(),
        };
        let confirmed = match self.call(entry, close, Traffic::New).await {
            Call::RateLimited(wait) => {
                return Err(ServiceError::RateLimited {
                    retry_after: wait,
                    detail: format!("channel {channel} is at its rate limit; try again"),
                })
            }
            Call::Answer(Outcome::Closed) => true,
            // No trade yet: a QR code or cashier link may still become one. Cancel it too;
            // only a cancel that closes something confirms the close.
            Call::Answer(Outcome::Payment(PaymentReport {
                state: ChannelPayState::NotFound,
                ..
            })) => {
                let cancel = Op::Cancel {
                    out_trade_no,
                    channel_trade_no: ctn.as_deref(),
                };
                matches!(
                    self.call(entry, cancel, Traffic::Settle).await,
                    Call::Answer(Outcome::Closed)
                )
            }
            Call::Unsupported(reason) => {
                info!(out_trade_no, channel, %reason, "the channel cannot close orders");
                false
            }
            Call::NotSent(reason) => {
                return Err(ServiceError::ChannelUnavailable {
                    detail: format!("channel {channel} cannot be reached: {reason}"),
                    retry_after: None,
                })
            }
            Call::Answer(Outcome::Declined { code, message }) => {
                // A refusal usually means the order moved on (paid): look before answering.
                let query = Op::Query {
                    out_trade_no,
                    channel_trade_no: ctn.as_deref(),
                };
                if let Call::Answer(Outcome::Payment(report)) =
                    self.call(entry, query, Traffic::Settle).await
                {
                    if self.apply_report(&mut order, &report).is_ok() && order.status.is_paid() {
                        self.ledger.put_order(&mut order).await?;
                        return Err(paid_conflict(out_trade_no));
                    }
                }
                return Err(ServiceError::Conflict {
                    code: ErrorCode::CloseDeclined,
                    detail: format!("channel {channel} declined to close: {code}: {message}"),
                });
            }
            Call::Answer(_) => {
                // Perhaps paid meanwhile: only a query can tell.
                let query = Op::Query {
                    out_trade_no,
                    channel_trade_no: ctn.as_deref(),
                };
                if let Call::Answer(Outcome::Payment(report)) =
                    self.call(entry, query, Traffic::Settle).await
                {
                    let _ = self.apply_report(&mut order, &report);
                    if order.status.is_paid() {
                        self.ledger.put_order(&mut order).await?;
                        return Err(paid_conflict(out_trade_no));
                    }
                    if order.status == PaymentStatus::Closed {
                        order.close_confirmed = Some(true);
                        self.ledger.put_order(&mut order).await?;
                        return Ok(order);
                    }
                }
                return Err(ServiceError::OutcomeUnknown {
                    detail: format!("closing {out_trade_no} has an unknown outcome; try again"),
                    status: order.status,
                });
            }
        };
        order.status = PaymentStatus::Closed;
        order.close_confirmed = Some(confirmed);
        order.updated_at = Utc::now();
        self.ledger.put_order(&mut order).await?;
        if confirmed {
            info!(out_trade_no, channel, "payment closed");
        } else {
            warn!(
                out_trade_no,
                channel,
                "payment closed here without the channel's confirmation; a payment that still arrives is refunded automatically"
            );
        }
        Ok(order)
    }
}
