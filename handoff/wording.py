"""The wording guard (话术合规): promises no message may make without a second thought.

Every agent message is checked before it is sent; a hit is refused with the phrases found, and
the agent rephrases or confirms (both audited). The list is configurable: a YAML list of phrases
(``wording.yaml`` in the data directory) replaces the defaults.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from handoff.errors import InvalidTicket

DEFAULT_BANNED: tuple[str, ...] = (
    "绝对保证", "絕對保證", "全额赔偿", "全額賠償", "百分之百", "100%", "一定赔", "一定賠",
    "保证退款", "保證退款", "肯定没问题", "肯定沒問題", "absolutely guarantee",
    "full compensation", "guaranteed refund",
)


@dataclass(frozen=True, slots=True)
class WordingGuard:
    """Finds banned promises in a text (case-insensitive, ignoring spaces)."""

    banned: tuple[str, ...] = field(default=DEFAULT_BANNED)

    def violations(self, text: str) -> tuple[str, ...]:
        """The banned phrases the text contains, in list order."""
        plain = "".join(text.lower().split())
        return tuple(p for p in self.banned if "".join(p.lower().split()) in plain)

    @classmethod
    def of(cls, phrases: Iterable[str]) -> WordingGuard:
        cleaned = tuple(p.strip() for p in phrases if isinstance(p, str) and p.strip())
        return cls(cleaned)

    @classmethod
    def load(cls, path: Path) -> WordingGuard:
        """The phrases of a YAML list file; the defaults when it does not exist.

        Raises:
            InvalidTicket: the file is not a list of strings.
        """
        import yaml

        if not path.exists():
            return cls()
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidTicket(f"cannot read wording file {path}: {exc}") from exc
        if not isinstance(data, list):
            raise InvalidTicket(f"{path}: expected a list of banned phrases")
        return cls.of(data)
