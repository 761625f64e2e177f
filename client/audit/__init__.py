"""``ledger-audit``: the auditor's tools.

Offline checks (``verify``) use only the pure verifiers in :mod:`ledger` and
the genesis file; commands that talk to a node live in their own modules and
are loaded on demand by :mod:`client.audit.cli`.
"""
