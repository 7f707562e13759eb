//! Whom the TLS clients trust, and the HTTP clients (the schema registry, the REST catalog):
//! ureq agents with rustls. Every TLS client (those, Kafka, S3) trusts the system's CA store
//! (`/etc/ssl/certs`, where `update-ca-certificates` puts a site's own CA) or, when a CA file is
//! configured, only the certificates in it. A system with no CA store gets the bundled Mozilla roots.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::{Error, Result};

/// A ureq agent for a JSON-over-HTTP service: statuses are answers (not errors), `timeout`
/// bounds each request (and at most 10 s of it the connect), and `ca_file` (config key `key`)
/// replaces the trusted roots.
pub fn http_agent(timeout: Duration, ca_file: Option<&Path>, key: &str) -> Result<ureq::Agent> {
    let mut builder = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .user_agent(concat!("frazil/", env!("CARGO_PKG_VERSION")));
    builder = builder.tls_config(ureq_config(&roots(ca_file, key)?));
    Ok(builder.build().into())
}

/// The CA certificates to trust: those in `ca_file` (config key `key`), else the system's
/// (empty: the bundled Mozilla roots).
pub fn roots(ca_file: Option<&Path>, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    match ca_file {
        Some(path) => {
            pem_certs(path, key, "point it at a PEM file of the CA certificates that signed the server's certificate")
        }
        None => Ok(system_roots().to_vec()),
    }
}

/// The certificates in a PEM file (at least one), for config key `key`.
pub fn pem_certs(path: &Path, key: &str, fix: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| Error::config(key, format!("cannot read PEM certificates from {}: {e}", path.display()), fix))?;
    if certs.is_empty() {
        return Err(Error::config(key, format!("{} holds no PEM certificate", path.display()), fix));
    }
    Ok(certs)
}

/// The system's CA store, read once. Empty when there is none: the callers then trust the
/// bundled Mozilla roots.
fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            log::debug!("no system CA store ({:?}); trusting the bundled Mozilla roots", found.errors);
        }
        found.certs
    })
}

/// ureq's TLS settings trusting `roots`; an empty list means ureq's bundled Mozilla roots.
pub fn ureq_config(roots: &[CertificateDer<'static>]) -> ureq::tls::TlsConfig {
    let builder = ureq::tls::TlsConfig::builder();
    if roots.is_empty() {
        return builder.root_certs(ureq::tls::RootCerts::WebPki).build();
    }
    let certs: Vec<ureq::tls::Certificate<'static>> =
        roots.iter().map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()).collect();
    builder.root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build()
}

/// A rustls root store of `roots`; the bundled Mozilla roots when the list is empty.
pub fn root_store(roots: Vec<CertificateDer<'static>>) -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    if roots.is_empty() {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    } else {
        store.add_parsable_certificates(roots);
    }
    store
}

/// True when `e` is the server's certificate being refused (an unknown issuer, a wrong name, an
/// expired certificate): retrying cannot help, the trusted CAs or the URL must change.
pub fn is_untrusted(e: &ureq::Error) -> bool {
    let text = match e {
        ureq::Error::Rustls(r) => r.to_string(),
        ureq::Error::Io(io) => io.to_string(),
        _ => return false,
    };
    text.contains("invalid peer certificate")
}

/// The configuration error for a refused certificate.
pub fn untrusted(key: &str, url: &str, e: &ureq::Error) -> Error {
    Error::config(
        key,
        format!("the TLS certificate of {url} is not trusted ({e})"),
        "name the PEM file of the CA that signed it, or fix the URL's host name",
    )
}

/// `s` as one segment of a URL path: every byte but the unreserved ones percent-encoded.
pub fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
