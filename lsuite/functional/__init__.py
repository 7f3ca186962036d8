"""Pure functions on tensors and parameter dicts."""
