"""The version, written once: ``tinydl.__version__``, ``td.info()`` and pyproject.toml read it."""

__version__ = "0.1.0"
