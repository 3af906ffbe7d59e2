"""Jobs for `Definitions`."""

JOBS: list = []
