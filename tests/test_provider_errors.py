"""Every documented error status and code maps to the right typed error and user message.

The errors go over the wire from the fakes, in each provider's own body shape,
through the real client.
"""

from __future__ import annotations

import datetime as dt

import pytest

from bot import errors
from bot.providers.cloudflare import seconds_to_midnight_utc
from bot.retry_after import retry_after
from tests.fakes.providers import cloudflare_error_body
from tests.providers_support import one_answer

pytest_plugins = ["tests.provider_fixtures"]


def aig(status: int, kind: str, message: str) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": status}}


# AIGateway: seed 000 (401/402/404/429/500/503) and reference (400/403/502/504).
AIGATEWAY = [
    (400, aig(400, "invalid_request_error", "bad"), errors.BadRequest, "AIGateway rejected the request (400)"),
    (401, aig(401, "authentication_error", "Invalid or missing API key"), errors.AuthFailed,
     "AIGateway rejected the API key (401): check AIGATEWAY_API_KEY"),
    (402, aig(402, "insufficient_credits", "Wallet empty"), errors.QuotaExceeded,
     "AIGateway has no quota left (402): add credit to the account"),
    (403, aig(403, "scope_exceeded", "scope"), errors.AuthFailed, "AIGateway rejected the API key (403): check AIGATEWAY_API_KEY"),
    (404, aig(404, "not_found", "Unknown model"), errors.NotFound,
     "AIGateway does not know this model or endpoint (404): check AIGATEWAY_BASE_URL and AIGATEWAY_MODEL"),
    (429, aig(429, "rate_limit_error", "slow down"), errors.RateLimited, "AIGateway is rate limiting us (429)"),
    (500, aig(500, "server_error", "upstream"), errors.ProviderUnavailable, "AIGateway is unavailable (500)"),
    (502, aig(502, "provider_error", "upstream"), errors.ProviderUnavailable, "AIGateway is unavailable (502)"),
    (503, aig(503, "service_unavailable", "saturated"), errors.ProviderUnavailable, "AIGateway is unavailable (503)"),
    (504, aig(504, "timeout_error", "slow"), errors.ProviderTimeout, "AIGateway timed out (504)"),
]

DEEPINFRA = [
    (401, {"error": {"message": "Not authenticated", "type": "invalid_request_error", "param": None, "code": None}},
     errors.AuthFailed, "DeepInfra rejected the API key (401): check DEEPINFRA_TOKEN"),
    (401, {"error": "Unauthorised"}, errors.AuthFailed, "DeepInfra rejected the API key (401): check DEEPINFRA_TOKEN"),
    (402, {"error": {"message": "Payment required"}}, errors.QuotaExceeded, "DeepInfra has no quota left (402)"),
    (404, {"detail": "Model not found"}, errors.NotFound, "DeepInfra does not know this model or endpoint (404)"),
    (429, {"error": {"message": "Rate limited"}}, errors.RateLimited, "DeepInfra is rate limiting us (429)"),
    (400, {"error": {"message": "Requested tokens exceed context length of 131072", "code": None}},
     errors.ContextTooLong, "DeepInfra says the conversation is too long"),
    (500, "Internal Server Error", errors.ProviderUnavailable, "DeepInfra is unavailable (500)"),
]

# Cloudflare: reference/providers.md "Error codes (HTTP)".
CLOUDFLARE = [
    (400, 5007, errors.NotFound, "check CLOUDFLARE_MODEL"),
    (404, 3042, errors.NotFound, "check CLOUDFLARE_MODEL"),
    (400, 5006, errors.BadRequest, "Cloudflare Workers AI rejected the request (400)"),
    (413, 3006, errors.ContextTooLong, "too long"),
    (413, 5021, errors.ContextTooLong, "too long"),
    (413, 3010, errors.ContextTooLong, "too long"),
    (408, 3007, errors.ProviderTimeout, "Cloudflare Workers AI timed out (408)"),
    (408, 3008, errors.ProviderTimeout, "Cloudflare Workers AI timed out (408)"),
    (429, 3040, errors.RateLimited, "out of capacity"),
    (429, 3036, errors.QuotaExceeded, "daily free allocation is used up until 00:00 UTC"),
    (401, 10000, errors.AuthFailed, "Cloudflare Workers AI rejected the API key (401): check CLOUDFLARE_AUTH_TOKEN"),
    (403, 10000, errors.AuthFailed, "check CLOUDFLARE_AUTH_TOKEN"),
    (500, 9999, errors.ProviderUnavailable, "Cloudflare Workers AI is unavailable (500)"),
]


@pytest.mark.parametrize(("status", "body", "kind", "message"), AIGATEWAY)
async def test_aigateway_errors(status, body, kind, message, fakes, settings_for):
    fakes.fail("aigateway", status, body)
    got = await one_answer("aigateway", settings_for("aigateway"))
    assert type(got.error) is kind
    assert got.error.user_message.startswith(message)
    assert got.error.retryable == (status in (429, 500, 502, 503, 504))


