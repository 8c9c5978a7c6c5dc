"""The proof-of-work gate's checks, without any server: forged, stale, foreign, too easy
and wrong solutions are refused; a right one is accepted with its id to spend."""

from __future__ import annotations

import time

import pytest

from gateway.proof_of_work import ProofOfWork, leading_zero_bits, solution_hash, solve
from shared.errors import PowInvalid

pytestmark = pytest.mark.unit

ROOM, CLIENT = "sale", "client-a"


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(b"\x00\x00\x01" + b"\xff" * 29) == 23
    assert leading_zero_bits(b"\x80" + b"\x00" * 31) == 0
    assert leading_zero_bits(b"\x0f") == 4


def test_a_solved_challenge_passes_with_its_id_and_difficulty() -> None:
    pow_ = ProofOfWork("secret")
    c = pow_.challenge(ROOM, CLIENT, 10)
    nonce = solve(c.challenge, 10)
    assert leading_zero_bits(solution_hash(c.challenge, nonce)) >= 10
    solved = pow_.check(ROOM, CLIENT, c.challenge, nonce)
    assert solved.difficulty == 10
    assert solved.expires_at == c.expires_at
    # the same id every time: the join spends it once (enqueue.lua)
    assert pow_.check(ROOM, CLIENT, c.challenge, nonce).id == solved.id


def test_wrong_forged_foreign_and_stale_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    pow_ = ProofOfWork("secret")
    c = pow_.challenge(ROOM, CLIENT, 12)
    right = solve(c.challenge, 12)
    wrong = next(
        str(n) for n in range(10_000) if leading_zero_bits(solution_hash(c.challenge, str(n))) < 12
    )
    with pytest.raises(PowInvalid):
        pow_.check(ROOM, CLIENT, c.challenge, wrong)
    foreign = ProofOfWork("other").challenge(ROOM, CLIENT, 12).challenge
    with pytest.raises(PowInvalid):  # signed with another deployment's secret
        pow_.check(ROOM, CLIENT, foreign, right)
    body, _, sig = c.challenge.partition(".")
    with pytest.raises(PowInvalid):  # a statement edited (to a lower difficulty, say)
        pow_.check(ROOM, CLIENT, body[:-2] + "AA." + sig, right)
    with pytest.raises(PowInvalid):
        pow_.check("other-room", CLIENT, c.challenge, right)
    with pytest.raises(PowInvalid):
        pow_.check(ROOM, "client-b", c.challenge, right)
    monkeypatch.setattr(time, "time", lambda: c.expires_at + 1.0)
    with pytest.raises(PowInvalid):
        pow_.check(ROOM, CLIENT, c.challenge, right)


def test_made_up_text_in_a_solution_is_refused_not_a_failure() -> None:
    """What a challenge of ours never holds (non-ASCII, lone surrogates) is pow_invalid,
    not an error of ours (a 500 the fuzzer found: comparing a non-ASCII signature raised
    TypeError)."""
    pow_ = ProofOfWork("secret")
    c = pow_.challenge(ROOM, CLIENT, 24)  # (a made-up nonce solves it once in 16 million)
    body, _, sig = c.challenge.partition(".")
    for challenge in (".\u00c3cG", f"{body}.{sig[:-1]}\u00e9", f"{body}\ud800.{sig}"):
        with pytest.raises(PowInvalid):
            pow_.check(ROOM, CLIENT, challenge, "1")
    with pytest.raises(PowInvalid):  # a lone surrogate in the nonce: hashed, and wrong
        pow_.check(ROOM, CLIENT, c.challenge, "\ud9e2" * 40)
