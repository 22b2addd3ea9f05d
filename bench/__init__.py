"""Benchmarks: measured against baselines in the same run, never asserted in tests."""
