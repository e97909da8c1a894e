"""``imagequeue-api keys …``: create, revoke and list API keys from the command line.

``__main__`` adds these commands to its parser with :func:`add_key_commands` and, for
``keys``, runs :func:`run_key_command` with an :class:`ApiKeyStore` it built. The plaintext
key goes to stdout once, at creation, and nowhere else.
"""

from __future__ import annotations

import argparse
import sys

from imagequeue_api.apikeys import TIERS, ApiKey, ApiKeyStore


def add_key_commands(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``keys create|revoke|list`` to ``subparsers``; returns the ``keys`` parser.

    The chosen sub-command lands in ``args.keys_command``.
    """
    keys = subparsers.add_parser("keys", help="manage API keys", description="Manage API keys.")
    commands = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create a key (shown once)")
    create.add_argument("--user", required=True, help="the user the key acts for")
    create.add_argument("--tier", required=True, choices=TIERS, help="sets the jobs' priority")
    create.add_argument("--label", default="", help="a note for humans, e.g. where it is used")
    rotate = commands.add_parser(
        "rotate-webhook-secret", help="a new webhook signing secret (shown once)"
    )
    rotate.add_argument("key_id", metavar="KEY_ID", help="the key's id (not the key itself)")
    rotate.add_argument("--grace", type=int, default=86400, metavar="S",
                        help="seconds the old secret signs too (default 86400)")  # fmt: skip
    revoke = commands.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID", help="the key's id (not the key itself)")
    listing = commands.add_parser("list", help="list keys (never their secrets)")
    listing.add_argument("--user", default=None, help="only this user's keys")
    return keys


def _row(key: ApiKey) -> str:
    created = key.created_at.isoformat(timespec="seconds")
    return f"{key.key_id}\t{key.user_id}\t{key.tier}\t{created}\t{key.label}"


async def run_key_command(args: argparse.Namespace, store: ApiKeyStore) -> int:
    """Run the parsed ``keys`` sub-command against ``store``; returns the exit status.

    0 on success, 1 when ``revoke`` finds no such key, 2 for invalid input.
    """
    try:
        if args.keys_command == "create":
            made = await store.create_key(args.user, args.tier, args.label)
            # One "name: value" per line, no padding: scripts split on ": ".
            print(f"key_id: {made.record.key_id}")
            print(f"key: {made.plaintext}")
            print(f"webhook_secret: {made.webhook_secret}")
            print("Store both now: they cannot be shown again.", file=sys.stderr)
            return 0
        if args.keys_command == "rotate-webhook-secret":
            try:
                secret = await store.webhook_secrets.rotate(args.key_id, args.grace)
            except KeyError:
                print(f"no key with id {args.key_id!r}", file=sys.stderr)
                return 1
            print(f"webhook_secret: {secret}")
            print(f"The old secret signs too for {args.grace} s. Store the new one now.",
                  file=sys.stderr)  # fmt: skip
            return 0
        if args.keys_command == "revoke":
            if await store.revoke(args.key_id):
                print(f"revoked {args.key_id}")
                return 0
            print(f"no key with id {args.key_id!r}", file=sys.stderr)
            return 1
        if args.keys_command == "list":
            print("key_id\tuser_id\ttier\tcreated_at\tlabel")
            for key in await store.list_keys(args.user):
                print(_row(key))
            return 0
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"error: unknown keys command {args.keys_command!r}", file=sys.stderr)
    return 2
