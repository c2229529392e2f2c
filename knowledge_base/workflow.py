"""The editors' status machine: which action is allowed in which status, and where it leads.

draft -> in_review -> published -> archived; a rejected review goes back to draft; editing a
published entry starts a new draft while the published version keeps being served; a rollback
publishes a copy of any earlier version, from any status.
"""

from __future__ import annotations

from knowledge_base.entries import Action, Role, Status
from knowledge_base.errors import Forbidden, InvalidTransition

_TRANSITIONS: dict[tuple[Status, Action], Status] = {
    (Status.DRAFT, Action.EDIT): Status.DRAFT,
    (Status.DRAFT, Action.SUBMIT): Status.IN_REVIEW,
    (Status.DRAFT, Action.PUBLISH): Status.PUBLISHED,
    (Status.DRAFT, Action.ARCHIVE): Status.ARCHIVED,
    (Status.IN_REVIEW, Action.APPROVE): Status.PUBLISHED,
    (Status.IN_REVIEW, Action.PUBLISH): Status.PUBLISHED,
    (Status.IN_REVIEW, Action.REJECT): Status.DRAFT,
    (Status.IN_REVIEW, Action.ARCHIVE): Status.ARCHIVED,
    (Status.PUBLISHED, Action.EDIT): Status.DRAFT,
    (Status.PUBLISHED, Action.ARCHIVE): Status.ARCHIVED,
    (Status.ARCHIVED, Action.EDIT): Status.DRAFT,
}

# Rollback republishes an old version whatever the entry's status is.
_ANY_STATUS = {Action.ROLLBACK: Status.PUBLISHED}

_MAY: dict[Role, frozenset[Action]] = {
    Role.KB_EDITOR: frozenset({Action.CREATE, Action.EDIT, Action.SUBMIT}),
    Role.REVIEWER: frozenset(Action),
    Role.ADMIN: frozenset(Action),
}


def next_status(current: Status, action: Action) -> Status:
    """The status an entry moves to when `action` is applied to it.

    Raises:
        InvalidTransition: the workflow has no such transition.
    """
    if action in _ANY_STATUS:
        return _ANY_STATUS[action]
    try:
        return _TRANSITIONS[(current, action)]
    except KeyError:
        allowed = sorted(a.value for (s, a) in _TRANSITIONS if s is current)
        allowed += sorted(a.value for a in _ANY_STATUS)
        raise InvalidTransition(
            f"cannot {action.value} an entry that is {current.value} "
            f"(allowed: {', '.join(allowed)})"
        ) from None


def check_role(role: Role, action: Action) -> None:
    """Raise Forbidden unless `role` may perform `action`."""
    if action not in _MAY[role]:
        raise Forbidden(f"role {role.value} may not {action.value} entries")
