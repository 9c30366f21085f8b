"""Datasets: sealed batches opened through the vault, reduced to steps, written for training."""
