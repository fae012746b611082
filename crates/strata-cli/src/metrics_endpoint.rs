//! The Prometheus endpoint of `strata worker --metrics-addr` and `strata launch --metrics-addr`:
//! `http://ADDR/metrics`, every `_seconds` metric a histogram with
//! [`strata_pipe::metrics::SECONDS_BUCKETS`], every family with its HELP text.

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::net::SocketAddr;

/// `PORT` (loopback) or `HOST:PORT`.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    s.parse().map_err(|_| format!("`{s}` is neither a port nor HOST:PORT"))
}

/// Installs the process's recorder and serves it at `addr` on the current Tokio runtime (enter
/// one first); `labels` go on every sample, `describe` gives the families their HELP text.
pub fn serve(addr: SocketAddr, labels: &[(&str, String)], describe: fn()) -> anyhow::Result<()> {
    let mut builder = PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), strata_pipe::metrics::SECONDS_BUCKETS)
        .context("histogram buckets")?;
    for (k, v) in labels {
        builder = builder.add_global_label(*k, v.clone());
    }
    builder.install().with_context(|| format!("serving metrics on {addr}"))?;
    describe();
    Ok(())
}
