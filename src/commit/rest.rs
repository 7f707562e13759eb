//! A small Iceberg REST catalog client over ureq, speaking with iceberg's own serde types
//! (`TableMetadata`, `TableRequirement`, `TableUpdate`, `Schema`). Every call blocks: callers run
//! it on a blocking thread (`blocking::unblock`), never on the executor.
//!
//! Only what frazil needs: `/v1/config`, create namespace, load/create table, commit table.

use std::collections::HashMap;

use iceberg::spec::{PartitionSpec, Schema, SortOrder, TableMetadata};
use iceberg::{NamespaceIdent, TableIdent, TableRequirement, TableUpdate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::CatalogConfig;
use crate::tls::path_segment;
use crate::{Error, Result};

pub struct RestCatalog {
    /// `{uri}/v1` or `{uri}/v1/{prefix}`.
    base: String,
    agent: ureq::Agent,
    auth: super::auth::Auth,
    warehouse: Option<String>,
    /// Properties the catalog handed us (its `/v1/config` defaults and overrides, merged), e.g. S3 settings.
    pub properties: HashMap<String, String>,
}

/// A table as the catalog returned it.
#[derive(Deserialize)]
pub struct LoadedTable {
    #[serde(rename = "metadata-location")]
    pub metadata_location: Option<String>,
    pub metadata: TableMetadata,
    #[serde(default)]
    pub config: HashMap<String, String>,
}

#[derive(Deserialize)]
struct ConfigResponse {
    #[serde(default)]
    defaults: HashMap<String, String>,
    #[serde(default)]
    overrides: HashMap<String, String>,
}

#[derive(Serialize)]
struct CommitTableRequest<'a> {
    identifier: &'a TableIdent,
    requirements: &'a [TableRequirement],
    updates: &'a [TableUpdate],
}

/// How a commit request ended.
pub enum CommitAnswer {
    /// The catalog applied it.
    Applied(Box<LoadedTable>),
    /// HTTP 409: a requirement failed (another writer committed first); nothing was applied.
    Conflict(String),
    /// The request may or may not have been applied (5xx, timeout, dropped connection): the caller
    /// must look for the commit in the table before trying again.
    Unknown(Error),
}

fn with_auth<B>(r: ureq::RequestBuilder<B>, auth: &Option<String>) -> ureq::RequestBuilder<B> {
    match auth {
        Some(a) => r.header("Authorization", a),
        None => r,
    }
}

/// A namespace in a URL path: levels joined by the unit separator, then percent-encoded.
fn ns_path(ns: &NamespaceIdent) -> String {
    path_segment(&ns.as_ref().join("\u{1f}"))
}

impl RestCatalog {
    /// Builds a client and reads `/v1/config` (the prefix and the catalog's defaults).
    pub fn connect(cfg: &CatalogConfig) -> Result<RestCatalog> {
        let agent = crate::tls::http_agent(cfg.request_timeout, cfg.ca_file.as_deref(), "catalog.ca_file")?;
        let auth = super::auth::Auth::new(cfg.auth.clone());
        let mut catalog = RestCatalog {
            base: format!("{}/v1", cfg.uri),
            agent,
            auth,
            warehouse: cfg.warehouse.clone(),
            properties: HashMap::new(),
        };
        let mut url = format!("{}/config", catalog.base);
        if let Some(w) = &catalog.warehouse {
            url.push_str(&format!("?warehouse={}", path_segment(w)));
        }
        let (status, body) =
            catalog.send("GET", &url, None).map_err(|e| e.with_context("read the catalog's /v1/config"))?;
        if status != 200 {
            return Err(Error::Catalog { context: format!("GET {url}"), status: Some(status), body });
        }
        let cr: ConfigResponse = serde_json::from_str(&body).map_err(|e| Error::Catalog {
            context: format!("GET {url}: unreadable answer ({e})"),
            status: Some(status),
            body: body.clone(),
        })?;
        let mut props = cr.defaults;
        props.extend(cr.overrides);
        if let Some(prefix) = props.get("prefix").filter(|p| !p.is_empty()) {
            catalog.base = format!("{}/{}", catalog.base, prefix.trim_matches('/'));
        }
        catalog.properties = props;
        Ok(catalog)
    }

