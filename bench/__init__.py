"""Benchmarks of backupd against raw borg: the performance budgets of DESIGN section 8.

Run with `python -m bench` (`--smoke`, `--quick` or `--large` for other sizes, `--scale` for the scale
run); see `bench/__main__.py`.
"""
