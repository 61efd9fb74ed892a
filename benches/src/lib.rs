//! Load tools for idgate's benchmarks; the criterion benches live in `benches/benches/`.

/// A failed step ends a tool's run with one line naming the tool and the step (these are tools
/// in test and benchmark scripts: no panic dump).
pub fn die(tool: &str, what: &str, e: impl std::fmt::Display) -> ! {
    eprintln!("{tool}: {what}: {e}");
    std::process::exit(1)
}
