"""The benchmark's parts, one module per figure (or pair of figures) of bench/throughput.py."""
