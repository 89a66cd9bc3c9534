//! payroute: a payment channel-routing sidecar.
//!
//! Apps call one unified payment API on localhost; payroute picks a channel from hot-reloadable
//! rules, signs and sends the request, verifies the answer, and keeps a durable ledger.
#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod bills;
pub mod call;
pub mod channels;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod events;
pub mod health;
pub mod ledger;
pub mod limits;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod money;
pub mod order;
pub mod payments;
pub mod reconcile;
pub mod reload;
pub mod routing;
pub mod sandbox;
pub mod settings;
