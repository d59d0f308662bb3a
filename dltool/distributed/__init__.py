"""Several processes training one run: the process group, the launcher and the
supervisor of worker processes (`dltool launch`, sweep workers). Single-process code gets :data:`LOCAL`."""

from .group import LOCAL, JaxProcessGroup, LocalGroup, ProcessGroup, ProcessGroupError, current_group
from .settings import GroupSettings

__all__ = [
    "LOCAL",
    "GroupSettings",
    "JaxProcessGroup",
    "LocalGroup",
    "ProcessGroup",
    "ProcessGroupError",
    "current_group",
]
