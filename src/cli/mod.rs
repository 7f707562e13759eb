//! The commands beside the agent: `check` tries each part frazil needs, `status` reports what the
//! spool holds and how far behind the broker the agent is. Both open the spool the same way
//! (`spill::open_beside`): read-only beside a running agent, else as a start would. `query` hands
//! SQL to the separate `frazil-query` binary. `maintain` runs one maintenance pass over the tables.

mod check;
mod group_status;
pub mod maintain;
pub mod query;
mod status;

pub use check::{Checked, check};
pub use status::{Status, status};
