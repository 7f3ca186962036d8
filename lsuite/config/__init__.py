"""Hydra configuration: locating ``conf/``, checking it, and building objects from it."""
