//! Credentials for the REST catalog: none, a fixed bearer token, or OAuth2 client credentials
//! exchanged for tokens (`grant_type=client_credentials`, the Iceberg REST catalog's
//! `/v1/oauth/tokens` by default), refreshed at 80% of their lifetime and after a 401.
//!
//! A refused credential is a configuration error (exit 78 from `flush`): retrying cannot help,
//! and a retry storm against an identity provider helps nobody.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::CatalogAuth;
use crate::{Error, Result};

pub struct Auth {
    how: CatalogAuth,
    current: Mutex<Option<Token>>,
}

struct Token {
    value: String,
    /// When to get a new one before using it again (`None`: the answer gave no lifetime).
    refresh_at: Option<Instant>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    expires_in: Option<u64>,
}

impl Auth {
    pub fn new(how: CatalogAuth) -> Auth {
        Auth { how, current: Mutex::new(None) }
    }

    /// The config key an operator fixes when the catalog refuses us.
    pub fn key(&self) -> &'static str {
        match self.how {
            CatalogAuth::None | CatalogAuth::Token(_) => "catalog.token",
            CatalogAuth::Client { .. } => "catalog.credential",
        }
    }

    /// The `Authorization` header for the next request, getting a token first when needed.
    pub fn header(&self, agent: &ureq::Agent) -> Result<Option<String>> {
        match &self.how {
            CatalogAuth::None => Ok(None),
            CatalogAuth::Token(t) => Ok(Some(format!("Bearer {t}"))),
            CatalogAuth::Client { id, secret, endpoint, scope } => {
                let mut current = self.current.lock().expect("not poisoned");
                let fresh = current.as_ref().is_some_and(|t| t.refresh_at.is_none_or(|at| Instant::now() < at));
                if !fresh {
                    *current = Some(fetch(agent, endpoint, id, secret, scope)?);
                }
                Ok(current.as_ref().map(|t| format!("Bearer {}", t.value)))
            }
        }
    }

    /// The catalog answered 401: forget the token. True when a new one may help (one retry).
    pub fn rejected(&self) -> bool {
        matches!(self.how, CatalogAuth::Client { .. }) && self.current.lock().expect("not poisoned").take().is_some()
    }
}

fn fetch(agent: &ureq::Agent, endpoint: &str, id: &str, secret: &str, scope: &str) -> Result<Token> {
    let started = Instant::now();
    let fail = |status, body: String| Error::Catalog { context: format!("get a token from {endpoint}"), status, body };
    let form = [("grant_type", "client_credentials"), ("client_id", id), ("client_secret", secret), ("scope", scope)];
    let mut resp = agent.post(endpoint).send_form(form).map_err(|e| {
        if crate::tls::is_untrusted(&e) {
            crate::tls::untrusted("catalog.ca_file", endpoint, &e)
        } else {
            fail(None, e.to_string())
        }
    })?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().map_err(|e| fail(Some(status), e.to_string()))?;
    match status {
        200 => {
            let a: TokenAnswer =
                serde_json::from_str(&body).map_err(|e| fail(Some(status), format!("unreadable answer ({e})")))?;
            let refresh_at = a.expires_in.map(|s| started + Duration::from_millis(s.saturating_mul(800)));
            log::debug!("catalog: new token from {endpoint}, valid for {:?} s", a.expires_in);
            Ok(Token { value: a.access_token, refresh_at })
        }
        // RFC 6749 §5.2: invalid_client is 401, a bad grant or scope 400.
        400 | 401 | 403 => Err(Error::config(
            "catalog.credential",
            format!(
                "the token endpoint {endpoint} refused the client credentials (HTTP {status}: {})",
                body.chars().take(300).collect::<String>()
            ),
            "check the client id and secret (\"<client_id>:<client_secret>\"), catalog.scope and catalog.oauth2_server_uri",
        )),
        _ => Err(fail(Some(status), body)),
    }
}
