"""Example messages for tests and benchmarks: read them, rewrite their header, build big declaraties.

The examples live in examples/berichten/<folder>/<NAAM>.xml (folder as under xsd/, e.g. "iwmo-3.2"); each
is valid against the project's schema of that name.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from lxml import etree

from hub.domain.catalogue import CATALOGUE, Standaard
from hub.domain.parties import is_bsn

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "berichten"

_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def example(standaard_folder: str, naam: str) -> bytes:
    """The project's example of one message type, e.g. example("iwmo-3.2", "WMO301")."""
    return (EXAMPLES / standaard_folder / f"{naam}.xml").read_bytes()


def _set(header: etree._Element, path: tuple[str, ...], value: str | date | None) -> None:
    if value is None:
        return
    el = header
    for name in path:
        found = next((c for c in el if isinstance(c.tag, str) and etree.QName(c).localname == name), None)
        if found is None:
            raise ValueError(f"this message's Header has no {'/'.join(path)}")
        el = found
    el.text = value.isoformat() if isinstance(value, date) else value


def with_header(
    xml: bytes,
    *,
    afzender: str | None = None,
    ontvanger: str | None = None,
    identificatie: str | None = None,
    dagtekening: str | date | None = None,
    identificatie_retour: str | None = None,
    dagtekening_retour: str | date | None = None,
    verwijzing_identificatie: str | None = None,
    verwijzing_dagtekening: str | date | None = None,
) -> bytes:
    """The message with the given Header fields replaced and everything else kept.

    `identificatie`/`dagtekening` are BerichtIdentificatie's; `*_retour` are a retourbericht's own
    IdentificatieRetour/DagtekeningRetour; `verwijzing_*` are a 325's DeclaratieIdentificatie. Asking for
    a field the message does not have raises ValueError.
    """
    root = etree.fromstring(xml, _PARSER)
    header = root[0] if len(root) and etree.QName(root[0]).localname == "Header" else None
    if header is None:
        raise ValueError("not a message with a Header")
    _set(header, ("Afzender",), afzender)
    _set(header, ("Ontvanger",), ontvanger)
    _set(header, ("BerichtIdentificatie", "Identificatie"), identificatie)
    _set(header, ("BerichtIdentificatie", "Dagtekening"), dagtekening)
    _set(header, ("IdentificatieRetour",), identificatie_retour)
    _set(header, ("DagtekeningRetour",), dagtekening_retour)
    _set(header, ("DeclaratieIdentificatie", "Identificatie"), verwijzing_identificatie)
    _set(header, ("DeclaratieIdentificatie", "Dagtekening"), verwijzing_dagtekening)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


# Product category and code per standard, valid in its code lists.
_PRODUCT = {Standaard.IWMO: ("02", "02A05"), Standaard.IJW: ("45", "45A48")}


def _standaard(text: str) -> Standaard:
    for s in (Standaard.IWMO, Standaard.IJW):
        if text in (s.value, s.slug):
            return s
    raise ValueError(f"declaraties exist for iWmo and iJw, not {text!r}")


def elfproef_bsns(n: int, start: int = 999_990_000) -> list[str]:
    """n distinct test BSNs (999 range) that pass the elfproef."""
    out: list[str] = []
    candidate = start
    while len(out) < n:
        if is_bsn(str(candidate)):
            out.append(str(candidate))
        candidate += 1
    return out


