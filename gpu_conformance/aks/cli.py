"""``gpu-conformance aks janitor`` and ``gpu-conformance aks plan``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TextIO

from gpu_conformance.errors import GpuConformanceError, UsageError
from gpu_conformance.options import AKS, BY_DEST, Opt

if TYPE_CHECKING:
    from gpu_conformance.aks.credentials import CredentialFactory


def _add(add: Any, opt: Opt) -> None:
    extra = f"; one of {', '.join(opt.choices)}" if opt.choices else ""
    default = f" (default {opt.default})" if opt.default not in (None, False, []) else ""
    env = ", ".join((opt.env, *opt.extra_env))
    text = f"{opt.help}{extra}{default} [env {env}]"
    if opt.kind == "bool":
        add(opt.flag, dest=opt.dest, action="store_true", default=None, help=text)
    else:
        add(opt.flag, dest=opt.dest, default=None, help=text)


def add_cli(subparsers: Any) -> None:
    """Register ``aks janitor`` and ``aks plan``; each sets ``func(args) -> int``."""
    aks = subparsers.add_parser("aks", help="Azure Kubernetes Service helpers")
    commands = aks.add_subparsers(dest="aks_command", required=True, metavar="COMMAND")
    janitor = commands.add_parser(
        "janitor", help="delete resource groups and clusters whose expiry tag has passed",
        description="Deletes only resources tagged by gpu-conformance with both a run id and an "
                    "expiry that has passed; deletions are started and left to Azure to finish.")
    _add(janitor.add_argument, BY_DEST["aks_subscription"])
    janitor.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    janitor.add_argument("--wait", type=float, default=None, metavar="SECONDS",
                         help="wait up to SECONDS for each deletion to finish")
    janitor.set_defaults(func=janitor_command)
    planner = commands.add_parser("plan", help="print the JSON plan of --backend aks; call nothing")
    for opt in AKS:
        if opt.dest != "aks_dry_run":
            _add(planner.add_argument, opt)
    _add(planner.add_argument, BY_DEST["gpu_run_id"])
    planner.set_defaults(func=plan_command)


def plan_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from gpu_conformance import options
    from gpu_conformance.aks.plan import plan
    from gpu_conformance.aks.settings import from_values
    from gpu_conformance.settings import Settings

    given = {opt.dest: getattr(args, opt.dest, None) for opt in (*AKS, BY_DEST["gpu_run_id"])}
    try:
        settings = Settings.from_values(options.from_mapping(
            {k: v for k, v in given.items() if v is not None}, os.environ))
        aks = from_values(settings.values, settings.run_id or _run_id(), settings.timeouts)
    except GpuConformanceError as exc:
        print(f"gpu-conformance: error: {exc.one_line()}", file=sys.stderr)
        return 2
    print(json.dumps(plan(aks), indent=2), file=out or sys.stdout)
    return 0


def _run_id() -> str:
    from gpu_conformance.settings import new_run_id

    return new_run_id()


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

    opt = BY_DEST["aks_subscription"]
    subscription = getattr(args, opt.dest, None) or next(
        (os.environ[n] for n in (opt.env, *opt.extra_env) if os.environ.get(n)), None)
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
        print(f"gpu-conformance: error: {exc.one_line()}", file=stderr)
        return 2
    verb = "would delete" if args.dry_run else "deleting"
    log(f"janitor: {verb} {len(result.deleted)}, not yet expired {len(result.kept)}, "
        f"failed {len(result.errors)}")
    return 1 if result.errors else 0
