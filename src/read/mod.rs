//! The read path: what a query needs from the agent to answer exactly, while the agent runs or
//! not. Beside the stages, like `cli`: it only reads what they hold.
//!
//! - [`wire`]: the read state a running agent serves on a Unix socket in its spool directory
//!   (`read.sock`, mode 0600: raw events live there): its hot rows as Arrow IPC streams with the
//!   offsets they cover, then the spool's files with their state and offset ranges.
//! - [`gather`]: asks the running agent for it, or reads the spool index read-only when none runs.
//! - [`plan`]: which local rows an answer keeps so that, with the table, every event counts once.
//!
//! The query itself (SQL over the table and these rows) lives in the `frazil-query` crate, so that
//! the agent binary carries no query engine.

mod gather;
pub mod plan;
pub mod wire;

pub use gather::{ReadState, gather};
pub use plan::{Piece, Plan, plan};
pub use wire::{FileEntry, HotPiece, SOCKET, Span};
