//! A vaccine pre-reservation server built to hold through a national midnight rush.
//!
//! Layers, outermost first: `http` (parse, send one message, map the answer), `actors` (the
//! owners of all state: cohort queues, center inventories, the identity pool, the booking
//! store), `db` (diesel over SQLite, synchronous, behind the store), `domain` (pure rules).
//! `startup` wires them together; `main.rs` only reads the configuration and runs it.

pub mod actors;
pub mod config;
pub mod cores;
pub mod db;
pub mod demo;
pub mod domain;
pub mod error;
pub mod http;
pub mod startup;
pub mod telemetry;

/// Wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Wall-clock time in seconds since the Unix epoch.
pub fn now_s() -> i64 {
    now_ms().div_euclid(1000)
}
