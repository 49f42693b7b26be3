//! The Python binding: the only code that uses pyo3. Each function converts arguments, calls the core and
//! maps errors (one mapping point: `errors.rs`).

pub mod agents;
pub mod asyncio;
pub mod broker;
pub mod ccr3;
pub mod ccr_view;
pub mod config;
pub mod errors;
pub mod functions;
pub mod gateway;
pub mod hygiene;
pub mod logging;
pub mod rotation;
pub mod store;
pub mod values;
