//! TLS and SASL to the brokers, as rskafka takes them: a rustls `ClientConfig` (ring, the same
//! rustls the HTTP clients use) and a `SaslConfig`. Also the reading of connect errors that no
//! retry can fix (a refused certificate or password), so they become configuration errors.

use std::sync::Arc;

use rskafka::client::{Credentials, SaslConfig};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;

use crate::config::{KafkaSasl, KafkaTls, SaslMechanism};
use crate::{Error, Result};

pub fn tls_config(tls: &KafkaTls) -> Result<Arc<rustls::ClientConfig>> {
    let roots = crate::tls::root_store(crate::tls::roots(tls.ca_file.as_deref(), "kafka.ca_file")?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            Error::config("kafka.tls", e.to_string(), "report this: the TLS library refused its own defaults")
        })?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = crate::tls::pem_certs(
                cert,
                "kafka.cert_file",
                "point it at the PEM client certificate (and its chain)",
            )?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::config(
                    "kafka.key_file",
                    format!("no private key read from {}: {e}", key.display()),
                    "point it at the PEM private key of kafka.cert_file",
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::config(
                    "kafka.cert_file",
                    format!("the client certificate and key do not go together: {e}"),
                    "name a certificate and its own key",
                )
            })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

pub fn sasl_config(sasl: &KafkaSasl) -> SaslConfig {
    let credentials = Credentials::new(sasl.username.clone(), sasl.password.clone());
    match sasl.mechanism {
        SaslMechanism::Plain => SaslConfig::Plain(credentials),
        SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
        SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
    }
}

/// A connect error that retrying cannot fix, as the configuration error that names the key.
pub fn refused(e: &Error) -> Option<Error> {
    let text = e.to_string();
    if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
        return Some(Error::config(
            "kafka.ca_file",
            format!("the broker's TLS certificate is not trusted ({text})"),
            "name the PEM file of the CA that signed it, or connect to the host name it was issued for",
        ));
    }
    if text.contains("CertificateRequired") || text.contains("BadCertificate") || text.contains("UnknownCA") {
        return Some(Error::config(
            "kafka.cert_file",
            format!("the broker refused the client certificate, or got none ({text})"),
            "name a client certificate (and kafka.key_file) signed by a CA the broker trusts",
        ));
    }
    if text.contains("Sasl handshake failed") {
        return Some(Error::config(
            "kafka.password",
            format!("the broker refused the SASL login ({text})"),
            "check kafka.username, kafka.password and kafka.sasl_mechanism",
        ));
    }
    None
}
