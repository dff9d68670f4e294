"""Priority levels: an ordered set of names, rank 0 the most important.

Levels are always referred to by name in configuration, so there is no
numeric scale to read backwards (is 9 high or low?). In code a `Level` is a
small frozen value whose ``rank`` orders it; comparisons between levels of
the same set follow importance: ``critical < bulk`` reads "critical comes
before bulk".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import final

from ..errors import ConfigError, Problem, UnknownLevelError, show

__all__ = ["DEFAULT_LEVELS", "Level", "LevelSet"]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@final
@dataclass(frozen=True, slots=True, order=True)
class Level:
    """One priority level. Ordered by rank: a smaller rank is more important."""

    rank: int
    name: str

    def is_more_important_than(self, other: Level) -> bool:
        return self.rank < other.rank

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Level {self.name} rank={self.rank}>"


@final
class LevelSet:
    """An ordered collection of levels, most important first.

    Look a level up by name (``levels["high"]``), by rank (``levels[1]``) or
    pass a `Level` through `resolve`; an unknown key raises
    `UnknownLevelError` listing the valid names.
    """

    __slots__ = ("_by_name", "_levels")

    def __init__(self, names: Iterable[str]) -> None:
        names = list(names)
        problems: list[str] = []
        if not names:
            problems.append("a level set needs at least one level name")
        seen: set[str] = set()
        for name in names:
            if not isinstance(name, str) or not _NAME.match(name):
                problems.append(
                    f"level name {show(name)} is not accepted: use 1-32 lowercase letters, "
                    "digits, '_' or '-', starting with a letter"
                )
            elif name in seen:
                problems.append(f"level name {name!r} appears twice")
            seen.add(name)
        if problems:
            raise ConfigError([Problem("levels", problem) for problem in problems])
        self._levels: tuple[Level, ...] = tuple(Level(i, n) for i, n in enumerate(names))
        self._by_name: dict[str, Level] = {lvl.name: lvl for lvl in self._levels}

    def __getitem__(self, key: str | int) -> Level:
        if isinstance(key, str):
            level = self._by_name.get(key)
            if level is None:
                raise UnknownLevelError(f"unknown level {key!r}; valid levels are {self.names}")
            return level
        if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(self._levels):
            return self._levels[key]
        raise UnknownLevelError(
            f"unknown level {key!r}; valid levels are {self.names} "
            f"(ranks 0 to {len(self._levels) - 1})"
        )

    def resolve(self, key: Level | str | int) -> Level:
        """Return the level of this set for a name, rank or `Level` (checked to belong here)."""
        if isinstance(key, Level):
            if key.rank < len(self._levels) and self._levels[key.rank] == key:
                return key
            raise UnknownLevelError(f"level {key.name!r} is not in this level set {self.names}")
        return self[key]

    @property
    def names(self) -> list[str]:
        return [lvl.name for lvl in self._levels]

    @property
    def most_important(self) -> Level:
        return self._levels[0]

    @property
    def least_important(self) -> Level:
        return self._levels[-1]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, Level):
            return key.rank < len(self._levels) and self._levels[key.rank] == key
        return key in self._by_name

    def __iter__(self) -> Iterator[Level]:
        return iter(self._levels)

    def __len__(self) -> int:
        return len(self._levels)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LevelSet) and self._levels == other._levels

    def __hash__(self) -> int:
        return hash(self._levels)

    def __repr__(self) -> str:
        return f"LevelSet({self.names!r})"


#: The default five levels.
DEFAULT_LEVELS = LevelSet(["critical", "high", "normal", "low", "bulk"])
