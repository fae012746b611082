//! `registry::download` against a loopback HTTP server that serves `../shared/graphs`, plus a
//! corrupting route whose files must be rejected and never left in the cache.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use strata_graph::registry::{self, locate_or_skip};

/// Serves `root` over HTTP/1.1 on 127.0.0.1; paths under `/corrupt/` get one byte flipped.
/// Handles a bounded number of requests, then the thread ends.
fn serve(root: PathBuf, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut s) = stream else { continue };
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (corrupt, rel) = match path.strip_prefix("/corrupt/") {
                Some(r) => (true, r.to_string()),
                None => (false, path.trim_start_matches('/').to_string()),
            };
            match std::fs::read(root.join(&rel)) {
                Ok(mut body) => {
                    if corrupt {
                        let mid = body.len() / 2;
                        body[mid] ^= 0xff;
                    }
                    let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                    let _ = s.write_all(&body);
                }
                Err(_) => {
                    let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn download_verifies_checksums_and_rejects_corruption() {
    let Some(cora) = locate_or_skip("planetoid/cora.npz") else { return };
    let shared = cora.parent().unwrap().parent().unwrap().to_path_buf();
    let base = serve(shared, 8);
    let cache = tempfile::tempdir().unwrap();

    // Every file of a dataset, fetched through the mirror, lands verified.
    for rel in registry::files("cornell", None).unwrap().into_iter().take(3) {
        let p = registry::download(&rel, Some(&base), cache.path()).unwrap();
        registry::verify(&rel, &p).unwrap();
    }
    let p = registry::download("planetoid/cora.npz", Some(&base), cache.path()).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&cora).unwrap());

    // A corrupted transfer is rejected, and nothing (not even a temporary file) is left.
    let rel = "planetoid/citeseer.npz";
    let e = registry::download(rel, Some(&format!("{base}/corrupt")), cache.path()).unwrap_err().to_string();
    assert!(e.contains("SHA-256 mismatch") && e.contains("rejected"), "{e}");
    assert!(!cache.path().join(rel).exists());
    let leftovers: Vec<_> =
        std::fs::read_dir(cache.path().join("planetoid")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("cora.npz")], "stray files: {leftovers:?}");

    // A missing file is an HTTP error naming the address.
    let e = registry::download("planetoid/pubmed.npz", Some(&format!("{base}/nowhere")), cache.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("nowhere/planetoid/pubmed.npz"), "{e}");
}

#[test]
fn converted_files_need_a_mirror_and_upstream_ones_have_an_address() {
    let e =
        registry::download("planetoid/cora.npz", None, std::path::Path::new("/nonexistent")).unwrap_err().to_string();
    assert!(e.contains("--mirror"), "{e}");
    assert!(registry::upstream_url("nettack/cora.npz").unwrap().ends_with("/data/cora.npz"));
    assert!(registry::upstream_url("webkb/texas/splits/texas_split_0.6_0.2_3.npz")
        .unwrap()
        .ends_with("/splits/texas_split_0.6_0.2_3.npz"));
    for d in registry::DATASETS {
        for f in registry::files(d.name, None).unwrap() {
            assert!(registry::checksum_of(&f).is_some(), "{}: no checksum for {f}", d.name);
        }
    }
}
