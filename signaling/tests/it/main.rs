//! The signaling service over real sockets: admission, assignment, relaying, the HTTP API,
//! bad input, and replicas sharing a real Redis.

mod api;
mod auth;
mod basic;
mod fleet;
mod hostile;
mod replicas;
mod store;
pub mod support;
