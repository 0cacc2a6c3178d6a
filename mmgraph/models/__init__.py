"""Recommenders, each a short composition of :mod:`mmgraph.nn` layers.

Every module in this package is imported here, so a new model needs only a new file whose
class sets ``name``: it then appears in :func:`registered_models`, ``mmgraph list`` and the CLI.
"""

import importlib
import pkgutil

from mmgraph.models.base import Recommender, registered_models

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

globals().update({cls.__name__: cls for cls in registered_models().values()})


def get_model(name: str) -> type[Recommender]:
    """The model class registered under ``name`` (case-insensitive)."""
    from mmgraph.errors import ConfigError

    models = registered_models()
    key = name.lower()
    if key not in models:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(models))}")
    return models[key]


__all__ = [
    "Recommender",
    "get_model",
    "registered_models",
    *sorted(cls.__name__ for cls in registered_models().values()),
]
