//! One channel of routes.yaml compiled: its adapter (through the kind registry), HTTP client,
//! rate limiter, breaker thresholds and routing attributes. Runtime state (client, limiter) is
//! carried over from the previous snapshot while what it is built from is unchanged.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::breaker::compile_breaker;
use super::{AmountRange, BreakerConfig, CompileOptions, FeeSchedule, Problem, RawChannel, Window};
use crate::channels::client::{is_loopback_host, ChannelClient};
use crate::channels::registry;
use crate::channels::settings::keys::ChannelCtx;
use crate::channels::settings::problem::at;
use crate::channels::settings::test_keys;
use crate::channels::SharedChannel;
use crate::domain::{PayMethod, Scene};
use crate::limits::{Limiter, RateLimit};
use crate::money::MAX_AMOUNT_FEN;

/// A channel ready to use: adapter, HTTP client and routing attributes.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    pub name: String,
    pub kind: String,
    /// Where the channel is reached.
    pub endpoint: String,
    pub enabled: bool,
    pub adapter: SharedChannel,
    /// The HTTP client and its connection pool; kept across reloads while `client_settings` is.
    pub client: Arc<ChannelClient>,
    /// What the client is built from.
    pub client_settings: ClientSettings,
    pub methods: Vec<PayMethod>,
    pub scenes: Vec<Scene>,
    pub fee: FeeSchedule,
    pub limits: AmountRange,
    /// Recurring windows without new payments.
    pub maintenance: Vec<Window>,
    /// Circuit breaker thresholds.
    pub breaker: BreakerConfig,
    /// Calls per second allowed; the limiter (and its spent budget) is kept across reloads while
    /// `rate_limit` is unchanged.
    pub limiter: Option<Arc<Limiter>>,
    /// The effective `rate_limit`: (per_second, burst).
    pub rate_limit: Option<(u32, u32)>,
}

/// Everything a channel's HTTP client is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub endpoint: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
}

