"""The status machine and who may do what."""

from __future__ import annotations

import pytest

from knowledge_base.entries import Action, Role, Status
from knowledge_base.errors import Forbidden, InvalidTransition
from knowledge_base.workflow import check_role, next_status


@pytest.mark.parametrize(("status", "action", "after"), [
    (Status.DRAFT, Action.SUBMIT, Status.IN_REVIEW),
    (Status.IN_REVIEW, Action.APPROVE, Status.PUBLISHED),
    (Status.IN_REVIEW, Action.REJECT, Status.DRAFT),
    (Status.PUBLISHED, Action.EDIT, Status.DRAFT),
    (Status.PUBLISHED, Action.ARCHIVE, Status.ARCHIVED),
    (Status.ARCHIVED, Action.ROLLBACK, Status.PUBLISHED),
    (Status.DRAFT, Action.ROLLBACK, Status.PUBLISHED),
])
def test_allowed(status: Status, action: Action, after: Status) -> None:
    assert next_status(status, action) is after


@pytest.mark.parametrize(("status", "action"), [
    (Status.DRAFT, Action.APPROVE),
    (Status.DRAFT, Action.REJECT),
    (Status.PUBLISHED, Action.SUBMIT),
    (Status.PUBLISHED, Action.PUBLISH),
    (Status.IN_REVIEW, Action.EDIT),
    (Status.ARCHIVED, Action.PUBLISH),
    (Status.ARCHIVED, Action.ARCHIVE),
])
def test_refused_with_the_allowed_actions_named(status: Status, action: Action) -> None:
    with pytest.raises(InvalidTransition, match="allowed:"):
        next_status(status, action)


def test_roles() -> None:
    for action in (Action.CREATE, Action.EDIT, Action.SUBMIT):
        check_role(Role.KB_EDITOR, action)
    for action in (Action.APPROVE, Action.PUBLISH, Action.ROLLBACK, Action.ARCHIVE,
                   Action.REJECT):
        with pytest.raises(Forbidden):
            check_role(Role.KB_EDITOR, action)
        check_role(Role.REVIEWER, action)
        check_role(Role.ADMIN, action)

