"""Benchmarks (`make bench`): bench/throughput.py and its parts."""
