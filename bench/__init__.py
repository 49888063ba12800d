"""Benchmarks of backupd against raw borg: the performance budgets of DESIGN section 8.

Run with `python -m bench` (`--quick` for a small data set); see `bench/__main__.py`.
"""
