"""Export the JSON Schemas of the declarative files.

``collectors/schema.json`` (device profiles) and ``collectors/traps/schema.json`` (trap rules).

``python -m callipso_agent.profiles.jsonschema`` rewrites them; ``--check`` exits 1 when a committed
schema differs from the models (the test suite runs the check).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from callipso_agent.paths import collectors_dir


def schema_of(model: type[BaseModel], title: str, schema_id: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "title": title,
        **schema,
    }


def profile_schema() -> dict[str, Any]:
    from callipso_agent.profiles.schema import Profile

    return schema_of(Profile, "callipso-agent SNMP device profile", "callipso-agent/collectors/schema.json")


def trap_schema() -> dict[str, Any]:
    from callipso_agent.traps import TrapMapFile

    return schema_of(
        TrapMapFile, "callipso-agent SNMP trap mapping", "callipso-agent/collectors/traps/schema.json"
    )


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def targets(base: Path | None = None) -> dict[Path, str]:
    root = base or collectors_dir()
    return {
        root / "schema.json": render(profile_schema()),
        root / "traps" / "schema.json": render(trap_schema()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when out of date")
    parser.add_argument("--dir", type=Path, help="collectors directory (default: the shipped one)")
    args = parser.parse_args(argv)
    stale = []
    for path, text in targets(args.dir).items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current != text:
            stale.append(path)
            if not args.check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    if args.check and stale:
        sys.stderr.write(
            "out of date: "
            + ", ".join(str(p) for p in stale)
            + "\nrun: python -m callipso_agent.profiles.jsonschema\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
