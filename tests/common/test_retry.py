"""The retry policy: backoff arithmetic and which errors are retried."""

from __future__ import annotations

from imagequeue_common.errors import JobCancelledError, RetryableJobError, TerminalJobError
from imagequeue_common.queue.retry import RetryPolicy


def test_exponential_backoff_is_the_seeds_5_10_20_seconds() -> None:
    policy = RetryPolicy("exponential", 5000)
    assert [policy.delay_ms(n) for n in (1, 2, 3)] == [5000, 10_000, 20_000]


def test_fixed_backoff() -> None:
    assert [RetryPolicy("fixed", 10_000).delay_ms(n) for n in (1, 2, 5)] == [10_000] * 3


def test_success_completes_with_the_value() -> None:
    outcome = RetryPolicy().decide(attempts=1, max_attempts=4, error=None, value="42")
    assert (outcome.kind, outcome.value) == ("completed", "42")


def test_unknown_errors_are_retried_until_the_last_attempt() -> None:
    policy = RetryPolicy("exponential", 100)
    kinds = [policy.decide(attempts=n, max_attempts=4, error=TimeoutError("slow")).kind
             for n in (1, 2, 3, 4)]  # fmt: skip
    assert kinds == ["retry", "retry", "retry", "failed"]
    last = policy.decide(attempts=4, max_attempts=4, error=TimeoutError("slow"))
    assert last.error.startswith("TimeoutError: slow")
    assert "gave up after 4 attempts" in last.error


def test_terminal_errors_are_dead_lettered_at_once() -> None:
    outcome = RetryPolicy().decide(attempts=1, max_attempts=4, error=TerminalJobError("HTTP 400"))
    assert outcome.kind == "failed"
    assert "HTTP 400" in outcome.error


def test_retry_after_is_a_floor() -> None:
    error = RetryableJobError("429", retry_after_s=30)
    outcome = RetryPolicy("exponential", 5000).decide(attempts=1, max_attempts=4, error=error)
    assert (outcome.kind, outcome.value) == ("retry", "30000")
    short = RetryableJobError("429", retry_after_s=1)
    assert (
        RetryPolicy("exponential", 5000).decide(attempts=1, max_attempts=4, error=short).value
        == "5000"
    )


def test_cancellation_is_its_own_end() -> None:
    outcome = RetryPolicy().decide(attempts=1, max_attempts=4, error=JobCancelledError("j"))
    assert outcome.kind == "cancelled"
