"""`make bench`: Deni's throughput and latency on this machine (see docs/benchmarks.md)."""
