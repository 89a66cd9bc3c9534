//! Profit sharing: splits of a paid payment to receivers, and returns of split money, with the
//! pure transitions every ledger backend applies inside the write that stores them.
//!
//! The money a payment leaves with the merchant is [`Order::held`]: paid, minus refunds
//! (pending and succeeded), minus shares (pending and succeeded), plus returns that succeeded.
//! A split or a refund may take only what is held, so that neither ever spends money that has
//! left the merchant's account; a return may take from a receiver only what that receiver got.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Failure, Order};
use crate::domain::ReceiverType;
use crate::money::Fen;

/// Where a split, a share or a return stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitStatus {
    /// Recorded; sent or about to be, not settled at the channel yet.
    Pending,
    /// Settled at the channel. For a split: every share is final (each succeeded or failed).
    Succeeded,
    /// Refused: no money moved (for a split, the channel refused the whole split).
    Failed,
}

/// One receiver's share of a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    #[serde(rename = "type")]
    pub receiver_type: ReceiverType,
    pub account: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The relation the receiver is registered with (WeChat `relation_type`), when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relation: Option<String>,
    pub amount: Fen,
    pub description: String,
    pub status: SplitStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail_id: Option<String>,
    /// Returns from this share: pending and succeeded (fen).
    #[serde(default)]
    pub returned: Fen,
}

impl Share {
    /// What can still be returned from this share.
    pub fn returnable(&self) -> Fen {
        if self.status == SplitStatus::Succeeded {
            self.amount.saturating_sub(self.returned)
        } else {
            Fen::ZERO
        }
    }
}

/// A split of a paid payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub out_split_no: String,
    pub out_trade_no: String,
    /// The channel that took the payment: a split is never sent anywhere else.
    pub channel: String,
    pub shares: Vec<Share>,
    /// Unfreeze what is not shared once this split is done (no split can follow).
    pub finish: bool,
    pub fingerprint: String,
    pub status: SplitStatus,
    /// Sent to the channel at least once: from then on only a query says it does not exist,
    /// and a refusal of a repeat is not taken as the split's failure.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_split_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Split {
    /// Fen the shares take from the merchant (pending and succeeded ones).
    pub fn reserved(&self) -> Fen {
        self.shares
            .iter()
            .filter(|s| s.status != SplitStatus::Failed)
            .fold(Fen::ZERO, |sum, s| sum + s.amount)
    }

    /// The total of the shares as asked.
    pub fn total(&self) -> Fen {
        self.shares.iter().fold(Fen::ZERO, |sum, s| sum + s.amount)
    }

    /// The share of `account`.
    pub fn share(&self, account: &str) -> Option<&Share> {
        self.shares.iter().find(|s| s.account == account)
    }

    fn share_mut(&mut self, account: &str) -> Option<&mut Share> {
        self.shares.iter_mut().find(|s| s.account == account)
    }
}

/// Money pulled back from one receiver of a split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitReturn {
    pub out_return_no: String,
    pub out_split_no: String,
    pub out_trade_no: String,
    pub channel: String,
    #[serde(rename = "receiver_type")]
    pub receiver_type: ReceiverType,
    pub account: String,
    pub amount: Fen,
    pub description: String,
    pub fingerprint: String,
    pub status: SplitStatus,
    /// The refund this return funds, when payroute made it for one (`split_returns: "auto"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<String>,
    /// Sent as part of that refund (Alipay `refund_royalty_parameters`), settled with it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub with_refund: bool,
    /// Sent to the channel at least once (see [`Split::sent`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sent: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_return_no: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a split or a return cannot be recorded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitRefusal {
    #[error("the payment is not paid")]
    NotPaid,
    #[error("the payment was not created for profit sharing (\"split\": true)")]
    NotSplitPayment,
    #[error("the payment's splits are finished: the rest was settled to the merchant")]
    Finished,
    #[error("the split exceeds what the merchant holds for the payment ({available} fen)")]
    ExceedsHeld { available: Fen },
    #[error("the split has no share for receiver {0}")]
    NoShare(String),
    #[error(
        "the share of receiver {0} has not arrived (the split is pending or the share failed)"
    )]
    ShareNotSettled(String),
    #[error("the return exceeds what the receiver still has from this split ({available} fen)")]
    ExceedsReturnable { available: Fen },
    #[error("split return number {0} is taken by another return")]
    ReturnNumberTaken(String),
}

impl Order {
    /// What the payment leaves with the merchant (see the module documentation).
    pub fn held(&self) -> Fen {
        if !self.status.is_paid() {
            return Fen::ZERO;
        }
        let plus = self.request.amount.get() + self.split_returned.get();
        let minus = self.refund_reserved.get() + self.split_reserved.get();
        Fen::from(plus.saturating_sub(minus))
    }
}

