"""``ledger-node`` refuses to start on configuration mistakes (issue 24
items 5 and 6): exit 2 with a message that says what to fix, and no message
or log line ever shows key material."""

from __future__ import annotations

import datetime
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from node.cluster import init_cluster
from node.config import ConfigError, load_config
from node.main import main
from node.startup import startup_checks


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    init_cluster(tmp_path, 3, base_port=23400, chain="checks")
    return tmp_path


def _seeds(directory: Path) -> list[str]:
    seeds = []
    for path in (directory / "keys").glob("*.json"):
        try:
            seeds.append(json.loads(path.read_text())["seed"])
        except ValueError:  # a test broke it on purpose (and checks its own seed)
            pass
    return seeds


def _refused(directory: Path, node: int = 0, env: dict[str, str] | None = None) -> str:
    """Run ledger-node for node ``node``; it must exit 2 before serving."""
    result = CliRunner().invoke(main, ["--config", str(directory / f"node{node}" / "node.toml")],
                                env=env)
    assert result.exit_code == 2, result.output
    assert "configuration error" in result.output
    for seed in _seeds(directory):
        assert seed not in result.output
    return result.output


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_key_file_readable_by_others_is_refused(cluster: Path) -> None:
    key = cluster / "keys" / "node0.json"
    os.chmod(key, 0o644)
    out = _refused(cluster)
    assert "node.key_file" in out and "readable by group or others" in out
    assert f"chmod 600 {key}" in out


def test_tls_key_readable_by_others_is_refused(cluster: Path) -> None:
    os.chmod(cluster / "tls" / "node0.key", 0o640)
    assert "tls.key_file" in _refused(cluster)


def test_another_validators_key_is_refused(cluster: Path) -> None:
    _edit(cluster / "node0" / "node.toml", "keys/node0.json", "keys/node1.json")
    out = _refused(cluster)
    assert "node 'node0' is validator 0 in genesis, but its key is validator 1's" in out
    assert "configure node0's own key file" in out


def test_listen_address_not_the_genesis_address_is_refused(cluster: Path) -> None:
    toml = cluster / "node0" / "node.toml"
    _edit(toml, "port = 23400", "port = 23499")
    out = _refused(cluster)
    assert "listens on 127.0.0.1:23499 but its genesis address is 127.0.0.1:23400" in out
    assert "node.advertise_address" in out
    # An advertised address that is not the genesis address is refused too...
    _edit(toml, 'data_dir = "data"', 'data_dir = "data"\nadvertise_address = "10.0.0.1:23400"')
    assert "node.advertise_address: '10.0.0.1:23400' is not this validator's" in _refused(cluster)
    # ... and the genesis address, advertised, passes the check.
    _edit(toml, "10.0.0.1:23400", "127.0.0.1:23400")
    assert startup_checks(load_config(toml)) is not None


def test_certificate_of_another_key_is_refused(cluster: Path) -> None:
    _edit(cluster / "node0" / "node.toml", "tls/node0.pem", "tls/node1.pem")
    out = _refused(cluster)
    assert "tls.cert_file" in out and "does not match the private key" in out
    assert "BEGIN" not in out  # no PEM in the message


def test_expired_certificate_is_refused(cluster: Path) -> None:
    tls = cluster / "tls"
    ca_cert = x509.load_pem_x509_certificate((tls / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((tls / "ca.key").read_bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = serialization.load_pem_private_key((tls / "node0.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node0")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=30))
            .not_valid_after(now - datetime.timedelta(days=1))
            .sign(ca_key, hashes.SHA256()))
    (tls / "node0.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out = _refused(cluster)
    assert "tls.cert_file" in out and "expired on" in out and "issue a new one" in out


def test_no_tls_without_the_explicit_insecure_setting_is_refused(cluster: Path) -> None:
    toml = cluster / "node0" / "node.toml"
    text = toml.read_text()
    toml.write_text(text[:text.index("[tls]")] + text[text.index("[log]"):])
    out = _refused(cluster)
    assert "tls.cert_file" in out and "tls.insecure_plaintext = true" in out


def test_bad_key_material_is_never_echoed(cluster: Path, tmp_path: Path) -> None:
    key = cluster / "keys" / "node0.json"
    doc = json.loads(key.read_text())
    seed = doc["seed"]
    for broken in ({**doc, "seed": seed.upper()},                 # not lowercase
                   {**doc, "seed": seed[:-2]},                    # too short
                   {**doc, "pubkey": doc["pubkey"][::-1]},        # does not match
                   seed):                                         # not a key file
        key.write_text(json.dumps(broken) if isinstance(broken, dict) else broken + "\n{")
        out = _refused(cluster)
        assert "node.key_file" in out
        assert seed not in out and seed.upper() not in out and seed[:-2] not in out


def test_key_from_a_file_descriptor(cluster: Path) -> None:
    """LEDGER_KEY_SEED_FD: the key file's text from an inherited descriptor;
    the key file path is then not read at all."""
    key = cluster / "keys" / "node0.json"
    text = key.read_text()
    shutil.move(key, cluster / "elsewhere.json")
    r, w = os.pipe()
    os.write(w, text.encode())
    os.close(w)
    config = load_config(cluster / "node0" / "node.toml", key_fd=r)
    assert config.validator is not None and config.validator.index == 0
    assert startup_checks(config, key_from_fd=True) is not None
    r, w = os.pipe()
    os.write(w, b'{"name": "x", "pubkey": "00", "seed": "' + b"ab" * 32 + b'"}')
    os.close(w)
    with pytest.raises(ConfigError) as info:
        load_config(cluster / "node0" / "node.toml", key_fd=r)
    assert "file descriptor" in str(info.value) and "ab" * 32 not in str(info.value)
    out = _refused(cluster, env={"LEDGER_KEY_SEED_FD": "x1"})
    assert "LEDGER_KEY_SEED_FD" in out
