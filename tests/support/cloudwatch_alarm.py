"""CloudWatch's evaluation of a metric alarm, as AWS documents it, to play a template's alarm
against a timeline of data points (no alarm evaluator runs offline; moto stores alarms but
does not evaluate them).

The rules, each from AWS's pages:
- A new alarm starts in INSUFFICIENT_DATA ("When this operation creates an alarm, the alarm
  state is immediately set to INSUFFICIENT_DATA. The alarm is then evaluated and its state is
  set appropriately. Any actions associated with the new state are then executed",
  https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html).
- At each evaluation the alarm looks at its evaluation range, the last EvaluationPeriods
  periods of Period seconds, one statistic per period; ALARM when at least DatapointsToAlarm
  of them breach the threshold
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarm-evaluation.html).
- A period without data is treated by TreatMissingData: breaching, notBreaching, ignore (the
  state stays), missing (default: not considered; "if all data points in the alarm evaluation
  range are missing, the alarm transitions to INSUFFICIENT_DATA")
  (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/alarms-and-missing-data.html).
- Actions run when the state changes: AlarmActions on ALARM, OKActions on OK,
  InsufficientDataActions on INSUFFICIENT_DATA.

Only what the project's alarms use: one metric, the statistics Minimum, Maximum, Sum,
Average and SampleCount, the four comparison operators with a static threshold. With more
than DatapointsToAlarm present but fewer breaching, and missing data "missing", the alarm
is OK (AWS's table, ibid.: the present data points decide).
"""

from __future__ import annotations

STATS = {"Minimum": min, "Maximum": max, "Sum": sum, "Average": lambda v: sum(v) / len(v),
         "SampleCount": len}
COMPARE = {"GreaterThanThreshold": lambda v, t: v > t, "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
           "LessThanThreshold": lambda v, t: v < t, "LessThanOrEqualToThreshold": lambda v, t: v <= t}


def _state(alarm: dict, points: list[tuple[float, float]], now: float, current: str) -> str:
    period, n = alarm["Period"], alarm["EvaluationPeriods"]
    m = alarm.get("DatapointsToAlarm", n)
    treat = alarm.get("TreatMissingData", "missing")
    breaching = present = 0
    for k in range(n):
        end = now - k * period
        values = [v for t, v in points if end - period <= t < end]
        if not values:
            if treat == "breaching":
                breaching += 1
                present += 1
            elif treat == "notBreaching":
                present += 1
            continue
        present += 1
        if COMPARE[alarm["ComparisonOperator"]](STATS[alarm["Statistic"]](values), alarm["Threshold"]):
            breaching += 1
    if breaching >= m:
        return "ALARM"
    if present == 0:
        return current if treat == "ignore" else "INSUFFICIENT_DATA"
    return "OK"


def notifications(alarm: dict, points: list[tuple[float, float]], created: float, until: float,
                  every: float = 60.0) -> list[tuple[float, str]]:
    """(time, state) of each change of state that has actions, evaluating every ``every``
    seconds from ``created`` to ``until``."""
    actions = {"ALARM": alarm.get("AlarmActions"), "OK": alarm.get("OKActions"),
               "INSUFFICIENT_DATA": alarm.get("InsufficientDataActions")}
    state, out, now = "INSUFFICIENT_DATA", [], created
    while now <= until:
        new = _state(alarm, points, now, state)
        if new != state:
            state = new
            if actions[state]:
                out.append((now, state))
        now += every
    return out
