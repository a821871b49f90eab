//! Benchmark program for inger (filled in below).

fn main() {}
