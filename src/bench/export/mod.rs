//! A run's results in forms other programs read: JSON (`--json`), HdrHistogram's percentile
//! distribution (`--hist`) and an SVG picture (`--plot`).

pub mod hist;
pub mod json;
pub mod plot;
