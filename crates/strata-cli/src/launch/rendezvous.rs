//! Where the workers come from: spawned on loopback, listed in a cluster file, or met at a
//! torchrun/Slurm-style rendezvous (rank 0 serves as worker 0 and collects the others).

use super::args::LaunchArgs;
use anyhow::{bail, Context};
use std::time::Duration;
use strata_pipe::security::{Credentials, TlsIdentity};
use tokio::io::AsyncBufReadExt;

pub(super) const RENDEZVOUS_WAIT: Duration = Duration::from_secs(300);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    pub(super) workers: Vec<String>,
    #[serde(default)]
    pub(super) token_env: Option<String>,
}

/// Token and TLS identity `name` from `tls_dir`.
pub fn credentials(
    token: Option<String>,
    tls_dir: Option<&std::path::Path>,
    name: &str,
) -> anyhow::Result<Credentials> {
    let tls = tls_dir
        .map(|d| match name.strip_prefix("worker-").and_then(|r| r.parse::<u32>().ok()) {
            Some(rank) => TlsIdentity::load_worker(d, rank),
            None => TlsIdentity::load(d, name),
        })
        .transpose()
        .map_err(|e| anyhow::anyhow!(e))?;
    let creds = Credentials { token, tls };
    creds.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(creds)
}

