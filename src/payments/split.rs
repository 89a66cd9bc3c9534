//! Splits: sharing part of a paid payment with receivers, at the channel that took it.
//!
//! A split is recorded (its shares reserved on the order) before anything is sent; receivers
//! are registered with the channel on first use; a split whose outcome is unknown stays
//! pending and is resolved by a query with the same number, which re-sends it only when the
//! channel has none (channels answer a repeated number idempotently).

use super::*;
use crate::channels::{
    ChannelSplitState, ReceiverIntent, ShareIntent, ShareState, SplitIntent, SplitReport,
};
use crate::domain::ReceiverType;
use crate::ledger::{ReceiverKey, Share, Split, SplitRefusal, SplitStatus};

/// One receiver of a split request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReceiverRequest {
    #[serde(rename = "type")]
    pub receiver_type: ReceiverType,
    pub account: String,
    pub amount: Fen,
    pub description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
}

/// A split request from the API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SplitRequest {
    pub out_split_no: String,
    pub receivers: Vec<ReceiverRequest>,
    pub finish: bool,
}

pub(super) fn split_intent(order: &Order, split: &Split) -> SplitIntent {
    SplitIntent {
        out_trade_no: split.out_trade_no.clone(),
        channel_trade_no: order.channel_trade_no.clone(),
        out_split_no: split.out_split_no.clone(),
        channel_split_no: split.channel_split_no.clone(),
        shares: split
            .shares
            .iter()
            .map(|s| ShareIntent {
                receiver_type: s.receiver_type,
                account: s.account.clone(),
                name: s.name.clone(),
                amount: s.amount,
                description: s.description.clone(),
            })
            .collect(),
        finish: split.finish,
        total: order.request.amount,
    }
}

/// The answer to a split or return the ledger refused.
pub(super) fn refusal(out_trade_no: &str, r: SplitRefusal) -> ServiceError {
    let detail = format!("payment {out_trade_no}: {r}");
    match r {
        SplitRefusal::NotPaid | SplitRefusal::NotSplitPayment | SplitRefusal::Finished => {
            ServiceError::Conflict {
                code: ErrorCode::SplitNotAllowed,
                detail,
            }
        }
        SplitRefusal::ExceedsHeld { .. } => ServiceError::Unprocessable {
            code: ErrorCode::SplitExceedsHeld,
            detail,
        },
        SplitRefusal::NoShare(_) => ServiceError::Unprocessable {
            code: ErrorCode::InvalidField,
            detail,
        },
        SplitRefusal::ShareNotSettled(_) => ServiceError::Conflict {
            code: ErrorCode::SplitPending,
            detail,
        },
        SplitRefusal::ExceedsReturnable { .. } => ServiceError::Unprocessable {
            code: ErrorCode::ReturnExceedsSplit,
            detail,
        },
        SplitRefusal::ReturnNumberTaken(_) => ServiceError::Conflict {
            code: ErrorCode::IdempotencyConflict,
            detail,
        },
    }
}

