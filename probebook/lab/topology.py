"""The services the lab runs, their baseline versions, and who calls whom.

    gateway (aiohttp) -> orders -> inventory
                      |         -> payments -> bank (outside company, not probed)
                      -> inventory            worker <- queue <- orders
                      -> payments (risk)      worker -> inventory (price imports)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

__all__ = ["ServiceDef", "SERVICES", "PROBED", "service_def"]


@dataclass(frozen=True)
class ServiceDef:
    name: str
    version: str  # the baseline release
    peers: Tuple[str, ...] = ()
    probed: bool = True  # runs under `probebook agent run`; the outside provider does not
    role: str = ""


SERVICES: Tuple[ServiceDef, ...] = (
    ServiceDef("inventory", "4.1.3", (), role="catalog, search, stock ledger"),
    ServiceDef("bank", "external", (), probed=False, role="card provider (an outside company)"),
    ServiceDef("payments", "1.9.0", ("bank",), role="charges and risk scores"),
    ServiceDef("orders", "2.7.1", ("inventory", "payments"), role="pricing and orders"),
    ServiceDef("worker", "1.4.0", ("inventory",), role="fulfilment and price imports"),
    ServiceDef("gateway", "3.2.0", ("orders", "inventory", "payments"), role="storefront API"),
)
PROBED = tuple(s.name for s in SERVICES if s.probed)
_BY_NAME: Dict[str, ServiceDef] = {s.name: s for s in SERVICES}


def service_def(name: str) -> ServiceDef:
    """The service called `name`; `KeyError` names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown service {name!r}; the lab runs {', '.join(_BY_NAME)}") from None
