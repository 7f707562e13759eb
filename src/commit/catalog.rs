//! iceberg's `Transaction` commits through the `iceberg::Catalog` trait. This adapter is that
//! catalog: it loads tables and sends the transaction's requirements and updates through our
//! catalog backend (the ureq REST client, or metadata files in the warehouse), and keeps the real answer (conflict, unknown outcome, ...) for the caller, because
//! the caller, not iceberg's retry loop, decides what an unanswered commit means. It also adds the
//! agent's tag to every snapshot it sends, in the same request.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use iceberg::Runtime;
use iceberg::io::FileIO;
use iceberg::table::Table;
use iceberg::{Catalog, ErrorKind, Namespace, NamespaceIdent, TableCommit, TableCreation, TableIdent};

use super::backend::Backend;
use super::fence::TagMove;
use super::rest::{CommitAnswer, LoadedTable};
use crate::Error;

/// What went wrong in the last `update_table`, in frazil's terms.
pub(crate) enum Failure {
    Conflict(String),
    Unknown(Error),
    Failed(Error),
}

pub(crate) struct Adapter {
    pub rest: Arc<dyn Backend>,
    pub file_io: FileIO,
    /// Every snapshot sent through this adapter moves this agent's tag (`protocol::tag_new_snapshot`).
    pub agent: String,
    pub last_failure: Mutex<Option<Failure>>,
    /// A group commit's tag move (`fence::TagMove`), set by `Committer::append` for the one
    /// transaction it commits and taken by the snapshot it sends.
    pub tag_move: Mutex<Option<TagMove>>,
}

impl fmt::Debug for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("frazil REST catalog adapter")
    }
}

fn unsupported<T>() -> iceberg::Result<T> {
    Err(iceberg::Error::new(ErrorKind::FeatureUnsupported, "not used by frazil"))
}

fn to_iceberg(e: &Error) -> iceberg::Error {
    iceberg::Error::new(ErrorKind::Unexpected, e.to_string())
}

impl Adapter {
    pub(crate) fn table(&self, ident: TableIdent, loaded: LoadedTable) -> iceberg::Result<Table> {
        let mut b = Table::builder().identifier(ident).metadata(loaded.metadata).file_io(self.file_io.clone());
        if let Some(loc) = loaded.metadata_location {
            b = b.metadata_location(loc);
        }
        b.runtime(Runtime::try_current()?).build()
    }

    fn fail(&self, f: Failure) -> iceberg::Error {
        let e = match &f {
            Failure::Conflict(body) => iceberg::Error::new(ErrorKind::CatalogCommitConflicts, body.clone()),
            Failure::Unknown(e) | Failure::Failed(e) => to_iceberg(e),
        };
        *self.last_failure.lock().expect("not poisoned") = Some(f);
        // Never retryable inside iceberg: the caller decides.
        e.with_retryable(false)
    }
}

#[async_trait]
impl Catalog for Adapter {
    async fn load_table(&self, ident: &TableIdent) -> iceberg::Result<Table> {
        let rest = self.rest.clone();
        let id = ident.clone();
        match blocking::unblock(move || rest.load_table(&id)).await {
            Ok(Some(t)) => self.table(ident.clone(), t),
            Ok(None) => Err(iceberg::Error::new(ErrorKind::TableNotFound, format!("{ident} does not exist"))),
            Err(e) => Err(self.fail(Failure::Unknown(e))),
        }
    }

    async fn update_table(&self, mut commit: TableCommit) -> iceberg::Result<Table> {
        let ident = commit.identifier().clone();
        let requirements = commit.take_requirements();
        let mut updates = commit.take_updates();
        super::protocol::tag_new_snapshot(&mut updates, &self.agent);
        let mut requirements = requirements;
        if let Some(m) = self.tag_move.lock().expect("not poisoned").take() {
            m.apply(&mut requirements, &mut updates);
        }
        let rest = self.rest.clone();
        let id = ident.clone();
        let answer = blocking::unblock(move || rest.commit(&id, &requirements, &updates)).await;
        match answer {
            Ok(CommitAnswer::Applied(t)) => self.table(ident, *t),
            Ok(CommitAnswer::Conflict(body)) => Err(self.fail(Failure::Conflict(body))),
            Ok(CommitAnswer::Unknown(e)) => Err(self.fail(Failure::Unknown(e))),
            Err(e) => Err(self.fail(Failure::Failed(e))),
        }
    }

    async fn list_namespaces(&self, _: Option<&NamespaceIdent>) -> iceberg::Result<Vec<NamespaceIdent>> {
        unsupported()
    }
    async fn create_namespace(&self, _: &NamespaceIdent, _: HashMap<String, String>) -> iceberg::Result<Namespace> {
        unsupported()
    }
    async fn get_namespace(&self, _: &NamespaceIdent) -> iceberg::Result<Namespace> {
        unsupported()
    }
    async fn namespace_exists(&self, _: &NamespaceIdent) -> iceberg::Result<bool> {
        unsupported()
    }
    async fn update_namespace(&self, _: &NamespaceIdent, _: HashMap<String, String>) -> iceberg::Result<()> {
        unsupported()
    }
    async fn drop_namespace(&self, _: &NamespaceIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn list_tables(&self, _: &NamespaceIdent) -> iceberg::Result<Vec<TableIdent>> {
        unsupported()
    }
    async fn create_table(&self, _: &NamespaceIdent, _: TableCreation) -> iceberg::Result<Table> {
        unsupported()
    }
    async fn drop_table(&self, _: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn purge_table(&self, _: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn table_exists(&self, _: &TableIdent) -> iceberg::Result<bool> {
        unsupported()
    }
    async fn rename_table(&self, _: &TableIdent, _: &TableIdent) -> iceberg::Result<()> {
        unsupported()
    }
    async fn register_table(&self, _: &TableIdent, _: String) -> iceberg::Result<Table> {
        unsupported()
    }
}
