//! The ceilings frazil is measured against, in the same run (benches/run.sh drives this):
//!
//! ```text
//! pipeline fetch  BROKER TOPIC      # read every partition to its end and discard: what tansu and rskafka deliver
//! pipeline encode BROKER TOPIC N    # the first N values, JSON -> Arrow (arrow-json) and Arrow -> Parquet (zstd 3)
//! ```
//!
//! Each prints one JSON line. CPU time and peak RSS are measured from outside (GNU time), the
//! same way as frazil's own.

use std::time::Instant;

use async_compat::Compat;
use futures::future::join_all;
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};

const MAX_BYTES: i32 = 4 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["fetch", broker, topic] => fetch(broker, topic),
        ["encode", broker, topic, n] => encode(broker, topic, n.parse().expect("N is a number")),
        [] => eprintln!("pipeline: run through benches/run.sh (see its header)"),
        _ => panic!("usage: pipeline fetch BROKER TOPIC | pipeline encode BROKER TOPIC N"),
    }
}

/// Every value of every partition, up to `limit` values per partition.
fn read_all(broker: &str, topic: &str, limit: usize, keep: bool) -> (usize, usize, Vec<Vec<u8>>) {
    smol::block_on(Compat::new(async {
        let client = ClientBuilder::new(vec![broker.to_string()]).build().await.expect("connect");
        let topics = client.list_topics().await.expect("list topics");
        let partitions = &topics.iter().find(|t| t.name == topic).expect("topic exists").partitions;
        let reads = partitions.iter().map(|&p| {
            let client = &client;
            async move {
                let pc = client.partition_client(topic, p, UnknownTopicHandling::Error).await.expect("partition");
                let end = pc.get_offset(OffsetAt::Latest).await.expect("high watermark");
                let (mut offset, mut events, mut bytes, mut kept) = (0i64, 0usize, 0usize, Vec::new());
                while offset < end && events < limit {
                    let (records, _) = pc.fetch_records(offset, 1..MAX_BYTES, 500).await.expect("fetch");
                    for r in records {
                        offset = r.offset + 1;
                        let value = r.record.value.unwrap_or_default();
                        events += 1;
                        bytes += value.len();
                        if keep && events <= limit {
                            kept.push(value);
                        }
                    }
                }
                (events, bytes, kept)
            }
        });
        join_all(reads).await.into_iter().fold((0, 0, Vec::new()), |(e, b, mut k), (e2, b2, k2)| {
            k.extend(k2);
            (e + e2, b + b2, k)
        })
    }))
}

fn fetch(broker: &str, topic: &str) {
    let started = Instant::now();
    let (events, bytes, _) = read_all(broker, topic, usize::MAX, false);
    println!(r#"{{"events": {events}, "bytes": {bytes}, "wall": {}}}"#, started.elapsed().as_secs_f64());
}

fn encode(broker: &str, topic: &str, n: usize) {
    use arrow_json::reader::{ReaderBuilder, infer_json_schema_from_iterator};
    use arrow_schema::ArrowError;
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    use std::sync::Arc;

    let partitions = 8;
    let (_, _, values) = read_all(broker, topic, n / partitions, true);
    let sample = values
        .iter()
        .take(1000)
        .map(|v| serde_json::from_slice::<serde_json::Value>(v).map_err(|e| ArrowError::JsonError(e.to_string())));
    let schema = Arc::new(infer_json_schema_from_iterator(sample).expect("infer"));

    let started = Instant::now();
    let mut batches = Vec::new();
    for chunk in values.chunks(8192) {
        let mut decoder = ReaderBuilder::new(schema.clone()).with_batch_size(8192).build_decoder().expect("decoder");
        for v in chunk {
            decoder.decode(v).expect("decode");
        }
        batches.push(decoder.flush().expect("flush").expect("a batch"));
    }
    let decode = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let props =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("level 3"))).build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, schema, Some(props)).expect("writer");
    for b in &batches {
        writer.write(b).expect("write");
    }
    writer.close().expect("close");
    let write = started.elapsed().as_secs_f64();
    let events = values.len() as f64;
    println!(
        r#"{{"events": {}, "json_to_arrow_us": {:.3}, "arrow_to_parquet_us": {:.3}, "parquet_bytes": {}}}"#,
        values.len(),
        decode / events * 1e6,
        write / events * 1e6,
        out.len()
    );
}
