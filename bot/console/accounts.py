"""Agent accounts, console sessions and login attempts (argon2 password hashes).

A session cookie holds a random token; the database keeps only its SHA-256, with the
session's CSRF token, so that consoles are stateless and a restart logs nobody out.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select, update

from bot.db import Agent, AgentSession, LoginAttempt, session_scope, utcnow
from bot.db.models import PRESENCES, ROLES

SESSION_HOURS = 12
# Login rate limit: failures counted over a sliding window, per address and per account.
RATE_WINDOW = dt.timedelta(minutes=15)
MAX_FAILURES_PER_IP = 10
MAX_FAILURES_PER_USERNAME = 5
MIN_PASSWORD_CHARS = 10

_hasher = PasswordHasher()
# Verified against when the username is unknown, so that timing does not reveal accounts.
_DUMMY_HASH = _hasher.hash("guichet-dummy-password")


class AccountError(ValueError):
    pass


@dataclass(frozen=True)
class SignedIn:
    agent_id: int
    username: str
    display_name: str
    role: str
    presence: str
    csrf_token: str

    @property
    def handles_conversations(self) -> bool:
        return self.role in ("agent", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_CHARS:
        raise AccountError(f"le mot de passe doit compter au moins {MIN_PASSWORD_CHARS} caractères")
    return _hasher.hash(password)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Accounts:
    def __init__(self, url: str) -> None:
        self.url = url

    def create(self, username: str, display_name: str, password: str, role: str = "agent") -> int:
        username = username.strip().lower()
        if role not in ROLES:
            raise AccountError(f"rôle inconnu : {role} (agent, editor ou admin)")
        if not username or len(username) > 64 or not username.replace(".", "").replace("-", "").replace("_", "").isalnum():
            raise AccountError("identifiant invalide (lettres, chiffres, . - _)")
        password_hash = hash_password(password)
        with session_scope(self.url) as s:
            if s.execute(select(Agent.id).where(Agent.username == username)).first():
                raise AccountError(f"l'identifiant {username} existe déjà")
            agent = Agent(username=username, display_name=display_name.strip()[:120] or username,
                          password_hash=password_hash, role=role)
            s.add(agent)
            s.flush()
            return agent.id

    def list(self) -> list[Agent]:
        with session_scope(self.url) as s:
            return list(s.execute(select(Agent).order_by(Agent.display_name)).scalars())

    def set_active(self, agent_id: int, active: bool) -> None:
        with session_scope(self.url) as s:
            s.execute(update(Agent).where(Agent.id == agent_id).values(active=active, presence="offline"))
            if not active:
                s.execute(delete(AgentSession).where(AgentSession.agent_id == agent_id))

    # Login ------------------------------------------------------------------------------
    def rate_limited(self, username: str, ip: str) -> bool:
        since = utcnow() - RATE_WINDOW
        with session_scope(self.url) as s:
            by_ip = s.execute(
                select(func.count(LoginAttempt.id)).where(
                    LoginAttempt.ip == ip, LoginAttempt.success.is_(False), LoginAttempt.at >= since)
            ).scalar_one()
            by_user = s.execute(
                select(func.count(LoginAttempt.id)).where(
                    LoginAttempt.username == username.strip().lower()[:64],
                    LoginAttempt.success.is_(False), LoginAttempt.at >= since)
            ).scalar_one()
        return by_ip >= MAX_FAILURES_PER_IP or by_user >= MAX_FAILURES_PER_USERNAME

    def authenticate(self, username: str, password: str, ip: str) -> int | None:
        """The agent id if the password is right (the attempt is recorded either way)."""
        username = username.strip().lower()[:64]
        with session_scope(self.url) as s:
            agent = s.execute(
                select(Agent).where(Agent.username == username, Agent.active.is_(True))
            ).scalar_one_or_none()
            try:
                ok = _hasher.verify(agent.password_hash if agent else _DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                ok = False
            ok = ok and agent is not None
            s.add(LoginAttempt(username=username, ip=ip[:64], success=ok))
            if ok and _hasher.check_needs_rehash(agent.password_hash):
                agent.password_hash = _hasher.hash(password)
            return agent.id if ok else None

    def open_session(self, agent_id: int) -> tuple[str, str]:
        """(cookie token, CSRF token) of a new session; the agent becomes online."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = utcnow()
        with session_scope(self.url) as s:
            s.execute(delete(AgentSession).where(AgentSession.expires_at < now))
            s.add(AgentSession(token_hash=token_hash(token), agent_id=agent_id, csrf_token=csrf,
                               expires_at=now + dt.timedelta(hours=SESSION_HOURS)))
            s.execute(update(Agent).where(Agent.id == agent_id).values(presence="online", last_seen_at=now))
        return token, csrf

    def session(self, token: str) -> SignedIn | None:
        if not token:
            return None
        with session_scope(self.url) as s:
            row = s.execute(
                select(AgentSession).where(AgentSession.token_hash == token_hash(token))
            ).scalar_one_or_none()
            if row is None or row.expires_at < utcnow() or not row.agent.active:
                return None
            agent = row.agent
            return SignedIn(agent.id, agent.username, agent.display_name, agent.role, agent.presence,
                            row.csrf_token)

    def close_session(self, token: str, agent_id: int) -> None:
        with session_scope(self.url) as s:
            s.execute(delete(AgentSession).where(AgentSession.token_hash == token_hash(token)))
            remaining = s.execute(
                select(func.count(AgentSession.id)).where(AgentSession.agent_id == agent_id)
            ).scalar_one()
            if not remaining:
                s.execute(update(Agent).where(Agent.id == agent_id).values(presence="offline"))

    # Presence ---------------------------------------------------------------------------
    def set_presence(self, agent_id: int, presence: str) -> None:
        if presence not in PRESENCES:
            raise AccountError(f"présence inconnue : {presence}")
        with session_scope(self.url) as s:
            s.execute(update(Agent).where(Agent.id == agent_id).values(presence=presence, last_seen_at=utcnow()))

    def seen(self, agent_id: int) -> None:
        with session_scope(self.url) as s:
            s.execute(update(Agent).where(Agent.id == agent_id).values(last_seen_at=utcnow()))

    def colleagues(self, exclude: int) -> list[Agent]:
        """Active agents who can take a conversation, the most available first."""
        order = {"online": 0, "away": 1, "offline": 2}
        with session_scope(self.url) as s:
            agents = s.execute(
                select(Agent).where(Agent.active.is_(True), Agent.id != exclude, Agent.role.in_(("agent", "admin")))
            ).scalars().all()
        return sorted(agents, key=lambda a: (order.get(a.presence, 3), a.display_name))

    def names(self) -> dict[int, str]:
        with session_scope(self.url) as s:
            return dict(s.execute(select(Agent.id, Agent.display_name)).all())
