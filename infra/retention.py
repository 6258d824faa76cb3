"""CloudWatch Logs retention: the stage's ``log_retention_days`` as a value CloudWatch accepts."""

from __future__ import annotations

from aws_cdk import aws_logs as logs

_RETENTION = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    5: logs.RetentionDays.FIVE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    400: logs.RetentionDays.THIRTEEN_MONTHS,
    731: logs.RetentionDays.TWO_YEARS,
}


def retention(days: int) -> logs.RetentionDays:
    """The CloudWatch Logs retention for ``days`` (one of the values CloudWatch accepts)."""
    try:
        return _RETENTION[days]
    except KeyError:
        raise ValueError(f"log_retention_days={days} is not one of {sorted(_RETENTION)}") from None