impl Payments {
    /// Shares part of a paid split payment with receivers.
    pub async fn split(
        &self,
        out_trade_no: &str,
        req: SplitRequest,
    ) -> Result<Split, ServiceError> {
        let fp = fingerprint(&(out_trade_no, &req));
        let _guard = self.lock(out_trade_no).await?;
        let order = self.load(out_trade_no).await?;
        let Some(channel) = order.channel.clone().filter(|_| order.status.is_paid()) else {
            return Err(refusal(out_trade_no, SplitRefusal::NotPaid));
        };
        let snap = self.snapshot();
        let entry = snap.channel(&channel).ok_or_else(|| ServiceError::ChannelUnavailable {
            detail: format!("channel {channel}, which took payment {out_trade_no}, is no longer configured; a split goes only to it"),
            retry_after: None,
        })?;
        let adapter = &entry.adapter;
        if !adapter.can_split() {
            return Err(ServiceError::Unprocessable {
                code: ErrorCode::OperationUnsupported,
                detail: format!("channel {channel} ({}) does not split payments", entry.kind),
            });
        }
        if req.receivers.is_empty() && !adapter.can_finish_alone() {
            return Err(ServiceError::Unprocessable {
                code: ErrorCode::OperationUnsupported,
                detail: format!(
                    "channel {channel} ({}) cannot finish without a receiver: send the last split with \"finish\": true",
                    entry.kind
                ),
            });
        }
        for (i, r) in req.receivers.iter().enumerate() {
            if r.name.is_none() && adapter.requires_name(r.receiver_type) {
                return Err(ServiceError::Unprocessable {
                    code: ErrorCode::MissingField,
                    detail: format!(
                        "receivers[{i}].name: channel {channel} ({}) registers a {} receiver only with its name",
                        entry.kind,
                        r.receiver_type.as_str()
                    ),
                });
            }
            if !adapter.receiver_types().contains(&r.receiver_type) {
                let takes: Vec<&str> = adapter
                    .receiver_types()
                    .iter()
                    .map(|t| t.as_str())
                    .collect();
                return Err(ServiceError::Unprocessable {
                    code: ErrorCode::InvalidField,
                    detail: format!(
                        "receivers: type {} is not taken by channel {channel} ({}), which takes {}",
                        r.receiver_type.as_str(),
                        entry.kind,
                        takes.join(", ")
                    ),
                });
            }
        }
        let now = Utc::now();
        let split = Split {
            out_split_no: req.out_split_no.clone(),
            out_trade_no: out_trade_no.to_string(),
            channel,
            shares: req
                .receivers
                .iter()
                .map(|r| Share {
                    receiver_type: r.receiver_type,
                    account: r.account.clone(),
                    name: r.name.clone(),
                    relation: r.relation.clone(),
                    amount: r.amount,
                    description: r.description.clone(),
                    status: SplitStatus::Pending,
                    fail_reason: None,
                    detail_id: None,
                    returned: Fen::ZERO,
                })
                .collect(),
            finish: req.finish,
            fingerprint: fp.clone(),
            status: SplitStatus::Pending,
            sent: false,
            channel_split_no: None,
            failure: None,
            created_at: now,
            updated_at: now,
        };
        let split = match self.ledger.insert_split(split).await {
            Ok(Inserted::Created(s)) => s,
            Ok(Inserted::Existing(s)) if s.fingerprint != fp || s.out_trade_no != out_trade_no => {
                return Err(ServiceError::Conflict {
                    code: ErrorCode::IdempotencyConflict,
                    detail: format!(
                        "out_split_no {} was already used for a different split",
                        s.out_split_no
                    ),
                })
            }
            Ok(Inserted::Existing(s)) if s.status != SplitStatus::Pending => return Ok(s),
            Ok(Inserted::Existing(s)) => {
                return self.resolve_split(&order, s, true, Traffic::New).await
            }
            Err(LedgerError::SplitRefused(r)) => return Err(refusal(out_trade_no, r)),
            Err(e) => return Err(e.into()),
        };
        self.send_split(&order, split, Traffic::New).await
    }

