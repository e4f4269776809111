"""``safework chat``: the terminal client's command line (the chat itself is ``chat.py``)."""

from __future__ import annotations

import argparse
import os

from . import chat


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "chat",
        help="chat with a SafeWork server in the terminal",
        description=chat.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--url",
        default=os.environ.get("SAFEWORK_URL", "http://127.0.0.1:8000"),
        help="the server (default $SAFEWORK_URL or %(default)s)",
    )
    p.add_argument("--api-key", default=None, help="bearer key (default $SAFEWORK_API_KEY)")
    p.add_argument("--model", default=None, help="model id (default: the served model)")
    p.add_argument("--profile", choices=chat.PROFILES, default="plain", help="start profile")
    p.add_argument("--max-tokens", type=int, default=None, help="answer length limit")
    p.add_argument(
        "--transcript",
        default=None,
        metavar="FILE.jsonl",
        help="where this session's turns are written (default <cache>/chat/<time>.jsonl; "
        "'-' for none)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    import readline  # noqa: F401  (line editing and arrow-key history in the prompt)

    return chat.main(args)
