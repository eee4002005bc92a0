"""app.security's tokens: random, URL-safe, stored as their SHA-256."""

from __future__ import annotations

from app.security import new_token, token_hash


def test_tokens() -> None:
    toks = {new_token() for _ in range(200)}
    assert len(toks) == 200 and all(len(t) >= 43 and not t.startswith("-") for t in toks)
    assert token_hash("a") == token_hash("a") != token_hash("b") and len(token_hash("a")) == 64
