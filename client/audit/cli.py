"""The ``ledger-audit`` command group.

Each command lives in its own module and is imported only when it runs, so
offline ``verify`` never loads the network client.  To add a command, write
a click command in a module of this package and name it in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute" of its click command
COMMANDS: dict[str, str] = {
    "verify": "client.audit.verify_cmd:verify",
    "consistency": "client.audit.remote_cmds:consistency",
    "trace": "client.audit.remote_cmds:trace",
    "audit": "client.audit.remote_cmds:audit",
    "checkpoint": "client.audit.remote_cmds:checkpoint",
    "export": "client.audit.export_cmd:export",
    "replay-policy": "client.audit.replay_cmd:replay_policy",
}


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{target} is not a click command")
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="auditledger", prog_name="ledger-audit")
def main() -> None:
    """Audit an auditledger chain: verify proofs offline against the genesis file.

    Exit status: 0 valid, 1 invalid (the failed step is named), 2 usage
    error or unreadable input.
    """
