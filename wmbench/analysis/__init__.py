"""Analyses built on wmbench's models and planners: `mismatch` (objective mismatch, Lambert et al. 2020).

Run them with `wmbench analyze <name> ...` (`wmbench.analysis.cli`).
"""
