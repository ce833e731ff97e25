"""
Documents to upload: a local path or an object-storage URI, checked before any request.

URIs (``file://``, ``s3://``, ...) go through Airflow's ``ObjectStoragePath``; documents are streamed from
disk or storage when sent.
"""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

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


@dataclass(frozen=True)
class Upload:
    """One multipart file field, opened only when a request is sent (and again on a retry)."""

    field: str
    location: str
    filename: str
    content_type: str

    def open(self) -> IO[bytes]:
        """Open the document for reading, locally or through object storage."""
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
        try:
            is_file = path.is_file()
            size = path.stat().st_size if is_file else 0
        except OSError as exc:
            raise self.fail(param, f"cannot read {value!r}: {exc.strerror or exc}") from exc
        if not is_file:
            raise self.fail(param, f"{value!r} does not exist or is not a file")
        if size == 0:
            raise self.fail(param, f"{value!r} is empty")
        try:
            with path.open("rb") as source:
                head = source.read(1024)
        except OSError as exc:
            raise self.fail(param, f"cannot read {value!r}: {exc.strerror or exc}") from exc
        if problem := content_mismatch(suffix, head):
            raise self.fail(param, f"{value!r}: {problem}; nothing was sent")
        content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Upload(field=field, location=str(value).strip(), filename=path.name, content_type=content_type)

    def files(self, value: Any, *, param: str, field: str) -> tuple[Upload, ...]:
        """Check a folder (its files, hidden ones skipped) or a list of documents."""
        if isinstance(value, (str, Path)):
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
    root = as_path(str(folder).strip().rstrip("/") or "/")
    found = []
    for path in root.rglob("*"):
        relative = PurePosixPath(str(path)).relative_to(PurePosixPath(str(root))).parts
        if any(part.startswith(".") for part in relative) or not path.is_file():
            continue
        found.append(str(path) if "://" not in str(folder) else _uri(folder, relative))
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
