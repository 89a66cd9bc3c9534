//! The ledger's own write rules, shared by every backend: each backend reads the stored
//! records inside its transaction, calls these, and writes what they return (refunds, split
//! returns, outbox deliveries). Keeping them pure
//! and in one place is what makes the backends behave alike (the money rules of splits and
//! refunds themselves live in `order` and `order::splits`).

use chrono::{DateTime, Utc};

use super::events::{Delivery, DeliveryState, DeliveryUpdate, Event, Subject};
use super::{apply_refund_transition, LedgerError, Order, Refund, Split, SplitReturn};
use crate::domain::RefundStatus;
use crate::money::Fen;
use crate::order::splits::{reserve_return, SplitRefusal, SplitStatus};

/// The compare-and-set of an order write: the writer read the order at version `read`, which
/// must still be the stored one (an order not stored yet has none: its first write stores it).
pub fn check_version(stored: Option<&Order>, no: &str, read: u64) -> Result<(), LedgerError> {
    match stored {
        Some(s) if s.version != read => Err(LedgerError::Stale {
            no: no.to_string(),
            read,
            stored: s.version,
        }),
        _ => Ok(()),
    }
}

/// Reserves a new refund on its order: the order must have been paid, every return must fund
/// exactly this refund, and the refund may take what the order holds plus those returns. The
/// returns themselves are reserved on their splits by the caller (`reserve_return`).
pub fn reserve_refund(
    order: &mut Order,
    refund: &Refund,
    returns: &[SplitReturn],
) -> Result<(), LedgerError> {
    if !order.status.is_paid() {
        return Err(LedgerError::NotRefundable(order.status));
    }
    for ret in returns {
        let theirs = ret.out_trade_no == refund.out_trade_no
            && ret.refund.as_deref() == Some(refund.out_refund_no.as_str())
            && refund.funded_by.contains(&ret.out_return_no);
        if !theirs {
            return Err(LedgerError::Inconsistent(format!(
                "split return {} does not fund refund {}",
                ret.out_return_no, refund.out_refund_no
            )));
        }
    }
    let funding = returns.iter().fold(Fen::ZERO, |s, r| s + r.amount);
    let available = order.held() + funding;
    if refund.amount > available {
        return Err(LedgerError::ExceedsRefundable { available });
    }
    order.refund_reserved += refund.amount;
    order.updated_at = refund.created_at;
    Ok(())
}

/// A refund's new details over the stored one: everything but its state, which only
/// `settle_refund` moves.
pub fn refund_details(stored: &Refund, new: &Refund) -> Refund {
    Refund {
        status: stored.status,
        ..new.clone()
    }
}

/// Settles `new` over the stored refund `was` on `order`: only a pending refund moves (a
/// settled one never changes the totals again). Returns the refund to store.
pub fn settle_refund(order: &mut Order, was: &Refund, new: &Refund) -> Refund {
    let refund = if was.status == RefundStatus::Pending {
        new.clone()
    } else {
        was.clone()
    };
    apply_refund_transition(order, was.status, &refund);
    refund
}

/// The state a return carried by `refund` (sent with it) ends in once the refund settled, or
/// `None` when it does not move (the refund is still pending, the return is not carried, or it
/// has settled already).
pub fn carried_return(refund: &Refund, before: &SplitReturn) -> Option<SplitReturn> {
    let status = match refund.status {
        RefundStatus::Succeeded => SplitStatus::Succeeded,
        RefundStatus::Failed => SplitStatus::Failed,
        RefundStatus::Pending => return None,
    };
    if !before.with_refund || before.status != SplitStatus::Pending {
        return None;
    }
    let mut after = before.clone();
    after.status = status;
    after.failure.clone_from(&refund.failure);
    after.updated_at = refund.updated_at;
    Some(after)
}

/// Reserves new returns on their splits, checking each in turn as the embedded ledger always
/// has: its number must be free (`taken[i]` says whether the i-th is taken), its split must
/// exist (`splits`: those of the named splits that exist, each once, changed in place) and the
/// receiver must still have the amount (`reserve_return`).
pub fn reserve_returns(
    returns: &[SplitReturn],
    taken: &[bool],
    splits: &mut [Split],
) -> Result<(), LedgerError> {
    for (ret, taken) in returns.iter().zip(taken) {
        if *taken {
            return Err(SplitRefusal::ReturnNumberTaken(ret.out_return_no.clone()).into());
        }
        let split = splits
            .iter_mut()
            .find(|s| s.out_split_no == ret.out_split_no)
            .ok_or_else(|| LedgerError::SplitNotFound(ret.out_split_no.clone()))?;
        reserve_return(split, ret)?;
    }
    Ok(())
}

