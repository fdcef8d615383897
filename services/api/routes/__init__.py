"""The API's routers, one per resource (STYLE.md, 1)."""

from services.api.routes import event_types, indicators, units

__all__ = ["event_types", "indicators", "units"]
