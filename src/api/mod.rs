//! The Databricks REST API: the HTTP transport with its retry policy, error parsing, and the Token API.

pub mod errors;
pub mod http;
pub mod retry;
pub mod tls;
pub mod tokens;
