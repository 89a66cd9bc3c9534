//! Closing, in the background, the attempts a create abandoned at a channel.

use super::*;

impl Payments {
    pub(super) fn spawn_close_abandoned(&self, out_trade_no: String, channel: String) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move { me.close_abandoned(&out_trade_no, &channel).await });
    }

    /// Closes an abandoned attempt at its channel, with retries. Should the channel report it
    /// paid, that is a duplicate payment for the late-payment guard.
    pub(super) async fn close_abandoned(&self, out_trade_no: &str, channel: &str) {
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
                Call::Answer(Outcome::Closed) => Some(Closing::Closed),
                Call::Answer(Outcome::Payment(PaymentReport {
                    state: ChannelPayState::NotFound,
                    ..
                })) => {
                    let cancel = Op::Cancel {
                        out_trade_no,
                        channel_trade_no: None,
                    };
                    Some(match self.call(entry, cancel, Traffic::Settle).await {
                        Call::Answer(Outcome::Closed) => Closing::Cancelled,
                        _ => Closing::NoTrade,
                    })
                }
                Call::Unsupported(_) => Some(Closing::CannotClose),
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
                            match self
                                .guard_late_payment(
                                    out_trade_no,
                                    channel,
                                    &report,
                                    LateKind::Duplicate,
                                )
                                .await
                            {
                                Ok(_) => Some(Closing::PaidThere),
                                Err(e) => {
                                    // Not settled: the next try records it (and refunds it).
                                    warn!(channel, out_trade_no, %e, "cannot record a duplicate payment yet; will try again");
                                    None
                                }
                            }
                        }
                        Call::Answer(Outcome::Payment(report))
                            if report.state == ChannelPayState::Closed =>
                        {
                            Some(Closing::Closed)
                        }
                        _ => None,
                    }
                }
            };
            if let Some(closing) = settled {
                self.note_abandoned(out_trade_no, channel, closing).await;
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

    pub(super) async fn note_abandoned(&self, out_trade_no: &str, channel: &str, closing: Closing) {
        let _guard = match self.lock(out_trade_no).await {
            Ok(g) => g,
            Err(e) => {
                warn!(out_trade_no, channel, %e, "cannot record the abandoned attempt's closing");
                return;
            }
        };
        if let Ok(Some(mut order)) = self.ledger.get_order(out_trade_no).await {
            for a in order
                .attempts
                .iter_mut()
                .filter(|a| a.channel == channel && a.outcome == AttemptOutcome::Abandoned)
            {
                a.closing = Some(closing);
                a.reason = Some(format!("{ABANDONED_SETTLED} {}", closing.note()));
            }
            if let Err(e) = self.ledger.put_order(&mut order).await {
                warn!(out_trade_no, channel, %e, "cannot record the abandoned attempt's closing");
            }
        }
    }
}
