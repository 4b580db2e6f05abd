"""The `ackd` command line. It only builds a Config and calls into the daemon or the API."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from receiver import config as config_module
from receiver.config import Config
from receiver.configbuild import parse_listen
from receiver.errors import ConfigError
from receiver.routing import describe, route

log = logging.getLogger("ackd")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ackd", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the daemon")
    serve.add_argument("--config", required=True, help="YAML configuration file")
    serve.add_argument("--listen", help="HOST:PORT, overrides the file's `listen`")
    serve.add_argument("--data-dir", help="directory of the store, overrides `data_dir`")

    check = sub.add_parser("check-config", help="validate configuration files (exit 1 on errors)")
    check.add_argument("files", nargs="+")

    routes = sub.add_parser("routes", help="route tree tools")
    routes_sub = routes.add_subparsers(dest="routes_command", required=True)
    test = routes_sub.add_parser("test", help="show where a label set is routed")
    test.add_argument("--config", required=True)
    test.add_argument("labels", nargs="+", metavar="name=value")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    command = {"serve": _serve, "check-config": _check_config, "routes": _routes_test}
    return command[args.command](args)


def _load(path: str) -> Config | None:
    try:
        return config_module.load(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _serve(args: argparse.Namespace) -> int:
    from receiver.app import serve

    config = _load(args.config)
    if config is None:
        return 1
    if args.listen:
        try:
            host, port = parse_listen(args.listen)
        except ValueError as exc:
            print(f"--listen: {exc}", file=sys.stderr)
            return 2
        config = replace(config, listen_host=host, listen_port=port)
    if args.data_dir:
        config = replace(config, data_dir=Path(args.data_dir))
    return asyncio.run(serve(config, args.config))


def _check_config(args: argparse.Namespace) -> int:
    failed = 0
    for file in args.files:
        try:
            config_module.load(file)
        except ConfigError as exc:
            failed += 1
            print(exc, file=sys.stderr)
            print(f"{file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        else:
            print(f"{file}: OK")
    return 1 if failed else 0


def _routes_test(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    labels: dict[str, str] = {}
    for pair in args.labels:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            print(f"not a label: {pair!r} (use name=value)", file=sys.stderr)
            return 2
        labels[name] = value.strip('"')
    print(describe(route(config.route, labels)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
