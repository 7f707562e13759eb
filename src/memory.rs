//! What glibc's malloc is told, and when it gives memory back. Elsewhere (musl, other systems)
//! these do nothing.
//!
//! Measured on `frazil flush` of 1,000,000 events (see `benches/README.md`):
//! - one arena: glibc gives each allocating thread its own arena and keeps their freed pages.
//!   rskafka's reader (the tokio thread) allocates records the executor thread frees, and the
//!   blocking pool writes Parquet; under load the arenas held about 17 MiB more than one arena
//!   (median RSS 57 vs 40 MiB), at no measurable CPU cost: frazil has one busy thread;
//! - fixed thresholds: by default a fetch response's 4 MiB buffer is mapped fresh and unmapped
//!   once read, and freed heap above 128 KiB is trimmed, so every fetch and every spool file
//!   faulted its pages in again. Keeping them cut system CPU from 0.2-0.55 s to 0.13-0.19 s per
//!   million events, with the same peak RSS;
//! - so that memory held at a burst's peak does not stay held, the agent calls [`release`] after
//!   each publish cycle, its quiet point.

/// Sets malloc's parameters. Call before any other thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc parameters, each given a value in its range.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Returns free heap pages to the system.
pub fn release() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases memory malloc holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}
