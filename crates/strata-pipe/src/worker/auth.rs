//! Credentials on the wire: the client that presents the cluster's token (and TLS identity),
//! and the server-side check of the bearer token.

use crate::proto::worker_client::WorkerClient;
use crate::security::{bearer_matches, Credentials};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

/// Adds (client side) or checks (server side) `authorization: Bearer <token>`.
#[derive(Clone)]
pub struct Auth(pub Option<String>);

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse().map_err(|_| Status::internal("bad token"))?);
        }
        Ok(req)
    }
}

#[derive(Clone)]
pub(crate) struct CheckAuth(pub(crate) Option<String>);

impl tonic::service::Interceptor for CheckAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        match &self.0 {
            None => Ok(req),
            Some(t) => {
                if bearer_matches(req.metadata().get("authorization").map(|v| v.as_bytes()), t) {
                    Ok(req)
                } else {
                    Err(Status::unauthenticated("missing or wrong cluster token"))
                }
            }
        }
    }
}

pub type Client = WorkerClient<InterceptedService<Channel, Auth>>;

/// HTTP/2 flow-control windows, both ends (HTTP/2's default is 64 KiB). With the default a
/// halo of megabytes needs a window update per 64 KiB from the receiver, whose runtime shares
/// a pinned core with the compute thread and answers only when that thread yields: a
/// graph-parallel way on its own core spent more than half of its epoch waiting for halo rows.
/// A window this size lets a tensor of up to 8 MiB go out without waiting for the receiver.
pub const STREAM_WINDOW: u32 = 8 << 20;
pub const CONNECTION_WINDOW: u32 = 32 << 20;

/// The worker pings a connection idle this long, and closes it when the answer takes longer
/// than [`KEEPALIVE_TIMEOUT`]: a silent peer's connection (and what it reserved) does not stay
/// open forever. Clients ping every 5 s themselves, so a live one is never closed.
pub const KEEPALIVE: Duration = Duration::from_secs(30);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// A lazily connecting client to `addr` (`host:port`), presenting `creds` (TLS when given).
pub fn client(addr: &str, creds: &Credentials) -> Result<Client, tonic::transport::Error> {
    let scheme = if creds.tls.is_some() { "https" } else { "http" };
    // Keep-alives notice a peer whose link is gone (TCP alone would retransmit for minutes).
    let mut ep = Endpoint::from_shared(format!("{scheme}://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW);
    if let Some(tls) = &creds.tls {
        ep = ep.tls_config(tls.client_config())?;
    }
    Ok(WorkerClient::with_interceptor(ep.connect_lazy(), Auth(creds.token.clone())))
}
