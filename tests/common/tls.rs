//! A TLS-terminating TCP proxy on 127.0.0.1 for the tests: it makes a test CA and a server
//! certificate for 127.0.0.1 signed by it, takes TLS connections, and passes the plaintext bytes
//! both ways to an upstream server (the registry stub, or the real catalog). std threads only.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TlsProxy {
    pub port: u16,
    /// PEM of the CA that signed the proxy's certificate.
    pub ca_file: PathBuf,
    /// PEM of another CA, which did not: a client trusting only it must refuse the proxy.
    pub other_ca_file: PathBuf,
    stop: Arc<AtomicBool>,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (params.self_signed(&key).expect("a self-signed CA"), key)
}

impl TlsProxy {
    /// Starts the proxy in front of `upstream`; the CA files are written into `dir`.
    pub fn start(upstream: SocketAddr, dir: &Path) -> TlsProxy {
        let (ca_cert, ca_key) = ca("frazil test CA");
        let (other, _) = ca("some other CA");
        let key = KeyPair::generate().expect("a server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("a server certificate");
        let ca_file = dir.join(format!("ca-{}.pem", upstream.port()));
        let other_ca_file = dir.join(format!("other-ca-{}.pem", upstream.port()));
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&other_ca_file, other.pem()).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(cert.der().to_vec())], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
            .expect("the server certificate");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let config = config.clone();
                        std::thread::spawn(move || {
                            let _ = pump(client, upstream, config);
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        });
        TlsProxy { port, ca_file, other_ca_file, stop }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn quiet(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Passes bytes both ways until either side closes. Short read timeouts on both sockets let one
/// thread serve both directions.
fn pump(client: TcpStream, upstream: SocketAddr, config: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_read_timeout(Some(Duration::from_millis(5)))?;
    let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).map_err(std::io::Error::other)?, client);
    let mut plain = TcpStream::connect(upstream)?;
    plain.set_read_timeout(Some(Duration::from_millis(5)))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let mut moved = false;
        match tls.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => {
                plain.write_all(&buf[..n])?;
                moved = true;
            }
            Err(e) if quiet(&e) => {}
            Err(e) => return Err(e),
        }
        match plain.read(&mut buf) {
            Ok(0) => {
                tls.conn.send_close_notify();
                let _ = tls.flush();
                return Ok(());
            }
            Ok(n) => {
                tls.write_all(&buf[..n])?;
                tls.flush()?;
                moved = true;
            }
            Err(e) if quiet(&e) => {}
            Err(e) => return Err(e),
        }
        if !moved {
            std::thread::yield_now();
        }
    }
}
