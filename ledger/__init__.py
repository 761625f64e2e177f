"""Pure ledger core: canonical encoding, records, RFC 9162 Merkle trees,
storage, proofs and offline verification.  Never imports asyncio or aiohttp."""

__version__ = "0.1.0"
