"""A failed Prefect flow run and its state, as the failure hooks receive them."""

from __future__ import annotations


class FailedRun:
    def __init__(self, id: str = "00000000-0000-0000-0000-000000000007", name: str = "daily 2023-10-25"):
        self.id, self.name, self.parameters = id, name, {}


class FailedState:
    def __init__(self, exc: BaseException):
        self.exc, self.message = exc, f"Flow run encountered an exception: {type(exc).__name__}: {exc}"

    def result(self, raise_on_failure: bool = True) -> BaseException:
        return self.exc
