//! A Confluent-compatible Schema Registry client: Avro writer schemas by id
//! (`GET /schemas/ids/{id}`), cached for the life of the process (an id never changes meaning).
//!
//! Only two answers are final: the schema, or the registry saying it has no such id (404 with
//! its error code 40403). The
//! records that name such an id are dead letters. Anything else (the registry down, a 5xx) is an
//! error the fetch loop retries with backoff: the records stay in Kafka and
//! nothing is decided about them. Refused credentials are a configuration error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::config::RegistryConfig;
use crate::{Error, Result};

/// What the registry said about one id.
#[derive(Clone, Debug, PartialEq)]
pub enum Known {
    /// The schema's JSON text.
    Schema(Arc<str>),
    /// No usable schema: the reason, for the dead-letter table.
    Refused(String),
}

pub struct Registry {
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
    cache: Mutex<HashMap<u32, Known>>,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
}

impl Registry {
    pub fn new(cfg: &RegistryConfig) -> Result<Registry> {
        let agent = crate::tls::http_agent(cfg.request_timeout, cfg.ca_file.as_deref(), "schema_registry.ca_file")?;
        let auth = cfg.username.as_ref().map(|user| {
            use base64::Engine as _;
            let pair = format!("{user}:{}", cfg.password.as_deref().unwrap_or(""));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        });
        Ok(Registry { base: cfg.url.trim_end_matches('/').to_string(), auth, agent, cache: Mutex::new(HashMap::new()) })
    }

    /// What is known of `id` without asking.
    pub fn cached(&self, id: u32) -> Option<Known> {
        self.cache.lock().expect("not poisoned").get(&id).cloned()
    }

    /// The schema of `id`, from the cache or the registry (blocking: call it off the executor).
    pub fn get(&self, id: u32) -> Result<Known> {
        if let Some(k) = self.cached(id) {
            return Ok(k);
        }
        let url = format!("{}/schemas/ids/{id}", self.base);
        let fail = |status, body: String| Error::Registry { context: format!("GET {url}"), status, body };
        let mut req = self.agent.get(&url).header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| {
            if crate::tls::is_untrusted(&e) {
                crate::tls::untrusted("schema_registry.ca_file", &self.base, &e)
            } else {
                fail(None, e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().map_err(|e| fail(Some(status), e.to_string()))?;
        let known = match status {
            200 => match serde_json::from_str::<SchemaAnswer>(&body) {
                Ok(SchemaAnswer { schema_type: Some(t), .. }) if !t.eq_ignore_ascii_case("AVRO") => {
                    Known::Refused(format!("schema id {id} is a {t} schema; frazil reads Avro"))
                }
                Ok(a) => Known::Schema(a.schema.into()),
                Err(e) => return Err(fail(Some(status), format!("unreadable answer ({e}): {}", clip(&body)))),
            },
            // Only the registry's own "schema not found" (error code 40403) is final; any other
            // 404 means the URL does not lead to a registry, and no record is judged by it.
            404 if serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["error_code"] == 40403) => {
                Known::Refused(format!("schema id {id} is not in the schema registry ({})", clip(&body)))
            }
            404 => {
                return Err(Error::config(
                    "schema_registry.url",
                    format!(
                        "GET {url} answered 404 without the registry's \"schema not found\" code 40403 ({})",
                        clip(&body)
                    ),
                    "point it at the schema registry's base URL, e.g. \"http://127.0.0.1:8081\"",
                ));
            }
            // Credentials do not fix themselves: this stops the agent (exit 78) instead of
            // retrying; the records wait in Kafka.
            401 | 403 => return Err(refused_credentials(&url, status, &body)),
            _ => return Err(fail(Some(status), clip(&body))),
        };
        self.cache.lock().expect("not poisoned").insert(id, known.clone());
        Ok(known)
    }
}

impl Registry {
    /// Asks the registry for its subjects (`GET /subjects`), for `frazil check`: `Ok` with how
    /// many it has, or the error a schema lookup would get.
    pub fn probe(&self) -> Result<usize> {
        let url = format!("{}/subjects", self.base);
        let mut req = self.agent.get(&url).header("Accept", "application/vnd.schemaregistry.v1+json, application/json");
        if let Some(a) = &self.auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| {
            if crate::tls::is_untrusted(&e) {
                crate::tls::untrusted("schema_registry.ca_file", &self.base, &e)
            } else {
                Error::Registry { context: format!("GET {url}"), status: None, body: e.to_string() }
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        match status {
            200 => {
                serde_json::from_str::<Vec<serde_json::Value>>(&body).map(|s| s.len()).map_err(|e| Error::Registry {
                    context: format!("GET {url}"),
                    status: Some(status),
                    body: format!("not a subject list ({e}): {}", clip(&body)),
                })
            }
            401 | 403 => Err(refused_credentials(&url, status, &body)),
            _ => Err(Error::Registry { context: format!("GET {url}"), status: Some(status), body: clip(&body) }),
        }
    }
}

fn refused_credentials(url: &str, status: u16, body: &str) -> Error {
    Error::config(
        "schema_registry.password",
        format!("GET {url} was refused with HTTP {status} ({})", clip(body)),
        "check schema_registry.username and password (or password_file)",
    )
}

fn clip(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &t[..i]),
        None => t.to_string(),
    }
}
