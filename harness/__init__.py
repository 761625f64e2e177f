"""Test and measurement harness: never imported by the runtime.

Local clusters of real node processes (``localnet``), the benchmark
(``bench`` and its ``bench_*`` parts), fault campaigns (``faults``,
``faults_*``), network-namespace labs (``netns``, ``netns_byzantine``), the
TEST-ONLY Byzantine validator (``byzantine``) and the demo's load feeder
(``feeder``).  It imports ``node``, ``ledger``, ``consensus`` and ``client``;
none of them imports it (tests/test_layering.py).

It is not part of the installed distribution (setup.cfg lists the runtime
packages only): scripts/ and tests/ run it from the source tree, with the
repository root on ``sys.path`` (``cd`` to it, as scripts/ do, or pytest's
``pythonpath``).
"""
