"""Metrics: every labelled series is there, at 0, before anything happens."""
from server.metrics import Metrics
from server.sched.outcome import Outcome, Reason


def test_every_outcome_reason_and_subnet_is_rendered_at_zero_from_the_start():
    text = Metrics(["d0-small", "d2-large"]).render().decode()
    for o in Outcome:
        assert f'superserve_requests_total{{outcome="{o.label}"}} 0.0' in text
    for r in Reason:
        line = f'superserve_drops_total{{reason="{r.value}"}} 0.0'
        assert (line in text) == (r is not Reason.NO_ANSWER), r
    for name in ("d0-small", "d2-large"):
        assert f'superserve_subnet_choices_total{{subnet="{name}"}} 0.0' in text
