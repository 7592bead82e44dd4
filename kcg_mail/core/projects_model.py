"""The model of ``config/projects.yaml`` (project groups). Pure pydantic with no
imports from the rest of kcg_mail, so ``core.config`` can hold it; the rules
around groups are in ``kcg_mail.core.projects``."""

from __future__ import annotations

import datetime as dt
import re
import unicodedata

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def slug(name: str) -> str:
    """A group's id from its name: 'Trygghet i stadskärnan' -> 'trygghet-i-stadskarnan'."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", ascii_).strip("-")[:40] or "projekt"


class ProjectGroup(_Model):
    name: str = Field(min_length=2)
    lead: str
    members: list[str] = []
    purpose: str = ""
    start: dt.date
    end: dt.date | None = None

    @model_validator(mode="after")
    def _lead_in_members(self) -> ProjectGroup:
        if any(c in self.name for c in "\r\n"):
            raise ValueError("name must be on one line")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}; correct one of them")
        return self

    @property
    def slug(self) -> str:
        return slug(self.name)

    @property
    def everyone(self) -> list[str]:
        """Lead first, then the other members."""
        return [self.lead] + [m for m in self.members if m != self.lead]


class Projects(_Model):
    #: days before a meeting on which each group's lead is asked for a status
    #: (default: with the invitation, two weeks ahead)
    request_days: int = Field(14, ge=2, le=60)
    groups: list[ProjectGroup] = []

    @model_validator(mode="after")
    def _unique(self) -> Projects:
        slugs = [g.slug for g in self.groups]
        dup = sorted({s for s in slugs if slugs.count(s) > 1})
        if dup:
            raise ValueError(f"project group name(s) used twice: {', '.join(dup)}; give each group a unique name")
        return self
