"""A small Lightning project written without lsuite, to which the tests add lsuite probes."""
