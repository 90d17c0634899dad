"""The nightly backup's alarm (monitoring tier, BackupAlarm) played against CloudWatch's
documented evaluation (support/cloudwatch_alarm.py) on timelines of what scripts/lib/backup.sh
publishes (BackupSucceeded, 1 or 0, once a night, and once at the end of a new stack's first
application server's boot): nothing false on a healthy new stack, and heard when a backup
fails, when backups stop, when they run late, and when they never run at all."""

from __future__ import annotations

import pytest
from conftest import props, templates_for
from support.cloudwatch_alarm import notifications

HOUR = 3600.0
DAY = 24 * HOUR
# The stack is created at 10:00; the backups run at 02:30 and take DURATION hours.
CREATED = 10 * HOUR
DURATION = 0.5


def night(day: int, hours: float = DURATION) -> float:
    return day * DAY + 2.5 * HOUR + hours * HOUR


@pytest.fixture(scope="module")
def alarm() -> dict:
    built = props(templates_for({})["monitoring"], "BackupAlarm")
    return built


# What the alarm was before: a day's period, missing data breaching.
PREVIOUS = {"Period": 86400, "EvaluationPeriods": 1, "Statistic": "Minimum", "Threshold": 1,
            "ComparisonOperator": "LessThanThreshold", "TreatMissingData": "breaching",
            "AlarmActions": ["topic"], "OKActions": ["topic"]}


# The first server's boot (some 20 minutes) and the stack's first backup (start_first_backup)
# report this long after the stack's creation began.
FIRST = CREATED + 0.5 * HOUR


def test_a_healthy_new_stack_hears_only_the_truth(alarm):
    points = [(FIRST, 1.0)] + [(night(d), 1.0) for d in range(1, 8)]
    heard = notifications(alarm, points, CREATED, 8 * DAY)
    # The first backup turns it OK within the hour; nothing before, nothing after.
    assert heard == [(pytest.approx(FIRST + HOUR / 2, abs=HOUR / 2 + 60), "OK")]
    # The previous alarm fired at once on the new stack.
    assert notifications(PREVIOUS, points, CREATED, 8 * DAY)[0] == (CREATED, "ALARM")


@pytest.mark.parametrize("created_hour", [0.0, 2.0, 2.4, 10.0, 23.5])
def test_a_new_stack_at_any_hour_hears_nothing_false(alarm, created_hour):
    """Whatever the hour of creation, the first backup and the following nights keep the window
    filled: the first night may come minutes after the first backup (or be skipped while the
    first backup holds the lock: a lock holder's run reports, the other skips) or nearly a day
    and a half later."""
    created = created_hour * HOUR
    first = created + 0.5 * HOUR
    nights = [night(d) for d in range(0, 8) if night(d) - DURATION * HOUR > first + 0.1 * HOUR]
    heard = notifications(alarm, [(first, 1.0)] + [(t, 1.0) for t in nights], created, 8 * DAY)
    assert [state for _, state in heard] == ["OK"]


def test_a_stack_whose_backups_never_run_is_heard_within_about_a_day(alarm):
    """The schedule broken from day one (no cron, a bad cron entry, a server that never takes
    the lock): only the first backup reports."""
    heard = notifications(alarm, [(FIRST, 1.0)], CREATED, 8 * DAY)
    assert [state for _, state in heard] == ["OK", "INSUFFICIENT_DATA"]
    assert heard[-1][0] - CREATED <= (alarm["EvaluationPeriods"] + 2) * HOUR
    assert alarm["InsufficientDataActions"] == [{"Ref": "AlarmTopic"}]
    # Without the first backup the alarm never leaves its initial INSUFFICIENT_DATA: never heard.
    assert notifications(alarm, [], CREATED, 8 * DAY) == []


def test_a_first_backup_that_fails_is_heard_within_the_hour(alarm):
    heard = notifications(alarm, [(FIRST, 0.0)] + [(night(d), 1.0) for d in range(1, 4)], CREATED, 4 * DAY)
    assert heard[0][1] == "ALARM" and FIRST < heard[0][0] <= FIRST + HOUR + 60
    assert heard[-1][1] == "OK"


def test_backups_that_take_longer_from_night_to_night_do_not_flap(alarm):
    points = [(night(d, hours), 1.0) for d, hours in zip(range(1, 9), (0.5, 2.5, 0.5, 3.0, 0.5, 2.0, 0.2, 3.2))]
    assert [state for _, state in notifications(alarm, points, CREATED, 9 * DAY)] == ["OK"]
    # A day-long window flaps whenever a backup ends later than the night before.
    assert "ALARM" in [state for _, state in notifications({**PREVIOUS, "TreatMissingData": "breaching"},
                                                           points, night(1) + HOUR, 9 * DAY)]


def test_a_failed_backup_fires_within_the_hour(alarm):
    points = [(night(1), 1.0), (night(2), 0.0), (night(3), 1.0), (night(4), 1.0)]
    heard = notifications(alarm, points, CREATED, 5 * DAY)
    alarms = [t for t, state in heard if state == "ALARM"]
    assert len(alarms) == 1 and night(2) < alarms[0] <= night(2) + HOUR + 60
    # And recovers once the failure is out of the window, after the next nights' successes.
    assert heard[-1][1] == "OK" and heard[-1][0] > night(3)


def test_backups_that_stop_are_heard_within_a_day_and_a_few_hours(alarm):
    points = [(night(d), 1.0) for d in (1, 2, 3)]
    heard = notifications(alarm, points, CREATED, 6 * DAY)
    assert [state for _, state in heard] == ["OK", "INSUFFICIENT_DATA"]
    silent_for = heard[-1][0] - night(3)
    assert 24 * HOUR < silent_for <= (alarm["EvaluationPeriods"] + 1) * HOUR
    assert alarm["InsufficientDataActions"] == alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_the_window_is_within_what_cloudwatch_accepts(alarm):
    # PutMetricAlarm: Period x EvaluationPeriods at most 604,800 s (a period of an hour or more).
    assert alarm["Period"] >= 3600 and alarm["Period"] * alarm["EvaluationPeriods"] <= 604800
    assert alarm["Period"] % 60 == 0 and 1 <= alarm["DatapointsToAlarm"] <= alarm["EvaluationPeriods"]
