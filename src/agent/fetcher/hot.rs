//! Answers the read state's request for hot rows: a copy of every partition's buffer, taken
//! between two fetch answers (never inside a roll, so each taken offset is hot or in a registered
//! file). Copying shares the batches' memory; the time it stops fetching is measured.

use std::time::{Duration, Instant};

use super::Fetcher;
use crate::agent::reads::HotReply;
use crate::decode::{dead_letter_batch, dead_letter_schema};
use crate::read::{HotPiece, Span};

impl Fetcher<'_> {
    /// Answers every request waiting, without waiting for one.
    pub(super) fn answer_reads(&mut self) {
        while let Ok(reply) = self.reads.try_recv() {
            self.answer_read(reply);
        }
    }

    /// Waits `d`, answering read-state requests meanwhile: a fetcher that waits for a broker, or
    /// for room in a full spool (when queries matter most), still answers at once.
    pub(super) async fn sleep_answering_reads(&mut self, d: Duration) {
        let until = Instant::now() + d;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            let timer = async {
                smol::Timer::after(left).await;
                None
            };
            let request = async { self.reads.recv().await.ok() };
            match smol::future::or(request, timer).await {
                Some(reply) => self.answer_read(reply),
                None => return,
            }
        }
    }

    pub(super) fn answer_read(&mut self, reply: HotReply) {
        let started = Instant::now();
        let hot = self.hot_pieces();
        self.shared.gauges.read_state_served(started.elapsed());
        // The requester may have given up; nothing to do then.
        let _ = reply.try_send(hot);
    }

    fn hot_pieces(&mut self) -> Vec<HotPiece> {
        let mut out = Vec::new();
        for ((topic, partition), c) in &mut self.cursors {
            let Some(buffer) = c.buffer.as_mut() else { continue };
            let hot = match buffer.hot() {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    // Its rows stay buffered and are spooled as usual; this answer lacks them, and
                    // its watermark for the partition says so.
                    log::warn!("read state: the hot rows of {topic}/{partition} could not be decoded: {e}");
                    continue;
                }
            };
            let table = self.shared.table_name(topic);
            let span = |table: String, rows: usize| Span {
                table,
                topic: topic.clone(),
                partition: *partition,
                first_offset: hot.first_offset,
                last_offset: hot.last_offset,
                rows: rows as u64,
            };
            let rows = hot.batches.iter().map(|b| b.num_rows()).sum();
            if !hot.dead.is_empty() {
                let dead_table = self.shared.dead_letter_table(&table);
                match dead_letter_batch(topic, &hot.dead, &dead_letter_schema()) {
                    Ok(b) => out.push(HotPiece { span: span(dead_table, b.num_rows()), batches: vec![b] }),
                    Err(e) => log::warn!("read state: the dead letters of {topic}/{partition}: {e}"),
                }
            }
            out.push(HotPiece { span: span(table, rows), batches: hot.batches });
        }
        out
    }
}
