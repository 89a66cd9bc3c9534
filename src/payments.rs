//! The payment service: the unified operations on top of the ledger and the channels.
//! It is the only place that decides what to do with a channel's outcome.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use tracing::{info, warn};

use crate::channels::{
    ChannelPayState, ChannelRefundState, Op, Outcome, PaymentIntent, PaymentReport, Prepared,
    RefundIntent,
};
use crate::config::{ChannelEntry, Snapshot};
use crate::domain::{PaymentStatus, RefundStatus, Scene};
use crate::ledger::{
    Attempt, AttemptOutcome, Failure, Inserted, LateKind, LatePayment, LateRefund, Ledger,
    LedgerError, Order, OrderRequest, Refund, ABANDONED_SETTLED,
};
use crate::routing::{route, RoutingInput};

/// Errors of the unified operations; `api::problem` maps each to a response.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    #[error("{detail}")]
    Unprocessable { code: &'static str, detail: String },
    #[error("{detail}")]
    OutcomeUnknown {
        detail: String,
        status: PaymentStatus,
    },
    /// Nothing was created; repeating later may succeed (after `retry_after`, when known).
    #[error("{detail}")]
    ChannelUnavailable {
        detail: String,
        retry_after: Option<Duration>,
    },
    #[error("{detail}")]
    RateLimited {
        retry_after: Duration,
        detail: String,
    },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A refund request from the API.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    pub out_refund_no: String,
    pub amount: u64,
    pub reason: Option<String>,
}

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Interval between queries while a barcode payment's outcome is unknown.
    pub barcode_poll_interval: Duration,
    /// Number of such queries before the payment is cancelled (reversed).
    pub barcode_poll_attempts: u32,
    /// How long a prepay order stays payable when the request gives no `expires_at`.
    pub payment_ttl: Duration,
    /// No new candidate is tried once a create has run this long.
    pub create_deadline: Duration,
    /// First delay between attempts to close an abandoned attempt (doubling, 6 tries).
    pub abandon_retry: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            barcode_poll_interval: Duration::from_secs(3),
            barcode_poll_attempts: 10,
            payment_ttl: Duration::from_secs(7200),
            create_deadline: Duration::from_secs(30),
            abandon_retry: Duration::from_secs(2),
        }
    }
}

/// Serializes operations on the same order within this process.
#[derive(Debug, Default)]
struct KeyedLocks {
    map: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, v| Arc::strong_count(v) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// Why a channel call is made: new traffic waits for the channel's rate limit and is held
/// back by an open circuit; settling money already in flight (barcode queries and reversals,
/// closing abandoned attempts, refunds of late payments, recovery) never is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Traffic {
    New,
    Settle,
}

/// The answer of one channel call.
enum Call {
    /// The channel answered (or the adapter answered locally).
    Answer(Outcome),
    /// Provably nothing was created at the channel: no connection, the request could not be
    /// built, or the channel did not accept it (authentication, configuration).
    NotSent(String),
    /// The channel's protocol has no such operation.
    Unsupported(String),
    /// The channel's rate limit stayed exhausted for the bounded wait; nothing was sent.
    RateLimited(Duration),
}

/// What a create leaves to do once the order's lock is released.
enum Next {
    Done(Order),
    /// A barcode payment whose outcome is not known yet: query, then reverse.
    SettleBarcode(Order),
}

/// `failure.code` of an order that no channel accepted: nothing was created anywhere, and a
/// repeat of the same request routes it again.
const NOTHING_CREATED: &str = "channel_unavailable";

/// The unified payment operations.
#[derive(Debug)]
pub struct Payments {
    ledger: Arc<dyn Ledger>,
    config: Arc<ArcSwap<Snapshot>>,
    locks: KeyedLocks,
    settings: ServiceSettings,
    metrics: Arc<crate::metrics::Metrics>,
    health: Arc<crate::health::Health>,
    /// This service, for background work (closing abandoned attempts).
    me: std::sync::Weak<Payments>,
    /// Late payments (order, channel) whose refund this process is working on.
    late_refunds: std::sync::Mutex<std::collections::HashSet<(String, String)>>,
}

/// The fingerprint of a create request: equal content ⇔ equal fingerprint.
pub fn fingerprint<T: serde::Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).expect("request types serialize");
    crate::crypto::sha256_hex(&bytes)
}

/// Builds (and signs) the channel request for `op`; a request that cannot be built is a call
/// that was not sent.
fn prepare(entry: &ChannelEntry, op: Op<'_>) -> Result<Prepared, Call> {
    entry.adapter.build(op, Utc::now()).map_err(|e| match e {
        crate::channels::BuildError::Unsupported(m) => Call::Unsupported(m),
        e => Call::NotSent(e.to_string()),
    })
}

