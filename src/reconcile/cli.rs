//! `payroute reconcile`: asks a running payroute to reconcile a channel's day and waits for the
//! report (the ledger belongs to that process; this one only talks to its API).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::channels::client::ChannelClient;
use crate::settings::ReconcileArgs;

async fn call(
    client: &ChannelClient,
    method: &str,
    url: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let mut req = http::Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = req.body(body).map_err(|e| format!("{url}: {e}"))?;
    let resp = client.send(req).await.map_err(|e| format!("{url}: {e}"))?;
    let value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    Ok((resp.status, value))
}

/// What is printed at the end: the report without its (possibly long) list of discrepancies.
fn summary(report: &Value) -> Value {
    let mut s = report.clone();
    if let Some(o) = s.as_object_mut() {
        let listed = o
            .remove("discrepancies")
            .and_then(|d| d.as_array().map(Vec::len));
        o.insert("discrepancies_listed".into(), json!(listed.unwrap_or(0)));
    }
    s
}

/// Runs the command.
pub async fn run(args: ReconcileArgs) -> ExitCode {
    let date = args.date.unwrap_or_else(|| {
        let today = chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Shanghai)
            .date_naive();
        today.pred_opt().unwrap_or(today)
    });
    let base = args.api.trim_end_matches('/');
    let client = ChannelClient::new(Duration::from_secs(5), Duration::from_secs(30));
    let body = json!({"channel": args.channel, "date": date.to_string()});
    let started = match call(
        &client,
        "POST",
        &format!("{base}/v1/reconciliations"),
        Some(&body),
    )
    .await
    {
        Ok((202, v)) => v,
        Ok((status, v)) => {
            eprintln!(
                "payroute reconcile: HTTP {status}: {}",
                v["detail"].as_str().unwrap_or_default()
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!(
                "payroute reconcile: cannot reach payroute ({e}); is `payroute serve` running?"
            );
            return ExitCode::from(2);
        }
    };
    let id = started["id"].as_str().unwrap_or_default().to_string();
    let tty = std::io::stderr().is_terminal();
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let report = loop {
        let report = match call(
            &client,
            "GET",
            &format!("{base}/v1/reconciliations/{id}"),
            None,
        )
        .await
        {
            Ok((200, v)) => v,
            Ok((status, v)) => {
                eprintln!(
                    "payroute reconcile: HTTP {status}: {}",
                    v["detail"].as_str().unwrap_or_default()
                );
                return ExitCode::from(1);
            }
            Err(e) => {
                eprintln!("payroute reconcile: {e}");
                return ExitCode::from(2);
            }
        };
        if report["status"] != "running" {
            break report;
        }
        if tty {
            let mut err = std::io::stderr();
            let _ = write!(
                err,
                "\r{} {date}: {} statement lines read",
                args.channel, report["lines_read"]
            );
            let _ = err.flush();
        }
        if Instant::now() > deadline {
            eprintln!(
                "\npayroute reconcile: still running after {} s; see GET /v1/reconciliations/{id}",
                args.timeout_secs
            );
            return ExitCode::from(1);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if tty {
        eprintln!();
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&summary(&report)).unwrap_or_default()
    );
    match report["status"].as_str() {
        Some("completed") => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
