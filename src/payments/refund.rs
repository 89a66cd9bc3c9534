//! Refunds and refund queries.

use super::*;

impl Payments {
    /// Refunds part or all of a paid order.
    pub async fn refund(
        &self,
        out_trade_no: &str,
        req: RefundRequest,
    ) -> Result<Refund, ServiceError> {
        // Requests without `split_returns` keep the fingerprint earlier versions stored.
        let fp = match &req.split_returns {
            None => fingerprint(&(out_trade_no, req.amount, &req.reason)),
            Some(how) => fingerprint(&(out_trade_no, req.amount, &req.reason, how)),
        };
        let _guard = self.lock(out_trade_no).await?;
        let order = self.load(out_trade_no).await?;
        let Some(channel) = order.channel.clone() else {
            return Err(not_refundable(&order));
        };
        // A repeat answers the stored refund: planning returns again would see its reservation.
        let existing = self.ledger.get_refund(&req.out_refund_no).await?;
        let (returns, funded_by) = match (&existing, self.snapshot().channel(&channel)) {
            (None, Some(entry)) => self.plan_funding(&order, entry, &req).await?,
            _ => (vec![], vec![]),
        };
        let now = Utc::now();
        let refund = Refund {
            out_refund_no: req.out_refund_no.clone(),
            out_trade_no: out_trade_no.to_string(),
            amount: req.amount,
            reason: req.reason.clone(),
            fingerprint: fp.clone(),
            status: RefundStatus::Pending,
            channel,
            channel_refund_no: None,
            failure: None,
            funded_by,
            created_at: now,
            updated_at: now,
        };
        let inserted = match existing {
            Some(r) => Ok(Inserted::Existing(r)),
            None => self.ledger.insert_funded_refund(refund, returns).await,
        };
        let refund = match inserted {
            Ok(Inserted::Created(r)) => r,
            Ok(Inserted::Existing(r)) if r.fingerprint != fp => {
                return Err(ServiceError::Conflict {
                    code: ErrorCode::IdempotencyConflict,
                    detail: format!("out_refund_no {} was already used for a different refund", r.out_refund_no),
                })
            }
            Ok(Inserted::Existing(r)) if r.status != RefundStatus::Pending => return Ok(r),
            Ok(Inserted::Existing(r)) => return self.resolve_refund(&order, r, true, Traffic::New).await,
            Err(LedgerError::ExceedsRefundable { .. }) if order.request.split => {
                return Err(super::split_return::exceeds_held(&order, req.amount, None))
            }
            Err(LedgerError::SplitRefused(r)) => {
                return Err(super::split::refusal(out_trade_no, r))
            }
            Err(LedgerError::ExceedsRefundable { available }) => {
                return Err(ServiceError::Unprocessable {
                    code: ErrorCode::RefundExceedsPaid,
                    detail: format!(
                        "amount {} exceeds what is left to refund on {out_trade_no}: {available} fen",
                        req.amount
                    ),
                })
            }
            Err(LedgerError::NotRefundable(_)) => return Err(not_refundable(&order)),
            Err(e) => return Err(e.into()),
        };
        self.send_refund(&order, refund, Traffic::New).await
    }

