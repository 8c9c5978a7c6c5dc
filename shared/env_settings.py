"""Settings classes whose fields declare their own environment variables.

A field made with ``setting(...)`` carries its variable's name, a parser, a one-line help
and the parts of waitroom that read it. ``EnvSettings.from_env`` reads every such field
from an environment mapping; the ``--help`` texts and the README's table are written from
the same declarations (shared/settings.py), so adding a setting is adding one field.

A variable set to the empty string counts as unset. A variable declared ``secret`` may
instead name a file that holds its value, in ``<VAR>_FILE`` (Compose and Kubernetes mount
secrets as files); its value never appears in error messages or in ``repr``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Generic, Self, TypeVar
from urllib.parse import urlsplit

import limits

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

VAR = "waitroom.var"
GROUP = "waitroom.group"
FILE_SUFFIX = "_FILE"


class SettingsError(ValueError):
    """Environment variables hold values waitroom cannot use (every problem found)."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


@dataclass(frozen=True)
class Var(Generic[T]):
    """One environment variable: how to read it and what to say about it."""

    name: str
    parse: Callable[[str], T]
    help: str
    parts: tuple[str, ...]
    secret: bool = False
    shown: str | None = None
    """How the default is shown in help texts, where the value itself would not say."""

    def raw(self, environ: Mapping[str, str]) -> tuple[str, str] | None:
        """The value set for this variable and where it came from, or None if unset."""
        value = environ.get(self.name, "")
        file_name = self.name + FILE_SUFFIX
        file_path = environ.get(file_name, "") if self.secret else ""
        if value and file_path:
            raise SettingsError([f"{self.name} and {file_name} are both set; set one of them"])
        if not file_path:
            return (value, self.name) if value else None
        try:
            content = Path(file_path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or type(exc).__name__
            raise SettingsError([f"{file_name}: cannot read {file_path} ({reason})"]) from None
        if not content:
            raise SettingsError([f"{file_name}: {file_path} is empty"])
        return content, f"{file_name} ({file_path})"

    def read(self, environ: Mapping[str, str]) -> T | None:
        """The parsed value, or None if the variable is unset."""
        found = self.raw(environ)
        if found is None:
            return None
        value, source = found
        try:
            return self.parse(value)
        except ValueError as exc:
            got = "" if self.secret else f" (got {value!r})"
            raise SettingsError([f"{source} {exc}{got}"]) from None


def setting(
    name: str,
    default: T,
    parse: Callable[[str], T],
    help: str,
    parts: Iterable[str],
    *,
    secret: bool = False,
    shown: str | None = None,
) -> T:
    """A dataclass field read from the environment variable ``name``."""
    var = Var(name, parse, help, tuple(parts), secret, shown)
    return field(default=default, metadata={VAR: var}, repr=not secret)


def setting_made(
    name: str,
    factory: Callable[[], T],
    parse: Callable[[str], T],
    help: str,
    parts: Iterable[str],
    *,
    shown: str,
) -> T:
    """Like ``setting``, with a default made for each instance (``shown`` says how)."""
    var = Var(name, parse, help, tuple(parts), False, shown)
    return field(default_factory=factory, metadata={VAR: var})


def group(cls: Callable[[], T]) -> T:
    """A field holding a dataclass whose own fields are settings (its default: ``cls()``)."""
    return field(default_factory=cls, metadata={GROUP: cls})


def variables(cls: type) -> Iterator[tuple[Var[Any], dataclasses.Field[Any]]]:
    """Every variable a settings class declares, groups included, in declaration order."""
    for f in fields(cls):
        if VAR in f.metadata:
            yield f.metadata[VAR], f
        elif GROUP in f.metadata:
            yield from variables(f.metadata[GROUP])


def shown_default(var: Var[Any], f: dataclasses.Field[Any]) -> str:
    if var.shown is not None:
        return var.shown
    default = f.default
    if isinstance(default, bool):
        return "true" if default else "false"
    if default in ("", ()):
        return "unset"
    if isinstance(default, tuple):
        return ",".join(str(item) for item in default)
    return str(default)


def _read_fields(
    cls: type, environ: Mapping[str, str], problems: list[str], found: set[str]
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for f in fields(cls):
        if VAR in f.metadata:
            var: Var[Any] = f.metadata[VAR]
            try:
                value = var.read(environ)
            except SettingsError as exc:
                problems.extend(exc.problems)
                continue
            if value is not None:
                values[f.name] = value
                found.add(var.name)
        elif GROUP in f.metadata:
            sub = f.metadata[GROUP]
            values[f.name] = sub(**_read_fields(sub, environ, problems, found))
    return values


@dataclass(frozen=True)
class EnvSettings:
    """Base of the settings classes: built with keyword arguments (tests) or ``from_env``."""

    variables_set: frozenset[str] = field(
        default=frozenset(), kw_only=True, repr=False, compare=False
    )
    """The variables the environment set (filled by ``from_env``)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Self:
        """Read every declared variable from ``environ`` (``os.environ`` in ``main``).

        Raises ``SettingsError`` naming every variable that holds an unusable value."""
        problems: list[str] = []
        found: set[str] = set()
        values = _read_fields(cls, environ, problems, found)
        if problems:
            raise SettingsError(problems)
        return cls(**values, variables_set=frozenset(found))

    @classmethod
    def from_env_or_exit(cls, environ: Mapping[str, str], prog: str) -> Self:
        """``from_env`` for a ``main``: unusable values end the process with a message."""
        try:
            return cls.from_env(environ)
        except SettingsError as exc:
            problems = "".join(f"\n  {problem}" for problem in exc.problems)
            sys.exit(f"{prog}: cannot start, the environment is wrong:{problems}")

    def was_set(self, field_name: str) -> bool:
        """Whether the environment set the variable behind ``field_name``."""
        var: Var[Any] = next(f for f in fields(self) if f.name == field_name).metadata[VAR]
        return var.name in self.variables_set

    def with_changes(self, **changes: Any) -> Self:
        """A copy with some fields changed."""
        return replace(self, **changes)


# --- parsers: each takes the variable's text and raises ValueError saying what it must be


def text(raw: str) -> str:
    return raw


def boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("must be true or false")


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be a whole number") from None
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be at most {maximum}")
        return value

    return parse


def number(minimum: float | None = None) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be at least {minimum:g}")
        return value

    return parse


def path(raw: str) -> Path:
    return Path(raw)


HOST_NAME = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def host_names(raw: str) -> tuple[str, ...]:
    """Comma-separated host names (``shop.example``, ``127.0.0.1:8000``, ``[::1]``)."""
    names = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    bad = [n for n in names if not HOST_NAME.match(n)]
    if bad:
        raise ValueError(f"holds {bad[0]!r}, not a host name")
    return names


def choice(*options: str) -> Callable[[str], str]:
    """One of ``options``, in any case (given back as spelled in ``options``)."""
    by_fold = {option.casefold(): option for option in options}

    def parse(raw: str) -> str:
        try:
            return by_fold[raw.strip().casefold()]
        except KeyError:
            raise ValueError(f"must be one of {', '.join(options)}") from None

    return parse


def networks(raw: str) -> tuple[Network, ...]:
    """Comma-separated CIDRs (a bare address is its own /32 or /128)."""
    nets = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            nets.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"must be CIDRs separated by commas; {part!r} is not one") from None
    return tuple(nets)


def url(*schemes: str) -> Callable[[str], str]:
    """An absolute URL with one of ``schemes``; a trailing slash is dropped."""

    def parse(raw: str) -> str:
        _check_url(raw.strip(), schemes)
        return raw.strip().rstrip("/")

    return parse


def url_list(*schemes: str) -> Callable[[str], str]:
    """One URL or several separated by commas, each with one of ``schemes`` (kept as
    given: the client splits it)."""

    def parse(raw: str) -> str:
        items = [item.strip() for item in raw.split(",") if item.strip()]
        if not items:
            raise ValueError("must name at least one URL")
        for item in items:
            _check_url(item, schemes)
        return raw

    return parse


def _check_url(raw: str, schemes: tuple[str, ...]) -> None:
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise ValueError("must be a URL with a valid host and port") from None
    if parts.scheme not in schemes:
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    if not parts.netloc and parts.scheme != "unix":
        raise ValueError("must be a URL with a host")


def rate(raw: str) -> str:
    """A rate limit in the notation of the ``limits`` library, such as ``10/minute``."""
    try:
        limits.parse(raw)
    except ValueError:
        raise ValueError("must be a rate such as 10/minute or 5 per second") from None
    return raw


def pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ValueError(f"must be {what}")
        return raw

    return parse
