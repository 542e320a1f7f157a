"""Test files of an upstream sdist, fetched from PyPI, checked and cached.

``upstream_test_files(SDIST)`` returns a folder holding the sdist's ``tests/`` files named
in ``SDIST.files``. The sdist is fetched once with ``pip download`` (pip's own index and
settings), its sha256 checked against the pinned one, and the files unpacked into a cache
folder (``$XDG_CACHE_HOME/aperag_pg`` or ``~/.cache/aperag_pg``, as PgBouncer's package),
through a temporary folder renamed into place, so an interrupted fetch leaves nothing half
made. Nothing is copied into the repository.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .pgbouncer import cache_dir


@dataclass(frozen=True)
class Sdist:
    """One pinned source distribution and the files of its ``tests/`` folder wanted."""

    project: str
    version: str
    sha256: str
    files: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return f"{self.project}=={self.version}"


# langgraph-checkpoint-postgres 3.2.0's store tests and what they import from tests/.
LANGGRAPH_STORE_TESTS = Sdist(
    project="langgraph-checkpoint-postgres",
    version="3.2.0",
    sha256="dffef0e6822d7c614019f7f2c4bdbef42859746aee2d3e6d9d9747cf3744ca90",
    files=(
        "__init__.py",
        "conftest.py",
        "embed_test_utils.py",
        "test_store.py",
        "test_async_store.py",
    ),
)


class UpstreamTestsUnavailable(RuntimeError):
    """The sdist could not be fetched, or is not the pinned one."""


def upstream_test_files(sdist: Sdist = LANGGRAPH_STORE_TESTS) -> Path:
    """The folder holding ``tests/<file>`` for each of ``sdist.files``; fetched on first use."""
    tree = cache_dir() / f"{sdist.project}-{sdist.version}-{sdist.sha256[:12]}"
    if not all((tree / "tests" / name).is_file() for name in sdist.files):
        _fetch(sdist, tree)
    return tree


def _fetch(sdist: Sdist, tree: Path) -> None:
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as work:
        work_dir = Path(work)
        archive = _download(sdist, work_dir / "download")
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if digest != sdist.sha256:
            raise UpstreamTestsUnavailable(
                f"{archive.name} has sha256 {digest}, not the pinned {sdist.sha256}: the "
                f"index served another file for {sdist.requirement}. Nothing was unpacked."
            )
        staged = work_dir / "tree"
        _unpack_tests(archive, sdist, staged / "tests")
        try:
            staged.rename(tree)
        except OSError:
            if not all((tree / "tests" / name).is_file() for name in sdist.files):
                raise  # not a rival's finished copy


def _download(sdist: Sdist, folder: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--no-binary",
        ":all:",
        sdist.requirement,
        "-d",
        str(folder),
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        raise UpstreamTestsUnavailable(
            f"could not download the sdist of {sdist.requirement} with pip download "
            f"({str(detail).strip()[-400:]}). Fix: let pip reach PyPI (or an index "
            "holding that sdist: PIP_INDEX_URL), then run the tests again."
        ) from exc
    archives = sorted(folder.glob("*.tar.gz"))
    if len(archives) != 1:
        raise UpstreamTestsUnavailable(
            f"pip download {sdist.requirement} left {[p.name for p in folder.iterdir()]}, "
            "not one .tar.gz sdist."
        )
    return archives[0]


def _unpack_tests(archive: Path, sdist: Sdist, target: Path) -> None:
    """Only the wanted regular files of ``<top>/tests/``, read member by member (no
    extraction of paths the archive chooses)."""
    target.mkdir(parents=True)
    found: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            parts = member.name.split("/")
            if len(parts) == 3 and parts[1] == "tests" and parts[2] in sdist.files:
                if member.isfile():
                    found[parts[2]] = tar.extractfile(member).read()
    missing = sorted(set(sdist.files) - set(found))
    if missing:
        raise UpstreamTestsUnavailable(
            f"{archive.name} has no tests/{', tests/'.join(missing)}: update "
            "the file list in devtools/upstream_tests.py for this version."
        )
    for name, data in found.items():
        (target / name).write_bytes(data)