    /// Registers the split's receivers that are not yet, then sends the split.
    pub(super) async fn send_split(
        &self,
        order: &Order,
        split: Split,
        traffic: Traffic,
    ) -> Result<Split, ServiceError> {
        let snap = self.snapshot();
        let Some(entry) = snap.channel(&split.channel) else {
            return Ok(split);
        };
        for share in &split.shares {
            let key = ReceiverKey {
                channel: split.channel.clone(),
                receiver_type: share.receiver_type,
                account: share.account.clone(),
            };
            if self.ledger.receiver_bound(&key).await? {
                continue;
            }
            let receiver = ReceiverIntent {
                receiver_type: share.receiver_type,
                account: share.account.clone(),
                name: share.name.clone(),
                relation: share.relation.clone(),
                request_no: receiver_request_no(&key),
            };
            let op = Op::BindReceiver {
                out_trade_no: &split.out_trade_no,
                receiver: &receiver,
            };
            match self.call(entry, op, traffic).await {
                Call::Answer(Outcome::Bound) => self.ledger.record_receiver(&key).await?,
                Call::Answer(Outcome::Declined { code, message }) => {
                    let message = format!(
                        "receiver {} could not be registered: {message}",
                        share.account
                    );
                    return self.fail_split(split, code, message).await;
                }
                Call::RateLimited(wait) => return Err(split_rate_limited(entry, &split, wait)),
                // Unknown, or not sent: nothing was split; a repeat or recovery tries again.
                _ => return Ok(split),
            }
        }
        // Marked before the call: once it may have reached the channel, only a query can say
        // that it did not (a refused repeat proves nothing about the first).
        let first = !split.sent;
        let split = if first {
            let mut marked = split;
            marked.sent = true;
            self.ledger.update_split(&marked).await?
        } else {
            split
        };
        let intent = split_intent(order, &split);
        let op = if split.shares.is_empty() {
            Op::SplitFinish(&intent)
        } else {
            Op::Split(&intent)
        };
        match self.call(entry, op, traffic).await {
            Call::Answer(Outcome::Split(report)) => {
                let processing = report.state != ChannelSplitState::Finished;
                let split = self.apply_split_report(split, report).await?;
                if processing && split.status == SplitStatus::Pending {
                    // Asynchronous at the channel: look once right away (cheap, often settled),
                    // then keep following it in the background.
                    let split = self.resolve_split(order, split, false, traffic).await?;
                    if split.status == SplitStatus::Pending {
                        self.spawn_follow(super::split_return::Pending::Split(
                            split.out_split_no.clone(),
                        ));
                    }
                    return Ok(split);
                }
                Ok(split)
            }
            Call::Answer(Outcome::Declined { code, message }) if first => {
                self.fail_split(split, code, message).await
            }
            Call::Answer(Outcome::Declined { code, message }) => {
                warn!(out_split_no = split.out_split_no.as_str(), channel = split.channel.as_str(), code = code.as_str(), message = message.as_str(),
                    "the channel refused a repeat of a split that may have been carried out; it stays pending until a query settles it");
                Ok(split)
            }
            Call::Unsupported(why) => {
                self.fail_split(split, "operation_unsupported".into(), why)
                    .await
            }
            Call::RateLimited(wait) => Err(split_rate_limited(entry, &split, wait)),
            Call::Answer(_) | Call::NotSent(_) => {
                self.spawn_follow(super::split_return::Pending::Split(
                    split.out_split_no.clone(),
                ));
                Ok(split)
            }
        }
    }

    async fn fail_split(
        &self,
        mut split: Split,
        code: String,
        message: String,
    ) -> Result<Split, ServiceError> {
        let was = split.status;
        split.status = SplitStatus::Failed;
        split.failure = Some(Failure {
            code: FailureCode::Channel(code),
            message,
        });
        split.updated_at = Utc::now();
        let stored = self.ledger.update_split(&split).await?;
        if was == SplitStatus::Pending && stored.status == SplitStatus::Failed {
            self.metrics.record_split(&stored.channel, false, 0);
        }
        Ok(stored)
    }

