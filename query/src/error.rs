//! The query's one error type: each variant says which part failed, with the context it failed in.

use std::fmt;

#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading the agent's configuration, spool, read state or catalog (frazil's own error).
    Agent(frazil::Error),
    /// Planning or running the SQL.
    Sql(datafusion::error::DataFusionError),
    /// Reading a spool file or writing the answer.
    Data { context: String, detail: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn data(context: impl Into<String>, detail: impl fmt::Display) -> Error {
        Error::Data { context: context.into(), detail: detail.to_string() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Agent(e) => write!(f, "{e}"),
            Error::Sql(e) => write!(f, "query: {e}"),
            Error::Data { context, detail } => write!(f, "{context}: {detail}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<frazil::Error> for Error {
    fn from(e: frazil::Error) -> Self {
        Error::Agent(e)
    }
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Sql(e)
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(e: datafusion::arrow::error::ArrowError) -> Self {
        Error::data("local rows", e)
    }
}
