"""API keys and tenants: create, authenticate, list and revoke keys; install the first admin key.

A key reads ``aer_<prefix>_<secret>``. The prefix (8 random characters) is stored in clear, so
a key is found by one indexed lookup and can be named in lists and logs; of the secret only its
SHA-256 is stored. A fast hash is enough here, unlike for passwords: the secret is 256 random
bits (``secrets.token_urlsafe(32)``), so there is nothing to guess from the hash, and a slow
hash would only slow every request down.

Each function takes an open session and never commits (the caller's scope does).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.store.errors import StoreError
from api.store.settings import API_KEY_PATTERN, Settings
from api.store.tables import DEFAULT_TENANT, ApiKey, Tenant, utcnow

#: What a key may do: ``read`` jobs and results, ``submit`` (and delete) jobs, ``admin``
#: (folder jobs, key management, service settings). Scopes do not imply each other.
SCOPES = ("read", "submit", "admin")
#: How stale ``last_used_at`` may get: it is written at most once per this interval per key.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_TENANT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_PREFIX_ALPHABET = string.ascii_lowercase + string.digits


class KeyNotFoundError(StoreError, LookupError):
    """No key has that id (in that tenant)."""

    code = "key_not_found"
    status = 404


class InvalidKeyRequestError(StoreError, ValueError):
    """A key's scopes, name or tenant is not acceptable."""

    code = "invalid_parameters"
    status = 422


@dataclass(frozen=True)
class Principal:
    """Who a request acts for: the key's tenant, its scopes, and the key's id and prefix."""

    tenant_id: str
    scopes: frozenset[str]
    key_id: int
    prefix: str

    def can(self, scope: str) -> bool:
        """Whether the key holds ``scope``."""
        return scope in self.scopes


def hash_secret(secret: str) -> str:
    """The hex SHA-256 stored for a key's secret part."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> str:
    """A fresh, well-formed key (not stored anywhere)."""
    prefix = "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
    return f"aer_{prefix}_{secrets.token_urlsafe(32)}"


def parse_key(key: str) -> tuple[str, str] | None:
    """``(prefix, secret)`` of a well-formed key, else None."""
    match = API_KEY_PATTERN.fullmatch(key)
    return (match[1], match[2]) if match else None


def ensure_tenant(session: Session, tenant_id: str) -> Tenant:
    """The tenant ``tenant_id``, created when missing."""
    if not _TENANT_ID.fullmatch(tenant_id):
        raise InvalidKeyRequestError(
            f"tenant {tenant_id!r}: use 1-64 of a-z, 0-9, '_' and '-', not starting with '_'/'-'"
        )
    tenant = session.get(Tenant, tenant_id)
    if tenant is None:
        tenant = Tenant(id=tenant_id, created_at=utcnow())
        session.add(tenant)
        session.flush()
    return tenant


def parse_scopes(scopes: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Scopes from ``"read,submit"`` or a list, validated and in :data:`SCOPES` order."""
    items = scopes.replace(",", " ").split() if isinstance(scopes, str) else list(scopes)
    unknown = sorted(set(items) - set(SCOPES))
    if unknown or not items:
        raise InvalidKeyRequestError(
            f"scopes must be some of {', '.join(SCOPES)}, got {', '.join(items) or 'none'}"
        )
    return tuple(s for s in SCOPES if s in items)


