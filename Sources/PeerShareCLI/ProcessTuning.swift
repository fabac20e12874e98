import CPosixShim

/// Process-wide settings a long-running node wants before its threads start.
public enum ProcessTuning {
    /// One malloc arena for the whole process. glibc otherwise gives each contending thread
    /// its own arena (up to 8 per core); chunk buffers are allocated on the event loop and
    /// freed on a thread-pool thread, so every arena ends up holding freed chunk memory.
    /// Measured at 256 MiB: a peer's peak RSS 33.7 → 30.2 MiB, no change in time above
    /// the machine's noise (docs/BENCHMARKS.md, "Peak RSS").
    /// Call it first thing in `main`, before any thread is created.
    public static func useOneMallocArena() {
        _ = peershare_limit_malloc_arenas(1)
    }
}
