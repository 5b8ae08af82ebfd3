//! Shared helpers for the integration and end-to-end tests.

pub mod sink;
