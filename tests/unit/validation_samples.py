"""Small documents for the validation tests, built here so the tests need no example files.

`antwoord()` is a minimal valid WMO319/JW319 (Header + Antwoord) against the project's xsd/; the
message examples of the project (tests/support/berichten.py) cover the other types.
"""

from __future__ import annotations

import re
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
RELEASES = PROJECT / "xsd" / "releases.toml"
SHARED = PROJECT.parent / "shared" / "istandaarden"

BSN = "999900006"  # a test BSN (11-proef valid), never to appear in an error reason


def ns(standaard: str, bericht: str, release: str = "3_2") -> str:
    return f"http://www.istandaarden.nl/{standaard}/{release}/{bericht}/schema"


def antwoord(
    standaard: str = "iwmo", *, code: str | None = None, versie: str = "3", subversie: str = "2",
    afzender: str = "0384", ontvanger: str = "12345678", identificatie: str = "ID-1",
    dagtekening: str = "2024-03-01", verzoek_antwoord: str = "1", referentie: str = "REF-1",
    namespace: str | None = None, release: str = "3_2",
) -> bytes:
    """A 319 (antwoordbericht), valid unless a parameter breaks it."""
    naam = "wmo319" if standaard == "iwmo" else "jw319"
    code = code or ("482" if standaard == "iwmo" else "488")
    m = namespace or ns(standaard, naam, release)
    b = ns(standaard, "basisschema", release)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<m:Bericht xmlns:m="{m}" xmlns:b="{b}">
  <m:Header>
    <m:BerichtCode>{code}</m:BerichtCode>
    <m:BerichtVersie>{versie}</m:BerichtVersie>
    <m:BerichtSubversie>{subversie}</m:BerichtSubversie>
    <m:Afzender>{afzender}</m:Afzender>
    <m:Ontvanger>{ontvanger}</m:Ontvanger>
    <m:BerichtIdentificatie>
      <b:Identificatie>{identificatie}</b:Identificatie>
      <b:Dagtekening>{dagtekening}</b:Dagtekening>
    </m:BerichtIdentificatie>
    <m:XsdVersie>
      <b:BasisschemaXsdVersie>1.0.0</b:BasisschemaXsdVersie>
      <b:BerichtXsdVersie>1.0.0</b:BerichtXsdVersie>
    </m:XsdVersie>
  </m:Header>
  <m:Antwoord>
    <m:ReferentieAanbieder>{referentie}</m:ReferentieAanbieder>
    <m:VerzoekAntwoord>{verzoek_antwoord}</m:VerzoekAntwoord>
  </m:Antwoord>
</m:Bericht>
""".encode()


def releases_toml(tmp: Path, *tables: dict[str, object]) -> Path:
    """A releases file in `tmp` with one [[release]] table per dict."""
    lines: list[str] = []
    for table in tables:
        lines.append("[[release]]")
        for key, value in table.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            else:
                lines.append(f'{key} = "{value}"')
        lines.append("")
    path = tmp / "releases.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def fake_release(source: Path, dest: Path, release: str) -> Path:
    """A copy of a release folder posing as another release ("3.3"): namespaces and BerichtSubversie
    rewritten, as an official bundle of a new release would differ from the old one."""
    dest.mkdir(parents=True)
    major, minor = release.split(".")
    old = source.name.split("-")[1].replace(".", "_")  # iwmo-3.2 -> 3_2
    for xsd in source.glob("*.xsd"):
        text = xsd.read_text(encoding="utf-8").replace(f"/{old}/", f"/{major}_{minor}/")
        text = re.sub(
            r'(LDT_BerichtSubversie">\s*<xs:pattern value=")\d+(")', rf"\g<1>{minor}\g<2>", text,
        )
        (dest / xsd.name).write_text(text, encoding="utf-8")
    return dest
