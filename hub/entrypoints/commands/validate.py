"""`hub validate FILE...`: validate message files, one JSON line per file.

Exit 0 when every file is valid, 1 when any is invalid, 2 on a usage error, an unreadable file or a
releases file that does not load (a line is still printed for every readable file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from hub.domain.bericht import Validatie
from hub.domain.catalogue import Rol
from hub.settings import Settings
from hub.validation import RegistryError, SchemaRegistry, Validator
from hub.validation.safe_xml import DEFAULT_MAX_BYTES

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "validate",
        help="validate message files against the accepted schema releases",
        description="Validate iStandaarden message files; prints one JSON object per file.",
    )
    p.add_argument("files", nargs="+", metavar="FILE", type=Path)
    p.add_argument(
        "--releases",
        type=Path,
        default=None,
        help="releases file (default: $HUB_SCHEMA_RELEASES or xsd/releases.toml)",
    )
    p.add_argument(
        "--on",
        type=date.fromisoformat,
        default=None,
        metavar="DATE",
        help="day of receipt (ISO date) for the acceptance windows (default: today)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    releases: Path = args.releases or Settings.from_env().schema_releases
    try:
        validator = Validator(SchemaRegistry.load(releases))
    except RegistryError as exc:
        print(f"hub validate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_VALID
    for path in args.files:
        try:
            with path.open("rb") as f:
                size = os.fstat(f.fileno()).st_size
                # A file over the limit is refused by its size: a 2 GB file is not read to be told so.
                data = f.read() if size <= DEFAULT_MAX_BYTES else b""
        except OSError as exc:
            _emit(_unreadable(path, exc))
            status = EXIT_USAGE
            continue
        if size > DEFAULT_MAX_BYTES:
            reason = f"the file is {size} bytes; the limit is {DEFAULT_MAX_BYTES} bytes"
            _emit(_not_validated(path, "too_large", reason))
            status = EXIT_INVALID if status == EXIT_VALID else status
            continue
        result = validator.validate(data, on=args.on)
        _emit(report(str(path), result))
        if not result.valid and status == EXIT_VALID:
            status = EXIT_INVALID
    return status


def report(file: str, result: Validatie) -> dict[str, Any]:
    """The JSON object for one file."""
    bericht = result.bericht
    btype = bericht.type if bericht else result.type
    kop = bericht.kop if bericht else result.kop
    afzender = ontvanger = None
    if kop is not None and btype is not None:
        retour = btype.rol is Rol.RETOUR  # a retour copies the heenbericht's header (IV028)
        afzender, ontvanger = (kop.ontvanger, kop.afzender) if retour else (kop.afzender, kop.ontvanger)
    out: dict[str, Any] = {
        "file": file,
        "valid": result.valid,
        "standard": btype.standaard.value if btype else None,
        "release": bericht.release if bericht else result.release,
        "message": btype.naam if btype else None,
        "berichtcode": kop.berichtcode if kop else None,
        "afzender": afzender,
        "ontvanger": ontvanger,
        "errors": [{"line": f.line, "path": f.path, "reason": f.reason} for f in result.errors],
    }
    if result.code is not None:
        out["code"] = result.code.value
    return out


def _unreadable(path: Path, exc: OSError) -> dict[str, Any]:
    return _not_validated(path, "unreadable", f"cannot read the file: {exc.strerror or type(exc).__name__}")


def _not_validated(path: Path, code: str, reason: str) -> dict[str, Any]:
    return {
        "file": str(path),
        "valid": False,
        "standard": None,
        "release": None,
        "message": None,
        "berichtcode": None,
        "afzender": None,
        "ontvanger": None,
        "code": code,
        "errors": [{"line": None, "path": None, "reason": reason}],
    }


def _emit(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, ensure_ascii=False), flush=True)