/// A fresh secret for the workers one launch starts: 32 bytes from the operating system's
/// generator (through `rand`'s thread generator, a CSPRNG seeded and reseeded from it), as hex.
pub(crate) fn fresh_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Starts `n` local worker processes on loopback; returns them (killed on drop) and their
/// addresses. The token reaches them through the environment, never the command line (which
/// every local user can read). Each worker is killed by the kernel when the launcher dies, even
/// by SIGKILL (Linux's parent-death signal), so no worker outlives its run.
pub(crate) async fn spawn_local(
    n: usize,
    device: &str,
    token: Option<&str>,
    tls_dir: Option<&std::path::Path>,
) -> anyhow::Result<(Vec<tokio::process::Child>, Vec<String>)> {
    let exe = std::env::current_exe()?;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let threads = (cores / n).max(1);
    let (mut children, mut addrs) = (Vec::new(), Vec::new());
    for rank in 0..n {
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.args([
            "worker",
            "--listen",
            "127.0.0.1:0",
            "--rank",
            &rank.to_string(),
            "--device",
            device,
            "--threads",
            &threads.to_string(),
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
        if let Some(t) = token {
            cmd.env("STRATA_TOKEN", t);
        }
        if let Some(d) = tls_dir {
            cmd.arg("--tls-dir").arg(d);
        }
        die_with_parent(&mut cmd);
        let mut child = cmd.spawn().context("starting a local worker")?;
        eprintln!("strata launch: worker {rank} pid {}", child.id().unwrap_or(0));
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .with_context(|| format!("worker {rank} did not start within 30 s"))??
            .with_context(|| format!("worker {rank} exited before listening"))?;
        let addr = line.rsplit(' ').next().unwrap_or_default().to_string();
        addrs.push(addr);
        children.push(child);
    }
    Ok((children, addrs))
}
/// Has the kernel SIGKILL the child when this process dies (it would otherwise keep serving,
/// holding memory and a port, with nobody to shut it down). Linux only; elsewhere the children
/// are killed when the launcher drops them.
fn die_with_parent(cmd: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid before the fork; the closure runs in the child between fork and exec
        // and calls only async-signal-safe functions (prctl, getppid).
        let parent = unsafe { libc::getpid() };
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The launcher died before the signal was armed: do not start an orphan.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the launcher exited while starting a worker"));
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// The rank a registration may take: one in 1..world, not taken by another address, at an
/// address on the caller's own host (when both are IP addresses; loopback counts as one host).
fn check_registration(reg: &strata_pipe::worker::Registration, addrs: &[String]) -> Result<usize, String> {
    let (r, world) = (reg.rank as usize, addrs.len());
    if r == 0 || r >= world {
        return Err(format!("rank {r} is outside 1..{world}"));
    }
    if !addrs[r].is_empty() && addrs[r] != reg.addr {
        return Err(format!("rank {r} is already registered at {}; {} may not take it", addrs[r], reg.addr));
    }
    if let (Ok(claimed), Some(peer)) = (reg.addr.parse::<std::net::SocketAddr>(), reg.peer) {
        let same = claimed.ip() == peer.ip() || (claimed.ip().is_loopback() && peer.ip().is_loopback());
        if !same {
            return Err(format!("rank {r} claims the address {} but calls from {}", reg.addr, peer.ip()));
        }
    }
    Ok(r)
}

/// torchrun / Slurm conventions: (rank, world size, master address) when WORLD_SIZE or
/// SLURM_NTASKS says there are several processes.
pub fn rendezvous_env() -> anyhow::Result<Option<(usize, usize, String)>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let parse = |k: &str| -> anyhow::Result<Option<usize>> {
        var(k)
            .map(|v| v.parse::<usize>().with_context(|| format!("${k}={v}: expected a non-negative integer")))
            .transpose()
    };
    let world = match parse("WORLD_SIZE")? {
        Some(w) => w,
        None => match parse("SLURM_NTASKS")? {
            Some(w) => w,
            None => return Ok(None),
        },
    };
    if world <= 1 {
        return Ok(None);
    }
    let rank = match parse("RANK")? {
        Some(r) => r,
        None => parse("SLURM_PROCID")?.context("WORLD_SIZE is set but neither $RANK nor $SLURM_PROCID is")?,
    };
    if rank >= world {
        bail!("rank {rank} is not below the world size {world}");
    }
    let host = var("MASTER_ADDR").context("a torchrun/Slurm start needs $MASTER_ADDR (rank 0's host)")?;
    let port = parse("MASTER_PORT")?.unwrap_or(29500);
    Ok(Some((rank, world, format!("{host}:{port}"))))
}

/// Whether `addr` (host:port) names this machine's loopback.
pub(super) fn is_loopback(addr: &str) -> bool {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The local address other hosts reach us at: $STRATA_ADVERTISE_ADDR, else the interface
/// address the kernel routes to `master` from.
pub(super) fn advertised_host(master: &str) -> anyhow::Result<String> {
    if let Ok(a) = std::env::var("STRATA_ADVERTISE_ADDR") {
        return Ok(a);
    }
    if is_loopback(master) {
        return Ok("127.0.0.1".into());
    }
    use std::net::ToSocketAddrs;
    let target = master
        .to_socket_addrs()
        .with_context(|| format!("resolving MASTER_ADDR {master}"))?
        .next()
        .context("MASTER_ADDR resolves to nothing")?;
    let sock = std::net::UdpSocket::bind(if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" })?;
    sock.connect(target)?;
    Ok(sock.local_addr()?.ip().to_string())
}

/// Rank ≥ 1 of a torchrun/Slurm start: serve as a worker and announce ourselves to rank 0.
pub(super) fn env_worker(
    rank: usize,
    world: usize,
    master: String,
    a: &LaunchArgs,
    token: Option<String>,
) -> anyhow::Result<()> {
    let creds = credentials(token, a.tls_dir.as_deref(), &format!("worker-{rank}"))?;
    let device = strata_nn::parse_device(&a.device)?;
    let bind: std::net::SocketAddr = if is_loopback(&master) { "127.0.0.1:0".parse()? } else { "0.0.0.0:0".parse()? };
    let host = advertised_host(&master)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
        let opts = strata_pipe::worker::WorkerOptions {
            listen: bind,
            creds: creds.clone(),
            rank: rank as u32,
            device,
            registrations: None,
            max_graph_bytes: strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES,
            health_listen: None,
        };
        let server = tokio::spawn(strata_pipe::worker::serve(opts, move |addr| {
            let _ = addr_tx.send(addr);
        }));
        let port = addr_rx.await.context("worker failed to bind")?.port();
        let me = format!("{host}:{port}");
        eprintln!("strata launch: rank {rank}/{world} serving at {me}, registering with {master}");
        strata_pipe::worker::register(&master, rank as u32, &me, world as u32, &creds, RENDEZVOUS_WAIT)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        server.await?.map_err(|e| anyhow::anyhow!(e))
    })
}
/// Rank 0 of a torchrun/Slurm start: serve as worker 0 in this process and collect the other
/// ranks' addresses. Returns every worker's address in rank order.
pub(super) async fn serve_rank0(
    master: &str,
    world: usize,
    device: &str,
    creds: Credentials,
) -> anyhow::Result<Vec<String>> {
    use std::net::ToSocketAddrs;
    let port = master.rsplit_once(':').map_or("29500", |(_, p)| p);
    let bind = if is_loopback(master) { format!("127.0.0.1:{port}") } else { format!("0.0.0.0:{port}") };
    let listen = bind.to_socket_addrs()?.next().context("bind address")?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = strata_pipe::worker::WorkerOptions {
        listen,
        creds,
        rank: 0,
        device: strata_nn::parse_device(device)?,
        registrations: Some(tx),
        max_graph_bytes: strata_pipe::worker::DEFAULT_MAX_GRAPH_BYTES,
        health_listen: None,
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = strata_pipe::worker::serve(opts, move |a| {
            let _ = bound_tx.send(a);
        })
        .await
        {
            tracing::error!("rank 0 worker: {e}");
        }
    });
    bound_rx.await.with_context(|| format!("rank 0 could not listen on {bind}"))?;
    let mut addrs = vec![String::new(); world];
    addrs[0] = master.to_string();
    let mut missing = world - 1;
    eprintln!("strata launch: rank 0 waiting for {missing} rank(s) at {master}");
    while missing > 0 {
        let reg: strata_pipe::worker::Registration = tokio::time::timeout(RENDEZVOUS_WAIT, rx.recv())
            .await
            .map_err(|_| {
                let absent: Vec<String> =
                    addrs.iter().enumerate().filter(|(_, a)| a.is_empty()).map(|(r, _)| r.to_string()).collect();
                anyhow::anyhow!("ranks {} did not register within {RENDEZVOUS_WAIT:?}", absent.join(", "))
            })?
            .context("registration channel closed")?;
        // A bad claim is refused to its caller; the rendezvous goes on with the others.
        match check_registration(&reg, &addrs) {
            Err(why) => {
                eprintln!("strata launch: refused a registration: {why}");
                let _ = reg.reply.send(Err(why));
            }
            Ok(r) => {
                if addrs[r].is_empty() {
                    missing -= 1;
                    eprintln!("strata launch: rank {r} registered at {} ({missing} to go)", reg.addr);
                }
                addrs[r] = reg.addr.clone();
                let _ = reg.reply.send(Ok(()));
            }
        }
    }
    Ok(addrs)
}
