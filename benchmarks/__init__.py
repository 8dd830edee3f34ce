"""Measurements and comparisons: the benchmark scripts (run as files) and compare.py's package (compare/)."""
