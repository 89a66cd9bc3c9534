//! Creating a payment: routing, and the failover loop over the candidates (repeats of a create
//! are answered in `repeat.rs`, "no channel now" in `unavailable.rs`).

use super::call::{prepare, take_quota};
use super::*;
use crate::health::RoutingView;

impl Payments {
    /// Creates a payment (or answers a repeat of one).
    pub async fn create(&self, req: OrderRequest) -> Result<Order, ServiceError> {
        let fp = fingerprint(&req);
        let next = {
            let _guard = self.lock(&req.out_trade_no).await?;
            if let Some(existing) = self.ledger.get_order(&req.out_trade_no).await? {
                self.repeat_create(existing, &fp).await?
            } else {
                let now = Utc::now();
                // Every prepay order expires at the channel, so that a payment link never
                // outlives the order (a close cannot reach a trade the channel has not created
                // yet).
                let expires_at = match (req.expires_at, req.scene) {
                    (Some(t), _) => Some(t),
                    (None, Scene::Barcode) => None,
                    (None, _) => chrono::Duration::from_std(self.settings.payment_ttl)
                        .ok()
                        .map(|d| now + d),
                };
                let order = Order::pending(req, fp.clone(), expires_at, now);
                match self.route_and_send(order, true).await? {
                    // Not a loop: the order is stored now, so routing it again (a repeat of
                    // a create that sent nothing) updates it and cannot meet another writer.
                    Next::Recorded(existing) => self.repeat_create(existing, &fp).await?,
                    next => next,
                }
            }
        };
        // A barcode payment in doubt is settled without holding the order's lock, so that a
        // query answers meanwhile.
        match next {
            Next::Done(order) | Next::Recorded(order) => Ok(order),
            Next::SettleBarcode(order) => self.resolve_barcode(order).await,
        }
    }

