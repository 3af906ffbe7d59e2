"""Sensors for `Definitions`."""

SENSORS: list = []
