"""Side-by-side benchmarks (``make bench`` / ``python -m bench.run_all``); never timed tests.

Each workload runs its baseline and ours in one process, alternating after a warm-up, and
reports medians, min–max, the throughput ratio ours/baseline and score agreement. See
bench/README.md for the figures and how they were taken.
"""
