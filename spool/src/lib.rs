//! placeholder until the spool lands
use std::fmt;
#[non_exhaustive]
#[derive(Debug)]
pub enum SpoolError { Io { context: String, source: std::io::Error } }
impl fmt::Display for SpoolError { fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { match self { SpoolError::Io{context, source} => write!(f, "{context}: {source}") } } }
impl std::error::Error for SpoolError {}
