//! The control plane: the mutation engine that owns the running
//! definition ([`engine`]), what a generation is made of
//! ([`definition`]), the HTTP API ([`http`]) and its client for
//! `mutstream ctl` ([`client`]).

#[cfg(not(loom))]
pub mod client;
pub mod definition;
pub mod engine;
#[cfg(not(loom))]
pub mod http;
pub mod tap;
#[cfg(not(loom))]
pub mod top;

pub use engine::{Controller, Op, Reply, Request, Startup};
