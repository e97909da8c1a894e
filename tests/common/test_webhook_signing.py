"""Webhook signatures against a third-party implementation of the Standard Webhooks spec
(the ``standardwebhooks`` package from PyPI): what we sign, it verifies; what it signs, we
verify; a rotation's two signatures satisfy a receiver holding either secret."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from imagequeue_common.webhook_signing import (
    new_secret,
    secret_key,
    signature,
    signed_headers,
    verify,
)

BODY = json.dumps({"event": "completed", "id": "img-1", "imageUrl": "/assets/a.png"}).encode()


def test_what_we_sign_the_reference_verifier_accepts() -> None:
    secret = new_secret()
    stamp = int(time.time())
    headers = signed_headers([secret], "msg_0001", stamp, BODY)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    # One byte changed, another secret, or a timestamp out of tolerance: refused.
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"img-1", b"img-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, headers)
    old = signed_headers([secret], "msg_0001", stamp - 3600, BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY, old)


def test_what_the_reference_signs_we_verify() -> None:
    secret = new_secret()
    now = time.time()
    sent = Webhook(secret).sign("msg_abc", datetime.fromtimestamp(int(now), UTC), BODY.decode())
    assert sent == signature(secret, "msg_abc", int(now), BODY)
    headers = {"webhook-id": "msg_abc", "webhook-timestamp": str(int(now)),
               "webhook-signature": sent}  # fmt: skip
    assert verify(secret, headers, BODY, now)
    assert not verify(secret, headers, BODY + b" ", now)
    assert not verify(secret, headers, BODY, now + 301)
    assert not verify(secret, {**headers, "webhook-timestamp": "soon"}, BODY, now)


def test_during_a_rotation_either_secret_verifies() -> None:
    old, new = new_secret(), new_secret()
    headers = signed_headers([new, old], "msg_rot", int(time.time()), BODY)
    assert len(headers["webhook-signature"].split()) == 2
    for secret in (old, new):
        Webhook(secret).verify(BODY, headers)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("abc", "starts with 'whsec_'"),
        ("whsec_not*base64", "followed by base64"),
        ("whsec_c2hvcnQ=", "24 to 64 bytes"),
    ],
)
def test_a_bad_secret_is_a_clear_error(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        secret_key(secret)


def test_a_secret_is_fresh_and_whsec_prefixed() -> None:
    one, two = new_secret(), new_secret()
    assert one != two
    assert one.startswith("whsec_")
    assert len(secret_key(one)) == 32
    with pytest.raises(ValueError, match="a webhook id"):
        signature(one, "has.dot", 0, BODY)  # the id must not blur the signed content
    with pytest.raises(ValueError, match="at least one"):
        signed_headers([], "msg", 0, BODY)
