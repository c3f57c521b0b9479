//! labstream benchmarks. Micro-benches of hot paths live in `benches/benches/`; run
//! them with `cargo bench -p labstream-benches`.