    /// Records what the channel said about the split. A report whose shares do not match the
    /// split (another account or amount) is not applied: it is logged and the split stays as
    /// it was, to be asked again.
    async fn apply_split_report(
        &self,
        split: Split,
        report: SplitReport,
    ) -> Result<Split, ServiceError> {
        let mut after = split.clone();
        if report.channel_split_no.is_some() {
            after.channel_split_no = report.channel_split_no.clone();
        }
        for r in &report.shares {
            let Some(share) = after.shares.iter_mut().find(|s| s.account == r.account) else {
                warn!(
                    out_split_no = split.out_split_no.as_str(),
                    account = r.account.as_str(),
                    "split report names a receiver the split does not have; not applied"
                );
                return Ok(split);
            };
            if share.amount != r.amount {
                warn!(
                    out_split_no = split.out_split_no.as_str(),
                    account = r.account.as_str(),
                    reported = r.amount.get(),
                    "split report gives another amount; not applied"
                );
                return Ok(split);
            }
            share.status = match r.state {
                ShareState::Pending => SplitStatus::Pending,
                ShareState::Succeeded => SplitStatus::Succeeded,
                ShareState::Failed => SplitStatus::Failed,
            };
            share.fail_reason.clone_from(&r.fail_reason);
            share.detail_id.clone_from(&r.detail_id);
        }
        after.status = match report.state {
            ChannelSplitState::Finished => SplitStatus::Succeeded,
            _ => SplitStatus::Pending,
        };
        if after == split {
            return Ok(split);
        }
        after.updated_at = Utc::now();
        let stored = self.ledger.update_split(&after).await?;
        if split.status == SplitStatus::Pending && stored.status != SplitStatus::Pending {
            let shared = stored
                .shares
                .iter()
                .filter(|s| s.status == SplitStatus::Succeeded)
                .fold(Fen::ZERO, |sum, s| sum + s.amount);
            self.metrics.record_split(
                &stored.channel,
                stored.status == SplitStatus::Succeeded,
                shared.get(),
            );
        }
        Ok(stored)
    }

    /// Asks the channel about a pending split; re-sends it (same number) if the channel has none.
    pub(super) async fn resolve_split(
        &self,
        order: &Order,
        split: Split,
        resend: bool,
        traffic: Traffic,
    ) -> Result<Split, ServiceError> {
        let snap = self.snapshot();
        let Some(entry) = snap.channel(&split.channel) else {
            return Ok(split);
        };
        if !split.sent {
            // Never sent: nothing to look up.
            return match resend {
                true => Box::pin(self.send_split(order, split, traffic)).await,
                false => Ok(split),
            };
        }
        let intent = split_intent(order, &split);
        match self.call(entry, Op::SplitQuery(&intent), traffic).await {
            Call::Answer(Outcome::Split(report)) if report.state == ChannelSplitState::NotFound => {
                match resend {
                    true => Box::pin(self.send_split(order, split, traffic)).await,
                    false => Ok(split),
                }
            }
            Call::Answer(Outcome::Split(report)) => self.apply_split_report(split, report).await,
            _ => Ok(split),
        }
    }

    /// The split, refreshed from the channel while it is pending.
    pub async fn split_query(&self, out_split_no: &str) -> Result<Split, ServiceError> {
        self.refresh_split(out_split_no, Traffic::New).await
    }

    pub(super) async fn refresh_split(
        &self,
        out_split_no: &str,
        traffic: Traffic,
    ) -> Result<Split, ServiceError> {
        let split = self
            .ledger
            .get_split(out_split_no)
            .await?
            .ok_or_else(|| ServiceError::NotFound(format!("split {out_split_no}")))?;
        if split.status != SplitStatus::Pending {
            return Ok(split);
        }
        let _guard = self.lock(&split.out_trade_no).await?;
        let order = self.load(&split.out_trade_no).await?;
        let split = self.ledger.get_split(out_split_no).await?.unwrap_or(split);
        if split.status != SplitStatus::Pending {
            return Ok(split);
        }
        self.resolve_split(&order, split, true, traffic).await
    }
}

/// The request number of a receiver registration (the same for every repeat).
fn receiver_request_no(key: &ReceiverKey) -> String {
    format!(
        "BIND_{}",
        &crate::crypto::sha256_hex(key.text().as_bytes())[..24]
    )
}

fn split_rate_limited(entry: &ChannelEntry, split: &Split, wait: Duration) -> ServiceError {
    ServiceError::RateLimited {
        retry_after: wait,
        detail: format!(
            "channel {} is at its rate limit; split {} is recorded as pending: repeat the same request",
            entry.name, split.out_split_no
        ),
    }
}
