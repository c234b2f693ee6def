"""Layers and models: ``from tinydl import layers as nn``."""

from . import init  # noqa: F401
from .activation import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .char_models import *  # noqa: F401,F403
from .container import *  # noqa: F401,F403
from .conv import *  # noqa: F401,F403
from .embedding import *  # noqa: F401,F403
from .hooks import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .model_summary import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
from .module import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .recurrent_cells import *  # noqa: F401,F403
from .transformer import *  # noqa: F401,F403
