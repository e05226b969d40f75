"""Reviewer sign-off: a decision counts only with a proof made by the reviewer's own key.

Each reviewer holds an Ed25519 private key; the platform keeps only the public keys (`.platform/reviewers.json`,
owner-only, outside the Prefect database). A proof is a signature over (flow run id, model version, decision,
time, name). Public keys, proofs, run inputs and logs can all be read without letting anyone forge a proof:
signing needs the private key, which never leaves the reviewer's machine. A proof is bound to one run, one
version and one decision, and expires (`ttl_s`), so one seen in the Prefect database cannot be replayed.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from lensflow.core.storage import owner_only_file

KEY_PREFIX = "lfrk1"  # a reviewer's private key: lfrk1.<name>.<seed>
PUBLIC_PREFIX = "lfpk1"  # a reviewer's public key: lfpk1.<name>.<key>
PROOF_PREFIX = "lfrp1"  # a proof: lfrp1.<name>.<decision>.<unix time>.<signature>
DECISIONS = ("approve", "reject")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
CLOCK_SKEW_S = 60  # a proof dated this far in the future is still accepted


class SignoffError(ValueError):
    """A key, public key or proof that is malformed, unknown, or does not verify."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError as exc:
        raise SignoffError("not valid base64") from exc


def check_name(name: str) -> str:
    name = name.strip()
    if not NAME.match(name):
        raise SignoffError(
            f"reviewer name {name!r} is not usable: 1-64 letters, digits and . _ @ -, starting with a letter or digit"
        )
    return name


def _split(text: str, prefix: str, tail: int, what: str) -> list[str]:
    """`prefix.<name>.<tail fields>` -> [name, *tail fields]; names may hold dots."""
    parts = text.strip().split(".")
    if len(parts) < tail + 2 or parts[0] != prefix:
        raise SignoffError(f"not a lensflow {what} (expected {prefix}.NAME...)")
    return [".".join(parts[1 : len(parts) - tail]), *parts[len(parts) - tail :]]


@dataclass(frozen=True)
class ReviewerKey:
    """A reviewer's private key, as shown once by `lensflow reviewers add` (or `keygen`)."""

    name: str
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> ReviewerKey:
        return cls(check_name(name), Ed25519PrivateKey.generate())

    @classmethod
    def parse(cls, text: str) -> ReviewerKey:
        name, seed = _split(text, KEY_PREFIX, 1, "reviewer key")
        raw = _unb64(seed)
        if len(raw) != 32:
            raise SignoffError("reviewer key has the wrong length")
        return cls(check_name(name), Ed25519PrivateKey.from_private_bytes(raw))

    @classmethod
    def load(cls, path: Path) -> ReviewerKey:
        try:
            return cls.parse(path.read_text())
        except OSError as exc:
            raise SignoffError(f"cannot read the reviewer key {path}: {exc.strerror}") from exc

    def text(self) -> str:
        from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

        raw = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return f"{KEY_PREFIX}.{self.name}.{_b64(raw)}"

    def public_text(self) -> str:
        raw = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return f"{PUBLIC_PREFIX}.{self.name}.{_b64(raw)}"

    def save(self, path: Path) -> None:
        """Write the key owner-only (0600), refusing to replace an existing file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.text() + "\n")

    def sign(self, run_id: str, version: int, decision: str, at: int | None = None) -> str:
        """A proof that this reviewer decides `decision` on `version` in flow run `run_id`."""
        at = int(time.time()) if at is None else at
        signature = self.private.sign(message(run_id, version, decision, at, self.name))
        return f"{PROOF_PREFIX}.{self.name}.{decision}.{at}.{_b64(signature)}"


def parse_public(text: str) -> tuple[str, str]:
    """`lfpk1.<name>.<key>` -> (name, key), checked to be an Ed25519 public key."""
    name, key = _split(text, PUBLIC_PREFIX, 1, "public key")
    raw = _unb64(key)
    if len(raw) != 32:
        raise SignoffError("public key has the wrong length")
    Ed25519PublicKey.from_public_bytes(raw)
    return check_name(name), key


def message(run_id: str, version: int, decision: str, at: int, name: str) -> bytes:
    """The signed bytes: every field a replay could change, under a purpose label."""
    if decision not in DECISIONS:
        raise SignoffError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    return "\n".join(["lensflow-review-v1", str(run_id), str(int(version)), decision, str(int(at)), name]).encode()


class ReviewerStore:
    """The registered reviewers: name -> public key, in one owner-only JSON file. Removing a name revokes its key."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, dict]:
        if not self.path.exists():
            return {}
        try:
            return json.loads(self.path.read_text())["reviewers"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SignoffError(f"the reviewer registry {self.path} is unreadable: {exc}") from exc

    def names(self) -> list[str]:
        return sorted(self.load())

    def _write(self, reviewers: dict[str, dict]) -> None:
        owner_only_file(self.path, json.dumps({"reviewers": reviewers}, indent=2, sort_keys=True) + "\n")

    def add(self, public: str, replace: bool = False) -> str:
        """Register a public key (`lfpk1.<name>.<key>`); an existing name needs `replace` (a key rotation)."""
        name, key = parse_public(public)
        reviewers = self.load()
        if name in reviewers and not replace:
            raise SignoffError(
                f"reviewer {name!r} is already registered; `--rotate` replaces their key (the old one stops working)"
            )
        reviewers[name] = {"public_key": key, "added_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}
        self._write(reviewers)
        return name

    def remove(self, name: str) -> None:
        reviewers = self.load()
        if name not in reviewers:
            raise SignoffError(
                f"reviewer {name!r} is not registered (registered: {', '.join(sorted(reviewers)) or 'none'})"
            )
        del reviewers[name]
        self._write(reviewers)

    def verify(
        self, proof: str, run_id: str, version: int, decision: str, ttl_s: float, now: float | None = None
    ) -> str:
        """The reviewer who signed `proof` for exactly this run, version and decision, within `ttl_s`; else
        SignoffError saying why (the reason never repeats the proof)."""
        if not proof or not proof.strip():
            raise SignoffError("no proof: paste the code `lensflow review code RUN_ID` prints")
        name, signed_decision, at, signature = _split(proof, PROOF_PREFIX, 3, "review code")
        if not NAME.match(name) or signed_decision not in DECISIONS:  # never echo unchecked text into the page
            raise SignoffError("not a lensflow review code (a malformed name or decision)")
        if signed_decision != decision:
            raise SignoffError(f"the code is for {signed_decision!r}, the form says {decision!r}")
        entry = self.load().get(name)
        if entry is None:
            raise SignoffError(f"{name!r} is not a registered reviewer (`lensflow reviewers add {name}`)")
        try:
            at_s = int(at)
        except ValueError as exc:
            raise SignoffError("the code's time is not a number") from exc
        try:
            Ed25519PublicKey.from_public_bytes(_unb64(entry["public_key"])).verify(
                _unb64(signature), message(run_id, version, decision, at_s, name)
            )
        except (InvalidSignature, ValueError) as exc:
            raise SignoffError(
                f"the code does not verify with {name!r}'s key for this run (flow run {run_id}, v{version}): "
                "made with another key, or for another run or version"
            ) from exc
        now = time.time() if now is None else now
        if at_s > now + CLOCK_SKEW_S:
            raise SignoffError(f"the code is dated {at_s - now:.0f} s in the future: check the reviewer's clock")
        if now - at_s > ttl_s:
            raise SignoffError(
                f"the code expired {now - at_s - ttl_s:.0f} s ago (codes last {ttl_s:.0f} s): make a new one"
            )
        return name
