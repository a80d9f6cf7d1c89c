"""``--backend aks``: a throwaway AKS cluster with a tainted GPU pool, or an existing one.

Interface for the plugin and the CLI (nothing here imports Azure or touches the network):

- ``add_options(group)`` / ``add_ini(parser)``: the ``--aks-*`` options and ``aks_*`` ini keys;
  each also reads ``GPU_CONFORMANCE_AKS_*`` from the environment.
- ``from_pytest_config(config)``: the ``ClusterBackend``; ``up``/``down`` do the Azure work.
- ``is_dry_run(config)`` (option, env or ini), ``dry_run_plan(config) -> dict``,
  ``dry_run_text(config) -> str`` and ``print_dry_run(config) -> int``: print the plan and stop
  before any backend is built (e.g. ``return print_dry_run(config)`` from ``pytest_cmdline_main``).
- ``add_cli(subparsers)``: ``gpu-conformance aks janitor`` and ``gpu-conformance aks plan``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

import pytest

from gpu_conformance.aks.settings import OPTIONS, SPECS, AksSettings, OptionSpec, resolve
from gpu_conformance.errors import GpuConformanceError, UsageError

if TYPE_CHECKING:
    from gpu_conformance.aks.credentials import CredentialFactory
    from gpu_conformance.aks.provision import AksBackend

_SETTINGS = pytest.StashKey[AksSettings]()


def _help(spec: OptionSpec) -> str:
    extra = f"; one of {', '.join(spec.choices)}" if spec.choices else ""
    default = f" (default {spec.default})" if spec.default and spec.kind != "bool" else ""
    env = ", ".join((spec.env, *spec.extra_env))
    return f"{spec.help}{extra}{default} [env {env}]"


def _add_argument(add: Any, spec: OptionSpec) -> None:
    if spec.kind == "bool":
        add(spec.flag, dest=spec.dest, action="store_true", default=None, help=_help(spec))
    else:
        add(spec.flag, dest=spec.dest, default=None, metavar=spec.key.replace("-", "_").upper(),
            help=_help(spec))


def add_options(group: pytest.OptionGroup) -> None:
    """Register every ``--aks-*`` option (dest ``aks_*``); all default to None = not given."""
    for spec in OPTIONS:
        _add_argument(group.addoption, spec)


def add_ini(parser: pytest.Parser) -> None:
    """Register the ``aks_*`` ini keys (same names as the option dests)."""
    for spec in OPTIONS:
        parser.addini(spec.dest, f"{spec.help} [--aks-{spec.key}]", type="string", default="")


def settings_from_config(config: pytest.Config) -> AksSettings:
    """Resolved once per run (the generated run id must not change between calls)."""
    if _SETTINGS in config.stash:
        return config.stash[_SETTINGS]

    def ini(spec: OptionSpec) -> Any:
        try:
            return config.getini(spec.dest)
        except ValueError:
            return None

    settings = resolve(lambda spec: config.getoption(spec.dest, None), ini, os.environ)
    config.stash[_SETTINGS] = settings
    return settings


def from_pytest_config(config: pytest.Config, *,
                       credential_factory: CredentialFactory | None = None,
                       client_kwargs: Mapping[str, Any] | None = None) -> AksBackend:
    """The backend for this run; validates options now, contacts Azure only in ``up``."""
    from gpu_conformance.aks.provision import AksBackend

    return AksBackend(settings_from_config(config), credential_factory=credential_factory,
                      client_kwargs=client_kwargs)


def _checked_settings(config: pytest.Config) -> AksSettings:
    # called straight from pytest hooks: a bad option must read as a usage error, not a crash
    try:
        return settings_from_config(config)
    except GpuConformanceError as exc:
        raise pytest.UsageError(exc.one_line()) from None


def is_dry_run(config: pytest.Config) -> bool:
    """``--aks-dry-run``, ``GPU_CONFORMANCE_AKS_DRY_RUN`` or ini ``aks_dry_run``."""
    return bool(_checked_settings(config).dry_run)


def dry_run_plan(config: pytest.Config) -> dict[str, Any]:
    """The planned operations and request bodies; creates no client and no credential."""
    from gpu_conformance.aks.plan import plan

    return plan(_checked_settings(config))


def dry_run_text(config: pytest.Config) -> str:
    """The plan as indented JSON, ready to print."""
    return json.dumps(dry_run_plan(config), indent=2)


def print_dry_run(config: pytest.Config, out: TextIO | None = None) -> int:
    """Print the plan as JSON; the exit code for ``pytest_cmdline_main`` to return."""
    print(dry_run_text(config), file=out or sys.stdout, flush=True)
    return 0


# -- command line ----------------------------------------------------------------------------


def add_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``aks janitor`` and ``aks plan``; each sets ``func(args) -> int``."""
    aks = subparsers.add_parser("aks", help="Azure Kubernetes Service helpers")
    commands = aks.add_subparsers(dest="aks_command", required=True, metavar="COMMAND")
    janitor = commands.add_parser(
        "janitor", help="delete resource groups and clusters whose expiry tag has passed",
        description="Deletes only resources tagged by gpu-conformance with both a run id and an "
                    "expiry that has passed; deletions are started and left to Azure to finish.")
    _add_argument(janitor.add_argument, SPECS["subscription"])
    janitor.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    janitor.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                         help="wait up to SECONDS for each deletion to finish")
    janitor.set_defaults(func=janitor_command)
    planner = commands.add_parser("plan", help="print the JSON plan of --backend aks; call nothing")
    for spec in OPTIONS:
        if spec.key != "dry-run":
            _add_argument(planner.add_argument, spec)
    planner.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from gpu_conformance.aks.plan import plan

    try:
        settings = resolve(lambda spec: getattr(args, spec.dest, None), lambda spec: None)
    except GpuConformanceError as exc:
        print(f"error: {exc.one_line()}", file=sys.stderr)
        return 2
    print(json.dumps(plan(settings), indent=2), file=out or sys.stdout)
    return 0


def janitor_command(args: argparse.Namespace, *,
                    credential_factory: CredentialFactory | None = None,
                    client_kwargs: Mapping[str, Any] | None = None, now: datetime | None = None,
                    retry_wait: float | None = None, out: TextIO | None = None,
                    err: TextIO | None = None) -> int:
    """0: nothing left to do; 1: some deletion failed; 2: could not run at all."""
    from gpu_conformance.aks.clients import make_clients
    from gpu_conformance.aks.credentials import default_factory
    from gpu_conformance.aks.janitor import sweep

    stdout, stderr = out or sys.stdout, err or sys.stderr

    def log(line: str) -> None:
        print(line, file=stdout)

    spec = SPECS["subscription"]
    subscription = getattr(args, spec.dest, None) or next(
        (os.environ[n] for n in (spec.env, *spec.extra_env) if os.environ.get(n)), None)
    try:
        if not subscription:
            raise UsageError("no Azure subscription given",
                             hint="pass --aks-subscription or set AZURE_SUBSCRIPTION_ID")
        credential = (credential_factory or default_factory(os.environ))()
        clients = make_clients(credential, subscription, client_kwargs)
        try:
            result = sweep(clients, now or datetime.now(UTC), log, dry_run=bool(args.dry_run),
                           wait_s=args.wait, retry_wait=retry_wait)
        finally:
            clients.close()
    except GpuConformanceError as exc:
        print(f"error: {exc.one_line()}", file=stderr)
        return 2
    verb = "would delete" if args.dry_run else "deleting"
    log(f"janitor: {verb} {len(result.deleted)}, not yet expired {len(result.kept)}, "
        f"failed {len(result.errors)}")
    return 1 if result.errors else 0
