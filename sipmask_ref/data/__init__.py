"""Datasets, the synthetic adjacent-instance benchmark, and transforms."""
