"""Test oracles: plain numpy / Python / torch references the package is checked against (and\nthe peers scripts/bench.py times). They live here, not in the package."""
