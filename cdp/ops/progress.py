"""Progress bars for management commands: tqdm on the command's stderr."""

from __future__ import annotations

from typing import Any

from django.core.management.base import OutputWrapper
from tqdm import tqdm


def progress_bar(*, stderr: OutputWrapper, total: int, quiet: bool, **options: Any) -> tqdm[Any]:
    """A tqdm bar drawing on ``stderr`` (so output redirected by ``call_command`` is honoured);
    silent when ``quiet`` (``--verbosity 0``)."""
    return tqdm(total=total, file=_BarStream(stderr), disable=quiet, **options)


class _BarStream:
    """tqdm redraws with carriage returns; Django's OutputWrapper would add a newline to each."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self._wrapper = wrapper
        # tqdm draws with Unicode blocks only when the stream says it can carry them.
        self.encoding = getattr(wrapper, "encoding", None) or "utf-8"

    def write(self, text: str) -> None:
        self._wrapper.write(text, ending="")

    def flush(self) -> None:
        self._wrapper.flush()
