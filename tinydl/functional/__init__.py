"""Functional ops, ``import tinydl.functional as F``. Each op is a ``Function`` subclass with its
``forward`` and ``backward`` side by side and a snake_case wrapper below it."""

from .arithmetic import *  # noqa: F401,F403
from .elementwise import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
