"""vidsearch: the processing library behind the video object search platform.

The packages read like the pipeline:

* `media`: sources, probe, split, frames and bundles, ffmpeg, synthetic test videos;
* `models`: detector, embedder, preprocessing, the model store, the detect+embed worker and its
  launchers;
* `stores`: the Postgres catalog and labels, the Weaviate index, object storage;
* `quality`: the Great Expectations gates; `channels`: scheduled discovery of new videos;
* `pipeline` (the stages, as functions the DAGs call) and `search` (the search and labelling service)
  on top; `records` (typed records), `errors` (the error kinds the retry policy reads).

Nothing here imports Airflow: the same code runs inside an Airflow task, a local worker process or a
GPU pod. `media`, `models` and `stores` export their public names lazily, so importing one module
(the worker reading a bundle, say) never loads another's heavy dependencies (torch, SQLAlchemy, GX).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__version__ = "0.1.0"


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`__getattr__`, `__dir__` and `__all__` for a package whose names live in its submodules.

    `exports` maps a submodule to the public names it defines; a name is imported from its submodule
    on first access, and a submodule by name (`package.frames`) is imported on access too.
    """
    where = {name: module for module, names in exports.items() for name in names}

    def get_attribute(name: str) -> Any:
        if name in exports:
            return importlib.import_module(f"{package}.{name}")
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def list_names() -> list[str]:
        return sorted(set(where) | set(exports))

    return get_attribute, list_names, sorted(where)
