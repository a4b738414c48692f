"""Local accounts and roles: who may read and change which records.

Passwords are stored as argon2id hashes (argon2-cffi: a random salt per hash, the
parameters inside the hash string). Signing in gives an :class:`AccessContext`
that the records layer (:class:`surgsim.records.Records`) takes on every read:

- a **trainee** reads only their own attempts, and only once released;
- an **educator** reads the attempts of the trainees of the cohorts they teach
  (and their own), releases scores and writes debrief notes;
- an **admin** reads everything and manages accounts and cohorts.

``access=None`` means the station itself (the process that records attempts);
front ends (GUI, CLI) always pass the signed-in person's context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from surgsim.errors import RecordsError

if TYPE_CHECKING:
    from surgsim.records.db import Records

__all__ = [
    "AccessContext",
    "AccessDeniedError",
    "add_user",
    "can_see_cohort",
    "hash_password",
    "list_users",
    "login",
    "require_role",
    "verify_password",
]

_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
#: argon2id cost; None uses argon2-cffi's defaults (RFC 9106 low-memory profile:
#: t=3, 64 MiB, 4 lanes; about 0.25 s per hash on a 2-core station). Tests lower it.
HASH_PARAMETERS: dict[str, int] | None = None


class AccessDeniedError(RecordsError):
    """The signed-in person's role does not allow this (or the sign-in failed)."""


