"""The risk monitor (docs/monitor.md): detectors that learn each account's
normal behaviour and score records against it, the offline scoring CLI
(``ledger-monitor score``), and fraudsim, a labelled stream generator.

Layering: ``monitor`` may import ``ledger`` and ``client``; never ``node``
or ``consensus`` (tests/test_layering.py).
"""