def create_key(
    session: Session,
    *,
    tenant_id: str,
    name: str,
    scopes: str | list[str] | tuple[str, ...],
    expires_at: datetime | None = None,
    key: str | None = None,
) -> tuple[ApiKey, str]:
    """Store a new key of ``tenant_id`` (created when missing); returns the row and the key.

    ``key`` installs a given well-formed key (``AER_BOOTSTRAP_KEY``) instead of a random one.
    The key is returned once here and cannot be read back later.
    """
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise InvalidKeyRequestError("name must have 1 to 100 characters")
    key = key or generate_key()
    parts = parse_key(key)
    if parts is None:
        raise InvalidKeyRequestError("the key is not of the form aer_<prefix>_<secret>")
    ensure_tenant(session, tenant_id)
    row = ApiKey(
        tenant_id=tenant_id,
        name=name,
        prefix=parts[0],
        secret_hash=hash_secret(parts[1]),
        scopes=" ".join(parse_scopes(scopes)),
        created_at=utcnow(),
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return row, key


def authenticate(session: Session, key: str) -> Principal | None:
    """The principal of a valid key (well-formed, known, matching, unrevoked, unexpired), else
    None. Records the use in ``last_used_at`` at most once per :data:`LAST_USED_RESOLUTION`."""
    parts = parse_key(key)
    if parts is None:
        return None
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == parts[0]))
    if row is None or not hmac.compare_digest(row.secret_hash, hash_secret(parts[1])):
        return None
    now = utcnow()
    if not _usable(row, now):
        return None
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        session.execute(
            update(ApiKey)
            .where(ApiKey.id == row.id)
            .values(last_used_at=now)
            .execution_options(synchronize_session=False)
        )
    return _principal(row)


def principal_of(session: Session, key_id: int) -> Principal | None:
    """The principal of key ``key_id`` while it is usable (for a login session), else None."""
    row = session.get(ApiKey, key_id) if 0 <= key_id < 2**31 else None
    return _principal(row) if row is not None and _usable(row, utcnow()) else None


def _usable(row: ApiKey, now: datetime) -> bool:
    return row.revoked_at is None and (row.expires_at is None or row.expires_at > now)


def _principal(row: ApiKey) -> Principal:
    return Principal(row.tenant_id, frozenset(row.scopes.split()), row.id, row.prefix)


def list_keys(session: Session, *, tenant_id: str | None = None) -> list[ApiKey]:
    """Keys in id order, of one tenant or (``None``) of all, revoked ones included."""
    stmt = select(ApiKey).order_by(ApiKey.id)
    if tenant_id is not None:
        stmt = stmt.where(ApiKey.tenant_id == tenant_id)
    return list(session.scalars(stmt))


def find_key(session: Session, ref: str | int) -> ApiKey:
    """The key with id or prefix ``ref``; raises :class:`KeyNotFoundError`."""
    ref = str(ref)
    if ref.isdigit():
        row = session.get(ApiKey, int(ref)) if int(ref) < 2**31 else None
    else:
        row = session.scalar(select(ApiKey).where(ApiKey.prefix == ref.removeprefix("aer_")))
    if row is None:
        raise KeyNotFoundError(f"no key {ref!r}")
    return row


def revoke_key(session: Session, ref: str | int) -> ApiKey:
    """Revoke the key with id or prefix ``ref`` (idempotent); it stops working at once."""
    row = find_key(session, ref)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def has_admin_key(session: Session) -> bool:
    """Whether some unrevoked, unexpired key holds the ``admin`` scope."""
    now = utcnow()
    rows = session.scalars(select(ApiKey).where(ApiKey.revoked_at.is_(None)))
    return any("admin" in row.scopes.split() and _usable(row, now) for row in rows)


def bootstrap_admin_key(session: Session, settings: Settings) -> str | None:
    """Install the first admin key (of the ``default`` tenant); returns a random key to show
    once, or None when nothing new must be shown.

    With ``AER_BOOTSTRAP_KEY`` set, that key is installed unless it is already known (a revoked
    one stays revoked). Without it, a random admin key is created when no usable admin key
    exists.
    """
    if settings.bootstrap_key:
        prefix, _ = parse_key(settings.bootstrap_key) or ("", "")
        if session.scalar(select(ApiKey.id).where(ApiKey.prefix == prefix)) is None:
            create_key(
                session,
                tenant_id=DEFAULT_TENANT,
                name="bootstrap (AER_BOOTSTRAP_KEY)",
                scopes=SCOPES,
                key=settings.bootstrap_key,
            )
        return None
    if has_admin_key(session):
        return None
    _, key = create_key(session, tenant_id=DEFAULT_TENANT, name="bootstrap admin", scopes=SCOPES)
    return key
