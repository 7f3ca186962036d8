"""``lsuite-report``: tables, figures and a page for the runs of a sweep directory."""