def declaratie(
    standaard: str,
    n_prestaties: int,
    *,
    prestaties_per_client: int = 10,
    afzender: str = "12345678",
    ontvanger: str = "0363",
    identificatie: str = "D2024050001",
    dagtekening: str | date = "2024-05-06",
    declaratienummer: str = "D2024040001",
) -> bytes:
    """A valid WMO323/JW323 (standaard "iWmo"/"iwmo" or "iJw"/"ijw") with n_prestaties prestaties.

    Prestaties are spread over clients, `prestaties_per_client` each, with distinct test BSNs; the totals
    add up. About 0.9 KB a prestatie: 1,000 prestaties make a message of roughly 0.9 MB.
    """
    if n_prestaties < 1 or prestaties_per_client < 1:
        raise ValueError("a declaratie has at least one prestatie")
    std = _standaard(standaard)
    t = CATALOGUE.get(std, ("WMO" if std is Standaard.IWMO else "JW") + "323")
    p, b = t.slug, std.slug
    ns, bns = (f"http://www.istandaarden.nl/{b}/3_2/{part}/schema" for part in (p, "basisschema"))
    categorie, code = _PRODUCT[std]
    dag = dagtekening.isoformat() if isinstance(dagtekening, date) else dagtekening
    n_clients = -(-n_prestaties // prestaties_per_client)
    bsns = elfproef_bsns(n_clients)
    parts: list[str] = []
    total = 0
    for i in range(n_prestaties):
        if i % prestaties_per_client == 0:
            if i:
                parts.append(f"</{p}:Prestaties></{p}:Client>\n")
            bsn = bsns[i // prestaties_per_client]
            parts.append(f"<{p}:Client><{p}:Bsn>{bsn}</{p}:Bsn><{p}:Prestaties>\n")
        volume, tarief = 1 + i % 40, 2500 + (i % 7) * 125
        total += volume * tarief
        parts.append(
            f"<{p}:Prestatie><{p}:ProductReferentie><{b}:ReferentieNummer>PR{i:08d}</{b}:ReferentieNummer>"
            f"</{p}:ProductReferentie><{p}:ToewijzingNummer>{20240000 + i}</{p}:ToewijzingNummer>"
            f"<{p}:ProductCategorie>{categorie}</{p}:ProductCategorie><{p}:ProductCode>{code}</{p}:ProductCode>"
            f"<{p}:ProductPeriode><{b}:Begindatum>2024-04-01</{b}:Begindatum>"
            f"<{b}:Einddatum>2024-04-30</{b}:Einddatum></{p}:ProductPeriode>"
            f"<{p}:GeleverdVolume>{volume}</{p}:GeleverdVolume><{p}:Eenheid>04</{p}:Eenheid>"
            f"<{p}:ProductTarief>{tarief}</{p}:ProductTarief><{p}:IngediendBedrag>"
            f"<{b}:Bedrag>{volume * tarief}</{b}:Bedrag><{b}:DebetCredit>D</{b}:DebetCredit>"
            f"</{p}:IngediendBedrag></{p}:Prestatie>\n"
        )
    parts.append(f"</{p}:Prestaties></{p}:Client>\n")
    head = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{p}:Bericht xmlns:{p}="{ns}" xmlns:{b}="{bns}">\n'
        f"<{p}:Header><{p}:BerichtCode>{t.berichtcode}</{p}:BerichtCode><{p}:BerichtVersie>3</{p}:BerichtVersie>"
        f"<{p}:BerichtSubversie>2</{p}:BerichtSubversie><{p}:Afzender>{afzender}</{p}:Afzender>"
        f"<{p}:Ontvanger>{ontvanger}</{p}:Ontvanger><{p}:BerichtIdentificatie><{b}:Identificatie>{identificatie}"
        f"</{b}:Identificatie><{b}:Dagtekening>{dag}</{b}:Dagtekening></{p}:BerichtIdentificatie>"
        f"<{p}:XsdVersie><{b}:BasisschemaXsdVersie>1.0.0</{b}:BasisschemaXsdVersie>"
        f"<{b}:BerichtXsdVersie>1.0.0</{b}:BerichtXsdVersie></{p}:XsdVersie></{p}:Header>\n"
        f"<{p}:Declaratie><{p}:DeclaratieNummer>{declaratienummer}</{p}:DeclaratieNummer>"
        f"<{p}:DeclaratiePeriode><{b}:Begindatum>2024-04-01</{b}:Begindatum><{b}:Einddatum>2024-04-30"
        f"</{b}:Einddatum></{p}:DeclaratiePeriode><{p}:DeclaratieDagtekening>{dag}</{p}:DeclaratieDagtekening>"
        f"<{p}:TotaalIngediendBedrag><{b}:TotaalBedrag>{total}</{b}:TotaalBedrag><{b}:DebetCredit>D"
        f"</{b}:DebetCredit></{p}:TotaalIngediendBedrag><{p}:Clienten>\n"
    )
    tail = f"</{p}:Clienten></{p}:Declaratie>\n</{p}:Bericht>\n"
    return (head + "".join(parts) + tail).encode("utf-8")
