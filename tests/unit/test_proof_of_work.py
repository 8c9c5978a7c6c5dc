"""The proof-of-work gate's checks, without any server: forged, stale, foreign, too easy
and wrong solutions are refused; a right one is accepted with its id to spend."""

from __future__ import annotations

import time

import pytest

from gateway.proof_of_work import ProofOfWork, leading_zero_bits, solution_hash, solve
from shared.errors import PowInvalid, PowRequired

pytestmark = pytest.mark.unit

ROOM, CLIENT = "sale", "client-a"


def test_leading_zero_bits() -> None:
    assert leading_zero_bits(b"\x00\x00\x01" + b"\xff" * 29) == 23
    assert leading_zero_bits(b"\x80" + b"\x00" * 31) == 0
    assert leading_zero_bits(b"\x0f") == 4


def test_a_solved_challenge_passes_once_per_id() -> None:
    pow_ = ProofOfWork("secret")
    c = pow_.challenge(ROOM, CLIENT, 10)
    nonce = solve(c.challenge, 10)
    assert leading_zero_bits(solution_hash(c.challenge, nonce)) >= 10
    spent = pow_.check(ROOM, CLIENT, 10, c.challenge, nonce)
    assert spent is not None
    assert spent.expires_at == c.expires_at
    again = pow_.check(ROOM, CLIENT, 10, c.challenge, nonce)
    assert again is not None
    assert again.id == spent.id  # the same id: the join spends it once (enqueue.lua)


def test_no_work_asked_no_work_checked() -> None:
    assert ProofOfWork("s").check(ROOM, CLIENT, 0, None, None) is None


def test_missing_wrong_forged_foreign_stale_and_too_easy_are_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pow_ = ProofOfWork("secret")
    c = pow_.challenge(ROOM, CLIENT, 12)
    right = solve(c.challenge, 12)
    with pytest.raises(PowRequired):
        pow_.check(ROOM, CLIENT, 12, None, None)
    wrong = next(
        str(n) for n in range(10_000) if leading_zero_bits(solution_hash(c.challenge, str(n))) < 12
    )
    with pytest.raises(PowInvalid):
        pow_.check(ROOM, CLIENT, 12, c.challenge, wrong)
    with pytest.raises(PowInvalid):  # signed with another deployment's secret
        pow_.check(
            ROOM, CLIENT, 12, ProofOfWork("other").challenge(ROOM, CLIENT, 12).challenge, right
        )
    body, _, sig = c.challenge.partition(".")
    with pytest.raises(PowInvalid):  # a statement edited to a lower difficulty
        pow_.check(ROOM, CLIENT, 12, body[:-2] + "AA." + sig, right)
    with pytest.raises(PowInvalid):
        pow_.check("other-room", CLIENT, 12, c.challenge, right)
    with pytest.raises(PowInvalid):
        pow_.check(ROOM, "client-b", 12, c.challenge, right)
    with pytest.raises(PowInvalid):  # the operator raised the difficulty meanwhile
        pow_.check(ROOM, CLIENT, 13, c.challenge, right)
    monkeypatch.setattr(time, "time", lambda: c.expires_at + 1.0)
    with pytest.raises(PowInvalid):
        pow_.check(ROOM, CLIENT, 12, c.challenge, right)
