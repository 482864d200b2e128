"""Benchmarks behind ``scripts/bench.py`` (``make bench``): they print numbers and return
them; nothing is asserted.

- :mod:`.training`: real ``python -m proute.train`` runs in a subprocess, both trainers;
- :mod:`.steps`: one training step of each conv in each trainer, and the routing latency
  of the exported-router path against a full-graph forward;
- :mod:`.scaling`: ``experiment=scale`` for a growing number of users, one subprocess per
  point (``python -m proute.benchmarks.scaling``), log-log slopes and a plot.

Importing this package is cheap (no torch): the scaling child must cap its memory before
torch loads.
"""
