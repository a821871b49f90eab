//! A deadline-bounded HTTP service that survives hostile input: the denial-of-service case of
//! preemptible functions, end to end. See the crate's README.
//!
//! - [`work`]: the handlers' CPU work (image thumbnails, regex search, JSON pretty-printing)
//!   with the libraries' own safety limits on;
//! - [`budget`]: the per-request CPU budget and how it is counted (one place);
//! - [`protect`]: the five protection modes (`none`, `tokio-timeout`, `blocking-timeout`,
//!   `process`, `inger`);
//! - [`server`]: the HTTP service; [`metrics`]: its counters at `/metrics`;
//! - [`inputs`]: benign and hostile request bodies, made in code;
//! - [`client`]: an HTTP client of the service; [`load`]: the load generator;
//! - [`cli`]: argument parsing for the programs.

pub mod budget;
pub mod cli;
pub mod client;
pub mod inputs;
pub mod load;
pub mod metrics;
pub mod protect;
pub mod server;
pub mod work;