/// The split numbers `returns` name, each once, in the order first named.
pub fn named_splits(returns: &[SplitReturn]) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in returns {
        if !out.contains(&r.out_split_no.as_str()) {
            out.push(&r.out_split_no);
        }
    }
    out
}

/// What a delivery update does to the stored delivery of its event.
#[derive(Debug)]
pub enum DeliveryChange {
    /// Nothing: a result for an attempt that is no longer current, or no such delivery.
    Ignored,
    /// Delivered: the delivery leaves its order's queue (the next one becomes due).
    Delivered(Delivery),
    /// The stored delivery `before` becomes `after`.
    Updated { before: Delivery, after: Delivery },
    /// Not queued (delivered, or written while delivery was off): the event is queued again
    /// behind its order's waiting deliveries, due at `now`, if the feed has it.
    Requeue { now: DateTime<Utc> },
}

/// Applies `update` to the stored delivery `current` (see [`DeliveryUpdate`]).
pub fn delivery_change(current: Option<Delivery>, update: DeliveryUpdate) -> DeliveryChange {
    // An attempt's result counts only for the delivery it was made for.
    let attempted = |attempts: u32| {
        current
            .clone()
            .filter(|d| d.state == DeliveryState::Pending && d.attempts == attempts)
    };
    let updated = |before: Delivery, after: Delivery| DeliveryChange::Updated { before, after };
    match update {
        DeliveryUpdate::Delivered { attempts } => match attempted(attempts) {
            Some(d) => DeliveryChange::Delivered(d),
            None => DeliveryChange::Ignored,
        },
        DeliveryUpdate::Retry {
            attempts,
            next_at,
            error,
        } => match attempted(attempts) {
            Some(d) => updated(
                d.clone(),
                Delivery {
                    attempts: d.attempts.saturating_add(1),
                    next_at,
                    last_error: Some(error),
                    ..d
                },
            ),
            None => DeliveryChange::Ignored,
        },
        DeliveryUpdate::Failed { attempts, error } => match attempted(attempts) {
            Some(d) => updated(
                d.clone(),
                Delivery {
                    state: DeliveryState::Failed,
                    attempts: d.attempts.saturating_add(1),
                    last_error: Some(error),
                    ..d
                },
            ),
            None => DeliveryChange::Ignored,
        },
        DeliveryUpdate::Redeliver { now } => match current {
            // Already queued: due now (an attempt in flight counts as it).
            Some(d) if d.state == DeliveryState::Pending => updated(
                d.clone(),
                Delivery {
                    next_at: now.min(d.next_at),
                    ..d
                },
            ),
            Some(d) => updated(
                d.clone(),
                Delivery {
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_at: now,
                    retry_from: now,
                    last_error: None,
                    ..d
                },
            ),
            None => DeliveryChange::Requeue { now },
        },
    }
}

/// The delivery of a new event `seq` about `out_trade_no`, queued at `now` (its ticket is
/// given by the backend's queue).
pub fn queued(seq: u64, out_trade_no: String, now: DateTime<Utc>) -> Delivery {
    Delivery {
        seq,
        out_trade_no,
        state: DeliveryState::Pending,
        attempts: 0,
        next_at: now,
        created_at: now,
        retry_from: now,
        last_error: None,
        ticket: 0,
    }
}

/// The delivery of `event` queued again at `now`: it keeps its age (the age gauge reads it);
/// only its retries start again.
pub fn requeued(event: Event, now: DateTime<Utc>) -> Delivery {
    Delivery {
        created_at: event.created_at,
        ..queued(event.seq, event.out_trade_no, now)
    }
}

/// The queue and data of an event recorded on its own: only events about no order are (an
/// order's events are raised by the writes that change it).
pub fn notice(subject: Subject<'_>) -> Result<(&str, &serde_json::Value), LedgerError> {
    match subject {
        Subject::Notice { queue, data } => Ok((queue, data)),
        _ => Err(LedgerError::Inconsistent(
            "an order's events are raised by the writes that change it".into(),
        )),
    }
}
