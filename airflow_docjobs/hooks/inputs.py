"""
Documents to upload: a local path or an object-storage URI, checked before any request.

URIs (``file://``, ``s3://``, ...) go through Airflow's ``ObjectStoragePath``; documents are streamed from
disk or storage when sent.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import mimetypes
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any, NoReturn

from airflow_docjobs.exceptions import DocJobsInputError

if TYPE_CHECKING:
    from collections.abc import Callable

# Object stores have keys, not folders: a "folder" is a prefix, which exists only while it has objects.
OBJECT_STORES = frozenset({"s3", "s3a", "s3n", "gs", "gcs", "abfs", "abfss", "az", "adl"})


def as_path(location: str) -> Any:
    """A local ``Path``, or an ``ObjectStoragePath`` for anything with a URI scheme."""
    if "://" in location:
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        return ObjectStoragePath(location)
    return Path(location).expanduser()


# HEIF brands of HEIC images (ISO/IEC 23008-12): the ftyp box's major brand.
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # legacy Office (.doc, .xls)
ZIP = b"PK\x03\x04"  # Office Open XML and OpenDocument (.docx, .xlsx, .odt, .ods)
# A format's name and the test its first bytes pass (its signature, "magic bytes"), by file extension.
# PDF readers accept the header anywhere in the first 1024 bytes.
SIGNATURES: dict[str, tuple[str, Callable[[bytes], bool]]] = {
    ".pdf": ("PDF", lambda head: b"%PDF-" in head[:1024]),
    ".jpg": ("JPEG", lambda head: head.startswith(b"\xff\xd8\xff")),
    ".png": ("PNG", lambda head: head.startswith(b"\x89PNG\r\n\x1a\n")),
    ".tif": ("TIFF", lambda head: head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")),
    ".webp": ("WebP", lambda head: head[:4] == b"RIFF" and head[8:12] == b"WEBP"),
    ".heic": ("HEIC", lambda head: head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS),
    ".doc": ("Word 97-2003", lambda head: head.startswith(OLE2)),
    ".xls": ("Excel 97-2003", lambda head: head.startswith(OLE2)),
    ".docx": ("Word", lambda head: head.startswith(ZIP)),
    ".xlsx": ("Excel", lambda head: head.startswith(ZIP)),
    ".odt": ("OpenDocument text", lambda head: head.startswith(ZIP)),
    ".ods": ("OpenDocument spreadsheet", lambda head: head.startswith(ZIP)),
}
SIGNATURES |= {".jpeg": SIGNATURES[".jpg"], ".tiff": SIGNATURES[".tif"]}


def content_mismatch(suffix: str, head: bytes) -> str | None:
    """Why a file's first bytes are not the format its extension names (``None`` when they are, or unknown)."""
    if suffix not in SIGNATURES or (expected := SIGNATURES[suffix])[1](head):
        return None
    looks = next((name for name, matches in SIGNATURES.values() if matches(head)), None)
    found = f"it looks like a {looks} file" if looks else "its first bytes match no document format"
    return f"its content is not {expected[0]} as its extension {suffix} says ({found})"


def is_object_store(path: Any) -> bool:
    """Whether ``path`` lives on an object store (``s3://``, ``gs://``, ``abfs://``...)."""
    return getattr(path, "protocol", "") in OBJECT_STORES


