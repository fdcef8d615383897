"""The soak runs on a broker and database of its own, as the fault suite does."""

from tests.faults.conftest import fault_stack, line

__all__ = ["fault_stack", "line"]
