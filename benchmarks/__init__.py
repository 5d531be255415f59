"""Speed and quality benchmarks; each prints a table and writes its section of RESULTS.md."""
