"""Plots drawn from saved probe records (matplotlib, no pyplot state); see `render.render`."""
