"""Benchmark harness: data, the one run function, the grid runner and the CLI (``python -m bench``)."""
