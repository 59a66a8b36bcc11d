//! mutstream: a single-node ingestion appliance.
//!
//! Data path: [`runtime`] workers read io_uring sockets, [`codec`] frames
//! and decodes into columnar batches, [`pipeline`] runs the compiled chain
//! of the current generation, [`sink`] threads write what the chain emits.
//! [`config`] validates everything once, before any of it starts.

pub mod codec;
pub mod config;
pub mod control;
#[cfg(not(loom))]
pub mod demo;
pub mod journal;
pub mod loadgen;
pub mod metrics;
pub mod pipeline;
pub mod runtime;
pub mod sink;
pub mod sync;
pub mod sys;
