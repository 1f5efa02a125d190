"""Benchmarks behind `genrec bench ...`; each prints one JSON object and measures a baseline in the same run."""
