"""The ``ggk`` command line: operators' and integrators' entry point.

Exit codes everywhere: 0 success (all valid), 1 the input was processed and something in it is
invalid, 2 usage or I/O error (bad option, unreadable file, broken schema bundle).

This module is the entry point (``ggk = "cli:main"``); the commands live in the package
gateway/cli/, one module per group (see its docstring).
"""

from __future__ import annotations

import click

from gateway.cli import (
    audit_trail,
    backup,
    certs,
    checks,
    code_lists,
    cpas,
    dead_letters,
    figures,
    inbox,
    kafka,
    keys,
    messages,
    partners,
    setup,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="ggk-gateway")
def main() -> None:
    """ggk-gateway: iWmo/iJw message gateway for the GGk."""


for command in (
    checks.validate,
    checks.schemas,
    checks.rules,
    code_lists.codelists_group,
    setup.init,
    setup.serve,
    messages.submit,
    messages.status,
    inbox.inbox,
    dead_letters.dlq,
    dead_letters.replay,
    messages.overdue,
    figures.stats_command,
    checks.routes,
    keys.keys,
    audit_trail.audit_group,
    cpas.cpa,
    kafka.kafka,
    certs.certs,
    backup.backup_command,
    backup.restore_command,
    partners.partners,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
