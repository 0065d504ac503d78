"""Runs of many runs: the τ sweep (paper Fig. 4), the real-data reproduction, benchmarks."""
