//! The admin listener: metrics, health, the active rules and `explain` (read-only).

use super::*;

async fn metrics(State(s): State<AppState>) -> Response {
    // Breakers turn half-open with time, not with a call, and Redis is found down or back in
    // the background: read both at scrape time.
    let snap = s.payments.snapshot();
    let channels = snap.channels.iter().map(|c| c.name.as_str());
    s.metrics.refresh_circuits(s.payments.health(), channels);
    s.metrics
        .refresh_rate_limits(snap.channels.iter().filter_map(|c| {
            let limiter = c.limiter.as_ref()?;
            Some((c.name.as_str(), limiter.is_shared()))
        }));
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(s): State<AppState>) -> Response {
    if s.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn admin_routes(State(s): State<AppState>) -> Response {
    let snap = s.payments.snapshot();
    let channels: Vec<_> = snap
        .channels
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "kind": c.kind, "enabled": c.enabled,
                "methods": c.methods, "scenes": c.scenes,
                "fee": { "rate_ppm": c.fee.rate.ppm, "fixed": c.fee.fixed, "min": c.fee.min, "max": c.fee.max },
                "limits": { "min_amount": c.limits.min, "max_amount": c.limits.max },
                "measured_fee": s.reconciler.measured_fee(&c.name),
            })
        })
        .collect();
    let rules: Vec<_> = snap
        .rules
        .iter()
        .map(|r| json!({ "name": r.name, "methods": r.methods, "scenes": r.scenes,
                          "min_amount": r.amount.min, "max_amount": r.amount.max, "channels": r.channels }))
        .collect();
    json_response(
        StatusCode::OK,
        json!({
            "hash": snap.hash,
            "loaded_at": snap.loaded_at,
            "reload": s.store.status(),
            "source": snap.source.display().to_string(),
            "channels": channels,
            "rules": rules,
        }),
    )
}

async fn admin_explain(
    State(s): State<AppState>,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    let mut fields = std::collections::BTreeMap::new();
    let mut metadata = std::collections::BTreeMap::new();
    for (k, v) in form_urlencoded::parse(q.unwrap_or_default().as_bytes()) {
        match k.strip_prefix("metadata.") {
            Some(mk) => {
                metadata.insert(mk.to_string(), v.into_owned());
            }
            None => {
                fields.insert(k.into_owned(), v.into_owned());
            }
        }
    }
    let get = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let amount = match get("amount").parse::<u64>() {
        Ok(a) => a,
        Err(_) => {
            return Problem::field(
                ErrorCode::InvalidAmount,
                "amount",
                "amount must be an integer number of fen",
            )
            .into_response()
        }
    };
    let split = match get("split") {
        "" | "false" => false,
        "true" => true,
        other => {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidQuery,
                format!("split must be true or false, got `{other}`"),
            )
            .into_response()
        }
    };
    let mut input = match crate::routing::input_from_text(
        if get("out_trade_no").is_empty() {
            "EXPLAIN000001"
        } else {
            get("out_trade_no")
        },
        get("method"),
        get("scene"),
        if get("currency").is_empty() {
            "CNY"
        } else {
            get("currency")
        },
        amount,
        metadata,
        fields.get("at").map(String::as_str),
    ) {
        Ok(i) => i,
        Err(e) => {
            return Problem::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidQuery, e)
                .into_response()
        }
    };
    input.split = split;
    let snap = s.payments.snapshot();
    let view = crate::health::RoutingView {
        health: s.payments.health(),
        snapshot: &snap,
    };
    let decision = crate::routing::route(&input, &snap, &view);
    // Beside each channel's configured fee (in the trace), what its latest statement showed.
    let measured: serde_json::Map<String, serde_json::Value> = snap
        .channels
        .iter()
        .filter_map(|c| Some((c.name.clone(), json!(s.reconciler.measured_fee(&c.name)?))))
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "rules_hash": snap.hash, "at": input.now, "decision": decision, "measured_fees": measured }),
    )
}

/// The admin listener (3): probes and read-only views; the sandbox control is merged in by
/// `app` only in sandbox mode.
pub fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/admin/routes", get(admin_routes))
        .route("/admin/explain", get(admin_explain))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}
