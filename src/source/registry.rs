//! A Confluent-compatible Schema Registry client: writer schemas by id (`GET /schemas/ids/{id}`),
//! with the schemas they reference (`GET /subjects/{subject}/versions/{version}`, followed to the
//! end: a Protobuf file's imports, a JSON Schema's `$ref`s), cached for the life of the process
//! (an id never changes meaning).
//!
//! Only two answers are final: the schema, or the registry saying it has no such id, subject or
//! version (404 with its error code 40401, 40402 or 40403). The records that name such an id are
//! dead letters. Anything else (the registry down, a 5xx) is an error the fetch loop retries with
//! backoff: the records stay in Kafka and nothing is decided about them. Refused credentials are
//! a configuration error.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::config::RegistryConfig;
use crate::{Error, Result};

/// The most schemas one schema may reference, through all its references: more is damage.
const MAX_REFERENCES: usize = 256;

/// What the registry said about one id.
#[derive(Clone, Debug, PartialEq)]
pub enum Known {
    /// The schema, with what it references.
    Schema(Arc<Registered>),
    /// No usable schema: the reason, for the dead-letter table.
    Refused(String),
}

impl Known {
    /// The schema of `id` when it is of `kind`; else why records naming it cannot be read as
    /// `kind`.
    pub fn schema(&self, id: u32, kind: SchemaKind) -> std::result::Result<&Registered, String> {
        match self {
            Known::Refused(why) => Err(why.clone()),
            Known::Schema(r) if r.kind == kind => Ok(r),
            Known::Schema(r) => Err(format!("schema id {id} is {}; the topic's format needs {kind}", r.kind)),
        }
    }
}

/// How a registered schema is written (the registry's `schemaType`; Avro when it gives none).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchemaKind {
    Avro,
    Protobuf,
    Json,
}

impl std::fmt::Display for SchemaKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SchemaKind::Avro => "an Avro schema",
            SchemaKind::Protobuf => "a Protobuf schema",
            SchemaKind::Json => "a JSON Schema",
        })
    }
}

/// A schema as the registry holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    pub kind: SchemaKind,
    pub text: Arc<str>,
    /// The texts of the schemas it references, directly or through others, by the name it uses
    /// for them (a Protobuf import path, a JSON Schema `$ref`).
    pub references: BTreeMap<String, String>,
}

pub struct Registry {
    base: String,
    auth: Option<String>,
    agent: ureq::Agent,
    cache: Mutex<HashMap<u32, Known>>,
    /// Referenced schemas by subject and version number (a version never changes; "latest" is
    /// asked each time).
    versions: Mutex<HashMap<(String, i64), Version>>,
}

#[derive(Deserialize)]
struct SchemaAnswer {
    schema: String,
    #[serde(rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Clone, Deserialize)]
struct Reference {
    name: String,
    subject: String,
    version: i64,
}

/// A subject version's schema text and its own references.
type Version = (String, Vec<Reference>);

/// A registry's answer to one GET.
enum Answer {
    Found(SchemaAnswer),
    /// Its own "not found" (the body says what).
    Missing(String),
}

impl Registry {
    pub fn new(cfg: &RegistryConfig) -> Result<Registry> {
        let agent = crate::tls::http_agent(cfg.request_timeout, cfg.ca_file.as_deref(), "schema_registry.ca_file")?;
        let auth = cfg.username.as_ref().map(|user| {
            use base64::Engine as _;
            let pair = format!("{user}:{}", cfg.password.as_deref().unwrap_or(""));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        });
        Ok(Registry {
            base: cfg.url.trim_end_matches('/').to_string(),
            auth,
            agent,
            cache: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
        })
    }

    /// What is known of `id` without asking.
    pub fn cached(&self, id: u32) -> Option<Known> {
        self.cache.lock().expect("not poisoned").get(&id).cloned()
    }

    /// The schema of `id` and what it references, from the cache or the registry (blocking:
    /// call it off the executor).
    pub fn get(&self, id: u32) -> Result<Known> {
        if let Some(k) = self.cached(id) {
            return Ok(k);
        }
        let known = match self.ask(&format!("/schemas/ids/{id}"))? {
            Answer::Missing(body) => Known::Refused(format!("schema id {id} is not in the schema registry ({body})")),
            Answer::Found(answer) => match self.references(&answer.references)? {
                Err(why) => Known::Refused(format!("schema id {id}: {why}")),
                Ok(references) => match kind(answer.schema_type.as_deref()) {
                    Ok(kind) => Known::Schema(Arc::new(Registered { kind, text: answer.schema.into(), references })),
                    Err(t) => Known::Refused(format!("schema id {id} is a {t} schema, which frazil cannot read")),
                },
            },
        };
        self.cache.lock().expect("not poisoned").insert(id, known.clone());
        Ok(known)
    }

