"""Local paths and s3:// URIs behind one small API (pyarrow.fs), so that every job's inputs and outputs may live
on either. The S3 endpoint and credentials come from the environment only (AWS_ENDPOINT_URL for MinIO or another
S3-compatible server, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the node's instance profile, AWS_REGION),
never from config files, and are never logged.

Locations are plain strings: pathlib would fold "s3://b/k" into "s3:/b/k". A single-object write is atomic on
S3 (readers see the old or the new object); multi-file outputs commit by writing their marker object last.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from functools import cache
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


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


def read_json(uri: str | Path):
    return json.loads(read_bytes(uri))


def read_table(uri: str | Path, columns: list[str] | None = None) -> pa.Table:
    fs, path = resolve(uri)
    return pq.read_table(path, columns=columns, filesystem=fs)


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


def upload_file(local: Path, uri: str | Path) -> None:
    fs, path = resolve(uri)
    pafs.copy_files(str(local), path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)


def upload_tree(local: Path, uri: str | Path, skip: tuple[str, ...] = ()) -> None:
    """Copies a local folder's files to a location, except those whose relative path is in `skip`."""
    for f in sorted(p for p in local.rglob("*") if p.is_file()):
        rel = f.relative_to(local).as_posix()
        if rel not in skip:
            upload_file(f, join(uri, rel))


def delete(uri: str | Path) -> None:
    """Removes a file or a whole folder; nothing to do when it is missing."""
    fs, path = resolve(uri)
    kind = fs.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(path)
    elif kind == pafs.FileType.File:
        fs.delete_file(path)


def _cached(uri: str | Path) -> Path:
    """This machine's cache folder for a remote location: VLA_CACHE, default ~/.cache/vla-data."""
    root = Path(os.environ.get("VLA_CACHE") or Path.home() / ".cache" / "vla-data")
    return root / "mirror" / hashlib.sha1(absolute(uri).encode()).hexdigest()[:16]


def _refresh(uri: str, local: Path, size: int, mtime: int) -> Path:
    if not (local.is_file() and local.stat().st_size == size and local.stat().st_mtime_ns == mtime):
        download(uri, local)
    return local


def local_copy(uri: str | Path) -> Path:
    """A local path of one file: the file itself, or a cached copy of a remote one (fetched again when changed)."""
    if not is_remote(uri):
        return Path(uri)
    fs, path = resolve(uri)
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        raise FileNotFoundError(f"{uri} does not exist")
    return _refresh(str(uri), _cached(uri) / Path(path).name, info.size, info.mtime_ns or 0)


def local_mirror(uri: str | Path, include: tuple[str, ...] = (), must_exist: bool = True) -> Path:
    """A local folder holding the files of a location (the folder itself when it is local). A remote one is copied
    into the cache once; later calls copy only files whose size or mtime changed and drop files gone from the
    source. `include` limits the copy to files below folders of these names (e.g. ("meta", "data") for a LeRobot
    dataset's tables without its videos), at any depth. An empty or missing location is an error unless
    `must_exist` is False (an output folder to be)."""
    if not is_remote(uri):
        return Path(uri)
    dest = _cached(uri)
    wanted = lambda rel: not include or any(f"/{name}/" in f"/{rel}" for name in include)  # noqa: E731
    listing = {rel: v for rel, v in list_files(uri).items() if wanted(rel)}
    if not listing and must_exist:
        raise FileNotFoundError(f"{uri} holds no files" + (f" under {', '.join(include)}" if include else ""))
    for rel, (size, mtime) in sorted(listing.items()):
        _refresh(join(uri, rel), dest / rel, size, mtime)
    dest.mkdir(parents=True, exist_ok=True)
    for local in [f for f in dest.rglob("*") if f.is_file()]:
        rel = local.relative_to(dest).as_posix()
        if wanted(rel) and rel not in listing:
            local.unlink()
    return dest
