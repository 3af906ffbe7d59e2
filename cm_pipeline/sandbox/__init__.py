"""A ChartMogul-compatible local HTTP API for the demo and the tests (stdlib only)."""

from cm_pipeline.sandbox.app import SandboxServer
from cm_pipeline.sandbox.control import SandboxControl, SandboxControlError
from cm_pipeline.sandbox.process import SandboxProcess

__all__ = ["SandboxControl", "SandboxControlError", "SandboxProcess", "SandboxServer"]
