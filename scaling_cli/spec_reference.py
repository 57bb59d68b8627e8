"""The spec reference (`scale sweep --help-spec`): every key a sweep spec accepts, with its type, default, bounds
and doc, read from the config dataclass fields that declare them (spec.FIELDS, and DataOptions for [data]).

Nothing here is written by hand per key: a field added to a config with `validate.setting` appears here, in the
spec reader's accepted keys and in its checks at once.
"""

from __future__ import annotations

from dataclasses import MISSING, Field, dataclass, fields

from scaling_cli.data.options import DataOptions
from scaling_cli.spec import FIELDS, TABLES, spec_default
from scaling_cli.validate import describe

AXIS_NOTE = "a list is a grid axis"


@dataclass(frozen=True)
class KeyReference:
    """One spec key as the reference lists it."""

    key: str  # dotted: "train.lr", "eval.every", "seeds"
    type: str
    default: str
    bounds: str
    doc: str


def spec_keys() -> dict[str, Field]:
    """Every spec key -> its declaring field: spec.FIELDS plus [data]'s DataOptions fields."""
    return FIELDS | {f"data.{item.name}": item for item in fields(DataOptions)}


def spec_reference() -> list[KeyReference]:
    """Every spec key, the top level first, then each table in the order a spec writes them."""
    order = {"": 0} | {name: at + 1 for at, name in enumerate(TABLES)}
    rows = [_row(key, item) for key, item in spec_keys().items()]
    return sorted(rows, key=lambda row: (order[row.key.rpartition(".")[0]], row.key))


def render_reference(rows: list[KeyReference]) -> str:
    """The reference as text: one block per table, a line per key, its doc indented below."""
    lines = ["Every key of a sweep spec (TOML); generated from the config dataclasses' fields."]
    table = None
    for row in rows:
        heading = row.key.rpartition(".")[0]
        if heading != table:
            table = heading
            lines += ["", f"[{table}]" if table else "top level"]
        bounds = f", {row.bounds}" if row.bounds else ""
        lines.append(f"  {row.key.rpartition('.')[2]}: {row.type}{bounds}; default {row.default}")
        lines.append(f"      {row.doc}")
    return "\n".join(lines)


def _row(key: str, item: Field) -> KeyReference:
    kind, bounds = describe(item.metadata["check"])
    doc = item.metadata["doc"]
    if item.metadata.get("axis"):
        doc = f"{doc}; {AXIS_NOTE}"
    default = spec_default(item) if key in FIELDS else item.default
    return KeyReference(key, kind, _shown(default), bounds, doc)


def _shown(value: object) -> str:
    """A default as a spec would write it."""
    if value is MISSING:
        return "required"
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_shown(item) for item in value) + "]"
    return f"{value:g}" if isinstance(value, float) else str(value)
