"""The circuit breaker and the retry policy as plain objects (states, cooldowns, one probe).

Also doctor's note on a first-token deadline that cannot fail over in time.
"""

from __future__ import annotations

import pytest

from bot import errors
from bot.providers.breaker import Admission, Breaker, BreakerPolicy
from bot.providers.cloudflare import seconds_to_midnight_utc
from bot.providers.router import RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def hang() -> errors.ProviderError:
    return errors.ProviderTimeout("X", "no first token in time")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def breaker(clock: Clock) -> Breaker:
    return Breaker("x", BreakerPolicy(cooldown=30.0, max_cooldown=200.0, long_cooldown=300.0), clock)


def test_closed_until_a_failure_then_benched_for_the_cooldown(breaker, clock):
    assert breaker.state == "closed" and breaker.admit() is Admission.CLOSED and breaker.ready()
    assert breaker.failed(hang())
    assert breaker.state == "open" and not breaker.ready()
    assert breaker.remaining() == 30.0 and breaker.admit() is Admission.BENCHED
    clock.now += 29.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half-open" and breaker.ready()


def test_one_probe_at_a_time_and_its_failure_doubles_the_cooldown(breaker, clock):
    breaker.failed(hang())
    clock.now += 30
    assert breaker.admit() is Admission.PROBE
    assert not breaker.ready() and breaker.admit() is Admission.BENCHED  # the others stay away
    assert breaker.describe() == "probing"
    breaker.failed(hang())
    assert breaker.state == "open" and breaker.remaining() == 60.0
    clock.now += 60
    assert breaker.admit() is Admission.PROBE
    breaker.failed(hang())
    assert breaker.remaining() == 120.0
    clock.now += 120
    breaker.admit()
    breaker.failed(hang())
    assert breaker.remaining() == 200.0  # capped


def test_a_probe_that_answers_closes_the_breaker(breaker, clock):
    breaker.failed(hang())
    breaker.failed(hang())
    clock.now += 60
    assert breaker.admit() is Admission.PROBE
    breaker.succeeded()
    assert breaker.state == "closed" and breaker.failures == 0
    breaker.failed(hang())
    assert breaker.remaining() == 30.0  # the count started over


def test_a_probe_without_a_verdict_frees_the_slot(breaker, clock):
    breaker.failed(hang())
    clock.now += 30
    assert breaker.admit() is Admission.PROBE
    breaker.release()
    assert breaker.ready() and breaker.admit() is Admission.PROBE


def test_a_probe_never_reported_is_forgotten_after_the_probe_timeout(clock):
    breaker = Breaker("x", BreakerPolicy(cooldown=10.0, probe_timeout=100.0), clock)
    breaker.failed(hang())
    clock.now += 10
    assert breaker.admit() is Admission.PROBE
    clock.now += 99
    assert breaker.admit() is Admission.BENCHED
    clock.now += 1
    assert breaker.admit() is Admission.PROBE


@pytest.mark.parametrize(
    "error",
    [
        errors.AuthFailed("X", "bad key", status=401),
        errors.QuotaExceeded("X", "pay", status=402),
        errors.NotFound("X", "no model", status=404),
    ],
)
def test_auth_quota_and_not_found_bench_long(error, breaker):
    breaker.failed(error)
    assert breaker.remaining() == 300.0


def test_cloudflare_daily_quota_benches_until_midnight_utc(breaker):
    error = errors.QuotaExceeded("Cloudflare Workers AI", "daily allocation", status=429)
    error.cool_for = seconds_to_midnight_utc()  # type: ignore[attr-defined]  # as cloudflare_error sets it
    breaker.failed(error)
    until_midnight: float = error.cool_for  # type: ignore[attr-defined]
    assert breaker.remaining() == pytest.approx(max(300.0, until_midnight), abs=1)


def test_a_long_retry_after_benches_that_long(breaker):
    breaker.failed(errors.RateLimited("X", "slow down", retry_after=90.0))
    assert breaker.remaining() == 90.0


def test_a_prompt_too_long_is_not_the_providers_fault(breaker):
    assert not breaker.failed(errors.ContextTooLong("X", "too long", status=400))
    assert breaker.state == "closed"


def test_retry_policy_with_a_fallback_moves_on_fast():
    policy = RetryPolicy()
    down = errors.ProviderUnavailable("X", "503", status=503)
    first = policy.delay(0, down, fallback=True)
    assert first is not None and 0 < first <= 1.0  # one quick retry
    assert policy.delay(1, down, fallback=True) is None  # and no second one
    assert policy.delay(0, hang(), fallback=True) is None  # a hang is not retried here
    assert policy.delay(0, errors.RateLimited("X", retry_after=3.0), fallback=True) is None
    assert policy.delay(0, errors.RateLimited("X", retry_after=0.5), fallback=True) == 0.5


def test_retry_policy_alone_keeps_three_tries():
    policy = RetryPolicy()
    assert policy.delay(0, hang()) is not None and policy.delay(1, hang()) is not None
    assert policy.delay(2, hang()) is None
    assert policy.delay(0, errors.RateLimited("X", retry_after=30.0)) == 30.0
    assert policy.delay(0, errors.AuthFailed("X")) is None


def test_doctor_warns_when_the_first_token_deadline_cannot_fail_over_in_time(tmp_path):
    from bot.doctor import advice
    from bot.settings import Settings

    def notes(**values: object) -> list[str]:
        values["bot_database"] = tmp_path / "r.db"
        settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
        return [n for n in advice(settings, ["deepinfra"]) if n.startswith("BOT_FIRST_TOKEN_TIMEOUT")]

    assert notes() == []
    said = (
        "BOT_FIRST_TOKEN_TIMEOUT is not shorter than BOT_TURN_TIMEOUT: "
        "a provider that hangs holds up the whole answer instead of failing over"
    )
    assert notes(bot_first_token_timeout=300, bot_turn_timeout=120) == [said]
