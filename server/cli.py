"""``safework serve``: start the OpenAI-compatible server, with SafeWork's features on.

With no flags it serves the embedded SmolLM2-135M-Instruct as three profiles: ``<model>``,
``<model>:aligned`` (guided by builtin:safety and builtin:values, weights 0.6/0.4) and
``<model>:search`` (the built-in corpus, ``local:builtin``), with search confidences
calibrated by a map fitted for the default model (at the first start if ``make calibration``
has not fitted it yet). Each feature has an off flag; naming value models or search backends
replaces the defaults.

safework serve                                  # the embedded model, aligned and search profiles
safework serve --no-alignment --no-search       # the plain model only, as `vllm serve`
safework serve --model ./ckpt --port 8080 --api-key sk-alice-123:alice
safework serve --host 0.0.0.0 --api-key sk-alice-123:alice   # other hosts need keys...
safework serve --host 0.0.0.0 --allow-unauthenticated        # ...or say anyone may use it

Without API keys the correction memory is off (every client would share it) unless
--shared-memory or --memory-dir asks for it; bound to loopback, only requests whose Host
header names loopback are served (--allowed-host NAME adds a name).
safework serve --model org/Model --tensor-parallel-size 4   # on GPUs
safework serve --search-backend local:builtin --search-backend web=duckduckgo
safework serve --reasoning-output think             # reasoning inline in <think> tags
safework serve --max-concurrent-per-key 4 --max-tokens-cap 2048   # tighter per-key limits

The command serves until stopped and exits 0; if the engine dies it answers 503 meanwhile, stops
and exits 1, for a supervisor to restart it (``lifecycle.py``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from safework.engine.options import EngineOptions
from safework.errors import ConfigError
from safework.search.base import parse_backend_arg, parse_key_values
from safework.value_models.registry import ValueModelsConfig

from .chat.reasoning_output import FORMATS
from .config import (
    DEFAULT_SEARCH_BACKENDS,
    DEFAULT_VALUE_MODELS,
    ServerConfig,
    allowed_hosts_for,
    default_value_models,
    is_loopback,
    parse_api_keys,
)
from .images import ImageSettings
from .memory.serving import MemorySettings
from .search import CalibrationMode, SearchSettings

_DEFAULT_MODELS = " + ".join(f"{s} ({w})" for s, w in DEFAULT_VALUE_MODELS.values())


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "serve",
        help="start the OpenAI-compatible server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default=ServerConfig.host, help="bind address (default %(default)s)")
    p.add_argument("--port", type=int, default=ServerConfig.port, help="port (default %(default)s)")
    p.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="KEY[:TENANT]",
        help="require this bearer key (repeatable); also SAFEWORK_API_KEYS=k1:t1,k2:t2",
    )
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve a non-loopback --host without API keys (refused otherwise: anyone who "
        "reaches the port could use it)",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests whose Host header is NAME (repeatable; *.example.com, or * "
        "for any). Default: the loopback names when bound to loopback, any name otherwise",
    )
    p.add_argument(
        "--metrics-admin",
        action="append",
        default=[],
        metavar="TENANT",
        help="this tenant's keys also see per-tenant series at /metrics (repeatable); other "
        "keys see totals only, no tenant names",
    )
    p.add_argument(
        "--max-body-bytes",
        type=int,
        default=ServerConfig.max_body_bytes,
        help="largest request body",
    )
    p.add_argument(
        "--max-n", type=int, default=ServerConfig.max_n, help="largest `n` a request may ask for"
    )
    add_limit_args(p)
    add_image_args(p)
    p.add_argument(
        "--value-model",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="a value model for guided decoding and moderation (repeatable): builtin:safety, "
        "builtin:values, hf:PATH, judge:served, judge:PATH, rules:refusal|pii|forbidden=FILE; "
        f"replaces the default {_DEFAULT_MODELS}",
    )
    p.add_argument(
        "--value-models-config",
        metavar="FILE.yaml",
        help="value models with weights and thresholds, and default alignment settings "
        "(its value models replace the defaults)",
    )
    p.add_argument(
        "--no-alignment",
        action="store_true",
        help="no value models: no :aligned profile, no /v1/moderations",
    )
    p.add_argument(
        "--max-candidates",
        type=int,
        default=ServerConfig.max_candidates,
        help="largest K a request may ask",
    )
    p.add_argument(
        "--max-beam-width",
        type=int,
        default=ServerConfig.max_beam_width,
        help="largest beam a request may ask",
    )
    p.add_argument(
        "--search-backend",
        action="append",
        default=[],
        metavar="[NAME=]SPEC",
        help="a search backend for the search strategy (repeatable, the first is the default): "
        "duckduckgo, local:PATH, local:builtin, http:URL; replaces the default "
        + ", ".join(DEFAULT_SEARCH_BACKENDS),
    )
    p.add_argument(
        "--no-search",
        action="store_true",
        help="no search backends: no :search profile",
    )
    p.add_argument(
        "--search-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a backend option (repeatable), e.g. mode=bm25|dense|hybrid, region=uk-en",
    )
    p.add_argument(
        "--search-setting",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a default of the search loop (repeatable), e.g. max_turns=4, top_k=3, read=false",
    )
    p.add_argument(
        "--search-max-turns",
        type=int,
        default=SearchSettings.max_turns,
        help="largest safework.search.max_turns a request may ask",
    )
    p.add_argument(
        "--search-timeout",
        type=float,
        default=SearchSettings.timeout_s,
        help="seconds per backend call before a retry (default %(default)s)",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        default=None,
        metavar="FILE.json",
        help="confidence calibration (default: the one fitted for the served model in the "
        "cache; on the default model it is fitted at the first start if missing)",
    )
    p.add_argument(
        "--no-calibration",
        action="store_true",
        help="search answers carry raw confidences only (nothing read or fitted)",
    )
    p.add_argument(
        "--memory-dir",
        type=Path,
        default=None,
        help="where corrections are stored (SQLite + FAISS; default <cache>/memory); with "
        "--memory-store, where this replica keeps its FAISS indexes",
    )
    p.add_argument(
        "--memory-store",
        metavar="URL",
        default=None,
        help="a postgresql:// URL: the corrections live in PostgreSQL, shared by every replica "
        "given the same URL (each keeps its own indexes, kept current by the database's change "
        "feed); default: SQLite in --memory-dir",
    )
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="no correction memory: /cot/edit answers only with remember=false",
    )
    p.add_argument(
        "--shared-memory",
        action="store_true",
        help="keep the correction memory on without API keys: every client then shares one "
        "tenant's corrections (without keys it is off unless this or --memory-dir is given)",
    )
    p.add_argument(
        "--memory-top-k",
        type=int,
        default=MemorySettings.top_k,
        help="past corrections given to the model per request (default %(default)s)",
    )
    p.add_argument(
        "--memory-min-similarity",
        type=float,
        default=MemorySettings.min_similarity,
        help="only corrections at least this similar to the question (default %(default)s)",
    )
    p.add_argument(
        "--memory-mistake-steps",
        type=int,
        default=MemorySettings.mistake_steps,
        help="first steps of each plain answer checked against the tenant's corrected "
        "mistakes while it is generated; 0: recall by question only (default %(default)s)",
    )
    p.add_argument(
        "--memory-mistake-similarity",
        type=float,
        default=MemorySettings.mistake_similarity,
        help="a step at least this similar to a corrected mistake is replaced by its "
        "correction (default %(default)s)",
    )
    p.add_argument(
        "--memory-max-records",
        type=int,
        default=MemorySettings.max_records,
        metavar="N",
        help="corrections one tenant may keep; more is a 429 insufficient_quota before anything "
        "is generated (default %(default)s; 0: no limit)",
    )
    p.add_argument(
        "--memory-max-bytes",
        type=int,
        default=MemorySettings.max_bytes,
        metavar="BYTES",
        help="bytes of stored text one tenant may keep (default %(default)s = 64 MiB; 0: no limit)",
    )
    p.add_argument(
        "--reasoning-output",
        choices=list(FORMATS),
        default=ServerConfig.reasoning_output,
        help="how replies carry the model's reasoning: 'fields' (reasoning_content/reasoning, "
        "read by Open WebUI, LibreChat and OpenAI clients) or 'think' (inline <think>...</think> "
        "in content, for UIs that only parse tags) (default %(default)s)",
    )
    p.add_argument(
        "--trust-request-chat-template",
        action="store_true",
        help="let requests send their own chat_template and special-token overrides (off: a "
        "400; only for trusted clients: a template is code that runs on the server)",
    )
    p.add_argument(
        "--no-web-ui",
        action="store_true",
        help="do not serve the web chat page at / (the API only)",
    )
    p.add_argument(
        "--log-level", default=ServerConfig.log_level, choices=["debug", "info", "warning", "error"]
    )
    EngineOptions.add_cli_args(p)
    p.set_defaults(func=run)
    return p


def add_limit_args(p: argparse.ArgumentParser) -> None:
    """Flags that bound what one request or one key may make the server do (``limits.py``)."""
    p.add_argument(
        "--max-concurrent-per-key",
        type=int,
        default=ServerConfig.max_concurrent_per_key,
        metavar="N",
        help="requests of one API key in flight at once; the next gets 429 with Retry-After "
        "(default %(default)s; 0: no limit; without keys every client is one key)",
    )
    p.add_argument(
        "--max-prompts-times-n",
        type=int,
        default=ServerConfig.max_prompts_times_n,
        metavar="N",
        help="most completions one /v1/completions request may ask: prompts × n (default "
        "%(default)s)",
    )
    p.add_argument(
        "--max-tokens-cap",
        type=int,
        default=None,
        metavar="N",
        help="most tokens one request may generate: asking more is a 400, asking nothing gets "
        "at most N (default: the model's context length)",
    )
    p.add_argument(
        "--allow-ignore-eos",
        action="store_true",
        help="accept the ignore_eos request field (generate exactly max_tokens: benchmarks); "
        "off, it is a 400",
    )


def _calibration_mode(args: argparse.Namespace) -> CalibrationMode:
    """``off`` by flag; ``fit`` on the default model (it has a known recipe); else ``read``."""
    if args.no_calibration:
        if args.calibration is not None:
            raise ConfigError("--no-calibration and --calibration: give one")
        return "off"
    return "fit" if args.model is None and args.calibration is None else "read"


def search_settings_from_args(args: argparse.Namespace) -> SearchSettings:
    backends: dict[str, str] = {}
    for text in args.search_backend:
        name, spec = parse_backend_arg(text)
        if name in backends:
            raise ConfigError(f"two search backends are named {name!r}: use NAME=SPEC")
        backends[name] = spec
    if args.no_search:
        if backends:
            raise ConfigError("--no-search and --search-backend: give one")
    elif not backends:
        backends = dict(parse_backend_arg(spec) for spec in DEFAULT_SEARCH_BACKENDS)
    options = parse_key_values(args.search_option, "--search-option")
    return SearchSettings(
        backends=backends,
        options={k: str(v) for k, v in options.items()},
        defaults=parse_key_values(args.search_setting, "--search-setting"),
        max_turns=args.search_max_turns,
        timeout_s=args.search_timeout,
        calibration=args.calibration,
        calibration_mode=_calibration_mode(args),
    )


def value_models_from_args(args: argparse.Namespace) -> ValueModelsConfig:
    """The YAML's and ``--value-model``'s models; the defaults when neither names one."""
    if args.no_alignment and (args.value_models_config or args.value_model):
        raise ConfigError("--no-alignment with --value-model or --value-models-config: give one")
    value_models = (
        ValueModelsConfig.from_yaml(args.value_models_config)
        if args.value_models_config
        else ValueModelsConfig()
    )
    for spec in args.value_model:
        value_models.add(spec)
    if not value_models.models and not args.no_alignment:
        value_models.models = default_value_models()  # a YAML of settings only keeps them
    return value_models


def memory_from_args(args: argparse.Namespace, authenticated: bool) -> MemorySettings | None:
    """The correction memory: off by ``--no-memory``, and off without API keys unless asked
    for (``--shared-memory``, ``--memory-dir`` or ``--memory-store``), since every client is
    then one tenant."""
    if args.no_memory:
        if args.shared_memory:
            raise ConfigError("--no-memory and --shared-memory: give one")
        return None
    if not authenticated and not (args.shared_memory or args.memory_dir or args.memory_store):
        return None
    return MemorySettings(
        folder=args.memory_dir,
        store=args.memory_store,
        top_k=args.memory_top_k,
        min_similarity=args.memory_min_similarity,
        mistake_steps=args.memory_mistake_steps,
        mistake_similarity=args.memory_mistake_similarity,
        max_records=args.memory_max_records,
        max_bytes=args.memory_max_bytes,
    )


def add_image_args(p: argparse.ArgumentParser) -> None:
    """Image parts of chat messages, for a model that reads images (``images.py``)."""
    d = ImageSettings()
    p.add_argument(
        "--max-images",
        type=int,
        default=d.max_images,
        help="images one request may carry (0: none)",
    )
    p.add_argument(
        "--max-image-bytes",
        type=int,
        default=d.max_bytes,
        help="encoded size of one image (raise --max-body-bytes too for large ones)",
    )
    p.add_argument(
        "--max-image-pixels",
        type=int,
        default=d.max_pixels,
        help="width x height of one image, checked before it is decoded",
    )
    p.add_argument(
        "--image-fetch",
        action="store_true",
        help="fetch http(s) image URLs (public addresses only, as search reads); off, images "
        "must come inline as data: URLs",
    )


def images_from_args(args: argparse.Namespace) -> ImageSettings:
    if args.max_images < 0 or args.max_image_bytes < 1 or args.max_image_pixels < 1:
        raise ConfigError("--max-images must be 0 or more, image byte and pixel limits positive")
    return ImageSettings(
        max_images=args.max_images,
        max_bytes=args.max_image_bytes,
        max_pixels=args.max_image_pixels,
        fetch=args.image_fetch,
    )


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """The server ``safework serve`` starts: flags over the product's defaults."""
    api_keys = parse_api_keys([*ServerConfig.keys_from_env(), *args.api_key])
    return ServerConfig(
        host=args.host,
        port=args.port,
        api_keys=api_keys,
        allow_unauthenticated=args.allow_unauthenticated,
        allowed_hosts=allowed_hosts_for(args.host, args.allowed_host),
        max_body_bytes=args.max_body_bytes,
        max_n=args.max_n,
        engine=EngineOptions.from_cli(args),
        value_models=value_models_from_args(args),
        max_candidates=args.max_candidates,
        max_beam_width=args.max_beam_width,
        search=search_settings_from_args(args),
        memory=memory_from_args(args, authenticated=bool(api_keys)),
        reasoning_output=args.reasoning_output,
        web_ui=not args.no_web_ui,
        trust_request_chat_template=args.trust_request_chat_template,
        metrics_admin_tenants=frozenset(args.metrics_admin),
        max_concurrent_per_key=args.max_concurrent_per_key,
        max_prompts_times_n=args.max_prompts_times_n,
        max_tokens_cap=args.max_tokens_cap,
        allow_ignore_eos=args.allow_ignore_eos,
        images=images_from_args(args),
        log_level=args.log_level,
    )


def run(args: argparse.Namespace) -> int:
    """Serve until stopped; exit status 1 if the engine died (for a supervisor to restart)."""
    from .app import create_app
    from .lifecycle import Shutdown, run_server

    try:
        config = config_from_args(args)  # flags and YAML are checked before any model loads
    except ConfigError as e:
        raise SystemExit(f"safework serve: {e}") from None
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log = logging.getLogger("safework.server")
    if not config.api_keys and not is_loopback(config.host):
        log.warning(
            "serving on %s without API keys: anyone who can reach it can use it", config.host
        )
    if not config.api_keys and config.memory is None and not args.no_memory:
        log.info("no API keys: the correction memory is off (--shared-memory turns it on)")
    shutdown = Shutdown()
    return run_server(
        create_app(config, shutdown=shutdown),
        shutdown,
        host=config.host,
        port=config.port,
        log_level=config.log_level,
        timeout_graceful_shutdown=5,
    )
