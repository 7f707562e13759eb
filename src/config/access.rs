//! Whom frazil trusts and how it proves itself: TLS and SASL to the brokers, credentials for
//! the catalog, and secrets given inline or in files.

use std::fmt;
use std::path::PathBuf;

use crate::{Error, Result};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaTls {
    /// PEM CA certificates to trust (default: the system's CA store).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key (PEM), for brokers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

#[derive(Clone, PartialEq, Eq)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
}

/// Shown in place of a secret when settings are printed.
pub const REDACTED: &str = "<redacted>";

impl fmt::Debug for KafkaSasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

/// How frazil proves itself to the catalog.
#[derive(Clone, PartialEq, Eq)]
pub enum CatalogAuth {
    None,
    /// A fixed bearer token.
    Token(String),
    /// OAuth2 client credentials, exchanged at `endpoint` for tokens that are refreshed before
    /// they expire.
    Client {
        id: String,
        secret: String,
        endpoint: String,
        scope: String,
    },
}

impl fmt::Debug for CatalogAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogAuth::None => f.write_str("None"),
            CatalogAuth::Token(_) => f.debug_tuple("Token").field(&REDACTED).finish(),
            CatalogAuth::Client { id, endpoint, scope, .. } => f
                .debug_struct("Client")
                .field("id", id)
                .field("secret", &REDACTED)
                .field("endpoint", endpoint)
                .field("scope", scope)
                .finish(),
        }
    }
}

/// TLS is on when asked for, or when any of its files is named.
pub(super) fn kafka_tls(
    on: Option<bool>,
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
) -> Result<Option<KafkaTls>> {
    let set = |p: Option<PathBuf>| p.filter(|p| !p.as_os_str().is_empty());
    let (ca_file, cert_file, key_file) = (set(ca_file), set(cert_file), set(key_file));
    if cert_file.is_some() != key_file.is_some() {
        let key = if cert_file.is_some() { "kafka.key_file" } else { "kafka.cert_file" };
        return Err(Error::config(
            key,
            "a client certificate needs both kafka.cert_file and kafka.key_file",
            "name both PEM files, or neither",
        ));
    }
    let named = ca_file.is_some() || cert_file.is_some();
    match (on, named) {
        (Some(false), true) => Err(Error::config(
            "kafka.tls",
            "is false but TLS files are named",
            "set tls = true, or remove ca_file, cert_file and key_file",
        )),
        (Some(true), _) | (None, true) => Ok(Some(KafkaTls { ca_file, cert_file, key_file })),
        _ => Ok(None),
    }
}

/// SASL when a mechanism is named; it needs a user name and a password.
pub(super) fn kafka_sasl(
    mechanism: Option<String>,
    username: Option<String>,
    password: Option<String>,
) -> Result<Option<KafkaSasl>> {
    let Some(m) = mechanism.filter(|m| !m.is_empty()) else {
        if username.is_some_and(|u| !u.is_empty()) {
            return Err(Error::config(
                "kafka.sasl_mechanism",
                "is not set but kafka.username is",
                "set sasl_mechanism = \"SCRAM-SHA-256\" (or \"SCRAM-SHA-512\", \"PLAIN\")",
            ));
        }
        return Ok(None);
    };
    let mechanism = match m.to_ascii_uppercase().as_str() {
        "PLAIN" => SaslMechanism::Plain,
        "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
        "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
        _ => {
            return Err(Error::config(
                "kafka.sasl_mechanism",
                format!("`{m}` is not a SASL mechanism frazil speaks"),
                "write \"SCRAM-SHA-256\", \"SCRAM-SHA-512\" or \"PLAIN\"",
            ));
        }
    };
    let username = username
        .filter(|u| !u.is_empty())
        .ok_or_else(|| Error::config("kafka.username", "is needed for SASL", "set the user name the broker knows"))?;
    let password =
        password.ok_or_else(|| Error::config("kafka.password", "is needed for SASL", "set it, or password_file"))?;
    Ok(Some(KafkaSasl { mechanism, username, password }))
}

/// `catalog.token` or `catalog.credential` ("client_id:client_secret"), each also from a file.
pub(super) fn catalog_auth(
    uri: &str,
    token: Option<String>,
    token_file: Option<PathBuf>,
    credential: Option<String>,
    credential_file: Option<PathBuf>,
    server_uri: Option<String>,
    scope: Option<String>,
) -> Result<CatalogAuth> {
    // An empty value is no value, as for `warehouse`.
    let token = secret("catalog.token", token, token_file)?.filter(|t| !t.is_empty());
    let credential = secret("catalog.credential", credential, credential_file)?.filter(|c| !c.is_empty());
    let server_uri = server_uri.filter(|u| !u.is_empty());
    Ok(match (token, credential) {
        (Some(_), Some(_)) => {
            return Err(Error::config(
                "catalog.credential",
                "is set together with catalog.token",
                "keep one: a fixed token, or client credentials to get tokens with",
            ));
        }
        (Some(t), None) => CatalogAuth::Token(t),
        (None, Some(c)) => {
            let Some((id, secret)) = c.split_once(':').filter(|(id, _)| !id.is_empty()) else {
                return Err(Error::config(
                    "catalog.credential",
                    "is not of the form client_id:client_secret",
                    "write e.g. \"frazil-gw7:the-secret\"",
                ));
            };
            let endpoint = server_uri.unwrap_or_else(|| format!("{uri}/v1/oauth/tokens"));
            if !endpoint.starts_with("http://") && !endpoint.starts_with("https://") {
                return Err(Error::config(
                    "catalog.oauth2_server_uri",
                    format!("`{endpoint}` is not an http(s) URL"),
                    "write e.g. \"https://auth.example.com/oauth/token\"",
                ));
            }
            CatalogAuth::Client {
                id: id.to_string(),
                secret: secret.to_string(),
                endpoint,
                scope: scope.unwrap_or_else(|| "catalog".into()),
            }
        }
        (None, None) => CatalogAuth::None,
    })
}

/// A secret given inline or as a file holding it (e.g. a systemd credential or a mounted secret;
/// a trailing newline is dropped). Both at once is an error.
pub(super) fn secret(key: &str, inline: Option<String>, file: Option<PathBuf>) -> Result<Option<String>> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(Error::config(
            format!("{key}_file"),
            format!("is set together with {key}"),
            format!("keep one of {key} and {key}_file"),
        )),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            std::fs::read_to_string(&path).map(|v| Some(v.trim_end_matches(['\n', '\r']).to_string())).map_err(|e| {
                Error::config(
                    format!("{key}_file"),
                    format!("cannot read {}: {e}", path.display()),
                    "point it at a file frazil's user can read",
                )
            })
        }
        (None, None) => Ok(None),
    }
}
