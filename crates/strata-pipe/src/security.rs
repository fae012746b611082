//! Who may talk to a worker. Two mechanisms, usable together:
//! - a shared token (`authorization: Bearer …` on every RPC, compared in constant time, at least
//!   [`MIN_TOKEN_LEN`] characters). It travels in clear text without TLS, so alone it is
//!   accepted on loopback only;
//! - mutual TLS (rustls): every worker and the launcher hold a certificate signed by the
//!   cluster's CA (`strata cluster certs`); a worker accepts only clients presenting one, and
//!   clients accept only workers presenting one. Server certificates carry the name
//!   [`SERVER_NAME`], so workers can be addressed by IP. Certificates carry a role in their
//!   organisational unit ([`Role`]): a worker takes orders (Configure, RunEpoch, Checkpoint,
//!   Restore, Shutdown) only from the launcher role and tensors only from worker peers, and the
//!   launcher's certificate cannot serve as a worker (no server name, client use only).

use crate::error::PipeError;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The DNS name every worker certificate carries and every client checks.
pub const SERVER_NAME: &str = "strata-worker";
/// Shortest token accepted: a guessable token protects nothing.
pub const MIN_TOKEN_LEN: usize = 16;

/// A certificate's role in the cluster, from its subject's organisational unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Drives the run: configures, trains, checkpoints and stops workers.
    Launcher,
    /// Serves a stage and exchanges tensors with its peers.
    Worker,
}

impl Role {
    /// The organisational unit `strata cluster certs` writes for this role.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Launcher => "strata-launcher",
            Role::Worker => "strata-worker",
        }
    }
    /// The role named by a DER certificate's subject, if it names one.
    pub fn of_certificate(der: &[u8]) -> Option<Role> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let unit = cert.subject().iter_organizational_unit().next()?.as_str().ok()?.to_string();
        [Role::Launcher, Role::Worker].into_iter().find(|r| r.unit() == unit)
    }
}

/// Checks a cluster token: non-empty, long enough, and printable ASCII (it travels in a header).
pub fn check_token(token: &str) -> Result<(), PipeError> {
    if token.len() < MIN_TOKEN_LEN {
        return Err(PipeError::Security(format!(
            "the cluster token is {} characters long; use at least {MIN_TOKEN_LEN} (e.g. `openssl rand -hex 16`)",
            token.len()
        )));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(PipeError::Security("the cluster token must be printable ASCII without spaces".into()));
    }
    Ok(())
}

/// Whether an `authorization` header value carries `token`, compared in constant time.
pub fn bearer_matches(header: Option<&[u8]>, token: &str) -> bool {
    let expected = format!("Bearer {token}");
    match header {
        // Lengths differ: no secret-dependent early exit beyond the (public) length.
        Some(h) if h.len() == expected.len() => h.ct_eq(expected.as_bytes()).into(),
        _ => false,
    }
}

/// A node's TLS material: the cluster CA and this node's certificate and key (PEM).
#[derive(Clone)]
pub struct TlsIdentity {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
    /// Where they came from, for messages.
    pub source: PathBuf,
}

impl TlsIdentity {
    /// Reads `DIR/ca.pem`, `DIR/NAME.pem` and `DIR/NAME-key.pem` (as `strata cluster certs`
    /// writes them).
    pub fn load(dir: &Path, name: &str) -> Result<TlsIdentity, PipeError> {
        let read = |f: String| {
            let p = dir.join(&f);
            let bytes = strata_graph::files::read(&p)
                .map_err(|e| PipeError::Security(format!("{e} (expected the files of `strata cluster certs`)")))?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
                return Err(PipeError::Security(format!("{}: not a PEM file", p.display())));
            }
            Ok(bytes)
        };
        Ok(TlsIdentity {
            ca: read("ca.pem".into())?,
            cert: read(format!("{name}.pem"))?,
            key: read(format!("{name}-key.pem"))?,
            source: dir.join(name),
        })
    }

    /// A worker's identity: `worker-RANK` when the directory holds it, else the shared `worker`
    /// identity (one Kubernetes Secret for every pod of a StatefulSet).
    pub fn load_worker(dir: &Path, rank: u32) -> Result<TlsIdentity, PipeError> {
        let own = format!("worker-{rank}");
        if dir.join(format!("{own}.pem")).exists() || !dir.join("worker.pem").exists() {
            Self::load(dir, &own)
        } else {
            Self::load(dir, "worker")
        }
    }

    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(SERVER_NAME)
    }
}

/// Everything a node presents or requires.
#[derive(Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    pub tls: Option<TlsIdentity>,
}

impl Credentials {
    pub fn token(token: Option<String>) -> Credentials {
        Credentials { token, tls: None }
    }
    /// Whether a worker holding these may listen on `addr`: loopback with a token or TLS (or
    /// neither), beyond loopback only with TLS — a token alone would cross the network in clear.
    pub fn check_listen(&self, addr: std::net::SocketAddr) -> Result<(), PipeError> {
        if addr.ip().is_loopback() || self.tls.is_some() {
            return Ok(());
        }
        if self.token.is_some() {
            return Err(PipeError::Security(format!(
                "refusing to listen on non-loopback address {addr} with a token alone (it would cross the network in clear text): add --tls-dir (mutual TLS; `strata cluster certs`)"
            )));
        }
        Err(PipeError::Security(format!("refusing to listen on non-loopback address {addr} without authentication: set --tls-dir (mutual TLS; `strata cluster certs`)")))
    }
    /// Checks the token's form, when there is one.
    pub fn validate(&self) -> Result<(), PipeError> {
        self.token.as_deref().map_or(Ok(()), check_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_for_length_and_compared_exactly() {
        assert!(check_token("").is_err());
        assert!(check_token("short").is_err());
        assert!(check_token("with a space in it!!").is_err());
        assert!(check_token("0123456789abcdef").is_ok());
        let t = "0123456789abcdef";
        assert!(bearer_matches(Some(b"Bearer 0123456789abcdef"), t));
        assert!(!bearer_matches(Some(b"Bearer 0123456789abcdeF"), t));
        assert!(!bearer_matches(Some(b"Bearer 0123456789abcde"), t));
        assert!(!bearer_matches(None, t));
    }

    #[test]
    fn a_token_alone_is_refused_beyond_loopback() {
        let token = Credentials::token(Some("0123456789abcdef".into()));
        assert!(token.check_listen("127.0.0.1:1".parse().unwrap()).is_ok());
        let e = token.check_listen("10.0.0.5:1".parse().unwrap()).unwrap_err().to_string();
        assert!(e.contains("clear text") && e.contains("--tls-dir"), "{e}");
        assert!(Credentials::default().check_listen("0.0.0.0:1".parse().unwrap()).is_err());
        assert!(Credentials::default().check_listen("[::1]:1".parse().unwrap()).is_ok());
    }
}
