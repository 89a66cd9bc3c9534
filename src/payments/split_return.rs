//! Split returns: pulling shared money back from a receiver, on its own or to fund a refund.
//!
//! A refund of a split payment takes only what the merchant holds. When it needs more, the app
//! names returns that succeeded (`split_returns: [...]`) or asks payroute to return from the
//! receivers first (`split_returns: "auto"`): the returns and the refund are recorded together,
//! and the refund is sent only once every return it needs has succeeded — or, on a channel
//! whose refund carries the returns (Alipay), with them in the same call.

use super::*;
use crate::channels::{ChannelReturnState, RefundReturn, ReturnReport, SplitReturnIntent};
use crate::ledger::{Split, SplitRefusal, SplitReturn, SplitStatus};
use crate::order::splits::auto_return_no;

use super::split::refusal;

/// A split return request from the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReturnRequest {
    pub out_return_no: String,
    pub account: String,
    pub amount: Fen,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// How a refund of a split payment gets money back from receivers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum SplitReturns {
    /// payroute returns what the refund needs beyond what the merchant holds.
    Auto,
    /// Returns (that succeeded) the app made for this refund.
    Listed(Vec<String>),
}

/// Something left pending at a channel, followed in the background.
#[derive(Debug)]
pub(super) enum Pending {
    Split(String),
    Return(String),
    Refund(String),
}

/// Whether a refund's funding is in place.
enum Funding {
    /// Send the refund, carrying these returns (empty: none to carry).
    Ready(Vec<RefundReturn>),
    /// A return it needs is still pending: the refund stays pending, unsent.
    Waiting,
    /// A return it needs failed: the refund cannot be made.
    Failed(Failure),
}

fn return_intent(order: &Order, split: &Split, ret: &SplitReturn) -> SplitReturnIntent {
    SplitReturnIntent {
        out_trade_no: ret.out_trade_no.clone(),
        channel_trade_no: order.channel_trade_no.clone(),
        out_split_no: ret.out_split_no.clone(),
        channel_split_no: split.channel_split_no.clone(),
        out_return_no: ret.out_return_no.clone(),
        receiver_type: ret.receiver_type,
        account: ret.account.clone(),
        amount: ret.amount,
        description: ret.description.clone(),
    }
}

