"""Probe records on disk: JSON lines, atomic whole-file writes."""
