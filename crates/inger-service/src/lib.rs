//! A deadline-bounded HTTP service that survives hostile input: the denial-of-service case of
//! preemptible functions, end to end. See the crate's README.
//!
//! - [`work`]: the handlers' CPU work (image thumbnails, regex search, JSON pretty-printing)
//!   with the libraries' own safety limits on;
//! - [`inputs`]: benign and hostile request bodies, made in code.

pub mod inputs;
pub mod work;