    pub(super) async fn send_refund(
        &self,
        order: &Order,
        refund: Refund,
        traffic: Traffic,
    ) -> Result<Refund, ServiceError> {
        let snap = self.snapshot();
        let Some(entry) = snap.channel(&refund.channel) else {
            return Ok(refund);
        };
        let (mut refund, carried) = match self.funded(order, refund, traffic).await? {
            Ok(ready) => ready,
            Err(not_yet) => return Ok(not_yet),
        };
        let mut ri = refund_intent(order, &refund);
        ri.returns = carried;
        match self.call(entry, Op::Refund(&ri), traffic).await {
            Call::Answer(Outcome::Refund(r)) if r.state == ChannelRefundState::Succeeded => {
                refund.channel_refund_no = r.channel_refund_no;
                self.settle(refund, RefundStatus::Succeeded, None).await
            }
            Call::Answer(Outcome::Declined { code, message }) => {
                self.settle(
                    refund,
                    RefundStatus::Failed,
                    Some(Failure {
                        code: FailureCode::Channel(code),
                        message,
                    }),
                )
                .await
            }
            // Accepted but not confirmed, or unknown: confirm with the same refund number.
            Call::Answer(Outcome::Refund(r)) => {
                // Keep the channel's refund id: some channels are asked by it.
                if r.channel_refund_no.is_some() && refund.channel_refund_no != r.channel_refund_no
                {
                    refund.channel_refund_no = r.channel_refund_no;
                    refund.updated_at = Utc::now();
                    self.ledger.update_refund(&refund).await?;
                }
                self.resolve_refund(order, refund, false, traffic).await
            }
            Call::RateLimited(wait) => Err(ServiceError::RateLimited {
                retry_after: wait,
                detail: format!(
                    "channel {} is at its rate limit; refund {} is recorded as pending: repeat the same request",
                    entry.name, refund.out_refund_no
                ),
            }),
            Call::Answer(_) | Call::NotSent(_) | Call::Unsupported(_) => Ok(refund),
        }
    }

    pub(super) async fn settle(
        &self,
        mut refund: Refund,
        status: RefundStatus,
        failure: Option<Failure>,
    ) -> Result<Refund, ServiceError> {
        let was = refund.status;
        refund.status = status;
        refund.failure = failure;
        refund.updated_at = Utc::now();
        self.ledger.settle_refund(&refund).await?;
        if was == RefundStatus::Pending && status != RefundStatus::Pending {
            // Returns the refund carried settled with it.
            for no in &refund.funded_by {
                if let Some(r) = self.ledger.get_split_return(no).await? {
                    if r.with_refund && r.status != crate::ledger::SplitStatus::Pending {
                        self.metrics.record_split_return(
                            &r.channel,
                            r.status == crate::ledger::SplitStatus::Succeeded,
                        );
                    }
                }
            }
        }
        Ok(self
            .ledger
            .get_refund(&refund.out_refund_no)
            .await?
            .unwrap_or(refund))
    }

    /// Asks the channel about a pending refund; re-sends it (same number) if the channel never got it.
    pub(super) async fn resolve_refund(
        &self,
        order: &Order,
        refund: Refund,
        resend: bool,
        traffic: Traffic,
    ) -> Result<Refund, ServiceError> {
        let snap = self.snapshot();
        let Some(entry) = snap.channel(&refund.channel) else {
            return Ok(refund);
        };
        let ri = refund_intent(order, &refund);
        match self.call(entry, Op::RefundQuery(&ri), traffic).await {
            Call::Answer(Outcome::Refund(r)) => match r.state {
                ChannelRefundState::Succeeded => {
                    let mut refund = refund;
                    refund.channel_refund_no = r.channel_refund_no.or(refund.channel_refund_no);
                    self.settle(refund, RefundStatus::Succeeded, None).await
                }
                ChannelRefundState::NotFound if resend => {
                    Box::pin(self.send_refund(order, refund, traffic)).await
                }
                _ => Ok(refund),
            },
            _ => Ok(refund),
        }
    }

    /// The refund, refreshed from the channel while it is pending.
    pub async fn refund_query(&self, out_refund_no: &str) -> Result<Refund, ServiceError> {
        self.refresh_refund(out_refund_no, Traffic::New).await
    }

    pub(super) async fn refresh_refund(
        &self,
        out_refund_no: &str,
        traffic: Traffic,
    ) -> Result<Refund, ServiceError> {
        let refund = self
            .ledger
            .get_refund(out_refund_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("refund {out_refund_no}")))?;
        if refund.status != RefundStatus::Pending {
            return Ok(refund);
        }
        let _guard = self.lock(&refund.out_trade_no).await?;
        let Some(order) = self.ledger.get_order(&refund.out_trade_no).await? else {
            return Ok(refund);
        };
        let refund = self
            .ledger
            .get_refund(out_refund_no)
            .await?
            .unwrap_or(refund);
        if refund.status != RefundStatus::Pending {
            return Ok(refund);
        }
        self.resolve_refund(&order, refund, true, traffic).await
    }
}
