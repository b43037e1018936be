"""Where a shop service learns who it is: ``python -m shop orders --spec run/orders.json``.

The lab writes one spec file per service: its port, version, the URLs of its peers, and the paths of
its config, the shared flags, its log file and its data directory.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Sequence

from .observe import METRICS, JsonLog
from .settings import Settings

__all__ = ["ServiceContext", "load_context"]


@dataclass
class ServiceContext:
    name: str
    version: str
    port: int
    peers: Dict[str, str]
    config_path: str
    flags_path: str
    log_path: str
    data_dir: str
    metrics_port: int = 0  # /metrics and /health on their own port; 0: none
    settings: Settings = field(init=False, repr=False)
    log: JsonLog = field(init=False, repr=False)

    def setup(self, defaults: Mapping[str, Any]) -> "ServiceContext":
        self.settings = Settings(self.config_path, self.flags_path, defaults)
        self.log = JsonLog(self.name, self.version, self.log_path,
                           debug=lambda: bool(self.settings.get("debug_logging", False)))
        METRICS.build.labels(self.name, self.version).set(1)
        return self

    def data(self, *parts: str) -> str:
        return os.path.join(self.data_dir, *parts)


def load_context(argv: Optional[Sequence[str]], defaults: Mapping[str, Any]) -> ServiceContext:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True, help="the service spec file the lab wrote")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as fh:
        raw = json.load(fh)
    ctx = ServiceContext(raw["name"], raw["version"], int(raw["port"]), dict(raw.get("peers", {})),
                         raw["config"], raw["flags"], raw["log"], raw["data_dir"], int(raw.get("metrics_port", 0)))
    return ctx.setup(defaults)
