"""Deterministic simulation of the consensus core (virtual time, seeded network).

Everything random comes from ``random.Random(seed)`` objects owned by one run;
nothing reads a clock.  ``run_scenario(seed, ...)`` replays identically.
"""
