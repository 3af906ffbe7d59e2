"""Schedules for `Definitions`."""

SCHEDULES: list = []
