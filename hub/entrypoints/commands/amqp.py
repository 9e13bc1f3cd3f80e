"""`hub amqp access`: the RabbitMQ commands that let a receiver consume its own queue, and nothing else.

For receivers on the AMQP channel (routing_rules/channels.csv). The hub prints the commands rather than
running them: they run where `rabbitmqctl` reaches the broker, by whoever administers it.
"""

from __future__ import annotations

import argparse
import re
import shlex
from typing import Any

from hub.bootstrap import topology_of
from hub.domain.parties import PartyRef
from hub.domain.routing import queue_key
from hub.settings import Settings


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("amqp", help="RabbitMQ access for AMQP-channel receivers")
    verbs = p.add_subparsers(dest="verb", required=True)
    a = verbs.add_parser("access", help="print the rabbitmqctl commands for a receiver's own user")
    a.add_argument("--party", required=True, help="the receiver as kind:code, e.g. gemeente:0363")
    a.add_argument("--user", required=True, help="the RabbitMQ user name to create")
    a.add_argument("--vhost", default="/")
    a.set_defaults(func=run)


def access_commands(party: PartyRef, user: str, vhost: str, settings: Settings) -> list[list[str]]:
    queue = topology_of(settings).queue_name(queue_key(party))
    only_its_queue = f"^{re.escape(queue)}$"
    return [
        # The password is asked for interactively (read from stdin), so it is not in the shell history.
        ["rabbitmqctl", "add_user", user],
        # configure: nothing; write: nothing; read: its own queue only (consume, get, ack).
        ["rabbitmqctl", "set_permissions", "-p", vhost, user, "^$", "^$", only_its_queue],
    ]


def run(args: argparse.Namespace) -> int:
    party = PartyRef.parse(args.party)
    for command in access_commands(party, args.user, args.vhost, Settings.from_env()):
        print(shlex.join(command))
    return 0
