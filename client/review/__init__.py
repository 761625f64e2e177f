"""``ledger-review``: the reviewers' console (PROTOCOL §10.10)."""
