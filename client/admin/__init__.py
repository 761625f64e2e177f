"""``ledger-admin``: governance proposals signed by members (see :mod:`client.admin.cli`)."""
