"""`hub routes check`: validate routing_rules/ before a reload; `hub routes resolve`: try a decision."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

from hub.adapters.routing_files import check_folder
from hub.domain.bericht import Bericht, BerichtIdentificatie, Kop
from hub.domain.catalogue import CATALOGUE, Rol
from hub.domain.errors import HubError
from hub.domain.parties import PartyKind, PartyRef
from hub.domain.routing import RoutingRules
from hub.domain.vandaag import vandaag
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("routes", help="check routing rules, try a routing decision")
    routes = p.add_subparsers(dest="routes_command", required=True)

    check = routes.add_parser("check", help="validate the routing_rules folder")
    _rules_option(check)
    check.set_defaults(func=_check)

    resolve = routes.add_parser("resolve", help="where would a message go?")
    _rules_option(resolve)
    resolve.add_argument("type", help="message type, e.g. JW301, WMO315, WMO405, PGB301")
    resolve.add_argument("sender", help="code of the party sending this message")
    resolve.add_argument("receiver", help="code of the party it is meant for")
    resolve.add_argument("--on", type=date.fromisoformat, default=None, help="day of receipt (default today)")
    resolve.add_argument(
        "--answer-to",
        type=PartyRef.parse,
        default=None,
        help="retour/325: the party that sent the heenbericht, as kind:code",
    )
    resolve.set_defaults(func=_resolve)


def _rules_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rules", type=Path, default=None, help="rules folder (default $HUB_ROUTING_RULES or routing_rules/)"
    )


def _load(args: argparse.Namespace) -> RoutingRules | None:
    folder: Path = args.rules or Settings.from_env().routing_rules
    rules, errors = check_folder(folder)
    for error in errors:
        print(error, file=sys.stderr)
    return rules


def _check(args: argparse.Namespace) -> int:
    rules = _load(args)
    if rules is None:
        return 1
    today = vandaag()
    gemeenten = [p for p in rules.parties if p.ref.kind is PartyKind.GEMEENTE]
    in_force = sum(1 for p in gemeenten if p.period.contains(today))
    print(
        f"routing rules {rules.version} OK: {in_force} gemeenten in force on {today}, "
        f"{len(rules.parties) - len(gemeenten)} other parties, {len(rules.mergers)} mergers, "
        f"{len(rules.channels)} channel routes, {len(rules.sends_for)} sends_for rules"
    )
    return 0


def _resolve(args: argparse.Namespace) -> int:
    rules = _load(args)
    if rules is None:
        return 1
    types = [t for t in CATALOGUE if t.naam == args.type.upper()]
    if not types:
        print(f"unknown message type {args.type!r}", file=sys.stderr)
        return 2
    t = types[0]
    # A retour's header is the heenbericht's (IV028): put the codes back the way the header has them.
    retour = t.rol is Rol.RETOUR
    afzender, ontvanger = (args.receiver, args.sender) if retour else (args.sender, args.receiver)
    ident = BerichtIdentificatie("resolve", vandaag())
    kop = Kop(t.berichtcode, "0", "0", afzender, ontvanger, ident, retour=ident, verwijzing=ident)
    try:
        b = rules.resolve(Bericht(t, "-", kop), args.on or vandaag(), answer_to=args.answer_to)
    except HubError as exc:
        print(f"{exc.code}: {exc.detail}")
        return 1
    endpoint = f" {b.endpoint}" if b.endpoint else ""
    print(f"{b.ontvanger} via {b.kanaal}{endpoint} (queue key {b.queue_key}; rules {rules.version})")
    return 0