    /// The texts of `refs` and of everything they reference in turn, by the names they are
    /// referenced by; `Ok(Err)`: the registry lacks one of them (final for the schema).
    fn references(&self, refs: &[Reference]) -> Result<std::result::Result<BTreeMap<String, String>, String>> {
        let mut out = BTreeMap::new();
        let mut queue: Vec<(String, String, i64)> =
            refs.iter().map(|r| (r.name.clone(), r.subject.clone(), r.version)).collect();
        while let Some((name, subject, version)) = queue.pop() {
            if out.contains_key(&name) {
                continue;
            }
            if out.len() >= MAX_REFERENCES {
                return Ok(Err(format!("it references more than {MAX_REFERENCES} schemas")));
            }
            let key = (subject, version);
            let cached = self.versions.lock().expect("not poisoned").get(&key).cloned();
            let (text, refs) = match cached {
                Some(found) => found,
                None => {
                    // A version of -1 is the subject's latest (how references to "latest" are stored).
                    let (subject, version) = &key;
                    let v = if *version < 0 { "latest".to_string() } else { version.to_string() };
                    // A referenced version may have been soft-deleted since; it still is the schema's.
                    let path = format!("/subjects/{}/versions/{v}?deleted=true", crate::tls::path_segment(subject));
                    match self.ask(&path)? {
                        Answer::Missing(body) => {
                            return Ok(Err(format!(
                                "its reference `{name}` (subject {subject}, version {v}) is not in the schema registry ({body})"
                            )));
                        }
                        Answer::Found(a) => {
                            if *version >= 0 {
                                let found = (a.schema.clone(), a.references.clone());
                                self.versions.lock().expect("not poisoned").insert(key.clone(), found);
                            }
                            (a.schema, a.references)
                        }
                    }
                }
            };
            queue.extend(refs.iter().map(|r| (r.name.clone(), r.subject.clone(), r.version)));
            out.insert(name, text);
        }
        Ok(Ok(out))
    }

    /// One GET of the registry's API: the schema it answers, its own "not found", or an error.
    fn ask(&self, path: &str) -> Result<Answer> {
        let url = format!("{}{path}", self.base);
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
        let code = || serde_json::from_str::<serde_json::Value>(&body).ok().and_then(|v| v["error_code"].as_i64());
        match status {
            200 => serde_json::from_str::<SchemaAnswer>(&body)
                .map(Answer::Found)
                .map_err(|e| fail(Some(status), format!("unreadable answer ({e}): {}", clip(&body)))),
            // Only the registry's own "not found" (subject 40401, version 40402, schema 40403) is
            // final; any other 404 means the URL does not lead to a registry, and no record is
            // judged by it.
            404 if matches!(code(), Some(40401..=40403)) => Ok(Answer::Missing(clip(&body))),
            404 => Err(Error::config(
                "schema_registry.url",
                format!("GET {url} answered 404 without one of the registry's \"not found\" codes ({})", clip(&body)),
                "point it at the schema registry's base URL, e.g. \"http://127.0.0.1:8081\"",
            )),
            // Credentials do not fix themselves: this stops the agent (exit 78) instead of
            // retrying; the records wait in Kafka.
            401 | 403 => Err(refused_credentials(&url, status, &body)),
            _ => Err(fail(Some(status), clip(&body))),
        }
    }
}

/// The kind a `schemaType` names (`Err`: one frazil does not know).
fn kind(schema_type: Option<&str>) -> std::result::Result<SchemaKind, String> {
    match schema_type.map(str::to_ascii_uppercase).as_deref() {
        None | Some("AVRO") => Ok(SchemaKind::Avro),
        Some("PROTOBUF") => Ok(SchemaKind::Protobuf),
        Some("JSON") => Ok(SchemaKind::Json),
        Some(_) => Err(schema_type.unwrap_or_default().to_string()),
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
