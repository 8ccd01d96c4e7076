"""Benchmarks of jobwire against simpler baselines."""
