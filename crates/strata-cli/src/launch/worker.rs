//! `strata worker`: one pipeline stage, graph partition or forward-only stage behind gRPC.

use super::rendezvous::credentials;
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct WorkerArgs {
    /// Address to serve on. Loopback by default; any other address requires --tls-dir (a token
    /// alone would cross the network in clear text).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// This worker's rank (default: $RANK, then $SLURM_PROCID, then 0).
    #[arg(long)]
    pub rank: Option<u32>,
    /// Shared cluster token required on every RPC.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Mutual TLS: a directory from `strata cluster certs` (ca.pem, NAME.pem, NAME-key.pem).
    #[arg(long, env = "STRATA_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// This worker's certificate name in --tls-dir (default worker-RANK).
    #[arg(long)]
    pub tls_name: Option<String>,
    #[command(flatten)]
    pub compute: crate::source::ComputeArgs,
    /// Serve Prometheus metrics (bytes sent by kind, epochs, each epoch's phases in seconds, peak
    /// memory) at http://ADDR/metrics. A bare
    /// port binds loopback (127.0.0.1:PORT); name an address (0.0.0.0:9100) to expose it.
    #[arg(long, value_parser = crate::metrics_endpoint::parse_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Largest graph (bytes of the npz stream) a launcher may configure this worker with.
    #[arg(long, default_value_t = strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES)]
    pub max_graph_bytes: u64,
    /// Also serve the standard gRPC health service (`grpc.health.v1.Health`) alone, in
    /// plaintext, at this address, for probes that cannot present the cluster's certificates
    /// (Kubernetes' `grpc:` probes). Service "" is SERVING while the process serves;
    /// `strata.v1.Worker` only once a launcher has configured it. The main port serves the
    /// same health service. A bare port binds loopback, as for --metrics-addr.
    #[arg(long, value_name = "ADDR", value_parser = crate::metrics_endpoint::parse_addr)]
    pub health_addr: Option<std::net::SocketAddr>,
}

pub fn worker(a: WorkerArgs) -> anyhow::Result<()> {
    let device = a.compute.start()?;
    let env_rank = |k: &str| std::env::var(k).ok().and_then(|v| v.parse().ok());
    let rank = a.rank.or_else(|| env_rank("RANK")).or_else(|| env_rank("SLURM_PROCID")).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let creds = credentials(
        a.token.clone(),
        a.tls_dir.as_deref(),
        &a.tls_name.clone().unwrap_or_else(|| format!("worker-{rank}")),
    )?;
    let opts = strata_pipe::worker::WorkerOptions {
        listen: a.listen,
        creds,
        rank,
        device,
        registrations: None,
        max_graph_bytes: a.max_graph_bytes,
        health_listen: a.health_addr,
    };
    if let Some(addr) = a.metrics_addr {
        let _guard = rt.enter();
        crate::metrics_endpoint::serve(addr, &[("rank", rank.to_string())], strata_pipe::metrics::describe_worker)?;
    }
    rt.block_on(strata_pipe::worker::serve(opts, |addr| {
        // The launcher reads this line to learn the port.
        println!("strata worker {rank} listening on {addr}");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }))
    .map_err(|e| anyhow::anyhow!(e))
}
