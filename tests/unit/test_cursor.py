"""Page cursors: round trip, tamper evidence and the errors bad cursors raise."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import string
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from feedctl.cache.keys import KINDS, FeedKind, FeedRef
from feedctl.errors import EXIT_USAGE, BadInputError, CursorError
from feedctl.read import cursor as cursor_module
from feedctl.read.cursor import (
    MAX_IN_PROGRESS,
    Pin,
    Position,
    decode_cursor,
    encode_cursor,
    require_fresh,
)

SECRET = "unit-test-secret"
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
SCORES = st.floats(allow_nan=False, allow_infinity=False)
MOMENTS = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
FEEDS = st.builds(FeedRef, st.sampled_from(KINDS), INT64)
SECRETS = st.text(min_size=1, max_size=40)
URLSAFE = string.ascii_uppercase + string.ascii_lowercase + string.digits + "-_"
# A pin with no transaction in progress: 51 bytes of body and 12 of tag, 63 bytes, exactly
# 84 base64url characters of 6 bits each. Each transaction in progress adds 8 bytes.
RAW_BYTES = 79
TOKEN_LENGTH = 106
PIN = Pin(1234, 1240, (1235, 1238), datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
EMPTY_PIN = Pin(1234, 1234, (), datetime(2026, 11, 1, 12, 0, tzinfo=UTC))


@st.composite
def pins(draw: st.DrawFn) -> Pin:
    xmin = draw(st.integers(min_value=3, max_value=2**64 - 2))
    xmax = draw(st.integers(min_value=xmin, max_value=2**64 - 1))
    in_progress = draw(
        st.lists(
            st.integers(min_value=xmin, max_value=max(xmin, xmax - 1)),
            max_size=MAX_IN_PROGRESS if xmax > xmin else 0,
            unique=True,
        )
    )
    return Pin(xmin, xmax, tuple(sorted(in_progress)), draw(MOMENTS))


def encode(feed: FeedRef, score: float, post_id: int, secret: str, pin: Pin = EMPTY_PIN) -> str:
    return encode_cursor(feed, Position(score, post_id, pin), secret)


def decode(token: str, feed: FeedRef, secret: str) -> tuple[float, int]:
    position = decode_cursor(token, feed, secret)
    return position.score, position.post_id


def _raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def _token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _example() -> tuple[FeedRef, str]:
    feed = FeedRef("user", 5)
    return feed, encode(feed, 1.5, 42, SECRET)


def test_cursor_error_is_bad_input_with_usage_exit_code() -> None:
    assert issubclass(CursorError, BadInputError)
    assert CursorError.exit_code == EXIT_USAGE == 2


def test_example_round_trip_and_shape() -> None:
    feed, token = _example()
    assert len(token) == TOKEN_LENGTH
    assert set(token) <= set(URLSAFE)
    assert decode_cursor(token, feed, SECRET) == Position(1.5, 42, EMPTY_PIN)


def test_cursor_carries_the_cached_version_of_a_page_read_from_redis() -> None:
    feed = FeedRef("user", 5)
    position = Position(1.5, 42, PIN, ("00ab12cd34ef5678", 17))
    token = encode_cursor(feed, position, SECRET)
    assert decode_cursor(token, feed, SECRET) == position
    odd = Position(1.5, 42, PIN, ("not-a-fence-token", 3))  # stored as none: checked instead
    assert decode_cursor(encode_cursor(feed, odd, SECRET), feed, SECRET).cached is None


def test_version_2_cursors_still_decode() -> None:
    feed = FeedRef("user", 5)
    body = struct.pack(">BBqdqQQqB", 2, 1, 5, 1.5, 42, 0, 0, 0, 0)
    tag = hmac.new(SECRET.encode(), body, hashlib.sha256).digest()[:12]
    position = decode_cursor(_token(body + tag), feed, SECRET)
    assert (position.score, position.post_id, position.cached) == (1.5, 42, None)


def test_pin_carries_the_transactions_in_progress() -> None:
    feed = FeedRef("user", 5)
    token = encode(feed, 1.5, 42, SECRET, PIN)
    assert len(token) == TOKEN_LENGTH + 21  # two more 8-byte transaction ids
    assert decode_cursor(token, feed, SECRET).pin == PIN
    assert PIN.snapshot == "1234:1240:1235,1238"


def test_pin_of_snapshot_text() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert Pin.of_snapshot("10:20:12,15", at) == Pin(10, 20, (12, 15), at)
    assert Pin.of_snapshot("10:10:", at) == Pin(10, 10, (), at)
    crowded = ",".join(str(x) for x in range(100, 100 + MAX_IN_PROGRESS + 1))
    # Too many to carry: keep xmin only (every transaction from xmin on counts as unseen).
    assert Pin.of_snapshot(f"100:500:{crowded}", at) == Pin(100, 100, (), at)


@settings(max_examples=200, deadline=None)
@given(feed=FEEDS, score=SCORES, post_id=INT64, secret=SECRETS, pin=pins())
def test_round_trip(feed: FeedRef, score: float, post_id: int, secret: str, pin: Pin) -> None:
    token = encode(feed, score, post_id, secret, pin)
    assert set(token) <= set(URLSAFE)
    position = decode_cursor(token, feed, secret)
    assert position.post_id == post_id
    assert position.score == score
    assert math.copysign(1.0, position.score) == math.copysign(1.0, score)
    assert position.pin == pin


@pytest.mark.parametrize("score", [math.inf, -math.inf])
def test_infinite_scores_round_trip(score: float) -> None:
    feed = FeedRef("community", 3)
    assert decode(encode(feed, score, 7, SECRET), feed, SECRET) == (score, 7)


def test_fresh_cursor_is_accepted_and_old_one_expires() -> None:
    position = Position(1.0, 2, PIN)
    require_fresh(position, PIN.at + timedelta(hours=23, minutes=59), timedelta(hours=24))
    with pytest.raises(CursorError, match="expired"):
        require_fresh(position, PIN.at + timedelta(hours=24, seconds=1), timedelta(hours=24))


def _signed(body: bytes) -> str:
    return _token(body + cursor_module._tag(body, SECRET))


def test_signed_pin_time_out_of_range_is_rejected() -> None:
    body = struct.pack(">BBqdqQQqB", 2, 1, 9, 1.0, 10, 5, 5, 2**63 - 1, 0)
    with pytest.raises(CursorError, match="out of range"):
        decode_cursor(_signed(body), FeedRef("user", 9), SECRET)


@pytest.mark.parametrize(
    ("xmin", "xmax", "in_progress"),
    [(9, 5, ()), (5, 9, (4,)), (5, 9, (9,)), (5, 9, (12,))],
)
def test_signed_inconsistent_snapshot_is_rejected(
    xmin: int, xmax: int, in_progress: tuple[int, ...]
) -> None:
    head = struct.pack(">BBqdqQQqB", 2, 1, 9, 1.0, 10, xmin, xmax, 0, len(in_progress))
    body = head + b"".join(struct.pack(">Q", x) for x in in_progress)
    with pytest.raises(CursorError, match="inconsistent"):
        decode_cursor(_signed(body), FeedRef("user", 9), SECRET)


def test_signed_count_of_transactions_that_disagrees_with_the_length_is_rejected() -> None:
    head = struct.pack(">BBqdqQQqB", 2, 1, 9, 1.0, 10, 5, 9, 0, 3)
    body = head + struct.pack(">Q", 6)  # says 3, holds 1
    with pytest.raises(CursorError, match="truncated"):
        decode_cursor(_signed(body), FeedRef("user", 9), SECRET)


@settings(max_examples=200, deadline=None)
@given(
    feed=FEEDS,
    score=SCORES,
    post_id=INT64,
    position=st.integers(min_value=0, max_value=RAW_BYTES - 1),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_flipped_byte_is_rejected(
    feed: FeedRef, score: float, post_id: int, position: int, mask: int
) -> None:
    raw = bytearray(_raw(encode(feed, score, post_id, SECRET)))
    assert len(raw) == RAW_BYTES
    raw[position] ^= mask
    with pytest.raises(CursorError):
        decode_cursor(_token(bytes(raw)), feed, SECRET)


@settings(max_examples=200, deadline=None)
@given(
    feed=FEEDS,
    score=SCORES,
    post_id=INT64,
    # Every character carries 6 bits of data.
    position=st.integers(min_value=0, max_value=TOKEN_LENGTH - 1),
    replacement=st.sampled_from(URLSAFE),
)
def test_any_flipped_character_is_rejected(
    feed: FeedRef, score: float, post_id: int, position: int, replacement: str
) -> None:
    token = encode(feed, score, post_id, SECRET)
    assume(token[position] != replacement)
    altered = token[:position] + replacement + token[position + 1 :]
    with pytest.raises(CursorError):
        decode_cursor(altered, feed, SECRET)


@settings(max_examples=100, deadline=None)
@given(feed=FEEDS, score=SCORES, post_id=INT64, data=st.data())
def test_truncated_cursor_is_rejected(
    feed: FeedRef, score: float, post_id: int, data: st.DataObject
) -> None:
    token = encode(feed, score, post_id, SECRET)
    length = data.draw(st.integers(min_value=0, max_value=len(token) - 1))
    with pytest.raises(CursorError):
        decode_cursor(token[:length], feed, SECRET)


@settings(max_examples=100, deadline=None)
@given(
    feed=FEEDS,
    score=SCORES,
    post_id=INT64,
    extra=st.text(alphabet=URLSAFE, min_size=1, max_size=10),
    at_start=st.booleans(),
)
def test_extra_characters_are_rejected(
    feed: FeedRef, score: float, post_id: int, extra: str, at_start: bool
) -> None:
    token = encode(feed, score, post_id, SECRET)
    altered = extra + token if at_start else token + extra
    with pytest.raises(CursorError):
        decode_cursor(altered, feed, SECRET)


@settings(max_examples=100, deadline=None)
@given(feed=FEEDS, score=SCORES, post_id=INT64, secret=SECRETS, other=SECRETS)
def test_other_secret_is_rejected(
    feed: FeedRef, score: float, post_id: int, secret: str, other: str
) -> None:
    assume(secret != other)
    token = encode(feed, score, post_id, secret)
    with pytest.raises(CursorError, match="signature"):
        decode(token, feed, other)


@settings(max_examples=100, deadline=None)
@given(feed=FEEDS, other=FEEDS, score=SCORES, post_id=INT64)
def test_cursor_of_another_feed_is_rejected(
    feed: FeedRef, other: FeedRef, score: float, post_id: int
) -> None:
    assume(feed != other)
    token = encode(feed, score, post_id, SECRET)
    with pytest.raises(CursorError, match="another feed"):
        decode(token, other, SECRET)


@pytest.mark.parametrize(
    ("kind", "feed_id", "other_kind", "other_id"),
    [("user", 7, "community", 7), ("community", 7, "user", 7), ("user", 7, "user", 8)],
)
def test_other_kind_or_other_id_is_rejected(
    kind: FeedKind, feed_id: int, other_kind: FeedKind, other_id: int
) -> None:
    token = encode(FeedRef(kind, feed_id), 3.0, 1, SECRET)
    assert decode(token, FeedRef(kind, feed_id), SECRET) == (3.0, 1)
    with pytest.raises(CursorError, match="another feed"):
        decode_cursor(token, FeedRef(other_kind, other_id), SECRET)


@settings(max_examples=200, deadline=None)
@given(garbage=st.text(max_size=80), feed=FEEDS)
def test_garbage_raises_only_cursor_error(garbage: str, feed: FeedRef) -> None:
    try:
        decoded = decode(garbage, feed, SECRET)
    except CursorError as exc:
        assert str(exc)
    else:  # pragma: no cover - forging a 96-bit tag by chance does not happen
        pytest.fail(f"garbage {garbage!r} decoded to {decoded}")


@pytest.mark.parametrize("garbage", ["", "!", "é" * 84, "A" * 84, "=" * 4, " " * 100, "\x00"])
def test_garbage_examples_are_cursor_errors(garbage: str) -> None:
    with pytest.raises(CursorError, match="not valid"):
        decode_cursor(garbage, FeedRef("community", 1), SECRET)


@pytest.mark.parametrize("version", [1, 4, 255])
def test_unsupported_version_is_rejected_even_when_signed(version: int) -> None:
    feed = FeedRef("user", 9)
    body = struct.pack(">BBqdqQQqQQB", version, 1, 9, 1.0, 10, 5, 5, 0, 0, 0, 0)
    with pytest.raises(CursorError, match=f"version {version}"):
        decode_cursor(_signed(body), feed, SECRET)


def test_version_1_cursor_of_the_skeleton_is_rejected() -> None:
    feed = FeedRef("user", 9)
    body = struct.pack(">BBqdq", 1, 1, 9, 1.0, 10)  # 26 bytes, 51 characters
    with pytest.raises(CursorError, match="not valid"):
        decode_cursor(_signed(body), feed, SECRET)


def test_signed_nan_score_is_rejected() -> None:
    feed = FeedRef("user", 9)
    token = encode(feed, math.nan, 10, SECRET)
    with pytest.raises(CursorError, match="no score"):
        decode_cursor(token, feed, SECRET)


# One cursor has one spelling: padding, the standard alphabet or other spellings of the
# same bytes are refused, even where the signed bytes would be unchanged.


@pytest.mark.parametrize("suffix", ["=", "==", "==="])
def test_padding_appended_is_rejected(suffix: str) -> None:
    feed, token = _example()
    with pytest.raises(CursorError):
        decode_cursor(token + suffix, feed, SECRET)


def test_standard_alphabet_substitution_is_rejected() -> None:
    feed, token = _example()
    assert "-" in token or "_" in token
    altered = token.replace("-", "+").replace("_", "/")
    with pytest.raises(CursorError):
        decode_cursor(altered, feed, SECRET)


def test_non_canonical_last_character_is_rejected() -> None:
    feed = FeedRef("user", 5)
    token = encode(feed, 1.5, 42, SECRET, PIN)  # 79 bytes: the last character has 4 unused bits
    index = URLSAFE.index(token[-1])
    replacement = URLSAFE[(index & 0b110000) | ((index + 1) & 0b001111)]  # same data bits
    assert replacement != token[-1]
    with pytest.raises(CursorError, match="canonical"):
        decode_cursor(token[:-1] + replacement, feed, SECRET)


def test_any_other_last_character_is_rejected() -> None:
    feed, token = _example()
    for replacement in URLSAFE.replace(token[-1], ""):
        with pytest.raises(CursorError):
            decode_cursor(token[:-1] + replacement, feed, SECRET)
