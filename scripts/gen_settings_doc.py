"""Writes the settings table of docs/settings.md from aios_instance.settings.VARIABLES.

Run `python scripts/gen_settings_doc.py`; tests/test_settings.py fails when the page is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aios_instance.settings import VARIABLES

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
BEGIN, END = "<!-- settings-table:begin -->", "<!-- settings-table:end -->"


def table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for var in VARIABLES:
        default = "(unset)" if var.default is None else f"`{var.default}`"
        rows.append(f"| `{var.env}` | {default} | {var.doc} |")
    return "\n".join(rows)


def render(page: str) -> str:
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{table()}\n{END}{tail}"


if __name__ == "__main__":
    PAGE.write_text(render(PAGE.read_text()))
