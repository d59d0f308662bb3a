"""How this dltool was installed, read from pip's install record (PEP 610), and the pip command that installs it.

Every install hint (a missing backend or extra, `dltool info`, the CI workflow) comes from here, so it names
what installs *this* dltool: the checkout it runs from, the git commit it was built from, or its version on
the package index. Standard library only: no Keras, no TensorFlow.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

DISTRIBUTION = "keras-dltool"  # the name on the package index; "dltool" there is an unrelated PyTorch package
KINDS = ("editable", "checkout", "local", "url", "vcs", "index", "unknown")
REMOTE_KINDS = ("url", "vcs", "index")  # what a CI runner can install too (a vcs URL on file:// excepted)


@dataclass(frozen=True)
class Installation:
    """One way dltool was installed: ``kind`` (one of KINDS), its version, and where it came from.

    ``location`` is the folder (editable, checkout), the file or folder (local) or the URL (url, vcs) it was
    installed from; ``commit`` and ``subdirectory`` are a VCS install's; ``vcs`` is git, hg, svn or bzr.
    """

    kind: str
    version: str
    location: str | None = None
    vcs: str | None = None
    commit: str | None = None
    subdirectory: str | None = None

    def requirement(self, extras: tuple[str, ...] = (), cwd: Path | None = None) -> str:
        """What follows `pip install` to install this dltool with ``extras``, quoted for a shell.

        A checkout (editable or on PYTHONPATH) is ``-e PATH``, ``-e .`` when ``cwd`` (default: the current
        folder) is that checkout.
        """
        brackets = f"[{','.join(extras)}]" if extras else ""
        if self.kind in ("editable", "checkout"):
            folder = Path(self.location or ".")
            here = (cwd or Path.cwd()).resolve()
            shown = "." if folder.resolve() == here else str(folder)
            return f"-e {shell_word(shown + brackets)}"
        if self.kind == "local":
            return shell_word(f"{self.location}{brackets}")
        if self.kind == "url":
            return shell_word(f"{DISTRIBUTION}{brackets} @ {self.location}")
        if self.kind == "vcs":
            url = f"{self.vcs}+{self.location}@{self.commit}" if self.commit else f"{self.vcs}+{self.location}"
            if self.subdirectory:
                url += f"#subdirectory={self.subdirectory}"
            return shell_word(f"{DISTRIBUTION}{brackets} @ {url}")
        return shell_word(f"{DISTRIBUTION}{brackets}=={self.version}")

    def pip_install(self, *extras: str, cwd: Path | None = None) -> str:
        """The pip command that installs this dltool with ``extras``, e.g. ``pip install -e ".[export]"``."""
        return f"pip install {self.requirement(extras, cwd)}"

    @property
    def reachable_elsewhere(self) -> bool:
        """Whether another machine (a CI runner) can install this dltool from what the record says."""
        if self.kind == "vcs":
            return not (self.location or "").startswith("file:")
        return self.kind in REMOTE_KINDS

    def describe(self) -> str:
        """One line for `dltool info`: how and from where this dltool was installed."""
        if self.kind == "editable":
            return f"editable install of the checkout {self.location}"
        if self.kind == "checkout":
            return f"run from the checkout {self.location} (not installed by pip)"
        if self.kind in ("local", "url"):
            return f"installed from {self.location}"
        if self.kind == "vcs":
            commit = f" at commit {self.commit}" if self.commit else ""
            return f"installed from {self.vcs}+{self.location}{commit}"
        if self.kind == "index":
            return f"{DISTRIBUTION} {self.version} from the package index"
        return f"no install record found for {DISTRIBUTION} (version {self.version})"


def shell_word(argument: str) -> str:
    """``argument`` as a shell word: bare when safe, else in double quotes (as pip's docs write extras)."""
    if re.fullmatch(r"[\w./:=+,-]+", argument):
        return argument
    if not re.search(r'["$`\\!]', argument):
        return f'"{argument}"'
    return shlex.quote(argument)


def from_direct_url(record: dict | None, version: str) -> Installation:
    """The Installation a PEP 610 ``direct_url.json`` (parsed; None when there is none: an index install) says."""
    if not record:
        return Installation("index", version)
    url = record.get("url", "")
    if "vcs_info" in record:
        vcs = record["vcs_info"]
        return Installation(
            "vcs",
            version,
            location=url,
            vcs=vcs.get("vcs", "git"),
            commit=vcs.get("commit_id") or vcs.get("requested_revision"),
            subdirectory=record.get("subdirectory"),
        )
    if not url.startswith("file:"):
        return Installation("url", version, location=url)
    path = _path_from_file_url(url)
    if record.get("dir_info", {}).get("editable"):
        return Installation("editable", version, location=path)
    return Installation("local", version, location=path)


def _path_from_file_url(url: str) -> str:
    parts = urlsplit(url)
    return url2pathname(unquote(parts.path))


def names_this_project(folder: Path) -> bool:
    """Whether ``folder`` holds a pyproject.toml of dltool itself (a checkout of keras-dltool)."""
    pyproject = folder / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return re.search(rf'^name\s*=\s*"{re.escape(DISTRIBUTION)}"', text, flags=re.M) is not None


def current() -> Installation:
    """How the dltool running now was installed.

    A dltool imported from a checkout of its own source (PYTHONPATH, or an editable install of that checkout)
    is that checkout; else pip's record of the installed distribution; else "unknown" with the version.
    """
    import importlib.metadata

    from ._version import __version__

    checkout = Path(__file__).resolve().parent.parent
    in_checkout = names_this_project(checkout)
    try:
        distribution = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        distribution = None
    if distribution is not None:
        text = distribution.read_text("direct_url.json")
        installed = from_direct_url(json.loads(text) if text else None, distribution.version)
        # An installed dltool that is not the one imported (a checkout on PYTHONPATH shadows it) says nothing.
        if not in_checkout or (installed.kind == "editable" and Path(installed.location).resolve() == checkout):
            return installed
    if in_checkout:
        return Installation("checkout", __version__, location=str(checkout))
    return Installation("unknown", __version__)


def pip_install(*extras: str) -> str:
    """The pip command that installs the running dltool with ``extras`` (see Installation.pip_install)."""
    return current().pip_install(*extras)
