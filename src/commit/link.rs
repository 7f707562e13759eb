//! The agent's connection to its catalog: made on first use, made again after a failure, and
//! never retried once the catalog refused the credentials or certificates (the same settings
//! would be refused again, and a token endpoint should not be asked over and over).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use super::Committer;
use crate::config::CatalogConfig;
use crate::upload::Stores;
use crate::{Error, Result};

pub struct Link {
    cfg: CatalogConfig,
    stores: Arc<Stores>,
    agent_id: String,
    committer: RefCell<Option<Rc<Committer>>>,
    /// The configuration error the connection failed with, if it did (key, problem, fix).
    refused: RefCell<Option<(String, String, String)>>,
}

impl Link {
    pub fn new(cfg: &CatalogConfig, stores: Arc<Stores>, agent_id: &str) -> Self {
        Link {
            cfg: cfg.clone(),
            stores,
            agent_id: agent_id.to_string(),
            committer: RefCell::new(None),
            refused: RefCell::new(None),
        }
    }

    /// The catalog client, connected on first use (and again after [`Self::reset`]).
    pub async fn committer(&self) -> Result<Rc<Committer>> {
        if let Some(c) = self.committer.borrow().as_ref() {
            return Ok(c.clone());
        }
        if let Some((key, problem, fix)) = self.refused.borrow().clone() {
            return Err(Error::Config { key, problem, fix });
        }
        let c = match Committer::connect(&self.cfg, &self.stores, &self.agent_id).await {
            Ok(c) => Rc::new(c),
            Err(Error::Config { key, problem, fix }) => {
                *self.refused.borrow_mut() = Some((key.clone(), problem.clone(), fix.clone()));
                return Err(Error::Config { key, problem, fix });
            }
            Err(e) => return Err(e),
        };
        *self.committer.borrow_mut() = Some(c.clone());
        Ok(c)
    }

    /// Connects again next time: the catalog may have moved or restarted with another config.
    pub fn reset(&self) {
        self.committer.borrow_mut().take();
    }
}
