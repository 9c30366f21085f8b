"""Trajectories: raw events reduced to actions, aligned with observations, split into episodes."""
