//! Who may talk to a worker. Two mechanisms, usable together:
//! - a shared token (`authorization: Bearer …` on every RPC), for loopback or trusted networks;
//! - mutual TLS (rustls): every worker and the launcher hold a certificate signed by the
//!   cluster's CA (`strata cluster certs`); a worker accepts only clients presenting one, and
//!   clients accept only workers presenting one. Server certificates carry the name
//!   [`SERVER_NAME`], so workers can be addressed by IP.

use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// The DNS name every worker certificate carries and every client checks.
pub const SERVER_NAME: &str = "strata-worker";

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
    pub fn load(dir: &Path, name: &str) -> Result<TlsIdentity, String> {
        let read = |f: String| {
            let p = dir.join(&f);
            let bytes = std::fs::read(&p).map_err(|e| format!("{}: {e} (expected the files of `strata cluster certs`)", p.display()))?;
            if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
                return Err(format!("{}: not a PEM file", p.display()));
            }
            Ok(bytes)
        };
        Ok(TlsIdentity { ca: read("ca.pem".into())?, cert: read(format!("{name}.pem"))?, key: read(format!("{name}-key.pem"))?, source: dir.join(name) })
    }

    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key)).client_ca_root(Certificate::from_pem(&self.ca))
    }

    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca)).identity(Identity::from_pem(&self.cert, &self.key)).domain_name(SERVER_NAME)
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
    /// Whether a worker holding these may listen beyond loopback.
    pub fn authenticates(&self) -> bool {
        self.token.is_some() || self.tls.is_some()
    }
}
