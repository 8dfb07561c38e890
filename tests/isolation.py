"""The suite reads nothing outside the repository: every file the test process opens is checked.

An audit hook (PEP 578) sees each `open` of the test process. A path is outside when it lies under
none of the repository, the Python installation, the temporary folder, the system's own folders and
the user's cache and data folders (where the embedded model lives). The folder a checkout often has
beside it with evaluation data (`../shared`, what the benchmarks read) is outside even when it would
fall under an allowed folder. Only paths that exist count: libraries probe for optional files
(`~/.netrc`, say) that are absent on most machines.

Servers that tests start in other processes are not audited; they read only what the test gives them.
"""

from __future__ import annotations

import os
import site
import sys
import sysconfig
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SYSTEM_DIRS = ("/dev", "/proc", "/sys", "/etc", "/usr", "/lib", "/lib64", "/bin", "/sbin", "/run", "/var")
HOME_DIRS = (".cache", ".local", ".config")


def _norm(path: str | os.PathLike[str]) -> str:
    return os.path.normpath(os.path.abspath(os.fspath(path)))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def default_allowed() -> list[str]:
    roots: set[str] = {str(REPO), tempfile.gettempdir(), "/tmp", *SYSTEM_DIRS}
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        roots |= {prefix, os.path.realpath(prefix)}
    roots |= set(site.getsitepackages()) | {site.getusersitepackages()}
    roots |= {p for p in sysconfig.get_paths().values() if p}
    home = Path.home()
    roots |= {str(home / d) for d in HOME_DIRS}
    for var in ("RAGBLEND_DATA_DIR", "HF_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR"):
        if os.environ.get(var):
            roots.add(os.environ[var])
    return sorted(_norm(r) for r in roots)


class OpenAudit:
    """Records the opened paths that lie outside `allowed` (or inside `forbidden`)."""

    def __init__(self, allowed: Iterable[str], forbidden: Iterable[str]) -> None:
        self.allowed = [_norm(p) for p in allowed]
        self.forbidden = [_norm(p) for p in forbidden]
        self.violations: list[str] = []
        self._lock = threading.Lock()
        self._busy = threading.local()

    def outside(self, path: str | os.PathLike[str]) -> bool:
        p = _norm(path)
        if any(_under(p, f) for f in self.forbidden):
            return True
        return not any(_under(p, a) for a in self.allowed)

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        if event != "open" or getattr(self._busy, "on", False):
            return
        path = args[0] if args else None
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return  # a file descriptor
        self._busy.on = True  # what the check itself does must not be audited again
        try:
            if self.outside(path) and os.path.exists(path):
                with self._lock:
                    self.violations.append(_norm(path))
        finally:
            self._busy.on = False


def suite_audit() -> OpenAudit:
    """The check the whole suite runs under (installed once, at start, by tests/conftest.py)."""
    return OpenAudit(default_allowed(), forbidden=[str(REPO.parent / "shared")])
