"""Training: the trainers, checkpoints, the run lifecycle, loggers and provenance."""
