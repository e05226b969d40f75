"""Reviewer sign-off (lensflow.core.signoff): only the holder of a registered key can make a proof, and a proof
decides one run, one version and one decision, for a limited time."""

import stat
import time

import pytest

from lensflow.core.signoff import ReviewerKey, ReviewerStore, SignoffError, parse_public

RUN = "0b5e2c1e-2d7c-4a5e-9d57-0d1f6c1d7a11"


@pytest.fixture
def store(tmp_path):
    return ReviewerStore(tmp_path / ".platform" / "reviewers.json")


def test_a_proof_verifies_for_its_run_version_and_decision_only(store):
    alice = ReviewerKey.generate("alice")
    store.add(alice.public_text())
    proof = alice.sign(RUN, 3, "approve")
    assert store.verify(proof, RUN, 3, "approve", ttl_s=900) == "alice"
    with pytest.raises(SignoffError, match="another run or version"):
        store.verify(proof, "another-run", 3, "approve", ttl_s=900)
    with pytest.raises(SignoffError, match="another run or version"):
        store.verify(proof, RUN, 4, "approve", ttl_s=900)
    with pytest.raises(SignoffError, match="is for 'approve', the form says 'reject'"):
        store.verify(proof, RUN, 3, "reject", ttl_s=900)
    # editing any field of the proof breaks it
    prefix, name, decision, at, sig = proof.split(".")
    for forged in (
        f"{prefix}.{name}.{decision}.{int(at) + 1}.{sig}",
        f"{prefix}.{name}.{decision}.{at}.{'B' if sig[0] == 'A' else 'A'}{sig[1:]}",
    ):
        with pytest.raises(SignoffError, match="does not verify"):
            store.verify(forged, RUN, 3, "approve", ttl_s=900)


def test_a_name_without_its_key_proves_nothing(store):
    store.add(ReviewerKey.generate("alice").public_text())
    stranger = ReviewerKey.generate("alice")  # a key of their own, in alice's name
    with pytest.raises(SignoffError, match="does not verify with 'alice'"):
        store.verify(stranger.sign(RUN, 1, "approve"), RUN, 1, "approve", ttl_s=900)
    for empty in ("", "  "):
        with pytest.raises(SignoffError, match="no proof"):
            store.verify(empty, RUN, 1, "approve", ttl_s=900)
    for junk in ("alice", "lfrp1.alice", "lfrp1.alice.approve.notatime.AAAA", "lfrk1.alice.AAAA"):
        with pytest.raises(SignoffError):
            store.verify(junk, RUN, 1, "approve", ttl_s=900)
    # text from a code is echoed into the review page only when it is a valid name
    with pytest.raises(SignoffError) as refused:
        store.verify("lfrp1.[ok](http://evil.example).approve.1.AAAA", RUN, 1, "approve", ttl_s=900)
    assert "evil" not in str(refused.value)


def test_expired_and_future_proofs_are_refused(store):
    alice = ReviewerKey.generate("alice")
    store.add(alice.public_text())
    now = time.time()
    with pytest.raises(SignoffError, match="expired"):
        store.verify(alice.sign(RUN, 1, "approve", at=int(now) - 901), RUN, 1, "approve", ttl_s=900, now=now)
    with pytest.raises(SignoffError, match="in the future"):
        store.verify(alice.sign(RUN, 1, "approve", at=int(now) + 600), RUN, 1, "approve", ttl_s=900, now=now)
    assert store.verify(alice.sign(RUN, 1, "approve", at=int(now) - 899), RUN, 1, "approve", ttl_s=900, now=now)


def test_removing_or_rotating_a_reviewer_revokes_their_key(store):
    alice = ReviewerKey.generate("alice")
    store.add(alice.public_text())
    with pytest.raises(SignoffError, match="already registered"):
        store.add(ReviewerKey.generate("alice").public_text())
    rotated = ReviewerKey.generate("alice")
    store.add(rotated.public_text(), replace=True)
    with pytest.raises(SignoffError, match="does not verify"):
        store.verify(alice.sign(RUN, 1, "approve"), RUN, 1, "approve", ttl_s=900)
    assert store.verify(rotated.sign(RUN, 1, "approve"), RUN, 1, "approve", ttl_s=900) == "alice"
    store.remove("alice")
    assert store.names() == []
    with pytest.raises(SignoffError, match="not a registered reviewer"):
        store.verify(rotated.sign(RUN, 1, "approve"), RUN, 1, "approve", ttl_s=900)
    with pytest.raises(SignoffError, match="not registered"):
        store.remove("alice")


def test_the_platform_keeps_only_public_keys_owner_only(store, tmp_path):
    alice = ReviewerKey.generate("alice.smith@example.com")
    store.add(alice.public_text())
    text = store.path.read_text()
    assert alice.text().split(".")[-1] not in text  # the private half is nowhere on the platform
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert parse_public(alice.public_text())[0] == "alice.smith@example.com"
    # the key round-trips through its text and file forms; a key file is written 0600 and never overwritten
    assert ReviewerKey.parse(alice.text()).public_text() == alice.public_text()
    alice.save(tmp_path / "alice.key")
    assert stat.S_IMODE((tmp_path / "alice.key").stat().st_mode) == 0o600
    assert ReviewerKey.load(tmp_path / "alice.key").public_text() == alice.public_text()
    with pytest.raises(FileExistsError):
        alice.save(tmp_path / "alice.key")
    for bad in ("", "-alice", "a b", "x" * 65, "alice\n"):
        if bad.strip() != bad and bad.strip():
            continue
        with pytest.raises(SignoffError, match="not usable"):
            ReviewerKey.generate(bad)


def test_a_form_answer_is_checked_against_the_name_typed(store):
    from lensflow.tasks.helpers.approval import Approval, Sought, proof_problem

    alice, bob = ReviewerKey.generate("alice"), ReviewerKey.generate("bob")
    store.add(alice.public_text())
    store.add(bob.public_text())
    sought = Sought(RUN, 2, "lensflow-encoder")

    def answer(reviewer, code, decision="approve"):
        return proof_problem(Approval(decision=decision, reviewer=reviewer, code=code), store, sought, 900)

    assert answer("alice", alice.sign(RUN, 2, "approve")) is None
    assert answer(" alice ", alice.sign(RUN, 2, "reject"), "reject") is None
    assert "made by 'bob'" in answer("alice", bob.sign(RUN, 2, "approve"))
    assert "no proof" in answer("alice", "")
    shown = answer("[approved](http://evil.example)", "")
    assert "evil" not in shown and "(not a reviewer name)" in shown
    assert "no reviewers are registered" in proof_problem(
        Approval(decision="approve", reviewer="alice", code=alice.sign(RUN, 2, "approve")),
        ReviewerStore(store.path.with_name("none.json")),
        sought,
        900,
    )