/// Records a new split on its order: checks it may be made and reserves its shares.
pub fn reserve_split(order: &mut Order, split: &Split) -> Result<(), SplitRefusal> {
    if !order.status.is_paid() {
        return Err(SplitRefusal::NotPaid);
    }
    if !order.request.split {
        return Err(SplitRefusal::NotSplitPayment);
    }
    if order.split_finished {
        return Err(SplitRefusal::Finished);
    }
    let available = order.held();
    if split.total() > available {
        return Err(SplitRefusal::ExceedsHeld { available });
    }
    order.split_reserved += split.total();
    order.split_finished |= split.finish;
    order.updated_at = split.created_at;
    Ok(())
}

/// Applies a split's new state (`after`, over the stored `before`) to itself and its order.
/// Only pending things move: a settled split or share never changes again. Returns the split
/// as it is to be stored.
pub fn apply_split_transition(order: &mut Order, before: &Split, after: &Split) -> Split {
    if before.status != SplitStatus::Pending {
        return before.clone();
    }
    let mut stored = before.clone();
    stored.status = after.status;
    stored.sent |= after.sent;
    if after.status == SplitStatus::Failed
        && before
            .shares
            .iter()
            .any(|s| s.status == SplitStatus::Succeeded)
    {
        // Money reached a receiver: whatever refused, the split did not fail.
        stored.status = SplitStatus::Pending;
    }
    stored.failure.clone_from(&after.failure);
    if after.channel_split_no.is_some() {
        stored.channel_split_no.clone_from(&after.channel_split_no);
    }
    stored.updated_at = after.updated_at;
    for share in &mut stored.shares {
        let new = after.share(&share.account);
        if share.status == SplitStatus::Pending {
            let status = match (stored.status, new) {
                (SplitStatus::Failed, _) => SplitStatus::Failed,
                (_, Some(n)) => n.status,
                (_, None) => SplitStatus::Pending,
            };
            if status == SplitStatus::Failed {
                order.split_reserved = order.split_reserved.saturating_sub(share.amount);
            }
            share.status = status;
        }
        if let Some(n) = new {
            if n.fail_reason.is_some() {
                share.fail_reason.clone_from(&n.fail_reason);
            }
            if n.detail_id.is_some() {
                share.detail_id.clone_from(&n.detail_id);
            }
        }
    }
    if stored.status == SplitStatus::Failed && stored.finish {
        // The channel refused the whole split: it finished nothing, later splits may follow.
        order.split_finished = false;
    }
    // A split settles only once every share has; when every share failed, nothing was shared.
    if stored.status == SplitStatus::Succeeded {
        if stored
            .shares
            .iter()
            .any(|s| s.status == SplitStatus::Pending)
        {
            stored.status = SplitStatus::Pending;
        } else if !stored.shares.is_empty()
            && stored
                .shares
                .iter()
                .all(|s| s.status == SplitStatus::Failed)
        {
            stored.status = SplitStatus::Failed;
        }
    }
    order.updated_at = after.updated_at;
    stored
}

/// Records a new return on its split: checks the receiver has the money and reserves it.
pub fn reserve_return(split: &mut Split, ret: &SplitReturn) -> Result<(), SplitRefusal> {
    let Some(share) = split.share_mut(&ret.account) else {
        return Err(SplitRefusal::NoShare(ret.account.clone()));
    };
    if share.status != SplitStatus::Succeeded {
        return Err(SplitRefusal::ShareNotSettled(ret.account.clone()));
    }
    let available = share.returnable();
    if ret.amount > available {
        return Err(SplitRefusal::ExceedsReturnable { available });
    }
    share.returned += ret.amount;
    split.updated_at = ret.created_at;
    Ok(())
}

/// Applies a return's new state to its split and order. Returns the return as it is to be
/// stored (a settled return never changes again).
pub fn apply_return_transition(
    order: &mut Order,
    split: &mut Split,
    before: &SplitReturn,
    after: &SplitReturn,
) -> SplitReturn {
    if before.status != SplitStatus::Pending {
        return before.clone();
    }
    let mut stored = after.clone();
    stored.fingerprint.clone_from(&before.fingerprint);
    stored.sent |= before.sent;
    match after.status {
        SplitStatus::Succeeded => {
            order.split_returned += after.amount;
            order.updated_at = after.updated_at;
        }
        SplitStatus::Failed => {
            if let Some(share) = split.share_mut(&after.account) {
                share.returned = share.returned.saturating_sub(after.amount);
            }
            split.updated_at = after.updated_at;
        }
        SplitStatus::Pending => {}
    }
    stored
}

/// A number payroute makes for a return that funds the refund `out_refund_no` (the `n`th):
/// deterministic, so a repeat of the refund finds the same returns; at most 64 characters of
/// what the refund number used.
pub fn auto_return_no(out_refund_no: &str, n: usize) -> String {
    let plain = format!("{out_refund_no}_R{n}");
    if plain.len() <= 64 {
        plain
    } else {
        let tag = &crate::crypto::sha256_hex(out_refund_no.as_bytes())[..24];
        format!("{tag}_R{n}")
    }
}

#[cfg(test)]
mod tests;
