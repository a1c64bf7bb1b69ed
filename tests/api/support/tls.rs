//! A private certificate authority and a server certificate it signed, made with `openssl`
//! in a folder of the test's own: for servers that speak TLS to ferry.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The CA and the server certificate (for `127.0.0.1` and `localhost`), as PEM files.
pub struct Certificates {
    /// The CA certificate: what a client must trust.
    pub ca: PathBuf,
    /// The server's certificate.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl Certificates {
    /// Makes a fresh CA and server certificate under `dir`.
    pub fn make(dir: &Path) -> Self {
        let path = |name: &str| dir.join(name);
        let (ca, ca_key) = (path("ca.pem"), path("ca.key"));
        let (cert, key, request) = (path("server.pem"), path("server.key"), path("server.csr"));
        let extensions = path("server.ext");
        std::fs::write(&extensions, "subjectAltName = IP:127.0.0.1, DNS:localhost\n").unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &["req", "-x509", "-days", "2", "-subj", "/CN=ferry test CA"],
            &ec,
            &[("-keyout", &ca_key), ("-out", &ca)],
        );
        openssl(&["req", "-subj", "/CN=localhost"], &ec, &[("-keyout", &key), ("-out", &request)]);
        openssl(
            &["x509", "-req", "-days", "2", "-CAcreateserial"],
            &[],
            &[("-in", &request), ("-CA", &ca), ("-CAkey", &ca_key), ("-extfile", &extensions), ("-out", &cert)],
        );
        Self { ca, cert, key }
    }
}

fn openssl(args: &[&str], more: &[&str], paths: &[(&str, &PathBuf)]) {
    let mut command = Command::new("openssl");
    command.args(args).args(more);
    for (flag, path) in paths {
        command.arg(flag).arg(path);
    }
    let out = command.output().expect("openssl must be installed (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}
