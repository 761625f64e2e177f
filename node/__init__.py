"""The ledger node: HTTP API, peer transport, mempool, consensus driver, local cluster."""
