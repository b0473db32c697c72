"""Block data: the document that configures a block, from BlocksDB, a local file, or nothing.

Sources, in order: a local JSON/YAML file (``--block-data``/``AIOS_BLOCK_DATA_FILE``) replaces
BlocksDB; else ``GET {BLOCKS_DB_URI}/blocks/{BLOCK_ID}`` (timeout, bounded retries); else an
empty document — a block must run with no block data. ``CUSTOM_INIT_DATA`` is then merged
over it: keys that name sections (``blockInitData``, ``initSettings``, ``parameters``, ...)
are deep-merged into those sections, any other keys into ``blockInitData``.

The block id is quoted as one path segment of the BlocksDB URL, and a ``file://`` BLOCKS_DB_URI
only ever reads a file directly in its ``blocks/`` folder, whatever the id (``_block_url``).
"""

from __future__ import annotations

import logging
import os.path
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import _json
from .errors import ConfigError

__all__ = ["BlockData", "load_block_data"]

log = logging.getLogger(__name__)

SECTIONS = ("blockInitData", "initSettings", "parameters", "sidecars", "allocationInfo")


@dataclass(frozen=True)
class BlockData:
    """The block-data document and the sections a Context exposes."""

    document: dict[str, Any] = field(default_factory=dict)

    @property
    def init_data(self) -> dict[str, Any]:
        """``blockInitData``: static configuration."""
        return _section(self.document, "blockInitData")

    @property
    def init_settings(self) -> dict[str, Any]:
        """``initSettings``: runtime settings."""
        return _section(self.document, "initSettings")

    @property
    def parameters(self) -> dict[str, Any]:
        """``parameters``: the live-updatable parameters."""
        return _section(self.document, "parameters")

    @property
    def sidecars(self) -> dict[str, Any]:
        """Sidecar configuration: the first non-empty of ``blockInitData.side_cars`` (the
        platform's place), ``sidecars`` and ``initSettings.sidecars`` (see docs/sidecars.md)."""
        return next((found for _, found in self._sidecar_places() if found), {})

    def sidecar_places(self) -> list[str]:
        """The places holding a sidecar configuration, the one `sidecars` uses first."""
        return [where for where, found in self._sidecar_places() if found]

    def _sidecar_places(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("blockInitData.side_cars", _section(self.init_data, "side_cars")),
            ("sidecars", _section(self.document, "sidecars")),
            ("initSettings.sidecars", _section(self.init_settings, "sidecars")),
        ]

    @property
    def allocation_info(self) -> dict[str, Any]:
        """``allocationInfo`` (GPUs, node, cluster), empty when absent."""
        return _section(self.document, "allocationInfo")


def _section(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.get(key)
    return value if isinstance(value, dict) else {}


def load_block_data(
    block_id: str,
    *,
    file: str | None = None,
    blocks_db_uri: str | None = None,
    custom_init_data: dict[str, Any] | None = None,
    timeout_s: float = 5.0,
    retries: int = 3,
) -> BlockData:
    """Load and merge the block data; raises ConfigError with the cause when a source fails."""
    if file:
        doc = _read_file(Path(file))
    elif blocks_db_uri:
        doc = _fetch(blocks_db_uri, block_id, timeout_s, retries)
    else:
        doc = {}
    if custom_init_data:
        doc = _merge_custom(doc, custom_init_data)
    data = BlockData(doc)
    places = data.sidecar_places()
    if len(places) > 1:
        log.warning(
            "sidecars are configured in several places: using %s, ignoring %s",
            places[0],
            ", ".join(places[1:]),
        )
    return data


def _unwrap(doc: Any, origin: str) -> dict[str, Any]:
    """Accept the bare document or BlocksDB's ``{"success": ..., "data": {...}}`` envelope."""
    if isinstance(doc, dict) and "data" in doc and ("success" in doc or len(doc) == 1):
        doc = doc["data"]
    if not isinstance(doc, dict):
        raise ConfigError(f"block data from {origin} is not a JSON object")
    return doc


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read block data file {path}: {exc}") from None
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            doc = yaml.safe_load(text)
        else:
            doc = _json.loads(text)
    except Exception as exc:
        raise ConfigError(f"block data file {path} is not valid: {exc}") from None
    return _unwrap(doc or {}, str(path))


def _block_url(base: str, block_id: str) -> str:
    """``{base}/blocks/{id}``, the id quoted as one path segment (``/``, ``?``, ``#`` cannot
    change the URL's meaning); ConfigError when the id is no file name or, for ``file://``,
    when the path would leave ``{base}/blocks/`` (urllib unquotes ``%2F`` back to ``/``).

    BLOCK_ID is validated by the settings, but this function is also called with other ids."""
    segment = urllib.parse.quote(block_id, safe=":")
    if segment in ("", ".", ".."):
        raise ConfigError(f"block id {block_id!r} cannot name a block in BLOCKS_DB_URI={base}")
    root = base.rstrip("/")
    url = f"{root}/blocks/{segment}"
    if urllib.parse.urlsplit(root).scheme.lower() == "file":
        # Lexical, not symlink-resolved: an id cannot create links, and the operator's own
        # links under the folder (a mounted ConfigMap is made of them) are theirs to keep.
        folder = os.path.normpath(_local_path(root + "/blocks"))
        if os.path.dirname(os.path.normpath(_local_path(url))) != folder:
            raise ConfigError(f"block id {block_id!r} names a file outside {folder}/: refused")
    return url


def _local_path(url: str) -> str:
    return urllib.request.url2pathname(urllib.parse.urlsplit(url).path)


def _fetch(base: str, block_id: str, timeout_s: float, retries: int) -> dict[str, Any]:
    url = _block_url(base, block_id)
    last: Exception | None = None
    for attempt in range(1, retries + 1):
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                return _unwrap(_json.loads(resp.read()), url)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the response socket
            if exc.code == 404:
                raise ConfigError(f"BlocksDB has no block {block_id!r} ({url}: 404)") from None
            last = exc
        except (OSError, ValueError) as exc:
            last = exc
        log.warning("BlocksDB fetch %s failed (attempt %d/%d): %s", url, attempt, retries, last)
        if attempt < retries:
            time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
    raise ConfigError(f"cannot load block data from {url} after {retries} attempts: {last}")


def _merge_custom(doc: dict[str, Any], custom: dict[str, Any]) -> dict[str, Any]:
    merged = dict(doc)
    loose = {k: v for k, v in custom.items() if k not in SECTIONS}
    for key in SECTIONS:
        if isinstance(custom.get(key), dict):
            merged[key] = _deep_merge(_section(merged, key), custom[key])
    if loose:
        merged["blockInitData"] = _deep_merge(_section(merged, "blockInitData"), loose)
    return merged


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
