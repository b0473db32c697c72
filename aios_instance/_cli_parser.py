"""The ``aios-instance`` argument parser: the commands, their options, and the options every
command takes before or after its name (``--redis``, ``--block-id``, ``--state-file``).
Usage errors are one line and exit 2, like every other error of the CLI."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

__all__ = ["parser"]


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors on one line, like every other error of the CLI."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see '{self.prog} --help')\n")


def parser(version: str = "aios-instance") -> argparse.ArgumentParser:
    """The ``aios-instance`` parser: run, send, tail, dead, and the options they share;
    ``--version`` prints ``version``."""
    p = _Parser(prog="aios-instance", description="Run AIOS blocks and talk to them over Redis.")
    p.add_argument("--version", action="version", version=version)
    _add_common(p, None)
    common = _Parser(add_help=False)
    _add_common(common, argparse.SUPPRESS)  # also accepted after the command
    sub = p.add_subparsers(dest="command", required=False, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=description, parents=[common])

    run = command("run", "serve a block class", "Serve a block class.")
    run.add_argument("block", help="FILE.py:Class or module:Class")
    run.add_argument("--block-data", help="local JSON/YAML block-data document")

    dev = command(
        "dev",
        "run the blocks of a graph file",
        "Run several blocks of a chain (a graph YAML file) on one Redis; Ctrl-C stops them.",
    )
    dev.add_argument("graph", help="graph YAML file (blocks and their wiring)")

    send = command("send", "send a job to a block", "Send a job.")
    send.add_argument("--data", help="JSON for the packet's data")
    send.add_argument("--file", action="append", help="attach a file (repeatable)")
    send.add_argument("--session", help="session_id (default: random)")
    send.add_argument("--seq", type=int, default=0, help="seq_no (default 0)")
    send.add_argument("--to", help="queue (default: {block_id}_inputs)")
    send.add_argument("--output-ptr", help="output_ptr JSON to put in the packet")
    send.add_argument("--count", type=int, default=1, help="send N copies (seq_no increments)")
    send.add_argument("--wait", action="store_true", help="wait for and print the output")
    send.add_argument(
        "--timeout-s",
        "--timeout",
        dest="timeout",
        metavar="S",
        type=float,
        default=10.0,
        help="how long to wait for each answer, in seconds (default 10)",
    )
    via = send.add_mutually_exclusive_group()
    via.add_argument(
        "--http", metavar="URL", help="POST to the block's /infer (http://127.0.0.1:18001/infer)"
    )
    via.add_argument("--ws", metavar="URL", help="send over its WebSocket (ws://127.0.0.1:18002)")
    via.add_argument(
        "--grpc", metavar="HOST:PORT", help="send by gRPC InferenceProxy (x-service-name: block id)"
    )
    send.add_argument(
        "--stream", action="store_true", help="with --http: print each streamed event as it comes"
    )
    send.add_argument(
        "--token", help="bearer token for --http/--ws/--grpc (default: AIOS_CONTROL_TOKEN)"
    )

    tail = command(
        "tail",
        "print packets from a list as they arrive",
        "Pop and print packets from a Redis list.",
    )
    tail.add_argument("queue")
    tail.add_argument("--count", type=int, help="stop after N packets")
    tail.add_argument("--timeout", type=float, default=0.0, help="stop after S seconds")
    tail.add_argument(
        "--peek", action="store_true", help="print what the list holds now (oldest first), pop none"
    )

    dead = command("dead", "inspect and replay dead letters", "Inspect and replay {block_id}_dead.")
    dead.add_argument("action", choices=("list", "show", "replay"))
    dead.add_argument("indexes", nargs="*", type=int, help="record indexes (from `dead list`)")
    dead.add_argument("--all", action="store_true", help="replay every record")
    return p


def _add_common(parser: argparse.ArgumentParser, default: Any) -> None:
    """Options every command takes, before or after the command name."""
    parser.add_argument(
        "--redis",
        default=default,
        help="Redis URL (default: REDIS_*/AIOS_REDIS_URL, else embedded)",
    )
    parser.add_argument(
        "--block-id", default=default, help="block id (default: BLOCK_ID, else 'block')"
    )
    parser.add_argument(
        "--state-file",
        default=default,
        help="where `run` records its embedded Redis for the other commands "
        "(default: a per-user file in the temp directory)",
    )
