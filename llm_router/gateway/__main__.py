"""A worker of `llm-router serve --workers N`, started by its supervisor (not a command for people):
`python -m llm_router.gateway --fd FD [options] DIR...` serves on the inherited listening socket FD."""

from __future__ import annotations

import argparse
import sys

from .server import ServeOptions, serve_fd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m llm_router.gateway", description=__doc__)
    parser.add_argument("dirs", nargs="+")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--graceful-timeout", type=float, default=ServeOptions.graceful_timeout_s)
    parser.add_argument("--log-level", default=ServeOptions.log_level)
    parser.add_argument("--no-access-log", action="store_true")
    args = parser.parse_args(argv)
    options = ServeOptions(args.dirs, graceful_timeout_s=args.graceful_timeout, log_level=args.log_level,
                           access_log=not args.no_access_log)
    return serve_fd(args.fd, options)


sys.exit(main())
