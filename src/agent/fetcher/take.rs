//! Taking fetched records into a partition's hot buffer: the decode stage at work.

use std::collections::{BTreeMap, BTreeSet};

use super::Fetcher;
use super::buffer::PartitionBuffer;
use crate::decode::{self, Decoder, Format, Message, UnknownKeys};
use crate::source::Record;
use crate::source::registry::Known;
use crate::topic::TopicPartition;
use crate::{Error, Result};

/// Records are pushed in runs of this many, and a run with keys the schema lacks grows it before
/// the next run is pushed. A JSON record the schema cannot take yet is kept parsed (a map of
/// values, several times its size) until it is decoded; growing after each run rather than after
/// a whole fetch answer lets a new table's records move to the fast path after a few hundred,
/// which was the agent's peak of memory at the start.
const GROW_EVERY: usize = 256;

impl Fetcher<'_> {
    /// Takes fetched records of one partition into its hot buffer. For a topic of registered
    /// schemas (Avro, Protobuf, JSON Schema) the writer schemas are looked up first, and the table grows before any record is decoded;
    /// a registry that cannot be reached fails the call before anything is taken.
    pub(super) async fn take(&mut self, tp: &TopicPartition, records: &[Record]) -> Result<()> {
        let format = self.shared.cfg.kafka.format_for(&tp.0);
        let table = self.shared.table_name(&tp.0);
        let writers = match format.registered() {
            true => self.writer_schemas(records).await?,
            false => BTreeMap::new(),
        };
        if self.cursor(tp).buffer.is_none() {
            let mut written = self.layout_for(&table, format, records, &writers)?;
            let cfg = &self.shared.cfg;
            if format == Format::Json && cfg.unknown_keys(&table) == UnknownKeys::Extra {
                self.ensure_extra_column(&table)?;
                written = self.written(&table);
            }
            let cfg = &self.shared.cfg;
            let decoder = Decoder::new(format, &written.schema, cfg.time_fields.epoch_unit)?
                .with_limits(cfg.limits(&table))
                .with_unknown_keys(cfg.unknown_keys(&table))?;
            let max_record_bytes = self.shared.cfg.kafka.max_record_bytes;
            self.cursor(tp).buffer = Some(PartitionBuffer::new(decoder, max_record_bytes));
        }
        if format.registered() {
            self.follow_writers(&table, tp, format, &writers)?;
        }
        if format == Format::Protobuf {
            self.follow_messages(&table, tp, records)?;
        }
        self.shared.report.borrow_mut().events += records.len() as u64;
        for run in records.chunks(GROW_EVERY) {
            let buf = self.buffer(tp);
            for r in run {
                let msg = Message {
                    partition: tp.1,
                    offset: r.offset,
                    timestamp_ms: r.timestamp_ms,
                    key: r.key.as_deref(),
                    value: r.value.as_deref(),
                };
                buf.push(&msg, &r.headers);
            }
            if buf.has_fresh_keys() {
                self.grow_schema(&table)?;
            }
            self.buffer(tp).settle(false)?;
        }
        Ok(())
    }

    /// The partition's buffer, made by [`Self::take`] with its first records.
    pub(super) fn buffer(&mut self, tp: &TopicPartition) -> &mut PartitionBuffer {
        self.cursor(tp).buffer.as_mut().expect("made with the first records")
    }

    /// What the schema registry says of each schema id these records name (cached).
    async fn writer_schemas(&self, records: &[Record]) -> Result<BTreeMap<u32, Known>> {
        let registry = self.shared.registry.clone().ok_or_else(|| {
            Error::config(
                "schema_registry.url",
                "is not set but a topic's format is \"avro\", \"protobuf\" or \"json_schema\"",
                "add a [schema_registry] section",
            )
        })?;
        // The Confluent frames begin alike: magic byte 0, then the 4-byte schema id.
        let ids: BTreeSet<u32> =
            records.iter().filter_map(|r| r.value.as_deref().and_then(decode::avro::schema_id)).collect();
        let mut out = BTreeMap::new();
        for id in ids {
            let known = match registry.cached(id) {
                Some(k) => k,
                None => {
                    let r = registry.clone();
                    let k = blocking::unblock(move || r.get(id)).await?;
                    if let Known::Refused(why) = &k {
                        log::warn!("schema registry: {why}; records with this id go to the dead-letter table");
                    }
                    k
                }
            };
            out.insert(id, known);
        }
        Ok(out)
    }
}
