"""Matrices of a measurement over every pair of checkpoints (barriers of linear interpolation)."""
