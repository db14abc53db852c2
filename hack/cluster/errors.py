"""Exceptions of the cluster harness; each message says what to do next."""

from __future__ import annotations


class HarnessError(Exception):
    """Base class: the control plane could not be started, used or stopped."""


class ToolMissingError(HarnessError):
    """A binary or stage file the harness needs is not in the tools cache."""


class PortInUseError(HarnessError):
    """A fixed port the harness was told to use is already taken."""


class AlreadyRunningError(HarnessError):
    """A control plane recorded in the state directory is still running."""


class ComponentFailedError(HarnessError):
    """A control-plane process exited during start-up."""


class StartTimeoutError(HarnessError):
    """The control plane did not become usable in time."""
