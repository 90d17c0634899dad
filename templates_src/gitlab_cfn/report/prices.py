"""Prices: the dated snapshot shipped with the package (``data/prices.json``), or AWS's Price
List API with ``--live`` (``pricelist``). Both answer the same questions, one figure at a time,
and name the figure's source; a region or type the snapshot lacks is one line, exit 2."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gitlab_cfn.errors import ConfigError

SNAPSHOT = Path(__file__).resolve().parents[1] / "data" / "prices.json"
REGENERATE = "scripts/price_table.py regenerates the snapshot from AWS's Price List API; --live asks it directly"


@dataclass(frozen=True)
class Price:
    usd: float
    source: str


class Prices:
    """One region's figures from a snapshot (a dict shaped like ``data/prices.json``)."""

    def __init__(self, region: str, snapshot: dict | None = None):
        self.snapshot = snapshot if snapshot is not None else load_snapshot()
        regions = self.snapshot.get("regions", {})
        if region not in regions:
            raise ConfigError(f"--region: no prices for {region!r} in the snapshot of "
                              f"{self.snapshot.get('collected', '?')} (allowed: {', '.join(sorted(regions))}); "
                              f"{REGENERATE}")
        self.region = region
        self.table = regions[region]
        self.hours = float(self.snapshot.get("hours_per_month", 730))
        self.label = f"snapshot of {self.snapshot.get('collected', '?')}"

    def _entry(self, entry: dict, what: str) -> Price:
        return Price(float(entry["price"]), self.snapshot.get("sources", {}).get(entry["source"], entry["source"]))

    def get(self, table: str, key: str | None = None, *, field: str = "") -> Price:
        """A figure, e.g. ``get("ec2_hour", "c5.xlarge")`` or ``get("nat_hour")``."""
        section = self.table.get(table)
        entry = section.get(key) if (key is not None and isinstance(section, dict) and "price" not in section) \
            else section
        if not isinstance(entry, dict) or "price" not in entry:
            allowed = sorted(section) if isinstance(section, dict) and "price" not in section else []
            named = f"{field + ' ' if field else ''}{key}" if key else table
            hint = f" (priced: {', '.join(allowed)})" if allowed and len(allowed) <= 40 else ""
            raise ConfigError(f"{named}: no {table} price for {self.region} in the price snapshot{hint}; "
                              f"{REGENERATE}")
        return self._entry(entry, table)


def load_snapshot(path: Path = SNAPSHOT) -> dict:
    return json.loads(Path(path).read_text())
