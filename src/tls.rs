//! The HTTP clients (the schema registry, the REST catalog): ureq agents with rustls, trusting
//! the bundled Mozilla roots or, when a CA file is configured, only the certificates in it.

use std::path::Path;
use std::time::Duration;

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
    if let Some(tls) = config(ca_file, key)? {
        builder = builder.tls_config(tls);
    }
    Ok(builder.build().into())
}

/// The TLS settings for a ureq agent: `None` keeps ureq's default roots. `key` names the config
/// key of the CA file in errors.
fn config(ca_file: Option<&Path>, key: &str) -> Result<Option<ureq::tls::TlsConfig>> {
    let Some(path) = ca_file else { return Ok(None) };
    let fix = "point it at a PEM file of the CA certificates that signed the server's certificate";
    let pem = std::fs::read(path).map_err(|e| Error::config(key, format!("cannot read {}: {e}", path.display()), fix))?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::config(key, format!("{} holds no PEM certificate", path.display()), fix));
    }
    Ok(Some(ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build()))
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
