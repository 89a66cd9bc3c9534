//! Which payments are late: the one test the late-payment guard applies to a payment that a
//! notification or a query reports, so that both paths treat the same money the same way.

use super::{AttemptOutcome, FailureCode, LateKind, Order};
use crate::channels::{ChannelPayState, PaymentReport};
use crate::domain::PaymentStatus;

impl Order {
    /// Whether payroute abandoned an attempt of this order at `channel`.
    pub fn abandoned_at(&self, channel: &str) -> bool {
        self.attempts
            .iter()
            .any(|a| a.channel == channel && a.outcome == AttemptOutcome::Abandoned)
    }

    /// The late-payment guard's test: `channel` reports `report` for this order, and the
    /// money it took is not the order's — the order's own channel after payroute closed or
    /// failed the order (`AfterClose`), or the channel of an abandoned attempt, the order
    /// having gone elsewhere (`Duplicate`). `None` for anything else: not paid, paid another
    /// amount (someone paid something else, refused where it is reported), or the order's
    /// money.
    pub fn late_payment(&self, channel: &str, report: &PaymentReport) -> Option<LateKind> {
        let paid = report.state == ChannelPayState::Paid
            && report.amount.is_none_or(|a| a == self.request.amount);
        if !paid {
            return None;
        }
        if self.channel.as_deref() == Some(channel) {
            matches!(self.status, PaymentStatus::Closed | PaymentStatus::Failed)
                .then_some(LateKind::AfterClose)
        } else {
            self.abandoned_at(channel).then_some(LateKind::Duplicate)
        }
    }

    /// Whether a query of this order should still ask its channel, although the order is
    /// settled here, because the channel may yet take money for it: payroute closed it without
    /// the channel's confirmation, or failed it after its channel received it (any failure but
    /// "nothing was created anywhere"). Asked until a late payment from that channel is on
    /// record.
    pub fn watched_for_late_payment(&self) -> bool {
        let may_be_paid = match self.status {
            PaymentStatus::Closed => self.close_confirmed == Some(false),
            PaymentStatus::Failed => !matches!(
                self.failure.as_ref().map(|f| &f.code),
                Some(FailureCode::NothingCreated)
            ),
            _ => false,
        };
        may_be_paid
            && self
                .channel
                .as_ref()
                .is_some_and(|owner| !self.late_payments.iter().any(|l| &l.channel == owner))
    }
}
