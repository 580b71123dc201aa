//! Stage 9's response compression: gzip, deflate and br, chosen from `Accept-Encoding`,
//! streamed through the relay as a body transform.
//!
//! One job per file:
//! - `negotiate.rs`: the coding a client's `Accept-Encoding` asks for (q-values, `*`, identity);
//! - `decide.rs`: whether a response is compressed, from its head and the request's only;
//! - `encoder.rs`: the encoders, flushed whenever the origin pauses;
//! - `deflater.rs`: gzip and deflate streams on zlib, kept for the next response;
//! - `whole.rs`: gzip and deflate of a short body of declared length, in one libdeflate call;
//! - `phase.rs`: the response-head phase that rewrites the head and plans the transform;
//! - `config.rs`: `[compression]`.
//!
//! Put it last in a chain of phases (after the cache): `(cache, CompressPhases)`.

pub mod config;
pub mod decide;
pub mod deflater;
pub mod encoder;
pub mod negotiate;
pub mod phase;
pub mod whole;

pub use config::CompressSettings;
pub use encoder::{Coding, Levels};
pub use phase::CompressPhases;
