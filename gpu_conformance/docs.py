"""The README's options and timeouts tables, generated from the one table of each
(``make docs`` rewrites them; a unit test keeps the README in step)."""

from __future__ import annotations

import re
from pathlib import Path

from gpu_conformance.options import OPTIONS, Opt
from gpu_conformance.timeouts import DEFAULTS

OPTIONS_BEGIN, OPTIONS_END = "<!-- options:begin -->", "<!-- options:end -->"
TIMEOUTS_BEGIN, TIMEOUTS_END = "<!-- timeouts:begin -->", "<!-- timeouts:end -->"


def _default(opt: Opt) -> str:
    if opt.default in (None, [], False):
        return ""
    return f"`{opt.default:g}`" if isinstance(opt.default, float) else f"`{opt.default}`"


def options_table() -> str:
    rows = ["| option | env / ini | default | backend | meaning |", "|---|---|---|---|---|"]
    for opt in OPTIONS:
        choices = f" ({', '.join(opt.choices)})" if opt.choices else ""
        extra = "".join(f", `{e}`" for e in opt.extra_env)
        rows.append(f"| `{opt.flag}` | `{opt.env}`{extra} / `{opt.ini}` | {_default(opt)} | "
                    f"{opt.backend or 'all'} | {opt.help}{choices} |")
    return "\n".join(rows)


def timeouts_table() -> str:
    rows = ["| name | default | used by | why |", "|---|---|---|---|"]
    for t in DEFAULTS.values():
        rows.append(f"| `{t.name}` | {t.seconds:g} s | {t.scope} | {t.reason} |")
    return "\n".join(rows)


def _replace(text: str, begin: str, end: str, body: str) -> str:
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{begin} ... {end} not found")
    return pattern.sub(lambda _m: f"{begin}\n{body}\n{end}", text)


def render(readme: str) -> str:
    """``readme`` with both generated tables replaced by the current ones."""
    text = _replace(readme, OPTIONS_BEGIN, OPTIONS_END, options_table())
    return _replace(text, TIMEOUTS_BEGIN, TIMEOUTS_END, timeouts_table())


RBAC_FILE = Path("manifests") / "incluster" / "rbac.yaml"


def main() -> int:
    from gpu_conformance.permissions import rbac_manifest

    root = Path(__file__).resolve().parents[1]
    path = root / "README.md"
    path.write_text(render(path.read_text()))
    (root / RBAC_FILE).write_text(rbac_manifest())
    print(f"rewrote the options and timeouts tables of {path} and {RBAC_FILE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
