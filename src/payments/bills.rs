//! Where a channel's statement of a day is: the one channel call of reconciliation, through the
//! same stack as every other (rate limit, breaker, metrics).

use super::*;
use crate::bills::{BillError, BillLocation};

impl Payments {
    /// Asks `channel` where its trade statement of `date` (China time) is.
    pub async fn bill_location(
        &self,
        channel: &str,
        date: chrono::NaiveDate,
    ) -> Result<BillLocation, BillError> {
        let snap = self.snapshot();
        let entry = snap
            .channel(channel)
            .ok_or_else(|| BillError::Unavailable(format!("no channel {channel} is configured")))?;
        match self
            .call(entry, Op::BillQuery { date }, Traffic::Settle)
            .await
        {
            Call::Answer(Outcome::Bill(location)) => Ok(location),
            Call::Answer(Outcome::BillNotReady) => Err(BillError::NotReady(date)),
            Call::Unsupported(why) => Err(BillError::Unsupported(why)),
            Call::Answer(Outcome::Declined { code, message })
            | Call::Answer(Outcome::NotAccepted { code, message }) => Err(BillError::Unavailable(
                format!("channel {channel} refused the statement request: {code}: {message}"),
            )),
            Call::Answer(Outcome::Unknown { reason }) => Err(BillError::Unavailable(format!(
                "channel {channel} gave no usable answer: {reason}"
            ))),
            Call::NotSent(why) => Err(BillError::Unavailable(format!(
                "channel {channel} could not be asked: {why}"
            ))),
            Call::RateLimited(wait) => Err(BillError::Unavailable(format!(
                "channel {channel} is at its rate limit; try again in {} s",
                wait.as_secs().max(1)
            ))),
            Call::Answer(other) => Err(BillError::Unavailable(format!(
                "channel {channel} answered the statement request unexpectedly: {other:?}"
            ))),
        }
    }
}
