"""`python -m tools.xsdgen [OUT]`: write the project's XSDs (default: xsd/ of the repository)."""

from __future__ import annotations

import sys
from pathlib import Path

from tools.xsdgen.generate import generate_all

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    out = Path(argv[0]) if argv else REPO / "xsd"
    written = generate_all(out)
    print(f"wrote {len(written)} schema files under {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
