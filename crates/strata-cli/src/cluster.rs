//! `strata cluster`: tools for running a cluster — `certs` writes a CA and per-node certificates
//! for mutual TLS between the launcher and the workers.

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::path::{Path, PathBuf};
use strata_pipe::security::Role;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(subcommand)]
    command: ClusterCommand,
}

#[derive(Subcommand, Debug)]
enum ClusterCommand {
    /// Generate a test cluster's TLS material: ca.pem (+ ca-key.pem, keep it offline),
    /// worker-N.pem / worker-N-key.pem for N in 0..WORKERS and launcher.pem / launcher-key.pem.
    Certs(CertsArgs),
}

#[derive(Args, Debug)]
struct CertsArgs {
    /// Output directory (created; existing files are not overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Number of worker certificates.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Extra host names or IP addresses the worker certificates are valid for (besides the
    /// cluster-wide name `strata-worker`, localhost and 127.0.0.1).
    #[arg(long, value_delimiter = ',')]
    hosts: Vec<String>,
    /// Validity in days.
    #[arg(long, default_value_t = 365)]
    days: i64,
    /// Also write one `worker.pem` / `worker-key.pem` shared by every worker (for a Kubernetes
    /// StatefulSet, whose pods cannot each mount a Secret of their own); workers use it when
    /// their `worker-RANK` files are absent.
    #[arg(long)]
    shared_worker: bool,
}

pub fn run(a: ClusterArgs) -> anyhow::Result<()> {
    match a.command {
        ClusterCommand::Certs(c) => certs(c),
    }
}

fn validity(p: &mut CertificateParams, days: i64) {
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days);
}

fn write_new(dir: &Path, name: &str, text: &str, private: bool) -> anyhow::Result<()> {
    let path = dir.join(name);
    if path.exists() {
        bail!("{} exists: refusing to overwrite TLS material (choose another --out)", path.display());
    }
    if private {
        strata_graph::write_atomic_private(&path, text.as_bytes())?;
    } else {
        strata_graph::write_atomic(&path, text.as_bytes())?;
    }
    Ok(())
}

fn certs(a: CertsArgs) -> anyhow::Result<()> {
    if a.workers == 0 || a.days <= 0 {
        bail!("--workers and --days must be positive");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name.push(DnType::CommonName, "strata cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    validity(&mut ca, a.days);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    write_new(&a.out, "ca.pem", &ca_cert.pem(), false)?;
    write_new(&a.out, "ca-key.pem", &ca_key.serialize_pem(), true)?;
    let issuer = Issuer::new(ca, ca_key);
    let mut names: Vec<(String, Role)> = (0..a.workers).map(|i| (format!("worker-{i}"), Role::Worker)).collect();
    if a.shared_worker {
        names.push(("worker".into(), Role::Worker));
    }
    names.push(("launcher".into(), Role::Launcher));
    for (name, role) in &names {
        let p = if *role == Role::Worker {
            let mut sans = vec![strata_pipe::security::SERVER_NAME.to_string(), "localhost".into(), name.clone()];
            sans.extend(a.hosts.iter().filter(|h| h.parse::<std::net::IpAddr>().is_err()).cloned());
            let mut p = CertificateParams::new(sans)?;
            for ip in
                ["127.0.0.1".to_string()].iter().chain(&a.hosts).filter_map(|h| h.parse::<std::net::IpAddr>().ok())
            {
                p.subject_alt_names.push(SanType::IpAddress(ip));
            }
            // A worker serves (to the launcher and its peers) and is a client of its peers.
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
            p
        } else {
            // The launcher is a client only: no server name, so it cannot pose as a worker.
            let mut p = CertificateParams::new(Vec::<String>::new())?;
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            p
        };
        let mut p = p;
        p.distinguished_name.push(DnType::CommonName, name.as_str());
        // The role a worker checks before it obeys (see strata_pipe::security::Role).
        p.distinguished_name.push(DnType::OrganizationalUnitName, role.unit());
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut p, a.days);
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        write_new(&a.out, &format!("{name}.pem"), &cert.pem(), false)?;
        write_new(&a.out, &format!("{name}-key.pem"), &key.serialize_pem(), true)?;
    }
    println!(
        "wrote a CA and {} node certificates to {} (worker-0..{}{}, launcher)",
        names.len(),
        a.out.display(),
        a.workers - 1,
        if a.shared_worker { ", worker" } else { "" }
    );
    println!(
        "workers: strata worker --tls-dir {} --rank N · launcher: strata launch --tls-dir {} …",
        a.out.display(),
        a.out.display()
    );
    Ok(())
}
