"""Training: the one loop, method steps, checkpoints, evaluation."""
