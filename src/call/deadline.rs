//! The whole call's deadline: a backstop over everything below, so a transport that ignores
//! its own timeout cannot hold a payment flow (the real client times out first).

use std::time::Duration;

use super::concern::{Concern, Inner};
use super::{Call, CallFuture, Exchange, Reach, Reply};
use crate::channels::Outcome;

/// Room left past the limiter's wait and the transport's timeout before the deadline fires.
pub(super) const GRACE: Duration = Duration::from_secs(1);

/// A call not finished within the budget is dropped, its outcome unknown (it may have been sent).
#[derive(Clone)]
pub(super) struct Deadline {
    budget: Duration,
}

impl Deadline {
    pub(super) fn new(budget: Duration) -> Self {
        Deadline { budget }
    }
}

impl Concern for Deadline {
    fn around<'a, S: Inner<'a>>(&self, ex: Exchange<'a>, inner: &mut S) -> CallFuture<'a> {
        let budget = self.budget;
        let inner = inner.call(ex);
        Box::pin(async move {
            match tokio::time::timeout(budget, inner).await {
                Ok(reply) => reply,
                Err(_) => Ok(Reply {
                    call: Call::Answer(Outcome::Unknown {
                        reason: format!("no answer within {budget:?}"),
                    }),
                    reach: Reach::Sent(budget),
                }),
            }
        })
    }
}
