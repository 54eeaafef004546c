"""The soak: the whole system under load and faults, then the proof (benchmarks/soak/run.py)."""
