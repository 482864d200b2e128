"""Evaluation: routing metrics, the analysis of a run (tables, bootstrap, figures) and run reports."""
