//! Telling the app: every state change the app cares about is an event in the ledger (written
//! with the change, see `order::events`), pulled from `GET /v1/events` or pushed to
//! `--events-url` as a Standard Webhooks delivery, signed with the secrets of
//! `--events-secret-file`.

pub mod deliver;
pub mod signing;