@pytest.mark.parametrize(("status", "body", "kind", "message"), DEEPINFRA)
async def test_deepinfra_errors(status, body, kind, message, fakes, settings_for):
    fakes.fail("deepinfra", status, body)
    got = await one_answer("deepinfra", settings_for("deepinfra"))
    assert type(got.error) is kind
    assert got.error.user_message.startswith(message)
    assert "\n" not in got.error.user_message and "Traceback" not in got.error.user_message


@pytest.mark.parametrize("name", ("cloudflare", "dataoorts"))
@pytest.mark.parametrize(("status", "code", "kind", "message"), CLOUDFLARE)
async def test_cloudflare_codes(name, status, code, kind, message, fakes, settings_for):
    fakes.fail(name, status, cloudflare_error_body(code, f"AiError: code {code}"))
    got = await one_answer(name, settings_for(name))
    assert type(got.error) is kind
    display = "Cloudflare Workers AI" if name == "cloudflare" else "Dataoorts"
    expected = message.replace("Cloudflare Workers AI", display).replace("CLOUDFLARE_MODEL", f"{name.upper()}_MODEL")
    expected = expected.replace("CLOUDFLARE_AUTH_TOKEN", "CLOUDFLARE_AUTH_TOKEN" if name == "cloudflare" else "DATAOORTS_API_KEY")
    assert expected in got.error.user_message
    assert got.error.user_message.startswith(display)
    retry = code in (3040, 3007, 3008, 9999)
    assert got.error.retryable == retry


async def test_cloudflare_daily_quota_cools_until_midnight(fakes, settings_for):
    fakes.fail("cloudflare", 429, cloudflare_error_body(3036, "daily free allocation of 10,000 neurons used"))
    got = await one_answer("cloudflare", settings_for("cloudflare"))
    assert isinstance(got.error, errors.QuotaExceeded) and not got.error.retryable
    assert 0 < got.error.cool_for <= 86_400


async def test_dataoorts_success_false_with_http_200(fakes, settings_for):
    import json

    from tests.fakes.providers import JSON, Script

    body = cloudflare_error_body(3040, "Capacity temporarily exceeded")
    fakes.push("dataoorts", Script(parts=[json.dumps(body).encode()], content_type=JSON))
    got = await one_answer("dataoorts", settings_for("dataoorts"))
    assert isinstance(got.error, errors.RateLimited)


def test_retry_after_forms():
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    wait = retry_after({"retry-after": later.strftime("%a, %d %b %Y %H:%M:%S GMT")})
    assert wait is not None and 25 <= wait <= 31
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({}) is None


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "3"}, 3.0),  # names are compared case-insensitively (Discord, Slack)
        ({"Retry-After": ["4"]}, 4.0),  # slack_sdk may hand a list per header
        ({"Retry-After": "-5"}, 0.0),  # clamped to >= 0
        ({"retry-after-ms": "soon", "Retry-After": "2"}, 2.0),  # a bad ms header falls back
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a date in the past
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": []}, None),
        (None, None),
    ],
)
def test_retry_after_edge_cases(headers, wait):
    assert retry_after(headers) == wait


def test_seconds_to_midnight():
    at = dt.datetime(2026, 1, 1, 23, 59, 0, tzinfo=dt.UTC)
    assert seconds_to_midnight_utc(at) == 60.0


async def test_429_carries_retry_after_from_header(fakes, settings_for):
    fakes.fail("aigateway", 429, aig(429, "rate_limit_error", "slow down"), headers={"Retry-After": "7"})
    got = await one_answer("aigateway", settings_for("aigateway"))
    assert isinstance(got.error, errors.RateLimited) and got.error.retry_after == 7.0


def test_the_table_covers_every_documented_cloudflare_code():
    from bot.providers import cloudflare as cf

    documented = {cf.CAPACITY, cf.DAILY_QUOTA, cf.AUTH, cf.TOO_LARGE, cf.SCHEMA, *cf.CONTEXT_EXCEEDED, *cf.TIMEOUTS, *cf.BAD_MODEL}
    assert documented == {3040, 3036, 10000, 3006, 5006, 5021, 3010, 3007, 3008, 5007, 3042}
    assert documented <= {code for _, code, _, _ in CLOUDFLARE}


def test_the_tables_cover_every_documented_status():
    aigateway_documented = {400, 401, 402, 403, 404, 429, 500, 502, 503, 504}  # seed 000 + reference
    assert aigateway_documented <= {status for status, *_ in AIGATEWAY}
    assert {401, 402, 404, 429, 500} <= {status for status, *_ in DEEPINFRA}
