"""Routing data: the table contract, readers, simulated users, splits and text encoders."""

from proute.data.table import DataError, RoutingData, validate_table

__all__ = ["DataError", "RoutingData", "validate_table"]
