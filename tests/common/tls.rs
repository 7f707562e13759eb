//! A TLS-terminating TCP proxy on 127.0.0.1 for the tests: it makes a test CA and a server
//! certificate for 127.0.0.1 signed by it, takes TLS connections, and passes the plaintext bytes
//! both ways to an upstream server (the registry stub, the real catalog, or the real broker,
//! whose own TLS options cannot be used: tansu 0.6's command line refuses --cert with --key).
//! std threads only.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct TlsProxy {
    pub port: u16,
    /// PEM of the CA that signed the proxy's certificate.
    pub ca_file: PathBuf,
    /// PEM of another CA, which did not: a client trusting only it must refuse the proxy.
    pub other_ca_file: PathBuf,
    stop: Arc<AtomicBool>,
    upstream: Arc<Mutex<Option<SocketAddr>>>,
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("a CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    (params.self_signed(&key).expect("a self-signed CA"), key)
}

/// A test CA, a server certificate for 127.0.0.1 and a client certificate signed by it, and an
/// unrelated CA, as PEM files.
pub struct TestCerts {
    pub ca_file: PathBuf,
    pub other_ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    client_der: (Vec<u8>, Vec<u8>),
}

impl TestCerts {
    /// Makes them in `dir`, with `name` in the file names.
    pub fn new(dir: &Path, name: &str) -> TestCerts {
        let (ca_cert, ca_key) = ca("frazil test CA");
        let (other, _) = ca("some other CA");
        let key = KeyPair::generate().expect("a server key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
        params.subject_alt_names.push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
        params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
        let cert = params.signed_by(&key, &ca_cert, &ca_key).expect("a server certificate");
        let client_key = KeyPair::generate().expect("a client key");
        let mut client_params = CertificateParams::new(Vec::<String>::new()).expect("client params");
        client_params.distinguished_name.push(DnType::CommonName, "frazil test client");
        client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client = client_params.signed_by(&client_key, &ca_cert, &ca_key).expect("a client certificate");
        let file = |kind: &str| dir.join(format!("{name}-{kind}.pem"));
        let certs = TestCerts {
            ca_file: file("ca"),
            other_ca_file: file("other-ca"),
            cert_file: file("cert"),
            key_file: file("key"),
            client_cert_file: file("client-cert"),
            client_key_file: file("client-key"),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            client_der: (client.der().to_vec(), client_key.serialize_der()),
        };
        std::fs::write(&certs.client_cert_file, client.pem()).unwrap();
        std::fs::write(&certs.client_key_file, client_key.serialize_pem()).unwrap();
        std::fs::write(&certs.ca_file, ca_cert.pem()).unwrap();
        std::fs::write(&certs.other_ca_file, other.pem()).unwrap();
        std::fs::write(&certs.cert_file, cert.pem()).unwrap();
        std::fs::write(&certs.key_file, key.serialize_pem()).unwrap();
        certs
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(&self.ca_file).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    }

    /// A rustls client config that trusts the test CA, presenting the client certificate when
    /// `with_cert`.
    pub fn client_config(&self, with_cert: bool) -> Arc<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots());
        Arc::new(if with_cert {
            let (cert, key) = self.client_der.clone();
            builder
                .with_client_auth_cert(
                    vec![CertificateDer::from(cert)],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
                )
                .unwrap()
        } else {
            builder.with_no_client_auth()
        })
    }

    /// The proxy's server config; with `client_certs`, a client must present a certificate the
    /// test CA signed.
    fn server_config(&self, client_certs: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("protocol versions");
        let builder = if client_certs {
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()), provider)
                    .build()
                    .expect("a client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .expect("the server certificate");
        Arc::new(config)
    }
}

impl TlsProxy {
    /// Starts the proxy in front of `upstream`; the CA files are written into `dir`.
    pub fn start(upstream: SocketAddr, dir: &Path) -> TlsProxy {
        let certs = TestCerts::new(dir, &format!("proxy-{}", upstream.port()));
        let proxy = TlsProxy::listen(&certs);
        proxy.set_upstream(upstream);
        proxy
    }

    /// Starts the proxy with `certs` before its upstream is known (a broker must be told the
    /// proxy's port to advertise it): connections fail until [`TlsProxy::set_upstream`].
    pub fn listen(certs: &TestCerts) -> TlsProxy {
        TlsProxy::listen_with(certs, false)
    }

    /// [`TlsProxy::listen`], and every client must present a certificate the test CA signed.
    pub fn listen_requiring_client_certs(certs: &TestCerts) -> TlsProxy {
        TlsProxy::listen_with(certs, true)
    }

    fn listen_with(certs: &TestCerts, client_certs: bool) -> TlsProxy {
        let config = certs.server_config(client_certs);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let upstream: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));
        let (stopping, target) = (stop.clone(), upstream.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let config = config.clone();
                        let Some(up) = *target.lock().unwrap() else { continue };
                        std::thread::spawn(move || {
                            let _ = pump(client, up, config);
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                    Err(_) => break,
                }
            }
        });
        TlsProxy { port, ca_file: certs.ca_file.clone(), other_ca_file: certs.other_ca_file.clone(), stop, upstream }
    }

    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = Some(upstream);
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
    let mut tls =
        rustls::StreamOwned::new(rustls::ServerConnection::new(config).map_err(std::io::Error::other)?, client);
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