    /// Sends one request with the catalog's credentials. `Err` when no HTTP answer came back (the
    /// request may still have been applied), or a configuration error when the catalog or its
    /// token endpoint refuses the credentials or the TLS certificate (nothing was applied then).
    fn send(&self, method: &str, url: &str, body: Option<&serde_json::Value>) -> Result<(u16, String)> {
        let unreachable = |e: ureq::Error| {
            if crate::tls::is_untrusted(&e) {
                crate::tls::untrusted("catalog.ca_file", url, &e)
            } else {
                Error::Catalog { context: format!("{method} {url}"), status: None, body: e.to_string() }
            }
        };
        let mut retried = false;
        loop {
            let auth = self.auth.header(&self.agent)?;
            let mut resp = match (method, body) {
                ("GET", _) => with_auth(self.agent.get(url), &auth).call(),
                ("POST", Some(b)) => with_auth(self.agent.post(url), &auth).send_json(b),
                ("POST", None) => with_auth(self.agent.post(url), &auth).send_empty(),
                ("DELETE", _) => with_auth(self.agent.delete(url), &auth).call(),
                _ => unreachable!("frazil sends only GET, POST and DELETE"),
            }
            .map_err(unreachable)?;
            let status = resp.status().as_u16();
            let text = resp.body_mut().read_to_string().map_err(unreachable)?;
            if status == 401 {
                // An expired or revoked token: one more try with a new one.
                if !retried && self.auth.rejected() {
                    retried = true;
                    continue;
                }
                return Err(Error::config(
                    self.auth.key(),
                    format!(
                        "the catalog refused the credentials: {method} {url}: HTTP 401: {}",
                        text.chars().take(300).collect::<String>()
                    ),
                    "set catalog.token, or catalog.credential (\"<client_id>:<client_secret>\") for OAuth2, to what the catalog accepts",
                ));
            }
            return Ok((status, text));
        }
    }

    fn table_url(&self, ident: &TableIdent) -> String {
        format!("{}/namespaces/{}/tables/{}", self.base, ns_path(ident.namespace()), path_segment(ident.name()))
    }

    /// Creates the namespace; one that exists already is fine.
    pub fn ensure_namespace(&self, ns: &NamespaceIdent) -> Result<()> {
        let url = format!("{}/namespaces", self.base);
        let (status, body) = self.send("POST", &url, Some(&json!({ "namespace": ns.as_ref(), "properties": {} })))?;
        match status {
            200 | 204 | 409 => Ok(()),
            _ => Err(Error::Catalog {
                context: format!("create namespace {}", ns.as_ref().join(".")),
                status: Some(status),
                body,
            }),
        }
    }

    /// Loads a table; `None` when it does not exist.
    pub fn load_table(&self, ident: &TableIdent) -> Result<Option<LoadedTable>> {
        let url = self.table_url(ident);
        let (status, body) = self.send("GET", &url, None)?;
        match status {
            200 => parse(&url, status, &body).map(Some),
            404 => Ok(None),
            _ => Err(Error::Catalog { context: format!("load table {ident}"), status: Some(status), body }),
        }
    }

    /// Creates a format-v2 table with `schema`, or loads it if another writer created it first;
    /// the flag says whether this call created it.
    pub fn create_table(
        &self,
        ident: &TableIdent,
        schema: &Schema,
        spec: &PartitionSpec,
        order: &SortOrder,
    ) -> Result<(LoadedTable, bool)> {
        let url = format!("{}/namespaces/{}/tables", self.base, ns_path(ident.namespace()));
        let req = json!({
            "name": ident.name(),
            "schema": schema,
            "partition-spec": spec,
            "write-order": order,
            "stage-create": false,
            "properties": { "format-version": "2", "write.parquet.compression-codec": "zstd" },
        });
        let (status, body) = self.send("POST", &url, Some(&req))?;
        match status {
            200 => parse(&url, status, &body).map(|t| (t, true)),
            409 => self.load_table(ident)?.map(|t| (t, false)).ok_or_else(|| Error::Catalog {
                context: format!("create table {ident}"),
                status: Some(409),
                body: "the catalog says the table exists, but it cannot be loaded".into(),
            }),
            _ => Err(Error::Catalog { context: format!("create table {ident}"), status: Some(status), body }),
        }
    }

    /// Sends a table commit and sorts the answer into applied / conflict / unknown.
    pub fn commit(
        &self,
        ident: &TableIdent,
        requirements: &[TableRequirement],
        updates: &[TableUpdate],
    ) -> Result<CommitAnswer> {
        let url = self.table_url(ident);
        let req = serde_json::to_value(CommitTableRequest { identifier: ident, requirements, updates })
            .map_err(|e| Error::encode(format!("commit for {ident}"), e))?;
        let (status, body) = match self.send("POST", &url, Some(&req)) {
            Ok(answer) => answer,
            // Refused before anything was applied.
            Err(e @ Error::Config { .. }) => return Err(e),
            Err(e) => return Ok(CommitAnswer::Unknown(e)),
        };
        Ok(match status {
            200 => CommitAnswer::Applied(Box::new(parse(&url, status, &body)?)),
            409 => CommitAnswer::Conflict(body),
            500 | 502 | 503 | 504 => CommitAnswer::Unknown(Error::Catalog {
                context: format!("commit to {ident}"),
                status: Some(status),
                body,
            }),
            _ => return Err(Error::Catalog { context: format!("commit to {ident}"), status: Some(status), body }),
        })
    }
}

fn parse(url: &str, status: u16, body: &str) -> Result<LoadedTable> {
    serde_json::from_str(body).map_err(|e| Error::Catalog {
        context: format!("{url}: unreadable table answer ({e})"),
        status: Some(status),
        body: body.chars().take(500).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(path_segment("events_v2"), "events_v2");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        let ns = NamespaceIdent::from_strs(["edge", "site1"]).unwrap();
        assert_eq!(ns_path(&ns), "edge%1Fsite1");
    }
}