@dataclass(frozen=True)
class AccessContext:
    """A signed-in person.

    Attributes
    ----------
    person_id : str
        Opaque id (what attempts and exports carry).
    role : {"trainee", "educator", "admin"}
    username : str
        Login name (lab-only: never exported).
    """

    person_id: str
    role: str
    username: str = ""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def _hasher() -> Any:
    try:
        from argon2 import PasswordHasher
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise RecordsError(
            "local accounts need argon2-cffi: pip install argon2-cffi"
        ) from exc
    return PasswordHasher(**(HASH_PARAMETERS or {}))


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` with a fresh random salt."""
    if not isinstance(password, str) or len(password) < MIN_PASSWORD_LENGTH:
        raise RecordsError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters; choose a longer one"
        )
    return _hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(stored_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def require_role(
    access: AccessContext | None, roles: str | Iterable[str], action: str
) -> None:
    """Raise :class:`AccessDeniedError` unless ``access`` is None or has one of ``roles``."""
    if access is None:
        return
    allowed = (roles,) if isinstance(roles, str) else tuple(roles)
    if access.role not in allowed:
        raise AccessDeniedError(
            f"{access.role} {access.person_id} may not {action}; "
            f"ask someone with the role {' or '.join(allowed)}"
        )


def can_see_cohort(records: Records, access: AccessContext | None, cohort_id: str) -> bool:
    """Admins see every cohort, educators those they teach, trainees none."""
    from surgsim.records.db import CohortMemberRow, CohortRow

    if access is None or access.role == "admin":
        return records._read("read cohorts", lambda s: s.get(CohortRow, cohort_id) is not None)
    if access.role != "educator":
        return False
    row = records._read(
        "read cohorts", lambda s: s.get(CohortMemberRow, (cohort_id, access.person_id))
    )
    return row is not None and row.role == "educator"


def add_user(
    records: Records,
    username: str,
    password: str,
    role: str = "trainee",
    *,
    display_name: str | None = None,
    person_id: str | None = None,
    cohorts: Iterable[str] = (),
    access: AccessContext | None = None,
) -> str:
    """Create a local account (and its person) or set the password of an existing person.

    Parameters
    ----------
    username : str
        Login name (unique; kept in the lab database only).
    password : str
        At least 8 characters; stored as an argon2id hash.
    role : {"trainee", "educator", "admin"}
    display_name : str, optional
        Shown in the lab's own screens; never exported.
    person_id : str, optional
        Opaque id of an existing person (e.g. a trainee who already has attempts);
        default: a new one.
    cohorts : iterable of str
        Cohorts to join, as a trainee (trainee) or an educator (educator, admin).
    access : AccessContext, optional
        Who does it: must be an admin (None: the station itself, for the first account).

    Returns
    -------
    str
        The person's opaque id.
    """
    from surgsim.records.db import (
        ROLES,
        CohortMemberRow,
        CohortRow,
        PersonRow,
        _check_trainee_id,
        new_person_id,
    )

    require_role(access, "admin", "add accounts")
    if role not in ROLES:
        raise RecordsError(f"unknown role {role!r}; use one of {', '.join(ROLES)}")
    if not isinstance(username, str) or not _USERNAME.match(username):
        raise RecordsError(
            f"user name {username!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        )
    pid = person_id or new_person_id(role)
    _check_trainee_id(pid)
    cohorts = list(cohorts)
    for c in cohorts:
        _check_trainee_id(c)
    pw_hash = hash_password(password)
    now = datetime.now(UTC)

    def write(s: Session) -> str:
        other = s.execute(select(PersonRow).where(PersonRow.username == username)).scalar_one_or_none()
        if other is not None and other.id != pid:
            raise RecordsError(f"the user name {username!r} is taken; choose another")
        person = s.get(PersonRow, pid)
        if person is None:
            person = PersonRow(id=pid, created_at=now, role=role)
            s.add(person)
        person.role = role
        person.username = username
        person.password_hash = pw_hash
        person.active = True
        if display_name is not None:
            person.display_name = display_name[:200]
        s.flush()
        for c in cohorts:
            if s.get(CohortRow, c) is None:
                s.add(CohortRow(id=c, name=c, created_at=now))
                s.flush()
            member_role = "trainee" if role == "trainee" else "educator"
            row = s.get(CohortMemberRow, (c, pid))
            if row is None:
                s.add(CohortMemberRow(cohort_id=c, person_id=pid, role=member_role))
            else:
                row.role = member_role
        return pid

    return records._write(f"add the account {username!r}", write)


def login(records: Records, username: str, password: str) -> AccessContext:
    """Check a user name and password; the signed-in person's :class:`AccessContext`.

    Raises
    ------
    AccessDeniedError
        Unknown user, wrong password or disabled account (one message for all three).
    """
    from surgsim.records.db import PersonRow

    row = records._read(
        "read accounts",
        lambda s: s.execute(
            select(PersonRow.id, PersonRow.role, PersonRow.password_hash, PersonRow.active).where(
                PersonRow.username == username
            )
        ).first(),
    )
    if row is None or not row.password_hash or not row.active:
        verify_password(_DUMMY_HASH(), password or "")  # same time whether the user exists
        raise AccessDeniedError(
            f"sign-in failed for {username!r} on {records.masked_url}: unknown user or wrong password"
        )
    if not verify_password(row.password_hash, password or ""):
        raise AccessDeniedError(
            f"sign-in failed for {username!r} on {records.masked_url}: unknown user or wrong password"
        )
    hasher = _hasher()
    if hasher.check_needs_rehash(row.password_hash):
        new_hash = hasher.hash(password)

        def rehash(s: Session) -> None:
            s.get(PersonRow, row.id).password_hash = new_hash

        records._write("update a password hash", rehash, saved_note=False)
    return AccessContext(person_id=row.id, role=row.role, username=username)


_dummy: list[str] = []


def _DUMMY_HASH() -> str:  # noqa: N802 - a lazily made constant
    if not _dummy:
        _dummy.append(_hasher().hash("not-a-real-password"))
    return _dummy[0]


def list_users(records: Records, *, access: AccessContext | None = None) -> list[dict[str, Any]]:
    """Accounts and people, for the lab's own screens (display names included).

    Admins (and the station) see everyone; educators see the members of their
    cohorts; trainees only themselves.
    """
    from surgsim.records.db import CohortMemberRow, PersonRow

    stmt = select(
        PersonRow.id, PersonRow.username, PersonRow.role, PersonRow.display_name, PersonRow.active
    ).order_by(PersonRow.id)
    if access is not None and access.role == "educator":
        mine = select(CohortMemberRow.cohort_id).where(
            CohortMemberRow.person_id == access.person_id, CohortMemberRow.role == "educator"
        )
        members = select(CohortMemberRow.person_id).where(CohortMemberRow.cohort_id.in_(mine))
        stmt = stmt.where((PersonRow.id.in_(members)) | (PersonRow.id == access.person_id))
    elif access is not None and access.role != "admin":
        stmt = stmt.where(PersonRow.id == access.person_id)
    rows = records._read("read accounts", lambda s: s.execute(stmt).all())
    cohorts = records._read(
        "read cohorts",
        lambda s: s.execute(
            select(CohortMemberRow.person_id, CohortMemberRow.cohort_id, CohortMemberRow.role)
        ).all(),
    )
    by_person: dict[str, list[str]] = {}
    for pid, cid, role in cohorts:
        by_person.setdefault(pid, []).append(cid if role == "trainee" else f"{cid} (educator)")
    return [
        {
            "id": r.id,
            "username": r.username,
            "role": r.role,
            "display_name": r.display_name,
            "active": bool(r.active),
            "cohorts": sorted(by_person.get(r.id, [])),
        }
        for r in rows
    ]


def count_accounts(records: Records) -> int:
    """Number of people who can sign in."""
    from surgsim.records.db import PersonRow

    return records._read(
        "read accounts",
        lambda s: s.execute(
            select(func.count()).select_from(PersonRow).where(PersonRow.password_hash.is_not(None))
        ).scalar_one(),
    )
