"""Every console script answers ``--version`` with the installed package's version.

The scripts are read from the installed distribution's entry points (setup.cfg
``[options.entry_points]``), so a script added later is covered without
editing this test.
"""

from __future__ import annotations

import importlib.metadata

import click
import pytest
from click.testing import CliRunner

DIST = importlib.metadata.distribution("auditledger")
SCRIPTS = sorted((ep for ep in DIST.entry_points if ep.group == "console_scripts"),
                 key=lambda ep: ep.name)


def test_the_three_documented_scripts_are_installed() -> None:
    assert {"ledger-audit", "ledger-node", "ledger-cluster"} <= {ep.name for ep in SCRIPTS}


@pytest.mark.parametrize("entry_point", SCRIPTS, ids=lambda ep: ep.name)
def test_version_option(entry_point: importlib.metadata.EntryPoint) -> None:
    command = entry_point.load()
    assert isinstance(command, click.Command)
    result = CliRunner().invoke(command, ["--version"], prog_name=entry_point.name)
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"{entry_point.name}, version {DIST.version}"
