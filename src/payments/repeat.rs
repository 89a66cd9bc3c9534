//! A create that names an order the ledger already holds (a repeat, or the answer of the
//! first send): the stored answer, the channel's answer applied to the order, or a resumed
//! attempt.

use super::*;

impl Payments {
    pub(super) async fn repeat_create(
        &self,
        existing: Order,
        fp: &str,
    ) -> Result<Next, ServiceError> {
        if existing.fingerprint != fp {
            return Err(ServiceError::Conflict {
                code: ErrorCode::IdempotencyConflict,
                detail: format!(
                    "out_trade_no {} was already used for a payment with different content",
                    existing.request.out_trade_no
                ),
            });
        }
        let nothing_sent = existing.status == PaymentStatus::Failed
            && existing
                .failure
                .as_ref()
                .is_some_and(|f| f.code == FailureCode::NothingCreated);
        let pending = existing.status == PaymentStatus::Pending;
        // A prepay order abandoned at one channel whose later candidates received nothing (not
        // sent, rate limited, past the deadline): nothing the customer can pay exists, so it is
        // routed again (never back to a channel where it was abandoned).
        let nothing_payable = pending
            && existing.request.scene.is_prepay()
            && existing.action.is_none()
            && existing.attempts.last().is_some_and(|a| {
                matches!(
                    a.outcome,
                    AttemptOutcome::Declined | AttemptOutcome::Abandoned
                )
            })
            && !existing
                .attempts
                .iter()
                .any(|a| a.outcome == AttemptOutcome::Accepted);
        if nothing_sent || nothing_payable {
            return self.route_and_send(existing, false).await;
        }
        let unresolved = pending && existing.in_doubt();
        // A prepay order the channel holds but whose action payroute never received (the
        // answer was lost, then a query or recovery found the order waiting): without the
        // action the customer could never pay, so the channel is asked again.
        let lost_action = pending
            && existing.request.scene.is_prepay()
            && existing.action.is_none()
            && existing
                .attempts
                .last()
                .is_some_and(|a| a.outcome == AttemptOutcome::Accepted);
        if !unresolved && !lost_action {
            return Ok(Next::Done(existing));
        }
        // Ask the same channel again with the same order number (the channel treats it
        // idempotently); never another channel.
        let snap = self.snapshot();
        let Some(entry) = existing.channel.as_deref().and_then(|c| snap.channel(c)) else {
            return Ok(Next::Done(existing));
        };
        if existing.request.scene == Scene::Barcode {
            // The customer may be charged already: never send the payment again; find out.
            return Ok(Next::SettleBarcode(existing));
        }
        match self
            .call(entry, Op::Create(&intent(&existing)), Traffic::New)
            .await
        {
            Call::RateLimited(wait) => Err(ServiceError::RateLimited {
                retry_after: wait,
                detail: format!("channel {} is at its rate limit; try again", entry.name),
            }),
            // A refusal of the repeat says nothing about the first attempt.
            Call::Answer(Outcome::Declined { code, message }) => Err(ServiceError::OutcomeUnknown {
                detail: format!(
                    "channel {} refused the repeated request ({code}: {message}); the first attempt's \
                     outcome is still unknown: query the payment",
                    entry.name
                ),
                status: existing.status,
            }),
            Call::Answer(outcome) => self.after_create(existing, entry, outcome).await,
            Call::NotSent(reason) | Call::Unsupported(reason) => Err(ServiceError::ChannelUnavailable {
                detail: format!("channel {} cannot be reached: {reason}", entry.name),
                retry_after: None,
            }),
        }
    }

    pub(super) async fn after_create(
        &self,
        mut order: Order,
        entry: &ChannelEntry,
        outcome: Outcome,
    ) -> Result<Next, ServiceError> {
        match outcome {
            Outcome::Payment(report) => {
                if order.request.scene == Scene::Barcode && report.state != ChannelPayState::Paid {
                    order.finish_attempt(
                        AttemptOutcome::Unknown,
                        Some("customer still confirming".into()),
                        Utc::now(),
                    );
                    if report.channel_trade_no.is_some() {
                        order.channel_trade_no.clone_from(&report.channel_trade_no);
                    }
                    self.ledger.put_order(&mut order).await?;
                    return Ok(Next::SettleBarcode(order));
                }
                order.finish_attempt(AttemptOutcome::Accepted, None, Utc::now());
                if let Err(e) = self.apply_report(&mut order, &report) {
                    warn!(out_trade_no = order.request.out_trade_no.as_str(), channel = entry.name.as_str(), %e, "create answer rejected");
                }
                if report.action.is_some() {
                    order.action = report.action;
                }
                self.ledger.put_order(&mut order).await?;
                Ok(Next::Done(order))
            }
            Outcome::Declined { code, message } => {
                order.finish_attempt(
                    AttemptOutcome::Declined,
                    Some(format!("{code}: {message}")),
                    Utc::now(),
                );
                order.status = PaymentStatus::Failed;
                order.failure = Some(Failure {
                    code: FailureCode::Channel(code),
                    message,
                });
                self.ledger.put_order(&mut order).await?;
                Ok(Next::Done(order))
            }
            Outcome::Unknown { reason } => {
                order.finish_attempt(AttemptOutcome::Unknown, Some(reason.clone()), Utc::now());
                self.ledger.put_order(&mut order).await?;
                if order.request.scene == Scene::Barcode {
                    return Ok(Next::SettleBarcode(order));
                }
                Err(ServiceError::OutcomeUnknown {
                    detail: format!(
                        "channel {} gave no trustworthy answer ({reason}); the order is pending: \
                         repeat the same request or query it",
                        entry.name
                    ),
                    status: order.status,
                })
            }
            Outcome::Refund(_)
            | Outcome::Split(_)
            | Outcome::SplitReturn(_)
            | Outcome::Bound
            | Outcome::Bill(_)
            | Outcome::BillNotReady
            | Outcome::Closed
            | Outcome::NotAccepted { .. } => {
                order.finish_attempt(
                    AttemptOutcome::Unknown,
                    Some("unexpected answer".into()),
                    Utc::now(),
                );
                self.ledger.put_order(&mut order).await?;
                Err(ServiceError::OutcomeUnknown {
                    detail: "the channel's answer did not fit the operation".into(),
                    status: order.status,
                })
            }
        }
    }
}
