//! Load tools for idgate's benchmarks; the criterion benches live in `benches/benches/`.
