//! The catalog's side of a layout: the table loaded, or created with the spool's first schema,
//! then grown to the spool's current one, before any of its spool files are uploaded or
//! committed.

use iceberg::spec::{PartitionSpec, SortOrder};
use iceberg::table::Table;

use super::{Layouts, rules, store};
use crate::commit::Committer;
use crate::{Error, Result};

impl Layouts {
    /// The catalog's table of `name`, matching what its spool files were written with: loaded or
    /// created as needed, then grown to the spool's recorded schema. Spool files carry partition
    /// tuples of the recorded spec, so a table partitioned otherwise is refused.
    pub async fn ready(&self, committer: &Committer, name: &str) -> Result<Table> {
        let t = match self.table(name) {
            Some(t) => t,
            None => self.load_or_create(committer, name).await?,
        };
        // The spool's schema may have grown (new keys in the records): the table follows first.
        let t = match store::schema(&self.spool, name)? {
            Some(wanted) => committer.grow(t, &wanted).await?,
            None => t,
        };
        if let Some(spec) = store::spec(&self.spool, name)?
            && spec.fields() != t.metadata().default_partition_spec().fields()
        {
            let fields = |s: &PartitionSpec| serde_json::to_string(s.fields()).unwrap_or_default();
            return Err(Error::layout(
                name,
                format!(
                    "is partitioned by {} but the spooled files by {}; they are kept until the table's \
                     partitioning matches",
                    fields(t.metadata().default_partition_spec()),
                    fields(&spec)
                ),
            ));
        }
        self.set_table(name, t.clone());
        Ok(t)
    }

    async fn load_or_create(&self, committer: &Committer, name: &str) -> Result<Table> {
        if let Some(t) = committer.load(name).await? {
            return Ok(t);
        }
        let schema = store::creation(&self.spool, name)?
            .ok_or_else(|| Error::layout(name, "spool files exist but no schema was recorded for them"))?;
        let spec = store::spec(&self.spool, name)?.unwrap_or_else(PartitionSpec::unpartition_spec);
        let order = store::sort(&self.spool, name)?.unwrap_or_else(SortOrder::unsorted_order);
        let t = committer.create(name, &schema, &spec, &order).await?;
        if !rules::same_fields(t.metadata().current_schema(), &schema) {
            return Err(Error::layout(
                name,
                "the catalog numbered the new table's fields differently from the spooled files; they are kept \
                 until this is resolved",
            ));
        }
        Ok(t)
    }
}
