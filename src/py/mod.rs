//! The Python binding: the only code that uses pyo3. Each function converts arguments, calls the core and
//! maps errors (one mapping point: `errors.rs`).

pub mod asyncio;
pub mod config;
pub mod errors;
pub mod functions;
pub mod logging;
pub mod values;
