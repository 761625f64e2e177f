"""Key files (PROTOCOL §7): ``{"name", "pubkey": hex, "seed": hex}``, mode 0600."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .crypto import SigningKey
from .encoding import from_hex
from .errors import BadEncoding


class KeyFileError(ValueError):
    """A key file is missing, unreadable or malformed."""


@dataclass(frozen=True)
class KeyFile:
    name: str
    key: SigningKey

    @property
    def pubkey(self) -> bytes:
        return self.key.public_key


def load_key_file(path: str | Path) -> KeyFile:
    """Read a key file and check that its pubkey matches its seed."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None
    return parse_key_file(text, f"key file {path}")


def parse_key_file(text: str, source: str) -> KeyFile:
    """A key file's text (``source`` names where it came from in errors).

    Errors never quote the text: it holds the seed."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise KeyFileError(f"{source} is not JSON (line {exc.lineno}, column {exc.colno})") \
            from None
    if not isinstance(doc, dict) or not {"name", "pubkey", "seed"} <= set(doc):
        raise KeyFileError(f"{source} needs name, pubkey and seed")
    try:
        seed = from_hex(doc["seed"], length=32, what="seed")
        pubkey = from_hex(doc["pubkey"], length=32, what="pubkey")
    except BadEncoding as exc:
        raise KeyFileError(f"{source}: {exc}") from None
    key = SigningKey(seed)
    if key.public_key != pubkey:
        raise KeyFileError(f"{source}: pubkey does not match seed")
    if not isinstance(doc["name"], str):
        raise KeyFileError(f"{source}: name must be a string")
    return KeyFile(name=doc["name"], key=key)


def write_key_file(path: str | Path, name: str, key: SigningKey) -> None:
    """Write a key file readable only by its owner (0600 from creation on)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps({"name": name, "pubkey": key.public_key.hex(), "seed": key.seed.hex()}, indent=2)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(body + "\n")
    os.chmod(target, 0o600)
