"""Local paths and s3:// URIs behind one small API (pyarrow.fs), so that every job's inputs and outputs may live
on either. The S3 endpoint and credentials come from the environment only (AWS_ENDPOINT_URL for MinIO or another
S3-compatible server, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the node's instance profile, AWS_REGION),
never from config files, and are never logged.

Locations are plain strings: pathlib would fold "s3://b/k" into "s3:/b/k". A single-object write is atomic on
S3 (readers see the old or the new object); multi-file outputs commit by writing their marker object last.
"""

from __future__ import annotations

import os
import tempfile
from functools import cache
from pathlib import Path

import pyarrow.fs as pafs


def is_remote(uri: str | Path) -> bool:
    return str(uri).startswith("s3://")


def absolute(uri: str | Path) -> str:
    """A location in canonical form: URIs as given (no trailing slash), local paths resolved."""
    return str(uri).rstrip("/") if is_remote(uri) else str(Path(uri).resolve())


def join(uri: str | Path, *parts: str) -> str:
    return "/".join([str(uri).rstrip("/"), *parts]) if is_remote(uri) else str(Path(uri, *parts))


@cache
def _s3() -> pafs.S3FileSystem:
    return pafs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL") or None,
                             region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None)


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) of a location."""
    return (_s3(), str(uri)[len("s3://"):].rstrip("/")) if is_remote(uri) else (pafs.LocalFileSystem(), absolute(uri))


def exists(uri: str | Path) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def list_files(uri: str | Path) -> dict[str, tuple[int, int]]:
    """Every file below a folder (recursively): relative path -> (size, mtime in ns). Empty if it is missing."""
    fs, root = resolve(uri)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return {}
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    return {i.path[len(root) + 1:]: (i.size, i.mtime_ns or 0) for i in infos if i.type == pafs.FileType.File}


def read_bytes(uri: str | Path) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes(uri: str | Path, data: bytes) -> None:
    """Atomic: locally through a temporary file and a rename, on S3 as one PUT."""
    if is_remote(uri):
        fs, path = resolve(uri)
        with fs.open_output_stream(path) as f:
            f.write(data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def open_input(uri: str | Path):
    """A seekable binary file (PyAV, h5py and pyarrow read from it directly)."""
    fs, path = resolve(uri)
    return fs.open_input_file(path)


def download(uri: str | Path, dest: Path) -> Path:
    """A local copy with the source's modification time (clock-less formats date recordings by it)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fs, path = resolve(uri)
    pafs.copy_files(path, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    if mtime := fs.get_file_info(path).mtime_ns:
        os.utime(dest, ns=(mtime, mtime))
    return dest


def upload_tree(local: Path, uri: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Copies a local folder's files to a location, except those whose relative path is in `skip`."""
    fs, root = resolve(uri)
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = f.relative_to(local).as_posix()
        if rel not in skip:
            pafs.copy_files(str(f), f"{root}/{rel}", source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def delete(uri: str | Path) -> None:
    """Removes a file or a whole folder; nothing to do when it is missing."""
    fs, path = resolve(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)
