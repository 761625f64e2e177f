"""Client SDK for services and the ledger-audit tools for auditors."""