impl Payments {
    /// Takes split money back from one receiver.
    pub async fn split_return(
        &self,
        out_split_no: &str,
        req: ReturnRequest,
    ) -> Result<SplitReturn, ServiceError> {
        let fp = fingerprint(&(out_split_no, &req));
        let split = self
            .ledger
            .get_split(out_split_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("split {out_split_no}")))?;
        let no = split.out_trade_no.clone();
        let _guard = self.lock(&no).await?;
        let order = self.load(&no).await?;
        let snap = self.snapshot();
        let entry =
            snap.channel(&split.channel)
                .ok_or_else(|| ServiceError::ChannelUnavailable {
                    detail: format!(
                        "channel {}, which holds split {out_split_no}, is no longer configured",
                        split.channel
                    ),
                    retry_after: None,
                })?;
        if entry.adapter.returns_with_refund() {
            return Err(ServiceError::Unprocessable {
                code: ErrorCode::OperationUnsupported,
                detail: format!(
                    "channel {} ({}) returns split money only as part of a refund: refund payment {no} with \"split_returns\": \"auto\"",
                    entry.name, entry.kind
                ),
            });
        }
        let Some(share) = split.share(&req.account) else {
            return Err(refusal(&no, SplitRefusal::NoShare(req.account.clone())));
        };
        if !entry.adapter.returnable(share.receiver_type) {
            return Err(ServiceError::Unprocessable {
                code: ErrorCode::OperationUnsupported,
                detail: format!(
                    "channel {} ({}) cannot return split money from {} receivers",
                    entry.name,
                    entry.kind,
                    share.receiver_type.as_str()
                ),
            });
        }
        let now = Utc::now();
        let ret = SplitReturn {
            out_return_no: req.out_return_no.clone(),
            out_split_no: out_split_no.to_string(),
            out_trade_no: no.clone(),
            channel: split.channel.clone(),
            receiver_type: share.receiver_type,
            account: req.account.clone(),
            amount: req.amount,
            description: req
                .description
                .clone()
                .unwrap_or_else(|| format!("return of split {out_split_no}")),
            fingerprint: fp.clone(),
            status: SplitStatus::Pending,
            refund: None,
            with_refund: false,
            sent: false,
            channel_return_no: None,
            failure: None,
            created_at: now,
            updated_at: now,
        };
        let ret = match self.ledger.insert_split_return(ret).await {
            Ok(Inserted::Created(r)) => r,
            Ok(Inserted::Existing(r)) if r.fingerprint != fp => {
                return Err(ServiceError::Conflict {
                    code: ErrorCode::IdempotencyConflict,
                    detail: format!(
                        "out_return_no {} was already used for a different return",
                        r.out_return_no
                    ),
                })
            }
            Ok(Inserted::Existing(r)) if r.status != SplitStatus::Pending => return Ok(r),
            Ok(Inserted::Existing(r)) => {
                return self.resolve_return(&order, r, true, Traffic::New).await
            }
            Err(LedgerError::SplitRefused(r)) => return Err(refusal(&no, r)),
            Err(e) => return Err(e.into()),
        };
        self.send_return(&order, ret, Traffic::New).await
    }

    /// Sends the return (or, with `query`, asks about it); `None` when its channel or split is
    /// gone from the configuration or the ledger.
    async fn return_call(
        &self,
        order: &Order,
        ret: &SplitReturn,
        query: bool,
        traffic: Traffic,
    ) -> Result<Option<Call>, ServiceError> {
        let snap = self.snapshot();
        let (Some(entry), Some(split)) = (
            snap.channel(&ret.channel),
            self.ledger.get_split(&ret.out_split_no).await?,
        ) else {
            return Ok(None);
        };
        let intent = return_intent(order, &split, ret);
        let op = match query {
            true => Op::SplitReturnQuery(&intent),
            false => Op::SplitReturn(&intent),
        };
        Ok(Some(self.call(entry, op, traffic).await))
    }

    async fn send_return(
        &self,
        order: &Order,
        ret: SplitReturn,
        traffic: Traffic,
    ) -> Result<SplitReturn, ServiceError> {
        // Marked before the call, as splits are (see `send_split`).
        let first = !ret.sent;
        let ret = if first {
            let mut marked = ret;
            marked.sent = true;
            self.ledger.update_split_return(&marked).await?
        } else {
            ret
        };
        let Some(call) = self.return_call(order, &ret, false, traffic).await? else {
            return Ok(ret);
        };
        match call {
            Call::Answer(Outcome::SplitReturn(report)) => {
                let processing = report.state == ChannelReturnState::Processing;
                let ret = self.apply_return_report(ret, report).await?;
                if processing && ret.status == SplitStatus::Pending {
                    let ret = self.resolve_return(order, ret, false, traffic).await?;
                    if ret.status == SplitStatus::Pending && ret.refund.is_none() {
                        // (A return that funds a refund is followed with its refund.)
                        self.spawn_follow(Pending::Return(ret.out_return_no.clone()));
                    }
                    return Ok(ret);
                }
                Ok(ret)
            }
            Call::Answer(Outcome::Declined { code, message }) if first => {
                self.settle_return(ret, SplitStatus::Failed, Some((code, message)))
                    .await
            }
            Call::Answer(Outcome::Declined { code, message }) => {
                warn!(out_return_no = ret.out_return_no.as_str(), channel = ret.channel.as_str(), code = code.as_str(), message = message.as_str(),
                    "the channel refused a repeat of a split return that may have been carried out; it stays pending until a query settles it");
                Ok(ret)
            }
            Call::Unsupported(why) => {
                self.settle_return(
                    ret,
                    SplitStatus::Failed,
                    Some(("operation_unsupported".into(), why)),
                )
                .await
            }
            Call::RateLimited(wait) => Err(ServiceError::RateLimited {
                retry_after: wait,
                detail: format!(
                    "channel {} is at its rate limit; split return {} is recorded as pending: repeat the same request",
                    ret.channel, ret.out_return_no
                ),
            }),
            Call::Answer(_) | Call::NotSent(_) => {
                if ret.refund.is_none() {
                    self.spawn_follow(Pending::Return(ret.out_return_no.clone()));
                }
                Ok(ret)
            }
        }
    }

    async fn apply_return_report(
        &self,
        mut ret: SplitReturn,
        report: ReturnReport,
    ) -> Result<SplitReturn, ServiceError> {
        match report.state {
            ChannelReturnState::Succeeded => {
                ret.channel_return_no = report.channel_return_no.or(ret.channel_return_no);
                self.settle_return(ret, SplitStatus::Succeeded, None).await
            }
            ChannelReturnState::Failed => {
                ret.channel_return_no = report.channel_return_no.or(ret.channel_return_no);
                let reason = report.fail_reason.unwrap_or_else(|| "RETURN_FAILED".into());
                let message = format!("the receiver did not return the money ({reason})");
                self.settle_return(ret, SplitStatus::Failed, Some((reason, message)))
                    .await
            }
            ChannelReturnState::Processing
                if report.channel_return_no.is_some()
                    && report.channel_return_no != ret.channel_return_no =>
            {
                ret.channel_return_no = report.channel_return_no;
                ret.updated_at = Utc::now();
                Ok(self.ledger.update_split_return(&ret).await?)
            }
            _ => Ok(ret),
        }
    }

    async fn settle_return(
        &self,
        mut ret: SplitReturn,
        status: SplitStatus,
        failure: Option<(String, String)>,
    ) -> Result<SplitReturn, ServiceError> {
        let was = ret.status;
        ret.status = status;
        ret.failure = failure.map(|(code, message)| Failure {
            code: FailureCode::Channel(code),
            message,
        });
        ret.updated_at = Utc::now();
        let stored = self.ledger.update_split_return(&ret).await?;
        if was == SplitStatus::Pending && stored.status != SplitStatus::Pending {
            self.metrics
                .record_split_return(&stored.channel, stored.status == SplitStatus::Succeeded);
        }
        Ok(stored)
    }

    /// Asks the channel about a pending return; re-sends it (same number) if it has none.
    async fn resolve_return(
        &self,
        order: &Order,
        ret: SplitReturn,
        resend: bool,
        traffic: Traffic,
    ) -> Result<SplitReturn, ServiceError> {
        if !ret.sent {
            return match resend {
                true => Box::pin(self.send_return(order, ret, traffic)).await,
                false => Ok(ret),
            };
        }
        let Some(call) = self.return_call(order, &ret, true, traffic).await? else {
            return Ok(ret);
        };
        match call {
            Call::Answer(Outcome::SplitReturn(r)) if r.state == ChannelReturnState::NotFound => {
                match resend {
                    true => Box::pin(self.send_return(order, ret, traffic)).await,
                    false => Ok(ret),
                }
            }
            Call::Answer(Outcome::SplitReturn(r)) => self.apply_return_report(ret, r).await,
            _ => Ok(ret),
        }
    }

    /// The return, refreshed from the channel while it is pending.
    pub async fn split_return_query(
        &self,
        out_return_no: &str,
    ) -> Result<SplitReturn, ServiceError> {
        self.refresh_split_return(out_return_no, Traffic::New).await
    }

    pub(super) async fn refresh_split_return(
        &self,
        out_return_no: &str,
        traffic: Traffic,
    ) -> Result<SplitReturn, ServiceError> {
        let ret = self
            .ledger
            .get_split_return(out_return_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("split return {out_return_no}")))?;
        if ret.status != SplitStatus::Pending {
            return Ok(ret);
        }
        if ret.with_refund {
            // Settled with the refund that carries it.
            if let Some(no) = &ret.refund {
                self.refresh_refund(no, traffic).await?;
            }
            return Ok(self
                .ledger
                .get_split_return(out_return_no)
                .await?
                .unwrap_or(ret));
        }
        let ret = {
            let _guard = self.lock(&ret.out_trade_no).await?;
            let order = self.load(&ret.out_trade_no).await?;
            let ret = self
                .ledger
                .get_split_return(out_return_no)
                .await?
                .unwrap_or(ret);
            if ret.status != SplitStatus::Pending {
                return Ok(ret);
            }
            self.resolve_return(&order, ret, true, traffic).await?
        };
        // A refund waiting for this return moves on as soon as the return settles.
        if let (Some(no), false) = (&ret.refund, ret.status == SplitStatus::Pending) {
            self.refresh_refund(no, traffic).await?;
        }
        Ok(ret)
    }

    /// Keeps asking about something left pending at a channel (doubling delays, a bounded
    /// number of times; every GET of it, and recovery at the next start, take over after), so
    /// that it settles — and the app hears of it — without the app asking.
    pub(super) fn spawn_follow(&self, target: Pending) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            let mut delay = me.settings.abandon_retry;
            for _ in 0..8 {
                tokio::time::sleep(delay).await;
                let settled = match &target {
                    Pending::Split(no) => me
                        .refresh_split(no, Traffic::Settle)
                        .await
                        .map(|s| s.status != SplitStatus::Pending),
                    Pending::Return(no) => me
                        .refresh_split_return(no, Traffic::Settle)
                        .await
                        .map(|r| r.status != SplitStatus::Pending),
                    Pending::Refund(no) => me
                        .refresh_refund(no, Traffic::Settle)
                        .await
                        .map(|r| r.status != RefundStatus::Pending),
                };
                match settled {
                    Ok(true) => return,
                    Ok(false) => {}
                    Err(e) => warn!(?target, %e, "following a pending split, return or refund"),
                }
                delay = (delay * 2).min(Duration::from_secs(300));
            }
        });
    }

    /// The returns a refund of a split payment needs (see the module documentation), and the
    /// numbers of all that fund it. `Err` when the receivers cannot give enough back.
    pub(super) async fn plan_funding(
        &self,
        order: &Order,
        entry: &ChannelEntry,
        req: &RefundRequest,
    ) -> Result<(Vec<SplitReturn>, Vec<String>), ServiceError> {
        let no = &order.request.out_trade_no;
        let Some(how) = &req.split_returns else {
            return Ok((vec![], vec![]));
        };
        if !order.request.split {
            return Err(ServiceError::Unprocessable {
                code: ErrorCode::InvalidField,
                detail: format!("split_returns: payment {no} was not created for splits"),
            });
        }
        let names = match how {
            SplitReturns::Listed(names) => names,
            SplitReturns::Auto => return self.plan_auto(order, entry, req).await,
        };
        for name in names {
            let ret = self.ledger.get_split_return(name).await?;
            let Some(ret) = ret.filter(|r| &r.out_trade_no == no) else {
                return Err(ServiceError::Unprocessable {
                    code: ErrorCode::InvalidField,
                    detail: format!("split_returns: {name} is not a split return of payment {no}"),
                });
            };
            match ret.status {
                SplitStatus::Succeeded => {}
                SplitStatus::Pending => {
                    return Err(ServiceError::Conflict {
                        code: ErrorCode::SplitPending,
                        detail: format!("split return {name} is pending: query it (GET /v1/split-returns/{name}) and refund once it succeeded"),
                    })
                }
                SplitStatus::Failed => {
                    return Err(ServiceError::Unprocessable {
                        code: ErrorCode::InvalidField,
                        detail: format!("split_returns: split return {name} failed and funds nothing"),
                    })
                }
            }
        }
        Ok((vec![], names.clone()))
    }

    async fn plan_auto(
        &self,
        order: &Order,
        entry: &ChannelEntry,
        req: &RefundRequest,
    ) -> Result<(Vec<SplitReturn>, Vec<String>), ServiceError> {
        let held = order.held();
        if req.amount <= held {
            return Ok((vec![], vec![]));
        }
        let mut missing = req.amount.get() - held.get();
        let with_refund = entry.adapter.returns_with_refund();
        let now = Utc::now();
        let mut returns = Vec::new();
        let splits = self.ledger.splits_of(&order.request.out_trade_no).await?;
        for split in splits.iter().rev() {
            for share in &split.shares {
                let take = share.returnable().get().min(missing);
                if take == 0 || !entry.adapter.returnable(share.receiver_type) {
                    continue;
                }
                missing -= take;
                let out_return_no = auto_return_no(&req.out_refund_no, returns.len() + 1);
                returns.push(SplitReturn {
                    out_return_no,
                    out_split_no: split.out_split_no.clone(),
                    out_trade_no: split.out_trade_no.clone(),
                    channel: split.channel.clone(),
                    receiver_type: share.receiver_type,
                    account: share.account.clone(),
                    amount: Fen(take),
                    description: format!("refund {}", req.out_refund_no),
                    fingerprint: String::new(),
                    status: SplitStatus::Pending,
                    refund: Some(req.out_refund_no.clone()),
                    with_refund,
                    sent: false,
                    channel_return_no: None,
                    failure: None,
                    created_at: now,
                    updated_at: now,
                });
            }
        }
        if missing > 0 && splits.iter().any(|s| s.status == SplitStatus::Pending) {
            return Err(ServiceError::Conflict {
                code: ErrorCode::SplitPending,
                detail: format!(
                    "a split of payment {} is pending: its shares cannot be returned yet; query it and refund once it settled",
                    order.request.out_trade_no
                ),
            });
        }
        if missing > 0 {
            return Err(exceeds_held(order, req.amount, Some(missing)));
        }
        let names = returns.iter().map(|r| r.out_return_no.clone()).collect();
        Ok((returns, names))
    }

    /// Drives the returns a refund needs; says whether the refund can be sent.
    async fn funding(
        &self,
        order: &Order,
        refund: &Refund,
        traffic: Traffic,
    ) -> Result<Funding, ServiceError> {
        let mut carried = Vec::new();
        let mut waiting = false;
        for no in &refund.funded_by {
            let Some(ret) = self.ledger.get_split_return(no).await? else {
                continue;
            };
            if ret.with_refund {
                if ret.status == SplitStatus::Pending {
                    carried.push(RefundReturn {
                        out_return_no: ret.out_return_no,
                        receiver_type: ret.receiver_type,
                        account: ret.account,
                        amount: ret.amount,
                    });
                }
                continue;
            }
            let ret = match ret.status {
                SplitStatus::Pending => self.resolve_return(order, ret, true, traffic).await?,
                _ => ret,
            };
            match ret.status {
                SplitStatus::Succeeded => {}
                SplitStatus::Pending => waiting = true,
                SplitStatus::Failed => {
                    let why = ret.failure.map(|f| f.message).unwrap_or_default();
                    return Ok(Funding::Failed(Failure {
                        code: FailureCode::Channel("split_return_failed".into()),
                        message: format!(
                            "split return {no} from {} failed ({why}); nothing was refunded",
                            ret.account
                        ),
                    }));
                }
            }
        }
        Ok(if waiting {
            Funding::Waiting
        } else {
            Funding::Ready(carried)
        })
    }

    /// The returns to send with the refund, or `Err(refund)` when it must not be sent (yet).
    pub(super) async fn funded(
        &self,
        order: &Order,
        refund: Refund,
        traffic: Traffic,
    ) -> Result<Result<(Refund, Vec<RefundReturn>), Refund>, ServiceError> {
        if refund.funded_by.is_empty() {
            return Ok(Ok((refund, vec![])));
        }
        match self.funding(order, &refund, traffic).await? {
            Funding::Ready(carried) => Ok(Ok((refund, carried))),
            Funding::Waiting => {
                self.spawn_follow(Pending::Refund(refund.out_refund_no.clone()));
                Ok(Err(refund))
            }
            Funding::Failed(f) => Ok(Err(self
                .settle(refund, RefundStatus::Failed, Some(f))
                .await?)),
        }
    }
}

/// The answer to a refund larger than what the merchant holds for a split payment.
pub(super) fn exceeds_held(order: &Order, amount: Fen, missing: Option<u64>) -> ServiceError {
    let no = &order.request.out_trade_no;
    let out = order.split_reserved.saturating_sub(order.split_returned);
    let tail = match missing {
        Some(m) => format!("; the receivers can return {m} fen less than that needs"),
        None => "; return split money first (POST /v1/splits/{out_split_no}/returns) and name the returns in \"split_returns\", or refund with \"split_returns\": \"auto\"".to_string(),
    };
    ServiceError::Unprocessable {
        code: ErrorCode::RefundExceedsHeld,
        detail: format!(
            "amount {amount} exceeds what the merchant holds for payment {no}: {} fen ({out} fen are with split receivers){tail}",
            order.held()
        ),
    }
}
