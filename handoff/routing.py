"""Which department handles which type of complaint (DOMAIN.md step 4), as a configurable table.

The defaults follow the SOP: product -> quality/technical, service -> operations, logistics ->
logistics, after-sales -> after-sales, compliance -> legal/compliance. A shop with other
departments writes a YAML mapping (``routing.yaml`` in the data directory, read by the wiring):

    routes:
      product: quality
      logistics: warehouse
    default: customer_service
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from handoff.errors import RoutingError

DEFAULT_ROUTES: Mapping[str, str] = MappingProxyType({
    "product": "quality",
    "service": "operations",
    "logistics": "logistics",
    "after_sales": "after_sales",
    "compliance": "legal_compliance",
})
# Complaints the bot could not classify go to the front-line desk, which sorts them by hand.
DEFAULT_DEPARTMENT = "customer_service"

_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Routing:
    """A category -> department table with a department for everything else."""

    routes: Mapping[str, str] = field(default_factory=lambda: DEFAULT_ROUTES)
    default: str = DEFAULT_DEPARTMENT

    def __post_init__(self) -> None:
        for name in (*self.routes, *self.routes.values(), self.default):
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise RoutingError(
                    f"bad category or department name {name!r}: use lower-case letters, digits "
                    "and underscores, starting with a letter"
                )
        object.__setattr__(self, "routes", MappingProxyType(dict(self.routes)))

    def department_for(self, category: str | None) -> str:
        """The responsible department of a complaint of this category (None: unclassified)."""
        if category is None:
            return self.default
        return self.routes.get(category, self.default)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Routing:
        """Build from ``{"routes": {category: department}, "default": department}``.

        Routes given replace the defaults category by category; the others keep their default.

        Raises:
            RoutingError: the mapping is malformed.
        """
        unknown = set(data) - {"routes", "default"}
        if unknown:
            raise RoutingError(f"unknown routing keys: {', '.join(sorted(unknown))}")
        routes = data.get("routes") or {}
        if not isinstance(routes, Mapping):
            raise RoutingError("routing 'routes' must be a mapping of category: department")
        default = data.get("default", DEFAULT_DEPARTMENT)
        return cls({**DEFAULT_ROUTES, **routes}, default)

    @classmethod
    def load(cls, path: Path) -> Routing:
        """Read a YAML routing file; the defaults when the file does not exist.

        Raises:
            RoutingError: the file cannot be read or is malformed.
        """
        import yaml

        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise RoutingError(f"cannot read routing file {path}: {exc}") from exc
        if not isinstance(data, Mapping):
            raise RoutingError(f"{path}: expected a mapping with 'routes' and 'default'")
        return cls.from_mapping(data)