def children(folder: Any) -> list[Any]:
    """
    The entries of a folder or prefix; none when it is empty or missing, on every filesystem alike.

    A missing local folder raises ``FileNotFoundError``; an object-storage prefix with no objects (there
    are no empty folders there) raises ``NotADirectoryError`` from s3fs.
    """
    try:
        return list(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


class Loaded(str):
    """
    A document's location (it is that string) with its bytes, read in one request by :func:`load`.

    A batch hashes, checks and uploads each document from these bytes: one read of object storage per
    document, not one for the hash, one for the check and one for the upload.
    """

    data: bytes

    def __new__(cls, location: str, data: bytes) -> Loaded:
        """The string ``location``, carrying ``data``."""
        loaded = super().__new__(cls, location)
        loaded.data = data
        return loaded


class LoadedFolder(str):
    """
    A case folder's location (it is that string) with every document under it read once, by :func:`load`.

    ``documents`` holds each document's location, its path's parts below the folder and its bytes.
    """

    documents: tuple[tuple[str, tuple[str, ...], bytes], ...]

    def __new__(
        cls, location: str, documents: tuple[tuple[str, tuple[str, ...], bytes], ...]
    ) -> LoadedFolder:
        """The string ``location``, carrying ``documents``."""
        loaded = super().__new__(cls, location)
        loaded.documents = documents
        return loaded


def load(value: Any, *, folders: bool = False) -> Any:
    """
    ``value`` read whole, as :class:`Loaded`, when it names one document file; anything else unchanged.

    With ``folders``, a folder or prefix comes back as :class:`LoadedFolder` (a batch of case folders). A
    URL, inline content or a missing file is left for the checks before sending to describe. An object is
    read with one GET (``_cat``: no HEAD first, as ``open()`` makes).
    """
    if isinstance(value, (Loaded, LoadedFolder)) or not isinstance(value, (str, Path)):
        return value
    text = str(value).strip()
    if not text or text.startswith(("https://", "http://", "base64:", "data:")):
        return value
    try:
        if not text.endswith("/"):
            with suppress(FileNotFoundError, IsADirectoryError, NotADirectoryError):
                return Loaded(text, _read_bytes(text))
        if folders and is_folder(text):
            return LoadedFolder(
                text, tuple((loc, parts, _read_bytes(loc)) for loc, parts in _documents(text))
            )
    except (OSError, ImportError, ValueError):
        pass
    return value


def _read_bytes(location: str) -> bytes:
    path = as_path(location)
    return _cat(path) if "://" in location else bytes(path.read_bytes())


def _cat(path: Any) -> bytes:
    """
    An object's bytes in one GET.

    s3fs (and adlfs) first ask for the size to split big reads over several requests: a HEAD, or a stale
    listing cache's "not found" for a document written since it was listed.
    """
    reader = getattr(path.fs, "_cat_file", None)  # async filesystems only (not file://)
    concurrent = reader is not None and "max_concurrency" in inspect.signature(reader).parameters
    data: bytes = path.fs.cat_file(path.path, **({"max_concurrency": 1} if concurrent else {}))
    return data


@dataclass(frozen=True)
class Upload:
    """One multipart file field, opened only when a request is sent (and again on a retry)."""

    field: str
    location: str
    filename: str
    content_type: str
    data: bytes | None = None  # the bytes of a Loaded document: sent (and resent) from memory

    def open(self) -> IO[bytes]:
        """Open the document for reading: its loaded bytes, or the file, locally or through object storage."""
        if self.data is not None:
            return io.BytesIO(self.data)
        source: IO[bytes] = as_path(self.location).open("rb")
        return source


@dataclass(frozen=True)
class InputRules:
    """Who is checking (for the error message) and which file extensions the vendor accepts."""

    vendor: str
    conn_id: str
    extensions: frozenset[str]

    def fail(self, param: str, problem: str) -> DocJobsInputError:
        """The input error for parameter ``param``, naming the vendor and connection."""
        return DocJobsInputError(f"parameter {param!r}: {problem}", vendor=self.vendor, conn_id=self.conn_id)

    def path(self, location: str, param: str) -> Any:
        """A path for ``location``; a URI scheme without an installed filesystem is named, not a traceback."""
        try:
            return as_path(location)
        except (ImportError, ValueError) as exc:
            scheme = location.split("://", 1)[0]
            raise self.fail(
                param, f"cannot open {location!r}: no filesystem for {scheme}:// is installed ({exc})"
            ) from exc

    def file(self, value: Any, *, param: str, field: str) -> Upload:
        """Check one document and describe its upload."""
        if isinstance(value, Path):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(param, f"expected a file path or object-storage URI, got {value!r}")
        path = self.path(value.strip(), param)
        suffix = PurePosixPath(path.name).suffix.lower()
        if suffix not in self.extensions:
            accepted = ", ".join(sorted(self.extensions))
            raise self.fail(
                param, f"{value!r} has an unsupported extension {suffix or '(none)'}; accepted: {accepted}"
            )
        loaded = load(value)  # one read: the checks below and the upload use these bytes
        if not isinstance(loaded, Loaded):
            self._unreadable(path, str(value), param)
        if not loaded.data:
            raise self.fail(param, f"{str(value)!r} is empty")
        if problem := content_mismatch(suffix, loaded.data[:1024]):
            raise self.fail(param, f"{str(value)!r}: {problem}; nothing was sent")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Upload(field, str(value).strip(), path.name, content_type, loaded.data)

    def _unreadable(self, path: Any, value: str, param: str) -> NoReturn:
        """Why a document could not be read: missing, not a file, or the filesystem's own reason."""
        try:
            if not path.is_file():
                raise self.fail(param, f"{value!r} does not exist or is not a file")
            path.open("rb").close()
        except OSError as exc:
            raise self.fail(param, f"cannot read {value!r}: {exc.strerror or exc}") from exc
        raise self.fail(param, f"cannot read {value!r}")

    def files(self, value: Any, *, param: str, field: str) -> tuple[Upload, ...]:
        """Check a folder (its files, hidden ones skipped) or a list of documents."""
        if isinstance(value, LoadedFolder):  # its own files, read already
            own = sorted((parts[0], loc, data) for loc, parts, data in value.documents if len(parts) == 1)
            items: list[Any] = [Loaded(loc, data) for _, loc, data in own]
            if not items:
                raise self.fail(param, f"folder {str(value)!r} holds no documents")
        elif isinstance(value, (str, Path)):
            text = str(value).strip()
            folder = self.path(text, param)
            try:
                # A prefix (a URI ending in "/") on an object store is a folder even with no objects yet.
                is_dir = folder.is_dir() or (text.endswith("/") and is_object_store(folder))
            except OSError as exc:
                raise self.fail(param, f"cannot read {str(value)!r}: {exc}") from exc
            if not is_dir:
                raise self.fail(param, f"{str(value)!r} is not a folder; pass a folder or a list of files")
            items = [str(p) for p in folder_files(folder)]
            if not items:
                raise self.fail(param, f"folder {str(value)!r} holds no documents")
        elif isinstance(value, (list, tuple)):
            items = list(value)
            if not items:
                raise self.fail(param, "the list of documents is empty")
        else:
            raise self.fail(param, f"expected a folder or a list of files, got {type(value).__name__}")
        return tuple(self.file(item, param=param, field=field) for item in items)


def folder_files(folder: Any) -> list[Any]:
    """A case folder's documents as the hook uploads them: its own files by name, hidden ones skipped."""
    return sorted(
        (p for p in children(folder) if not p.name.startswith(".") and p.is_file()), key=lambda p: p.name
    )


def is_folder(value: Any) -> bool:
    """A folder path or an object-storage prefix (a URI ending in ``/``) that stands for its documents."""
    if not isinstance(value, (str, Path)):
        return False
    text = str(value).strip()
    if text.startswith(("http://", "https://")):
        return False
    if text.endswith("/"):
        return True
    try:
        return bool(text) and as_path(text).is_dir()
    except OSError:
        return False


def documents_under(folder: str) -> list[str]:
    """Every document under a folder or prefix, recursively, sorted; hidden files and folders skipped."""
    return [location for location, _ in _documents(folder)]


def _documents(folder: str) -> list[tuple[str, tuple[str, ...]]]:
    """Every document under a folder or prefix (see :func:`documents_under`) with its path's parts in it."""
    root = as_path(str(folder).strip().rstrip("/") or "/")
    found = []
    for path in root.rglob("*"):
        relative = PurePosixPath(str(path)).relative_to(PurePosixPath(str(root))).parts
        if any(part.startswith(".") for part in relative) or not path.is_file():
            continue
        found.append((str(path) if "://" not in str(folder) else _uri(folder, relative), relative))
    return sorted(found)


def _uri(folder: str, relative: tuple[str, ...]) -> str:
    return str(folder).rstrip("/") + "/" + "/".join(relative)


def content_sha256(value: Any) -> str | None:
    """
    The SHA-256 that identifies an input; ``None`` when the input cannot be read (it is rejected).

    It hashes a file's content (streamed), a folder's files (a case), the bytes or text given inline, a URL's
    text.
    """
    digest = hashlib.sha256()
    if isinstance(value, Loaded):
        value = value.data
    if isinstance(value, LoadedFolder):
        for _, parts, data in value.documents:
            digest.update(f"{parts[-1]}\0{hashlib.sha256(data).hexdigest()}\n".encode())
        return digest.hexdigest()
    if isinstance(value, (bytes, bytearray)):
        digest.update(value)
        return digest.hexdigest()
    if not isinstance(value, (str, Path)) or not str(value).strip():
        return None
    text = str(value).strip()
    if text.startswith(("https://", "http://", "base64:", "data:")):
        digest.update(text.encode())
        return digest.hexdigest()
    try:
        if is_folder(text):
            for document in documents_under(text):
                digest.update(f"{PurePosixPath(document).name}\0{content_sha256(document)}\n".encode())
            return digest.hexdigest()
        with as_path(text).open("rb") as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()
