"""The parking rules engine (docs/rules.md): sessions, controlled periods, rights, suspensions
and the enforcement alerts they raise. Pure: records and instants in, alert changes out."""

from kerbside.collector.rules.alerts import Alert, AlertChange, make_alert_id
from kerbside.collector.rules.engine import RulesEngine
from kerbside.collector.rules.schedule import NEG_INF, POS_INF, Schedule, ScheduleBook

__all__ = [
    "NEG_INF",
    "POS_INF",
    "Alert",
    "AlertChange",
    "RulesEngine",
    "Schedule",
    "ScheduleBook",
    "make_alert_id",
]