fn intent(order: &Order) -> PaymentIntent {
    let req = &order.request;
    PaymentIntent {
        out_trade_no: req.out_trade_no.clone(),
        amount: req.amount,
        method: req.method,
        scene: req.scene,
        subject: req.subject.clone(),
        description: req.description.clone(),
        auth_code: req.auth_code.clone(),
        payer_id: req.payer_id.clone(),
        client_ip: req.client_ip.clone(),
        expires_at: order.expires_at.or(req.expires_at),
    }
}

fn refund_intent(order: &Order, refund: &Refund) -> RefundIntent {
    RefundIntent {
        out_trade_no: refund.out_trade_no.clone(),
        channel_trade_no: order.channel_trade_no.clone(),
        channel_refund_no: refund.channel_refund_no.clone(),
        out_refund_no: refund.out_refund_no.clone(),
        amount: refund.amount,
        total: order.request.amount,
        reason: refund.reason.clone(),
    }
}

fn finish_attempt(order: &mut Order, outcome: AttemptOutcome, reason: Option<String>) {
    let now = Utc::now();
    if let Some(a) = order.last_attempt_mut() {
        a.outcome = outcome;
        a.finished_at = Some(now);
        a.reason = reason;
    }
    order.updated_at = now;
}

impl Payments {
    /// Creates the service.
    pub fn new(
        ledger: Arc<dyn Ledger>,
        config: Arc<ArcSwap<Snapshot>>,
        settings: ServiceSettings,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Payments {
            ledger,
            config,
            locks: KeyedLocks::default(),
            settings,
            metrics,
            health: Arc::new(crate::health::Health::default()),
            me: me.clone(),
            late_refunds: std::sync::Mutex::default(),
        })
    }

    /// Channel health (circuit breakers).
    pub fn health(&self) -> &crate::health::Health {
        &self.health
    }

    /// The active configuration snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.config.load_full()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.ledger
    }

    /// Applies a channel's report to the order (see [`apply_report`]) and counts a payment that
    /// has just succeeded in the amount and fee metrics.
    fn apply_report(&self, order: &mut Order, report: &PaymentReport) -> Result<(), String> {
        let before = order.status;
        apply_report(order, report)?;
        if !before.is_paid() && order.status.is_paid() {
            if let Some(channel) = order.channel.as_deref() {
                let fee = self
                    .snapshot()
                    .channel(channel)
                    .map_or(0, |c| c.fee.estimate(order.request.amount));
                self.metrics.record_paid(channel, order.request.amount, fee);
            }
        }
        Ok(())
    }

    async fn call(&self, entry: &ChannelEntry, op: Op<'_>, traffic: Traffic) -> Call {
        let prepared = prepare(entry, op);
        self.send(entry, op, prepared, traffic).await
    }

    /// Sends what [`prepare`] built for `op` and says what the channel's answer means.
    async fn send(
        &self,
        entry: &ChannelEntry,
        op: Op<'_>,
        prepared: Result<Prepared, Call>,
        traffic: Traffic,
    ) -> Call {
        let req = match prepared {
            Err(not_built) => return not_built,
            Ok(Prepared::Local(outcome)) => return Call::Answer(outcome),
            Ok(Prepared::Send(req)) => req,
        };
        let operation = op.kind().as_str();
        let out_trade_no = op.out_trade_no();
        let skipped = |why: &str| {
            self.metrics
                .channel_requests
                .with_label_values(&[entry.name.as_str(), operation, "not_sent"])
                .inc();
            info!(
                channel = entry.name.as_str(),
                out_trade_no,
                operation,
                outcome = "not_sent",
                why,
                "channel call"
            );
        };
        if traffic == Traffic::New {
            if op.kind() != crate::channels::OpKind::Create {
                // Operations on an existing order never move: wait briefly for the quota.
                if let Some(limiter) = &entry.limiter {
                    if tokio::time::timeout(Duration::from_secs(1), limiter.until_ready())
                        .await
                        .is_err()
                    {
                        self.metrics
                            .rate_limited
                            .with_label_values(&[entry.name.as_str()])
                            .inc();
                        skipped("rate limit reached");
                        return Call::RateLimited(Duration::from_secs(1));
                    }
                }
            }
            if !self.health.admit(&entry.name) {
                skipped("circuit open");
                return Call::NotSent(format!("circuit of channel {} is open", entry.name));
            }
        }
        let started = std::time::Instant::now();
        let result = entry.client.send(req).await;
        let outcome = match result {
            Ok(resp) => match entry.adapter.parse(op, &resp) {
                Outcome::NotAccepted { code, message } => {
                    warn!(channel = entry.name.as_str(), out_trade_no, operation, %code, %message, "channel did not accept the request: check its configuration");
                    Call::NotSent(format!("not accepted: {code}: {message}"))
                }
                other => Call::Answer(other),
            },
            Err(e) if e.nothing_sent() => Call::NotSent(e.to_string()),
            Err(e) => Call::Answer(Outcome::Unknown {
                reason: e.to_string(),
            }),
        };
        // Answers are health, whatever their business result; no answer is a failure.
        let answered = matches!(&outcome, Call::Answer(o) if !matches!(o, Outcome::Unknown { .. }));
        self.health.record(&entry.name, &entry.breaker, answered);
        self.metrics
            .circuit_state
            .with_label_values(&[entry.name.as_str()])
            .set(self.health.state(&entry.name).gauge());
        let label = match &outcome {
            Call::NotSent(_) | Call::Unsupported(_) | Call::RateLimited(_) => "not_sent",
            Call::Answer(Outcome::Unknown { .. }) => "unknown",
            Call::Answer(Outcome::Declined { .. }) => "declined",
            Call::Answer(_) => "ok",
        };
        self.metrics
            .channel_requests
            .with_label_values(&[entry.name.as_str(), operation, label])
            .inc();
        self.metrics
            .channel_duration
            .with_label_values(&[entry.name.as_str(), operation])
            .observe(started.elapsed().as_secs_f64());
        info!(
            channel = entry.name.as_str(),
            out_trade_no,
            operation,
            outcome = label,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "channel call"
        );
        outcome
    }

    /// Creates a payment (or answers a repeat of one).
    pub async fn create(&self, req: OrderRequest) -> Result<Order, ServiceError> {
        let fp = fingerprint(&req);
        let next = {
            let _guard = self.locks.lock(&req.out_trade_no).await;
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
                self.route_and_send(order, true).await?
            }
        };
        // A barcode payment in doubt is settled without holding the order's lock, so that a
        // query answers meanwhile.
        match next {
            Next::Done(order) => Ok(order),
            Next::SettleBarcode(order) => self.resolve_barcode(order).await,
        }
    }

    /// Routes the order and tries the candidates in order, moving on only while provably
    /// nothing was created (no connection, or the channel did not accept the request).
    async fn route_and_send(&self, mut order: Order, new: bool) -> Result<Next, ServiceError> {
        let snap = self.snapshot();
        let req = &order.request;
        let decision = route(
            &RoutingInput {
                out_trade_no: req.out_trade_no.clone(),
                method: req.method,
                scene: req.scene,
                currency: req.currency,
                amount: req.amount,
                metadata: req.metadata.clone(),
                now: Utc::now(),
            },
            &snap,
            &*self.health,
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
            return Err(self.no_candidate(req, &decision));
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
            let no = order.request.out_trade_no.clone();
            if i > 0 && started.elapsed() > self.settings.create_deadline {
                reasons.push(format!(
                    "{name}: not tried, the request deadline has passed"
                ));
                break;
            }
            // A saturated channel is skipped for a new payment (nothing is sent to it).
            if let Some(wait) = take_quota(entry) {
                self.metrics
                    .rate_limited
                    .with_label_values(&[name.as_str()])
                    .inc();
                reasons.push(format!("{name}: rate limit reached"));
                limited_for = Some(limited_for.map_or(wait, |w| w.min(wait)));
                continue;
            }
            order.channel = Some(name.clone());
            order.fee = Some(decision.fees[i]);
            order.attempts.push(Attempt {
                channel: name.clone(),
                started_at: Utc::now(),
                finished_at: None,
                outcome: AttemptOutcome::InFlight,
                reason: None,
            });
            // Durable before the first byte is sent to the channel. The request is built and
            // signed while the attempt is being written, and sent only once that is durable.
            let intent = intent(&order);
            let op = Op::Create(&intent);
            let record = async {
                if inserted {
                    self.ledger.put_order(&order).await.map(|()| None)
                } else {
                    match self.ledger.insert_order(order.clone()).await? {
                        Inserted::Existing(o) => Ok(Some(o)),
                        Inserted::Created(_) => Ok(None),
                    }
                }
            };
            let (recorded, prepared) = tokio::join!(record, async { prepare(entry, op) });
            if let Some(existing) = recorded? {
                let fp = order.fingerprint.clone();
                return Box::pin(self.repeat_create(existing, &fp)).await;
            }
            inserted = true;
            match self.send(entry, op, prepared, Traffic::New).await {
                Call::NotSent(reason) | Call::Unsupported(reason) => {
                    warn!(channel = name.as_str(), out_trade_no = no.as_str(), %reason, "payment not sent; trying the next candidate");
                    finish_attempt(
                        &mut order,
                        AttemptOutcome::Declined,
                        Some(format!("not sent: {reason}")),
                    );
                    self.ledger.put_order(&order).await?;
                    reasons.push(format!("{name}: {reason}"));
                }
                // Creates are not limited inside `send` (the quota was taken above).
                Call::RateLimited(_) => {
                    finish_attempt(
                        &mut order,
                        AttemptOutcome::Declined,
                        Some("not sent: rate limit reached".into()),
                    );
                    self.ledger.put_order(&order).await?;
                    reasons.push(format!("{name}: rate limit reached"));
                }
                // A prepay order may move on after an unknown outcome: nothing is charged until the
                // customer acts on an action, and the one at this channel is never handed out. It
                // is marked abandoned first, then closed there in the background.
                Call::Answer(Outcome::Unknown { reason })
                    if order.request.scene.is_prepay()
                        && i < last
                        && started.elapsed() <= self.settings.create_deadline =>
                {
                    warn!(channel = name.as_str(), out_trade_no = no.as_str(), %reason, "outcome unknown; abandoning this attempt and trying the next candidate");
                    finish_attempt(
                        &mut order,
                        AttemptOutcome::Abandoned,
                        Some(format!("outcome unknown ({reason}); closing it there")),
                    );
                    self.ledger.put_order(&order).await?;
                    self.spawn_close_abandoned(no.clone(), name.clone());
                    reasons.push(format!("{name}: outcome unknown, abandoned"));
                }
                Call::Answer(outcome) => return self.after_create(order, entry, outcome).await,
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
            self.ledger.put_order(&order).await?;
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
            code: NOTHING_CREATED.into(),
            message: "no candidate channel accepted the payment; nothing was created".into(),
        });
        self.ledger.put_order(&order).await?;
        Err(ServiceError::ChannelUnavailable {
            detail: format!(
                "no candidate channel accepted payment {}; nothing was created, repeat the request later ({})",
                order.request.out_trade_no,
                reasons.join("; ")
            ),
            retry_after: None,
        })
    }

    /// The error for a payment no channel can take now: 503 with `Retry-After` when a
    /// candidate is only held back for a while (open circuit, rate limit, maintenance), 422
    /// when repeating cannot help.
    fn no_candidate(
        &self,
        req: &OrderRequest,
        decision: &crate::routing::Decision,
    ) -> ServiceError {
        use crate::routing::Verdict;
        let why: Vec<String> = decision
            .trace
            .iter()
            .filter_map(|t| t.channel.as_ref().map(|c| format!("{c}: {}", t.verdict)))
            .collect();
        let detail = format!(
            "no channel can take a {} {} payment of {} fen{}",
            req.method.as_str(),
            req.scene.as_str(),
            req.amount,
            if why.is_empty() {
                String::new()
            } else {
                format!(" ({})", why.join("; "))
            }
        );
        let waits: Vec<Duration> = decision
            .trace
            .iter()
            .filter_map(|t| {
                let channel = t.channel.as_deref()?;
                if t.verdict == Verdict::CircuitOpen.as_str() {
                    Some(
                        self.health
                            .reopens_in(channel)
                            .unwrap_or(Duration::from_secs(1)),
                    )
                } else if t.verdict == Verdict::RateLimited.as_str() {
                    Some(Duration::from_secs(1))
                } else if t.verdict == Verdict::InMaintenance.as_str() {
                    Some(Duration::from_secs(60))
                } else {
                    None
                }
            })
            .collect();
        match waits.into_iter().min() {
            Some(wait) => ServiceError::ChannelUnavailable {
                detail: format!("{detail}; a channel is temporarily unavailable, try again later"),
                retry_after: Some(wait.max(Duration::from_secs(1))),
            },
            None => ServiceError::Unprocessable {
                code: "no_channel",
                detail,
            },
        }
    }

    async fn repeat_create(&self, existing: Order, fp: &str) -> Result<Next, ServiceError> {
        if existing.fingerprint != fp {
            return Err(ServiceError::Conflict {
                code: "idempotency_conflict",
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
                .is_some_and(|f| f.code == NOTHING_CREATED);
        if nothing_sent {
            return self.route_and_send(existing, false).await;
        }
        let pending = existing.status == PaymentStatus::Pending;
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

    async fn after_create(
        &self,
        mut order: Order,
        entry: &ChannelEntry,
        outcome: Outcome,
    ) -> Result<Next, ServiceError> {
        match outcome {
            Outcome::Payment(report) => {
                if order.request.scene == Scene::Barcode && report.state != ChannelPayState::Paid {
                    finish_attempt(
                        &mut order,
                        AttemptOutcome::Unknown,
                        Some("customer still confirming".into()),
                    );
                    if report.channel_trade_no.is_some() {
                        order.channel_trade_no.clone_from(&report.channel_trade_no);
                    }
                    self.ledger.put_order(&order).await?;
                    return Ok(Next::SettleBarcode(order));
                }
                finish_attempt(&mut order, AttemptOutcome::Accepted, None);
                if let Err(e) = self.apply_report(&mut order, &report) {
                    warn!(out_trade_no = order.request.out_trade_no.as_str(), channel = entry.name.as_str(), %e, "create answer rejected");
                }
                if report.action.is_some() {
                    order.action = report.action;
                }
                self.ledger.put_order(&order).await?;
                Ok(Next::Done(order))
            }
            Outcome::Declined { code, message } => {
                finish_attempt(
                    &mut order,
                    AttemptOutcome::Declined,
                    Some(format!("{code}: {message}")),
                );
                order.status = PaymentStatus::Failed;
                order.failure = Some(Failure { code, message });
                self.ledger.put_order(&order).await?;
                Ok(Next::Done(order))
            }
            Outcome::Unknown { reason } => {
                finish_attempt(&mut order, AttemptOutcome::Unknown, Some(reason.clone()));
                self.ledger.put_order(&order).await?;
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
            Outcome::Refund(_) | Outcome::Closed | Outcome::NotAccepted { .. } => {
                finish_attempt(
                    &mut order,
                    AttemptOutcome::Unknown,
                    Some("unexpected answer".into()),
                );
                self.ledger.put_order(&order).await?;
                Err(ServiceError::OutcomeUnknown {
                    detail: "the channel's answer did not fit the operation".into(),
                    status: order.status,
                })
            }
        }
    }

    /// A barcode payment never moves to another channel: query until the outcome is known,
    /// and reverse it when it cannot be confirmed in time. Runs without the order's lock
    /// (each write re-reads the order under it), and neither an open circuit nor a rate
    /// limit holds these calls back: the customer may have been charged.
    async fn resolve_barcode(&self, order: Order) -> Result<Order, ServiceError> {
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
                            finish_attempt(order, AttemptOutcome::Accepted, None);
                            self.apply_report(order, &report).is_ok()
                        })
                        .await?;
                    if applied {
                        return Ok(order);
                    }
                }
            }
        }
        let snap = self.snapshot();
        let current = self.load(&no).await?;
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
                let (order, _) = self
                    .update_in_doubt(&no, |order| {
                        finish_attempt(
                            order,
                            AttemptOutcome::Declined,
                            Some("not confirmed in time; reversed".into()),
                        );
                        order.status = PaymentStatus::Failed;
                        order.failure = Some(Failure {
                            code: "payment_reversed".into(),
                            message:
                                "the customer did not confirm in time; the payment was reversed"
                                    .into(),
                        });
                        true
                    })
                    .await?;
                Ok(order)
            }
            _ => Err(ServiceError::OutcomeUnknown {
                detail: format!(
                    "barcode payment {no} could not be confirmed or reversed yet; query it"
                ),
                status: current.status,
            }),
        }
    }

    /// The stored order.
    async fn load(&self, out_trade_no: &str) -> Result<Order, ServiceError> {
        self.ledger
            .get_order(out_trade_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("payment {out_trade_no}")))
    }

    /// Applies `change` to the stored order under its lock if its last attempt is still in
    /// doubt; returns the order as stored afterwards and what `change` returned (false when
    /// the order was settled meanwhile and left alone).
    async fn update_in_doubt(
        &self,
        out_trade_no: &str,
        change: impl FnOnce(&mut Order) -> bool,
    ) -> Result<(Order, bool), ServiceError> {
        let _guard = self.locks.lock(out_trade_no).await;
        let mut order = self.load(out_trade_no).await?;
        if !order.in_doubt() || order.status != PaymentStatus::Pending {
            return Ok((order, false));
        }
        let applied = change(&mut order);
        self.ledger.put_order(&order).await?;
        Ok((order, applied))
    }

    /// The order, refreshed from its channel while it is pending (or closed without the
    /// channel's confirmation: a late payment found this way is refunded automatically).
    pub async fn query(&self, out_trade_no: &str) -> Result<Order, ServiceError> {
        self.refresh(out_trade_no, Traffic::New).await
    }

    async fn refresh(&self, out_trade_no: &str, traffic: Traffic) -> Result<Order, ServiceError> {
        let (order, late) = {
            let _guard = self.locks.lock(out_trade_no).await;
            let mut order = self.load(out_trade_no).await?;
            let watch_closed = order.status == PaymentStatus::Closed
                && order.close_confirmed == Some(false)
                && !order
                    .late_payments
                    .iter()
                    .any(|l| Some(&l.channel) == order.channel.as_ref());
            if order.status != PaymentStatus::Pending && !watch_closed {
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
            if watch_closed {
                let paid = report.state == ChannelPayState::Paid
                    && report.amount.is_none_or(|a| a == order.request.amount);
                (order, paid.then_some((entry.name.clone(), report)))
            } else {
                let before = order.clone();
                if report.state != ChannelPayState::NotFound {
                    order.adopt_last_attempt(Utc::now());
                }
                if let Err(e) = self.apply_report(&mut order, &report) {
                    warn!(out_trade_no, channel = entry.name.as_str(), %e, "query answer rejected");
                }
                if order != before {
                    self.ledger.put_order(&order).await?;
                }
                (order, None)
            }
        };
        match late {
            Some((channel, report)) => {
                self.guard_late_payment(out_trade_no, &channel, &report, LateKind::AfterClose)
                    .await?;
                self.load(out_trade_no).await
            }
            None => Ok(order),
        }
    }

    /// Closes an unpaid order so that it can no longer be paid. Where the channel cannot
    /// confirm that (it cannot close, or has no trade yet for a QR code that stays payable),
    /// the order is closed here with `close_confirmed: false`, and a payment that still
    /// arrives is refunded automatically.
    pub async fn close(&self, out_trade_no: &str) -> Result<Order, ServiceError> {
        let _guard = self.locks.lock(out_trade_no).await;
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
                        self.ledger.put_order(&order).await?;
                        return Err(paid_conflict(out_trade_no));
                    }
                }
                return Err(ServiceError::Conflict {
                    code: "close_declined",
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
                        self.ledger.put_order(&order).await?;
                        return Err(paid_conflict(out_trade_no));
                    }
                    if order.status == PaymentStatus::Closed {
                        order.close_confirmed = Some(true);
                        self.ledger.put_order(&order).await?;
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
        self.ledger.put_order(&order).await?;
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

    /// Refunds part or all of a paid order.
    pub async fn refund(
        &self,
        out_trade_no: &str,
        req: RefundRequest,
    ) -> Result<Refund, ServiceError> {
        let fp = fingerprint(&(out_trade_no, req.amount, &req.reason));
        let _guard = self.locks.lock(out_trade_no).await;
        let order = self
            .ledger
            .get_order(out_trade_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("payment {out_trade_no}")))?;
        let Some(channel) = order.channel.clone() else {
            return Err(not_refundable(&order));
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
            created_at: now,
            updated_at: now,
        };
        let refund = match self.ledger.insert_refund(refund).await {
            Ok(Inserted::Created(r)) => r,
            Ok(Inserted::Existing(r)) if r.fingerprint != fp => {
                return Err(ServiceError::Conflict {
                    code: "idempotency_conflict",
                    detail: format!("out_refund_no {} was already used for a different refund", r.out_refund_no),
                })
            }
            Ok(Inserted::Existing(r)) if r.status != RefundStatus::Pending => return Ok(r),
            Ok(Inserted::Existing(r)) => return self.resolve_refund(&order, r, true, Traffic::New).await,
            Err(LedgerError::ExceedsRefundable { available }) => {
                return Err(ServiceError::Unprocessable {
                    code: "refund_exceeds_paid",
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

    async fn send_refund(
        &self,
        order: &Order,
        mut refund: Refund,
        traffic: Traffic,
    ) -> Result<Refund, ServiceError> {
        let snap = self.snapshot();
        let Some(entry) = snap.channel(&refund.channel) else {
            return Ok(refund);
        };
        let ri = refund_intent(order, &refund);
        match self.call(entry, Op::Refund(&ri), traffic).await {
            Call::Answer(Outcome::Refund(r)) if r.state == ChannelRefundState::Succeeded => {
                refund.channel_refund_no = r.channel_refund_no;
                self.settle(refund, RefundStatus::Succeeded, None).await
            }
            Call::Answer(Outcome::Declined { code, message }) => {
                self.settle(
                    refund,
                    RefundStatus::Failed,
                    Some(Failure { code, message }),
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

    async fn settle(
        &self,
        mut refund: Refund,
        status: RefundStatus,
        failure: Option<Failure>,
    ) -> Result<Refund, ServiceError> {
        refund.status = status;
        refund.failure = failure;
        refund.updated_at = Utc::now();
        self.ledger.settle_refund(&refund).await?;
        Ok(self
            .ledger
            .get_refund(&refund.out_refund_no)
            .await?
            .unwrap_or(refund))
    }

    /// Asks the channel about a pending refund; re-sends it (same number) if the channel never got it.
    async fn resolve_refund(
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

    async fn refresh_refund(
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
        let _guard = self.locks.lock(&refund.out_trade_no).await;
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
            warn!(channel, out_trade_no, reported = ?report.amount, amount = order.request.amount, "notification rejected: the paid amount differs from the order's");
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

    fn spawn_close_abandoned(&self, out_trade_no: String, channel: String) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move { me.close_abandoned(&out_trade_no, &channel).await });
    }

    /// Closes an abandoned attempt at its channel, with retries. Should the channel report it
    /// paid, that is a duplicate payment for the late-payment guard.
    async fn close_abandoned(&self, out_trade_no: &str, channel: &str) {
        let mut delay = self.settings.abandon_retry;
        for _ in 0..6 {
            let snap = self.snapshot();
            let Some(entry) = snap.channel(channel) else {
                warn!(
                    channel,
                    out_trade_no, "abandoned attempt's channel is no longer configured"
                );
                return;
            };
            let close = Op::Close {
                out_trade_no,
                channel_trade_no: None,
            };
            let settled = match self.call(entry, close, Traffic::Settle).await {
                Call::Answer(Outcome::Closed) => Some("closed at the channel"),
                Call::Answer(Outcome::Payment(PaymentReport {
                    state: ChannelPayState::NotFound,
                    ..
                })) => {
                    let cancel = Op::Cancel {
                        out_trade_no,
                        channel_trade_no: None,
                    };
                    Some(match self.call(entry, cancel, Traffic::Settle).await {
                        Call::Answer(Outcome::Closed) => "cancelled at the channel",
                        _ => "no trade at the channel; a payment that still arrives is refunded automatically",
                    })
                }
                Call::Unsupported(_) => Some(
                    "the channel cannot close it: it expires at the channel, and a payment that still arrives is refunded automatically",
                ),
                _ => {
                    // Refused or unknown: perhaps it was paid meanwhile. Only a query tells.
                    let query = Op::Query {
                        out_trade_no,
                        channel_trade_no: None,
                    };
                    match self.call(entry, query, Traffic::Settle).await {
                        Call::Answer(Outcome::Payment(report))
                            if report.state == ChannelPayState::Paid =>
                        {
                            if let Err(e) = self
                                .guard_late_payment(
                                    out_trade_no,
                                    channel,
                                    &report,
                                    LateKind::Duplicate,
                                )
                                .await
                            {
                                warn!(channel, out_trade_no, %e, "cannot record a duplicate payment yet");
                            }
                            Some("paid at the channel: a duplicate payment")
                        }
                        Call::Answer(Outcome::Payment(report))
                            if report.state == ChannelPayState::Closed =>
                        {
                            Some("closed at the channel")
                        }
                        _ => None,
                    }
                }
            };
            if let Some(note) = settled {
                self.note_abandoned(out_trade_no, channel, note).await;
                return;
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        warn!(
            channel,
            out_trade_no, "abandoned attempt could not be closed yet; recovery will retry"
        );
    }

    async fn note_abandoned(&self, out_trade_no: &str, channel: &str, note: &str) {
        let _guard = self.locks.lock(out_trade_no).await;
        if let Ok(Some(mut order)) = self.ledger.get_order(out_trade_no).await {
            for a in order
                .attempts
                .iter_mut()
                .filter(|a| a.channel == channel && a.outcome == AttemptOutcome::Abandoned)
            {
                a.reason = Some(format!("{ABANDONED_SETTLED} {note}"));
            }
            if let Err(e) = self.ledger.put_order(&order).await {
                warn!(out_trade_no, channel, %e, "cannot record the abandoned attempt's closing");
            }
        }
    }

    /// The late-payment guard: `channel` reports `out_trade_no` paid although payroute closed
    /// or failed the order there, or abandoned its attempt there. The payment is recorded on
    /// the order (durably, before anything is sent) and refunded in full in the background,
    /// under a refund number derived from the order and channel, so that repeats and restarts
    /// never refund twice. `refund_duplicates: false` records it without refunding.
    async fn guard_late_payment(
        &self,
        out_trade_no: &str,
        channel: &str,
        report: &PaymentReport,
        kind: LateKind,
    ) -> Result<(), ServiceError> {
        let refund_on = self.snapshot().refund_duplicates;
        let pending = {
            let _guard = self.locks.lock(out_trade_no).await;
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
                        LateKind::AfterClose => "paid_after_close".to_string(),
                        LateKind::Duplicate => format!("duplicate_payment:{channel}"),
                    };
                    if !order.anomalies.contains(&anomaly) {
                        order.anomalies.push(anomaly);
                    }
                    order.updated_at = now;
                    self.ledger.put_order(&order).await?;
                    self.metrics.record_late_payment(channel, kind);
                    tracing::error!(
                        channel,
                        out_trade_no,
                        amount,
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

    fn spawn_late_refund(&self, out_trade_no: String, channel: String) {
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
    async fn refund_late_payment(&self, out_trade_no: &str, channel: &str) {
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
    async fn try_late_refund(
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
                        Call::Answer(Outcome::Declined { code, message }) => {
                            (LateRefund::Failed, None, Some(Failure { code, message }))
                        }
                        _ => (LateRefund::Pending, None, None),
                    }
                }
            };
        let settled_here = {
            let _guard = self.locks.lock(out_trade_no).await;
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
                    self.ledger.put_order(&order).await?;
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
                amount = late.amount,
                out_refund_no = late.out_refund_no.as_str(),
                "late payment refunded"
            ),
            LateRefund::Failed => tracing::error!(
                out_trade_no,
                channel,
                amount = late.amount,
                "late payment refund refused by the channel: the money needs a person"
            ),
            LateRefund::Pending | LateRefund::Off => {}
        }
        self.metrics.record_late_refund(channel, status);
        Ok(true)
    }

    /// Resolves what a crash left in flight (orders and refunds created before `booted`, when
    /// this process started serving; newer ones are this process's own, still being worked
    /// on): attempts in doubt are queried (barcode payments queried, then reversed),
    /// abandoned attempts closed, late payments refunded and pending refunds confirmed, all
    /// concurrently (at most 16 channel conversations at a time).
    pub async fn recover(&self, booted: DateTime<Utc>) -> Result<usize, ServiceError> {
        let mut open = self.ledger.unresolved_orders().await?;
        open.retain(|o| o.created_at < booted);
        let mut refunds = self.ledger.pending_refunds().await?;
        refunds.retain(|r| r.created_at < booted);
        let n = open.len() + refunds.len();
        let Some(me) = self.me.upgrade() else {
            return Ok(n);
        };
        let permits = Arc::new(tokio::sync::Semaphore::new(16));
        let mut tasks = tokio::task::JoinSet::new();
        for o in open {
            let no = o.request.out_trade_no.clone();
            for a in o.unclosed_abandoned() {
                self.spawn_close_abandoned(no.clone(), a.channel.clone());
            }
            for l in o
                .late_payments
                .iter()
                .filter(|l| l.refund_status == LateRefund::Pending)
            {
                self.spawn_late_refund(no.clone(), l.channel.clone());
            }
            if o.status != PaymentStatus::Pending || !o.in_doubt() {
                continue;
            }
            let (me, permits) = (me.clone(), permits.clone());
            let channel = o.channel.clone().unwrap_or_default();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = if o.request.scene == Scene::Barcode {
                    // Query until known, reverse when it cannot be confirmed.
                    me.resolve_barcode(o).await.map(|_| ())
                } else {
                    me.refresh(&no, Traffic::Settle).await.map(|_| ())
                };
                if let Err(e) = result {
                    warn!(out_trade_no = no.as_str(), channel = channel.as_str(), %e, "recovery failed; the order stays in doubt");
                }
            });
        }
        for r in refunds {
            let (me, permits) = (me.clone(), permits.clone());
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                if let Err(e) = me.refresh_refund(&r.out_refund_no, Traffic::Settle).await {
                    warn!(out_refund_no = r.out_refund_no.as_str(), out_trade_no = r.out_trade_no.as_str(), channel = r.channel.as_str(), %e, "recovery refund query failed");
                }
            });
        }
        while tasks.join_next().await.is_some() {}
        Ok(n)
    }
}

/// Takes one call from the channel's rate limit; `Some(wait)` when it is exhausted.
fn take_quota(entry: &ChannelEntry) -> Option<Duration> {
    use governor::clock::Clock as _;
    let limiter = entry.limiter.as_ref()?;
    match limiter.check() {
        Ok(()) => None,
        Err(not_until) => {
            Some(not_until.wait_time_from(governor::clock::DefaultClock::default().now()))
        }
    }
}

fn paid_conflict(out_trade_no: &str) -> ServiceError {
    ServiceError::Conflict {
        code: "order_paid",
        detail: format!("payment {out_trade_no} is already paid and cannot be closed"),
    }
}

fn not_refundable(order: &Order) -> ServiceError {
    ServiceError::Conflict {
        code: "not_refundable",
        detail: format!(
            "payment {} is {:?}; only paid payments can be refunded",
            order.request.out_trade_no, order.status
        ),
    }
}

/// Applies a channel's report to the order. A paid report whose amount differs from the
/// order's is refused (it would mean someone paid something else).
fn apply_report(order: &mut Order, report: &PaymentReport) -> Result<(), String> {
    if let (ChannelPayState::Paid, Some(amount)) = (report.state, report.amount) {
        if amount != order.request.amount {
            return Err(format!(
                "channel reports {amount} fen paid, the order is for {} fen",
                order.request.amount
            ));
        }
    }
    let (status, trade_no) = (order.status, order.channel_trade_no.clone());
    if report.channel_trade_no.is_some() {
        order.channel_trade_no.clone_from(&report.channel_trade_no);
    }
    match (order.status, report.state) {
        (PaymentStatus::Pending, ChannelPayState::Paid) => {
            order.status = PaymentStatus::Succeeded;
            order.failure = None;
        }
        // A closed or failed order reported paid is the late-payment guard's business
        // (`guard_late_payment`); the order's own state does not change.
        (PaymentStatus::Pending, ChannelPayState::Closed) => order.status = PaymentStatus::Closed,
        _ => {}
    }
    if order.status != status || order.channel_trade_no != trade_no {
        order.updated_at = Utc::now();
    }
    Ok(())
}