    /// Routes the order and tries the candidates in order, moving on only while provably
    /// nothing was created (no connection, or the channel did not accept the request).
    pub(super) async fn route_and_send(
        &self,
        mut order: Order,
        new: bool,
    ) -> Result<Next, ServiceError> {
        let snap = self.snapshot();
        let req = &order.request;
        let decision = route(
            &RoutingInput {
                out_trade_no: req.out_trade_no.clone(),
                method: req.method,
                scene: req.scene,
                currency: req.currency,
                amount: req.amount.get(),
                metadata: req.metadata.clone(),
                split: req.split,
                now: Utc::now(),
            },
            &snap,
            &RoutingView {
                health: self.health(),
                snapshot: &snap,
            },
        );
        self.metrics
            .route_decisions
            .with_label_values(&[
                decision.rule.as_deref().unwrap_or("none"),
                decision
                    .candidates
                    .first()
                    .map(String::as_str)
                    .unwrap_or("none"),
            ])
            .inc();
        if decision.candidates.is_empty() {
            return Err(self.no_candidate(req, &decision, &snap));
        }
        order.rule = decision.rule.clone();
        order.status = PaymentStatus::Pending;
        order.failure = None;
        let mut inserted = !new;
        let mut reasons = Vec::new();
        let mut limited_for: Option<Duration> = None;
        let started = std::time::Instant::now();
        let last = decision.candidates.len().saturating_sub(1);
        for (i, name) in decision.candidates.iter().enumerate() {
            let Some(entry) = snap.channel(name) else {
                continue;
            };
            // Never back to a channel where this order was abandoned (a repeat routes again).
            if order
                .attempts
                .iter()
                .any(|a| &a.channel == name && a.outcome == AttemptOutcome::Abandoned)
            {
                reasons.push(format!("{name}: abandoned earlier"));
                continue;
            }
            let no = order.request.out_trade_no.clone();
            if i > 0 && started.elapsed() > self.settings.create_deadline {
                reasons.push(format!(
                    "{name}: not tried, the request deadline has passed"
                ));
                break;
            }
            // A saturated channel is skipped for a new payment (nothing is sent to it).
            if let Some(wait) = take_quota(entry).await {
                if let Some(limit) = entry.rate_limit {
                    self.health().note_rate_limited(name, limit, wait);
                }
                self.metrics
                    .rate_limited
                    .with_label_values(&[name.as_str()])
                    .inc();
                reasons.push(format!("{name}: rate limit reached"));
                limited_for = Some(limited_for.map_or(wait, |w| w.min(wait)));
                continue;
            }
            order.channel = Some(name.clone());
            order.fee = Some(Fen(decision.fees[i]));
            order.attempts.push(Attempt::in_flight(name, Utc::now()));
            // Durable before the first byte is sent to the channel. The request is built and
            // signed while the attempt is being written, and sent only once that is durable.
            let intent = intent(&order);
            let op = Op::Create(&intent);
            let record = async {
                if inserted {
                    self.ledger.put_order(&mut order).await.map(|()| None)
                } else {
                    match self.ledger.insert_order(order.clone()).await? {
                        Inserted::Existing(o) => Ok(Some(o)),
                        Inserted::Created(stored) => {
                            order.version = stored.version;
                            Ok(None)
                        }
                    }
                }
            };
            let (recorded, prepared) = tokio::join!(record, async { prepare(entry, op) });
            if let Some(existing) = recorded? {
                return Ok(Next::Recorded(existing));
            }
            inserted = true;
            let call = self.send(entry, op, prepared, Traffic::New).await;
            let can_move_on = i < last && started.elapsed() <= self.settings.create_deadline;
            match failover_step(call, order.request.scene, can_move_on) {
                Step::Answered(outcome) => return self.after_create(order, entry, outcome).await,
                Step::MoveOn {
                    outcome,
                    reason,
                    summary,
                } => {
                    warn!(channel = name.as_str(), out_trade_no = no.as_str(), %reason, "trying the next candidate");
                    order.finish_attempt(outcome, Some(reason), Utc::now());
                    self.ledger.put_order(&mut order).await?;
                    if outcome == AttemptOutcome::Abandoned {
                        // Marked abandoned first, then closed there in the background.
                        self.spawn_close_abandoned(no.clone(), name.clone());
                    }
                    reasons.push(format!("{name}: {summary}"));
                }
            }
            if i < last {
                self.metrics
                    .failovers
                    .with_label_values(&[name.as_str()])
                    .inc();
            }
        }
        if order
            .attempts
            .iter()
            .any(|a| a.outcome == AttemptOutcome::Abandoned)
        {
            // Something may exist at an abandoned channel: never report "nothing created".
            self.ledger.put_order(&mut order).await?;
            return Err(ServiceError::OutcomeUnknown {
                detail: format!(
                    "no candidate confirmed payment {} ({}); the order is pending: repeat the request or query it",
                    order.request.out_trade_no,
                    reasons.join("; ")
                ),
                status: order.status,
            });
        }
        if order.attempts.is_empty() {
            if let Some(wait) = limited_for {
                return Err(ServiceError::RateLimited {
                    retry_after: wait,
                    detail: format!(
                        "every candidate channel is at its rate limit ({})",
                        reasons.join("; ")
                    ),
                });
            }
        }
        // Nothing was created anywhere: the order is failed for now, and a repeat of the same
        // request routes it again.
        order.status = PaymentStatus::Failed;
        order.failure = Some(Failure {
            code: FailureCode::NothingCreated,
            message: "no candidate channel accepted the payment; nothing was created".into(),
        });
        self.ledger.put_order(&mut order).await?;
        Err(ServiceError::ChannelUnavailable {
            detail: format!(
                "no candidate channel accepted payment {}; nothing was created, repeat the request later ({})",
                order.request.out_trade_no,
                reasons.join("; ")
            ),
            retry_after: None,
        })
    }
}

/// What the failover loop does after one candidate's call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The channel answered: the create ends here, whatever the answer says.
    Answered(Outcome),
    /// Try the next candidate, ending this attempt with `outcome` (`reason` for the attempt,
    /// `summary` for the error detail should no candidate be left).
    MoveOn {
        outcome: AttemptOutcome,
        reason: String,
        summary: String,
    },
}

/// The failover decision (safety rule 2), a pure function of the call's result, the scene,
/// and whether another candidate may still be tried (`can_move_on`: one is left and the
/// create's deadline has not passed). Provably nothing created → move on. An unknown outcome
/// moves on only for a prepay scene, whose action at this channel is never handed out (the
/// attempt is abandoned and closed there); a barcode payment never moves.
pub(super) fn failover_step(call: Call, scene: Scene, can_move_on: bool) -> Step {
    match call {
        Call::NotSent(why) | Call::Unsupported(why) => Step::MoveOn {
            outcome: AttemptOutcome::Declined,
            reason: format!("not sent: {why}"),
            summary: why,
        },
        // Creates are not limited inside `send` (the quota was taken before); kept for safety.
        Call::RateLimited(_) => Step::MoveOn {
            outcome: AttemptOutcome::Declined,
            reason: "not sent: rate limit reached".into(),
            summary: "rate limit reached".into(),
        },
        Call::Answer(Outcome::Unknown { reason }) if scene.is_prepay() && can_move_on => {
            Step::MoveOn {
                outcome: AttemptOutcome::Abandoned,
                reason: format!("outcome unknown ({reason}); closing it there"),
                summary: "outcome unknown, abandoned".into(),
            }
        }
        Call::Answer(outcome) => Step::Answered(outcome),
    }
}

#[cfg(test)]
#[path = "create_tests.rs"]
mod tests;
