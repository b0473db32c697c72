"""Writes the settings table of docs/settings.md from the one table in aios_instance.settings.

Each ``Settings`` field is declared once, with its variable, default, parser and meaning
(``setting(...)``); ``VARIABLES`` lists them in declaration order. Run
``python scripts/gen_settings_doc.py`` after changing one; tests/unit/test_settings.py fails
while the page differs from what this script would write. ``--check`` exits 1 instead of
writing when the page is stale (for CI).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aios_instance.settings import VARIABLES, Variable

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def default_of(var: Variable) -> str:
    """The default as the table shows it: ``(unset)`` for none (or an empty text)."""
    if var.default is None or var.default == "":
        return "(unset)"
    return f"`{var.default}`"


def table() -> str:
    """The Markdown table: variable, default, meaning (one row per setting)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{var.env}` | {default_of(var)} | {var.doc} |" for var in VARIABLES]
    return "\n".join(rows)


def render(page: str) -> str:
    """``page`` with the text between the table markers replaced by ``table()``."""
    if BEGIN not in page or END not in page:
        raise SystemExit(f"{PAGE}: the markers {BEGIN} and {END} are missing")
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


def main(argv: list[str]) -> int:
    current = PAGE.read_text(encoding="utf-8")
    wanted = render(current)
    if "--check" in argv:
        if wanted != current:
            print(f"{PAGE} is stale: run python scripts/gen_settings_doc.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
