"""``safework index``: build and query the index of a local search corpus.

safework index build builtin                  # fetch, build and index the built-in corpus
safework index build ./my-docs --mode bm25    # BM25 only (no embeddings)
safework index build ./my-docs --rebuild      # from scratch, even if up to date
safework index search builtin "atomic number of iron" -k 3
safework index search ./my-docs "query" --mode dense

The index lives in ``PATH/.safework-index/`` (for ``builtin``, beside the corpus in the cache).
``safework serve --search-backend local:PATH`` uses the same index.
"""

from __future__ import annotations

import argparse
import logging
import textwrap
import time
from pathlib import Path

from safework.errors import ConfigError, SafeWorkError

from .local import MODES, LocalBackend, LocalSettings

__all__ = ["add_parser", "build", "search"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "index",
        help="build or query the index of a local search corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="index_command", required=True)

    b = sub.add_parser("build", help="build (or refresh) the index of PATH or the built-in corpus")
    b.add_argument("path", metavar="PATH|builtin")
    b.add_argument("--rebuild", action="store_true", help="rebuild even if the index is current")
    _common(b)
    b.set_defaults(func=build)

    s = sub.add_parser("search", help="print the best documents for a query")
    s.add_argument("path", metavar="PATH|builtin")
    s.add_argument("query")
    s.add_argument("-k", type=int, default=5, help="how many documents (default %(default)s)")
    _common(s)
    s.set_defaults(func=search)
    return p


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=MODES, default=LocalSettings.mode, help="retrieval mode")
    p.add_argument("--passage-words", type=int, default=LocalSettings.passage_words)
    p.add_argument("--overlap-words", type=int, default=LocalSettings.overlap_words)
    p.add_argument("--cache", type=Path, default=None, help="SafeWork cache (SAFEWORK_CACHE)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def _open(args: argparse.Namespace, rebuild: bool = False) -> LocalBackend:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("faiss.loader", "bm25s"):  # CPU-feature probing, per-step debug lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = LocalSettings(
        mode=args.mode, passage_words=args.passage_words, overlap_words=args.overlap_words
    )
    if args.path == "builtin":
        from .corpus import ensure_builtin_corpus

        corpus = ensure_builtin_corpus(args.cache)
    else:
        corpus = Path(args.path).expanduser()
        if not corpus.is_dir():
            raise ConfigError(f"{args.path} is not a folder of .txt, .md or .jsonl documents")
    name = "builtin" if args.path == "builtin" else "local"
    return LocalBackend(corpus, name=name, settings=settings, cache=args.cache, rebuild=rebuild)


def build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        backend = _open(args, rebuild=args.rebuild)
    except SafeWorkError as e:
        raise SystemExit(f"safework index build: {e}") from None
    index = backend.index
    manifest = index.manifest
    print(f"corpus:    {index.corpus}")
    print(f"index:     {index.index_dir} ({index.size_bytes() / 1e6:.1f} MB)")
    print(f"documents: {len(index.docs)} in {manifest.get('files', '?')} files")
    print(f"passages:  {len(index)}")
    dense = manifest.get("dense")
    print(f"dense:     {dense['kind']} ({dense['embedder']})" if dense else "dense:     not built")
    print(f"built now: {', '.join(index.built) or 'nothing (the index was current)'}")
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in manifest.get("build_seconds", {}).items())
    print(f"build:     {timings} (recorded when built)")
    print(f"this run:  {time.monotonic() - started:.1f} s")
    return 0


def search(args: argparse.Namespace) -> int:
    try:
        backend = _open(args)
        started = time.monotonic()
        results = backend.search_sync([args.query], args.k)[0]
    except SafeWorkError as e:
        raise SystemExit(f"safework index search: {e}") from None
    elapsed_ms = (time.monotonic() - started) * 1000
    print(f"{len(results)} results in {elapsed_ms:.0f} ms ({args.mode})")
    for rank, r in enumerate(results, 1):
        print(f"\n{rank}. {r.title}  [{r.id}]  score {r.score:.4f}")
        if r.url:
            print(f"   {r.url}")
        snippet = " ".join(r.snippet.split())
        print(textwrap.indent(textwrap.fill(snippet[:400], 96), "   "))
    return 0
