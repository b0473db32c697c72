"""An output-saver sidecar: writes every packet pushed to its ``INPUTS`` list to a directory.

Each packet becomes ``<out_dir>/<session_id>/<seq_no>/`` holding ``packet.json`` (the fields,
with ``data``, ``output_ptr`` and file metadata parsed when they are JSON) and one
``file-<i>.bin`` per attached file. A packet is written into a hidden staging directory and
renamed into place, so a reader never sees half a packet; a second packet with the same
session and sequence number lands in ``<seq_no>.1``, ``<seq_no>.2``, ...

    python sidecar.py --redis-url redis://127.0.0.1:6379/0 --out-dir ./saved
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from aios_instance.packet import AIOSPacket
from aios_instance.sidecars import SidecarConsumer

log = logging.getLogger("output_saver_sidecar")

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str) -> str:
    """A file-name-safe version of ``text`` (never empty, never ``.`` or ``..``)."""
    return _UNSAFE.sub("_", text).strip(".") or "_"


def _maybe_json(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def packet_record(packet: AIOSPacket, file_names: Sequence[str]) -> dict[str, Any]:
    """What ``packet.json`` holds for ``packet``."""
    return {
        "session_id": packet.session_id,
        "seq_no": packet.seq_no,
        "ts": packet.ts,
        "data": _maybe_json(packet.data),
        "output_ptr": _maybe_json(packet.output_ptr),
        "files": [
            {"name": name, "size": len(f.file_data), "metadata": _maybe_json(f.metadata)}
            for name, f in zip(file_names, packet.files, strict=True)
        ],
    }


class OutputSaver:
    """The handler: saves one packet per call under ``out_dir``."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.saved = 0

    def __call__(self, packet: AIOSPacket) -> Path:
        """Write ``packet`` and return the directory it was saved in."""
        session_dir = self.out_dir / safe_name(packet.session_id or "no-session")
        session_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=session_dir))
        try:
            _write(staging, packet)
            target = _publish(staging, session_dir, str(packet.seq_no))
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.saved += 1
        return target


def _write(directory: Path, packet: AIOSPacket) -> None:
    names = [f"file-{i}.bin" for i in range(len(packet.files))]
    for name, info in zip(names, packet.files, strict=True):
        (directory / name).write_bytes(info.file_data)
    record = json.dumps(packet_record(packet, names), indent=2, ensure_ascii=False)
    (directory / "packet.json").write_text(record + "\n", encoding="utf-8")


def _publish(staging: Path, session_dir: Path, base: str) -> Path:
    """Rename ``staging`` to the first free ``base``, ``base.1``, ... (atomic per try)."""
    for n in itertools.count():
        target = session_dir / (base if n == 0 else f"{base}.{n}")
        try:
            staging.rename(target)  # fails when target is an existing, non-empty directory
        except OSError:
            if not target.exists():
                raise
            continue
        return target
    raise AssertionError("unreachable")  # pragma: no cover


def drain(consumer: SidecarConsumer) -> int:
    """Handle packets until ``INPUTS`` is empty; returns how many were taken."""
    total = 0
    while taken := consumer.run_once(timeout_s=0):
        total += taken
    return total


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Save every packet sent to this sidecar.")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--out-dir", type=Path, default=Path("saved"))
    parser.add_argument("--queue", default="INPUTS")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--poll-s", type=float, default=1.0)
    parser.add_argument("--drain", action="store_true", help="exit once INPUTS is empty")
    return parser.parse_args(argv)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    return stop


def main(argv: Sequence[str] | None = None, stop: threading.Event | None = None) -> int:
    """Run the sidecar until SIGTERM/SIGINT (or ``stop``), or until empty with --drain."""
    args = _parse(argv)
    client = redis.Redis.from_url(
        args.redis_url, protocol=2, decode_responses=False, socket_timeout=args.poll_s + 5
    )
    saver = OutputSaver(args.out_dir)
    consumer = SidecarConsumer(client, saver, queue=args.queue, batch_size=args.batch_size)
    log.info("saving packets from %r to %s", args.queue, args.out_dir)
    try:
        if args.drain:
            drain(consumer)
        else:
            consumer.run(stop or _stop_on_signals(), poll_s=args.poll_s)
    finally:
        client.close()
    log.info(
        "saved %d packets (%d malformed, %d failed)",
        saver.saved,
        consumer.malformed,
        consumer.errors,
    )
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    raise SystemExit(main())
