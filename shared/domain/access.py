"""Who may do what: roles and scopes, as pure rules."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    FIELD = "field"
    VIEWER = "viewer"


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    scope: tuple[str, ...] = ()

    @property
    def can_read(self) -> bool:
        return True

    @property
    def can_post_events(self) -> bool:
        return self.role in (Role.ADMIN, Role.FIELD)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN
