"""Import structlog without the optional packages it would load for nothing (issue 14: ~0.1 s of every start).

structlog imports ``rich``, ``colorama`` and ``greenlet`` when they are installed (transformers brings rich) for
its console renderer and its deprecated thread-local API, and ``asyncio`` for its async log methods. Our logs
are JSON lines (base/log.py) and nothing logs from a coroutine. So while structlog is imported, those packages
look absent and asyncio is a stand-in that imports the real one the first time structlog uses it. Afterwards
every other ``import rich`` / ``import asyncio`` gets the real module as usual. Called first thing by the
package (``isengard_desktop/__init__.py``), so the window, the CLI and every worker start lighter.
"""

from __future__ import annotations

import sys
import types


class _LateAsyncio(types.ModuleType):
    """What structlog's modules hold as ``asyncio``: the real module, imported on first use."""

    def __getattr__(self, name: str):
        if name.startswith("__"):  # introspection (PySide6's import hook, inspect) sees a plain module
            raise AttributeError(name)
        if sys.modules.get("asyncio") is self:  # used while structlog is still being imported
            del sys.modules["asyncio"]
        import asyncio

        return getattr(asyncio, name)


def import_structlog() -> None:
    if "structlog" in sys.modules:
        return
    absent = dict.fromkeys(("rich", "colorama", "greenlet"))  # None in sys.modules: importing it fails
    stand_ins: dict[str, types.ModuleType | None] = {**absent, "asyncio": _LateAsyncio("asyncio")}
    stand_ins = {name: module for name, module in stand_ins.items() if name not in sys.modules}
    sys.modules.update(stand_ins)
    try:
        import structlog  # noqa: F401
    except ImportError:  # structlog itself missing: let the first real import say so
        pass
    finally:
        for name, module in stand_ins.items():
            if sys.modules.get(name, 0) is module:
                del sys.modules[name]
