"""Staff users (agents, supervisors, knowledge-base editors, admins) and their login tokens.

Passwords are hashed with argon2id (argon2-cffi). A login hands out a random opaque bearer
token; only its SHA-256 is stored, with an expiry, so a stolen database cannot log anybody in,
a token can be revoked by deleting its row, and every server process checks tokens against the
same table without sharing a signing key.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import ForeignKey, String, Text, delete, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker
from sqlalchemy.orm import Mapped, mapped_column

from handoff.errors import InvalidTicket, TicketStoreUnavailable, Unauthenticated, UserExists
from handoff.tickets import Base, _aware, utcnow

TOKEN_TTL = timedelta(hours=12)
_USERNAME = re.compile(r"[A-Za-z0-9_.\-@]{1,64}")
MIN_PASSWORD = 8


class Role(str, Enum):
    """What a staff member may do."""

    AGENT = "agent"
    SUPERVISOR = "supervisor"
    KB_EDITOR = "kb_editor"
    ADMIN = "admin"


# Who works on tickets, and who may approve (or reject) a solution above the threshold.
CASEWORK_ROLES = frozenset({Role.AGENT, Role.SUPERVISOR, Role.ADMIN})
APPROVER_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN})


class UserRow(Base):
    __tablename__ = "staff_users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(16))
    department: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]


class TokenRow(Base):
    __tablename__ = "staff_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("staff_users.id", ondelete="CASCADE"))
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime]


@dataclass(frozen=True, slots=True)
class User:
    """A staff member as the API sees them (never the password hash)."""

    id: str
    username: str
    role: Role
    department: str | None

    def to_dict(self) -> dict[str, str | None]:
        return {"id": self.id, "username": self.username, "role": self.role.value,
                "department": self.department}


def _user(row: UserRow) -> User:
    return User(id=row.id, username=row.username, role=Role(row.role),
                department=row.department)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    """Staff users and tokens in the ticket database (the tables of revision ho0002)."""

    def __init__(self, engine: AsyncEngine, *, token_ttl: timedelta = TOKEN_TTL) -> None:
        from argon2 import PasswordHasher

        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._hasher = PasswordHasher()
        self.token_ttl = token_ttl

    async def add(self, username: str, password: str, role: Role | str, *,
                  department: str | None = None) -> User:
        """Create a user.

        Raises:
            InvalidTicket: a malformed name, a short password or an unknown role.
            UserExists: the name is taken.
        """
        if not _USERNAME.fullmatch(username):
            raise InvalidTicket("a user name is 1-64 letters, digits or _ . - @")
        if len(password) < MIN_PASSWORD:
            raise InvalidTicket(f"a password has at least {MIN_PASSWORD} characters")
        try:
            role = Role(role)
        except ValueError as exc:
            raise InvalidTicket(
                f"unknown role {role!r}; one of {', '.join(r.value for r in Role)}") from exc
        row = UserRow(id=str(uuid.uuid4()), username=username,
                      password_hash=self._hasher.hash(password), role=role.value,
                      department=department, created_at=utcnow())
        try:
            async with self._sessions() as session, session.begin():
                session.add(row)
        except IntegrityError as exc:
            raise UserExists(f"a user named {username!r} exists already") from exc
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the user database failed: {exc}") from exc
        return _user(row)

    async def login(self, username: str, password: str, *,
                    now: datetime | None = None) -> tuple[str, User]:
        """Check the password and issue a new token.

        Raises:
            Unauthenticated: unknown user or wrong password (the same error for both).
        """
        from argon2.exceptions import InvalidHashError, VerificationError

        now = now or utcnow()
        async with self._sessions() as session, session.begin():
            row = (await session.execute(
                select(UserRow).where(UserRow.username == username))).scalar_one_or_none()
            if row is None:
                raise Unauthenticated("wrong user name or password")
            try:
                self._hasher.verify(row.password_hash, password)
            except (VerificationError, InvalidHashError) as exc:
                raise Unauthenticated("wrong user name or password") from exc
            token = secrets.token_urlsafe(32)
            session.add(TokenRow(token_hash=_digest(token), user_id=row.id,
                                 expires_at=now + self.token_ttl, created_at=now))
            # Expired tokens of this user go as a new one comes: the table stays small.
            await session.execute(delete(TokenRow).where(TokenRow.user_id == row.id,
                                                         TokenRow.expires_at < now))
            return token, _user(row)

    async def authenticate(self, token: str, *, now: datetime | None = None) -> User:
        """The user a bearer token belongs to.

        Raises:
            Unauthenticated: the token is unknown or expired.
        """
        now = now or utcnow()
        query = (select(UserRow, TokenRow.expires_at)
                 .join(TokenRow, TokenRow.user_id == UserRow.id)
                 .where(TokenRow.token_hash == _digest(token)))
        try:
            async with self._sessions() as session:
                found = (await session.execute(query)).first()
        except SQLAlchemyError as exc:
            raise TicketStoreUnavailable(f"the user database failed: {exc}") from exc
        if found is None or _aware(found[1]) <= now:
            raise Unauthenticated("the token is unknown or expired; log in again")
        return _user(found[0])

    async def logout(self, token: str) -> None:
        """Revoke a token."""
        async with self._sessions() as session, session.begin():
            await session.execute(delete(TokenRow).where(TokenRow.token_hash == _digest(token)))

    async def by_role(self, *roles: Role) -> list[User]:
        """Every user with one of these roles."""
        query = select(UserRow).where(UserRow.role.in_([r.value for r in roles]))
        async with self._sessions() as session:
            return [_user(r) for r in (await session.execute(query)).scalars()]
