"""URI-based storage: ``file://`` (or absolute paths) and ``s3://`` through pyarrow.

Every stage addresses its inputs and outputs by URI so it can run in another
process or machine. Spark only ever sees local paths (its s3a jars are not part
of the local install): `local_mirror` and `upload_dir` move data across.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from genrec_core.errors import ServiceError


@dataclass(frozen=True)
class S3Options:
    """Plain connection parameters for an S3 endpoint (AWS, MinIO, moto)."""

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: str | None = None


class Storage:
    """Resolves URIs to a pyarrow filesystem and a path inside it."""

    def __init__(self, s3: S3Options | None = None) -> None:
        self._s3_options = s3 or S3Options()
        self._s3: pafs.S3FileSystem | None = None
        self._local = pafs.LocalFileSystem()

    @property
    def s3_options(self) -> S3Options:
        return self._s3_options

    @classmethod
    def from_settings(cls, settings: Any) -> Storage:
        s3 = settings.s3
        secret = s3.secret_access_key.get_secret_value() if s3.secret_access_key else None
        return cls(S3Options(s3.endpoint_url, s3.region, s3.access_key_id, secret))

    def _s3fs(self) -> pafs.S3FileSystem:
        if self._s3 is None:
            opts = self._s3_options
            kwargs: dict[str, Any] = {"region": opts.region}
            if opts.endpoint_url:
                scheme, _, host = opts.endpoint_url.partition("://")
                kwargs["endpoint_override"] = host or scheme
                kwargs["scheme"] = scheme if host else "https"
            if opts.access_key_id:
                kwargs["access_key"] = opts.access_key_id
                kwargs["secret_key"] = opts.secret_access_key
            self._s3 = pafs.S3FileSystem(**kwargs)
        return self._s3

    def resolve(self, uri: str) -> tuple[pafs.FileSystem, str]:
        """Return (filesystem, path) for a URI."""
        if uri.startswith("s3://"):
            return self._s3fs(), uri[len("s3://") :].rstrip("/")
        if uri.startswith("file://"):
            return self._local, os.path.abspath(unquote(uri[len("file://") :]))
        if uri.startswith("/"):
            return self._local, uri
        raise ValueError(f"unsupported URI {uri!r}: expected file://, s3:// or an absolute path")

    @staticmethod
    def is_local(uri: str) -> bool:
        return not uri.startswith("s3://")

    def exists(self, uri: str) -> bool:
        fs, path = self.resolve(uri)
        try:
            return fs.get_file_info(path).type != pafs.FileType.NotFound
        except OSError as exc:
            raise ServiceError(f"cannot reach storage for {uri}: {exc}") from exc

    def list_dir(self, uri: str) -> list[str]:
        """Names directly under a directory URI (empty when it does not exist)."""
        fs, path = self.resolve(uri)
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
        return sorted(info.base_name for info in infos)

    def list_files(self, uri: str, suffix: str = "") -> list[str]:
        """URIs of all files below a prefix, sorted, optionally filtered by suffix."""
        fs, path = self.resolve(uri)
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return []
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        base = uri.rstrip("/")
        files = []
        for info in infos:
            if info.type == pafs.FileType.File and info.path.endswith(suffix):
                files.append(base + info.path[len(path) :])
        return sorted(files)

    def file_sizes(self, uri: str) -> dict[str, int]:
        """Size in bytes of every file below a prefix, keyed by its path relative to the prefix."""
        fs, path = self.resolve(uri)
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            return {}
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
        return {info.path[len(path) :].lstrip("/"): info.size for info in infos if info.type == pafs.FileType.File}

    def delete_dir(self, uri: str) -> None:
        fs, path = self.resolve(uri)
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_dir(path)

    def delete_file(self, uri: str) -> None:
        fs, path = self.resolve(uri)
        if fs.get_file_info(path).type != pafs.FileType.NotFound:
            fs.delete_file(path)

    def _ensure_parent(self, fs: pafs.FileSystem, path: str) -> None:
        parent = path.rsplit("/", 1)[0]
        if parent:
            fs.create_dir(parent, recursive=True)

    def write_bytes(self, uri: str, data: bytes) -> None:
        fs, path = self.resolve(uri)
        self._ensure_parent(fs, path)
        with fs.open_output_stream(path) as out:
            out.write(data)

    def read_bytes(self, uri: str) -> bytes:
        fs, path = self.resolve(uri)
        with fs.open_input_stream(path) as src:
            return src.read()

    def write_json(self, uri: str, obj: Any) -> None:
        self.write_bytes(uri, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_bytes(uri))

    def write_table(self, uri: str, table: pa.Table) -> None:
        """Write one Parquet file."""
        fs, path = self.resolve(uri)
        self._ensure_parent(fs, path)
        pq.write_table(table, path, filesystem=fs, compression="zstd")

    def read_table(self, uri: str, columns: list[str] | None = None) -> pa.Table:
        """Read a Parquet file or a directory of Parquet files (hive partitions included)."""
        fs, path = self.resolve(uri)
        return pq.read_table(path, filesystem=fs, columns=columns, partitioning="hive")

    def parquet_rows(self, uri: str) -> int:
        """Row count of a Parquet file from its footer (the data is not read)."""
        fs, path = self.resolve(uri)
        with fs.open_input_file(path) as handle:
            return pq.ParquetFile(handle).metadata.num_rows

    def copy_dir(self, src_uri: str, dst_uri: str) -> None:
        """Copy every file under src to the same relative path under dst."""
        src_fs, src = self.resolve(src_uri)
        dst_fs, dst = self.resolve(dst_uri)
        dst_fs.create_dir(dst, recursive=True)
        pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)

    def copy_file(self, src_uri: str, dst_uri: str) -> None:
        src_fs, src = self.resolve(src_uri)
        dst_fs, dst = self.resolve(dst_uri)
        self._ensure_parent(dst_fs, dst)
        pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)

    @contextmanager
    def local_mirror(self, uris: list[str]) -> Iterator[list[Path]]:
        """Local paths holding the given directory URIs (downloaded when remote)."""
        if all(self.is_local(u) for u in uris):
            yield [Path(self.resolve(u)[1]) for u in uris]
            return
        tmp = Path(tempfile.mkdtemp(prefix="genrec-mirror-"))
        try:
            paths = []
            names = [uri.rstrip("/").rsplit("/", 1)[-1] for uri in uris]
            for i, uri in enumerate(uris):
                # Unique names stay side by side (Spark reads dt=... partitions from one parent).
                local = tmp / names[i] if names.count(names[i]) == 1 else tmp / str(i) / names[i]
                if self.exists(uri):
                    self.copy_dir(uri, str(local))
                paths.append(local)
            yield paths
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @contextmanager
    def local_output(self, uri: str) -> Iterator[Path]:
        """A local directory whose contents end up at `uri` when the block succeeds."""
        if self.is_local(uri):
            path = Path(self.resolve(uri)[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            yield path
            return
        tmp = Path(tempfile.mkdtemp(prefix="genrec-out-"))
        try:
            out = tmp / "out"
            yield out
            self.delete_dir(uri)
            self.copy_dir(str(out), uri)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def join(uri: str, *parts: str) -> str:
    """Join URI path segments with single slashes."""
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])
