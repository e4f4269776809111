"""The ``safework`` command. Subcommands live beside what they run (``serve`` in
``safework.server.cli``, ``index`` in ``safework.search.cli``, ``memory`` in
``safework.memory.cli``) and are imported only when chosen, so ``safework --help`` is fast.

    safework serve --help
    safework index --help
    safework memory --help
    safework chat --help
"""

from __future__ import annotations

import argparse
import sys

from safework import __version__


def build_parser() -> argparse.ArgumentParser:
    from safework.clients import cli as chat_cli
    from safework.memory import cli as memory_cli
    from safework.search import cli as index_cli
    from safework.server import cli as server_cli

    parser = argparse.ArgumentParser(prog="safework", description="SafeWork server and tools")
    parser.add_argument("--version", action="version", version=f"safework {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    server_cli.add_parser(sub)
    index_cli.add_parser(sub)
    memory_cli.add_parser(sub)
    chat_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
