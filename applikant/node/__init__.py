"""The node layer: named nodes, links between them, calls, the global registry.

The public names, importable from here:

    from applikant.node import open_node, CallContext, NodeDown      # daemons (trio)
    from applikant.node import blocking_call, EphemeralNode          # CLIs (no trio)

Each name is imported on first use only (PEP 562): `as` and `ah` import
`applikant.node.blocking` and must not pay for trio because this package's
`__init__` runs first. The modules themselves: protocol.py (the sans-IO core),
node.py and the modules it composes (the trio driver), blocking.py (the
blocking driver), portmapper.py, settings.py, errors.py.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: `as` and `ah` start faster without it
if TYPE_CHECKING:
    from .blocking import EphemeralNode
    from .blocking import call as blocking_call
    from .errors import (
        BadRequest,
        CallTimeout,
        Conflict,
        DistError,
        Forbidden,
        NameTaken,
        NodeDown,
        NodeStartError,
        NoSuchName,
        NotFound,
        Refused,
        RemoteError,
        ServiceError,
        Unavailable,
    )
    from .monitor import MonitorEvent, NameLost, NodeDownEvent, NodeUp
    from .node import Node, open_node
    from .serving import CallContext, Handler
    from .settings import DistSettings, TlsSettings

# name -> (module, attribute)
_PUBLIC = {
    "open_node": ("node", "open_node"),
    "Node": ("node", "Node"),
    "CallContext": ("serving", "CallContext"),
    "Handler": ("serving", "Handler"),
    "MonitorEvent": ("monitor", "MonitorEvent"),
    "NodeUp": ("monitor", "NodeUp"),
    "NodeDownEvent": ("monitor", "NodeDownEvent"),
    "NameLost": ("monitor", "NameLost"),
    "EphemeralNode": ("blocking", "EphemeralNode"),
    "blocking_call": ("blocking", "call"),
    "DistSettings": ("settings", "DistSettings"),
    "TlsSettings": ("settings", "TlsSettings"),
    "DistError": ("errors", "DistError"),
    "NoSuchName": ("errors", "NoSuchName"),
    "NodeDown": ("errors", "NodeDown"),
    "CallTimeout": ("errors", "CallTimeout"),
    "Refused": ("errors", "Refused"),
    "RemoteError": ("errors", "RemoteError"),
    "NameTaken": ("errors", "NameTaken"),
    "NodeStartError": ("errors", "NodeStartError"),
    "ServiceError": ("errors", "ServiceError"),
    "BadRequest": ("errors", "BadRequest"),
    "NotFound": ("errors", "NotFound"),
    "Conflict": ("errors", "Conflict"),
    "Forbidden": ("errors", "Forbidden"),
    "Unavailable": ("errors", "Unavailable"),
}

__all__ = [
    "BadRequest",
    "CallContext",
    "CallTimeout",
    "Conflict",
    "DistError",
    "DistSettings",
    "EphemeralNode",
    "Forbidden",
    "Handler",
    "MonitorEvent",
    "NameLost",
    "NameTaken",
    "NoSuchName",
    "Node",
    "NodeDown",
    "NodeDownEvent",
    "NodeStartError",
    "NodeUp",
    "NotFound",
    "Refused",
    "RemoteError",
    "ServiceError",
    "TlsSettings",
    "Unavailable",
    "blocking_call",
    "open_node",
]


def __getattr__(name: str) -> object:
    """Import a public name's module on first use (module attributes come first)."""
    try:
        module, attr = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
