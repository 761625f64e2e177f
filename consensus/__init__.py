"""Consensus: the sans-I/O BFT state machine and its deterministic simulator. Imports no asyncio, time or random."""
