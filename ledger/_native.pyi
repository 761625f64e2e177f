from typing import Any

def decode_record(
    record_bytes: bytes, /
) -> tuple[str, bytes, int, int, str, dict[str, str], dict[str, Any], tuple[bytes, ...]] | None: ...
def verify_ed25519(
    verify_detached_address: int, domain: bytes, items: list[tuple[bytes, bytes, bytes]], /
) -> list[bool]: ...