pub(super) fn compile_channel(
    name: &str,
    ch: &RawChannel,
    base: &Path,
    opts: &CompileOptions,
    before: Option<&ChannelEntry>,
) -> Result<ChannelEntry, Vec<Problem>> {
    let (kind_methods, offered) = registry::offered(&ch.settings);
    let common = &ch.common;
    let endpoint = common.endpoint.value.clone();
    let notify_url = common.notify_url.clone().or_else(|| {
        opts.notify_base_url
            .as_ref()
            .map(|b| format!("{}/notify/{name}", b.trim_end_matches('/')))
    });
    let mut cx = ChannelCtx {
        name,
        kind: &ch.kind,
        base,
        endpoint,
        notify_url,
        scenes: common.scenes.clone().unwrap_or_else(|| offered.clone()),
        problems: Vec::new(),
        keys: Vec::new(),
    };
    if let Err(msg) = check_endpoint(&cx.endpoint) {
        cx.problems.push(at(&common.endpoint, msg));
    }
    for s in cx.scenes.clone() {
        if !offered.contains(&s) {
            cx.problem(format!(
                "channel `{name}`: {} has no `{}` scene",
                ch.kind.value,
                s.as_str()
            ));
        }
    }
    let methods = common
        .methods
        .clone()
        .unwrap_or_else(|| kind_methods.clone());
    for m in &methods {
        if !kind_methods.contains(m) {
            cx.problem(format!(
                "channel `{name}`: {} does not carry the {} method",
                ch.kind.value,
                m.as_str()
            ));
        }
    }
    let fee = FeeSchedule::from_raw(&common.fee).unwrap_or_else(|(msg, at)| {
        cx.problems.push(Problem {
            line: at.line(),
            column: at.column(),
            message: format!("channel `{name}` fee: {msg}"),
        });
        FeeSchedule::default()
    });
    let limits = AmountRange {
        min: common.limits.min_amount.unwrap_or(1).max(1),
        max: common
            .limits
            .max_amount
            .unwrap_or(MAX_AMOUNT_FEN)
            .min(MAX_AMOUNT_FEN),
    };
    if limits.min > limits.max {
        cx.problem(format!("channel `{name}`: min_amount is above max_amount"));
    }
    let mut maintenance = Vec::new();
    for w in &common.maintenance {
        match Window::compile(&w.value) {
            Ok(win) => maintenance.push(win),
            Err(msg) => cx
                .problems
                .push(at(w, format!("channel `{name}` maintenance: {msg}"))),
        }
    }
    let breaker = compile_breaker(&common.circuit).unwrap_or_else(|msg| {
        cx.problem(format!("channel `{name}` circuit: {msg}"));
        BreakerConfig::default()
    });
    let rate_limit = match &common.rate_limit {
        None => None,
        Some(r) => match std::num::NonZeroU32::new(r.per_second) {
            None => {
                cx.problem(format!(
                    "channel `{name}` rate_limit: per_second must be at least 1"
                ));
                None
            }
            Some(per_second) => {
                let burst = std::num::NonZeroU32::new(r.burst.unwrap_or(r.per_second))
                    .unwrap_or(per_second);
                Some(RateLimit { per_second, burst })
            }
        },
    };
    let adapter = registry::compile(&ch.settings, &mut cx);
    if opts.refuse_test_keys && !is_loopback_url(&cx.endpoint) {
        for (field, (line, column), fingerprint) in &cx.keys {
            if let Some(source) = test_keys::published(fingerprint) {
                cx.problems.push(Problem {
                    line: *line,
                    column: *column,
                    message: format!(
                        "channel `{name}`: {field} is a published TEST key ({source}) and the endpoint `{}` is a real gateway; use your own key (TEST keys work only with a loopback endpoint or --sandbox)",
                        cx.endpoint
                    ),
                });
            }
        }
    }
    let (Some(adapter), true) = (adapter, cx.problems.is_empty()) else {
        return Err(cx.problems);
    };
    let client_settings = ClientSettings {
        endpoint: cx.endpoint.clone(),
        connect_timeout: Duration::from_millis(common.timeouts.connect_ms.unwrap_or(3_000)),
        request_timeout: Duration::from_millis(common.timeouts.request_ms.unwrap_or(10_000)),
    };
    // Runtime state survives a reload while what it is built from is unchanged.
    let client = match before {
        Some(b) if b.client_settings == client_settings => b.client.clone(),
        _ => Arc::new(ChannelClient::new(
            client_settings.connect_timeout,
            client_settings.request_timeout,
        )),
    };
    let limiter = rate_limit.map(|limit| match before {
        Some(ChannelEntry {
            rate_limit: Some(was),
            limiter: Some(kept),
            ..
        }) if *was == limit.pair() => kept.clone(),
        _ => Arc::new(opts.limits.limiter(name, limit)),
    });
    let rate_limit = rate_limit.map(RateLimit::pair);
    Ok(ChannelEntry {
        name: name.to_string(),
        kind: ch.kind.value.clone(),
        endpoint: cx.endpoint.clone(),
        enabled: common.enabled.unwrap_or(true),
        adapter,
        client,
        client_settings,
        methods,
        scenes: cx.scenes,
        fee,
        limits,
        maintenance,
        breaker,
        limiter,
        rate_limit,
    })
}

/// Whether the URL's host is a loopback address (the sandbox's simulators, a local stand-in).
fn is_loopback_url(url: &str) -> bool {
    url.parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(is_loopback_host))
        .unwrap_or(false)
}

/// `https://` anywhere, or `http://` to a loopback host only.
fn check_endpoint(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("endpoint `{url}` is not a URL"))?;
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") if !host.is_empty() => Ok(()),
        Some("http") if is_loopback_host(host) => Ok(()),
        Some("http") => Err(format!(
            "endpoint `{url}`: plain http is allowed only for loopback hosts; use https"
        )),
        _ => Err(format!("endpoint `{url}` must be an http(s) URL")),
    }
}
