"""Assets and asset checks, gathered for `Definitions`."""

ASSETS: list = []
ASSET_CHECKS: list = []
