"""Probes: measurements of a model at one point in weight space (torch only)."""
