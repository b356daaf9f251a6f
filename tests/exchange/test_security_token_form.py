"""A permit's security token is printable ASCII, whichever way it is submitted.

It is printed on the paper permit and typed by customs. An HTTP header carries ISO-8859-1 only:
a token with an accent, sent as a header, was stored as another string than the one an officer
types into the check form (UTF-8), so the permit could never be checked with it.
"""

from __future__ import annotations

import pytest

from epix.errors import EpixError
from epix.exchange.envelope import Envelope, build_envelope, envelope_from_headers, open_envelope

HEADERS = {
    "X-EPIX-Message-Id": "msg-token-1",
    "X-EPIX-From": "XA",
    "X-EPIX-To": "XB",
}
REFUSED = ["jeton-sécurité", "token with spaces", "tab\tseparated", "short", "x" * 129]


@pytest.mark.parametrize("token", REFUSED)
def test_a_token_that_cannot_be_typed_as_sent_is_refused_in_a_header(token: str) -> None:
    with pytest.raises(EpixError) as refused:
        envelope_from_headers({**HEADERS, "X-EPIX-Security-Token": token})
    [finding] = refused.value.findings
    assert (finding.code, finding.location) == ("EPIX-REQ-004", "X-EPIX-Security-Token")
    assert "ASCII" in finding.message


@pytest.mark.parametrize("token", REFUSED)
def test_a_token_that_cannot_be_typed_as_sent_is_refused_in_an_envelope(token: str) -> None:
    envelope = Envelope("msg-token-1", "XA", "XB", "permit", security_token=token)
    with pytest.raises(EpixError) as refused:
        open_envelope(build_envelope(envelope, b"<permit/>"), max_bytes=1 << 20, max_depth=64)
    assert [finding.code for finding in refused.value.findings] == ["EPIX-SCHEMA-001"]


@pytest.mark.parametrize(
    "token", ["permit-token-4f1c", "A1!~#$%&'()*+,./:;<=>?@[]^_`{|}", "x" * 128]
)
def test_printable_ascii_tokens_are_taken_both_ways(token: str) -> None:
    by_header = envelope_from_headers({**HEADERS, "X-EPIX-Security-Token": token})
    envelope = Envelope("msg-token-1", "XA", "XB", "permit", security_token=token)
    by_envelope, _ = open_envelope(
        build_envelope(envelope, b"<permit/>"), max_bytes=1 << 20, max_depth=64
    )
    assert by_header.security_token == by_envelope.security_token == token
