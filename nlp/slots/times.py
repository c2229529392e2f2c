"""The incident-time slot: when it happened, resolved against the moment of the message.

Chinese expressions beyond the simple ones are resolved by jionlp, imported on first use.
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Final

from nlp.slots.amounts import parse_number

_N = r"[0-9一二两三四五六七八九十]"
_CLOCK = rf"{_N}{{1,3}}[点时](?:{_N}{{1,2}}分?|半|一刻|三刻|整)?"
_ZH_DATE = rf"(?<![0-9]){_N}{{1,3}}月(?:份|初|上旬|中旬|下旬|中|底|末|{_N}{{1,3}}[日号]?)?"
# Not a house number: 建国路88号, 3号楼.
_ZH_DAY = (
    rf"(?<![0-9路街道巷弄村里院楼栋]){_N}{{1,3}}[日号](?![楼院单元栋层室门线路床房口码店仓位车])"
)
_ZH_WEEKDAY = r"(?:周|星期|礼拜)[一二三四五六日天末]"
_ZH_WEEK = rf"(?:上上|上|本|这)个?(?:周|星期|礼拜)[一二三四五六日天末]?|{_ZH_WEEKDAY}"
_ZH_FESTIVAL = (
    r"双十一|双11|双十二|双12|国庆节?|元旦|春节|中秋节?|圣诞节?|除夕|元宵节?|端午节?|情人节|七夕"
)
_ZH_PART = r"凌晨|清晨|早上|早晨|上午|中午|下午|傍晚|晚上|夜里|半夜|深夜|白天"
_ZH_AGO_UNIT = r"分钟|小时|钟头|天|日|周|星期|礼拜|月|年"
_ZH_AGO = rf"(?<![0-9])(?:{_N}{{1,3}}|半|几|一两|两三)个?多?(?:{_ZH_AGO_UNIT})(?:之)?前"
_ZH_REL_DAY = r"大前天|前天|昨天|今天|当天|昨日|今日|昨晚|今晚|前晚|今早|昨早|明天|后天"
# 本月/这个月 is left out: "这个月第三次了" counts complaints, it dates nothing.
_ZH_MONTH_REL = r"上上个?月|上个?月"
_ZH_TIME = re.compile(
    rf"(?:刚才|刚刚|{_ZH_AGO}|[0-9]{{4}}[-/.][0-9]{{1,2}}[-/.][0-9]{{1,2}}(?![0-9])|(?:[0-9]{{4}}|[去今前])年"
    rf"|{_ZH_REL_DAY}|{_ZH_WEEK}|{_ZH_MONTH_REL}|{_ZH_DATE}|{_ZH_DAY}|{_ZH_FESTIVAL}|{_ZH_PART}"
    rf"|(?<![0-9])[0-9]{{1,2}}[点时](?:[0-9]{{1,2}}分?|半|一刻|三刻|整)?)"
    rf"(?:的?(?:{_ZH_DATE}|{_ZH_DAY}|{_ZH_WEEK}|{_ZH_FESTIVAL}|{_ZH_PART}|{_CLOCK})){{0,4}}"
)
_ZH_AGO_HEAD = re.compile(
    rf"(?P<qty>{_N}{{1,3}}|半|几|一两|两三)个?多?(?P<unit>{_ZH_AGO_UNIT})(?:之)?前"
)
_ZH_MONTH_ONLY = re.compile(rf"(?:(?P<year>[0-9]{{4}}|[去今前])年)?(?P<month>{_N}{{1,3}})月份?")
_ZH_ABBREVIATIONS: Final = (
    ("昨晚", "昨天晚上"), ("今晚", "今天晚上"), ("前晚", "前天晚上"), ("今早", "今天早上"),
    ("昨早", "昨天早上"), ("昨日", "昨天"), ("今日", "今天"),
)

_MONTHS: Final = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6, "jul": 7, "aug": 8, "sep": 9,
    "oct": 10, "nov": 11, "dec": 12,
}
_WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_EN_NUMBERS: Final = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "a couple of": 2,
}
_EN_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_EN_TIME = re.compile(
    r"\b(?:(?P<rel>the day before yesterday|yesterday|today|tonight|last night|just now"
    r"|this (?:morning|afternoon|evening))"
    r"|(?P<qty>\d{1,3}|a couple of|a few|several|an?|one|two|three|four|five|six|seven|eight"
    r"|nine|ten|eleven|twelve)\s+(?P<unit>minute|hour|day|week|month|year)s?\s+ago"
    r"|last\s+(?P<last>week|month|year|weekend|" + "|".join(_WEEKDAYS) + r")"
    r"|(?:on\s+)?(?P<weekday>" + "|".join(_WEEKDAYS) + r")"
    rf"|(?:on\s+)?(?P<mname>{_EN_MONTH})\.?\s+(?P<mday>\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(?P<myear>\d{{4}}))?"
    rf"|(?:on\s+)?(?:the\s+)?(?P<dday>\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?(?P<dname>{_EN_MONTH})\b\.?"
    r"(?:,?\s+(?P<dyear>\d{4}))?"
    r"|(?P<iso>\d{4}-\d{1,2}-\d{1,2})"
    r"|(?P<slash>\d{1,2}/\d{1,2}/\d{2,4}|(?<=on )\d{1,2}/\d{1,2}))"
    r"(?:\s+(?P<part>morning|afternoon|evening|night))?"
    r"(?:\s+(?:at\s+)?(?P<hour>\d{1,2})(?::(?P<minute>\d{2}))?\s*(?P<ampm>am|pm|a\.m\.|p\.m\.)"
    r"|\s+at\s+(?P<hour24>\d{1,2})(?::(?P<minute24>\d{2}))?)?"
    r"(?![0-9A-Za-z])",
    re.IGNORECASE,
)
_PART_HOURS: Final = {"morning": 6, "afternoon": 13, "evening": 18, "night": 18, "tonight": 18}
_MAX_TIME_CANDIDATES = 6  # each Chinese candidate costs a jionlp call; the incident comes early
_JIONLP_LOCK = threading.Lock()  # jionlp's TimeParser keeps per-call state on a shared instance


@lru_cache(maxsize=1)
def _jionlp() -> Any:
    # jionlp prints a banner on stdout at import, which would corrupt JSON printed by the CLI.
    with contextlib.redirect_stdout(io.StringIO()):
        import jionlp
    return jionlp


def _months_back(base: datetime, months: int) -> datetime:
    index = base.year * 12 + base.month - 1 - months
    year, month = divmod(index, 12)
    return base.replace(year=year, month=month + 1, day=1)


def _day_start(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _zh_ago(match: re.Match[str], ref: datetime) -> datetime | None:
    qty_text, unit = match["qty"], match["unit"]
    if qty_text in ("几", "一两", "两三"):
        return None  # 几天前, 一两天前: too vague to write on a form
    qty = 0.5 if qty_text == "半" else parse_number(qty_text)
    if not qty:
        return None
    if unit == "分钟":
        return ref.replace(second=0, microsecond=0) - timedelta(minutes=qty)
    if unit in ("小时", "钟头"):
        return ref.replace(second=0, microsecond=0) - timedelta(hours=qty)
    if unit in ("天", "日"):
        return _day_start(ref - timedelta(days=qty))
    if unit in ("周", "星期", "礼拜"):
        return _day_start(ref - timedelta(weeks=qty))
    months = int(qty * 12) if unit == "年" else int(qty) if qty >= 1 else 0
    if months == 0:
        return _day_start(ref - timedelta(days=15))  # 半个月前
    first = _months_back(ref, months)
    day = min(ref.day, _month_length(first))
    return _day_start(first.replace(day=day))


def _month_length(first_of_month: datetime) -> int:
    return (_months_back(first_of_month, -1) - first_of_month).days


def _jionlp_start(expression: str, ref: datetime) -> datetime | None:
    jio = _jionlp()
    base = [ref.year, ref.month, ref.day, ref.hour, ref.minute, ref.second]
    try:
        with _JIONLP_LOCK:
            result = jio.parse_time(expression, time_base=base)
    except (ValueError, IndexError, KeyError, TypeError):
        # jionlp raises these (mostly ValueError) on strings it has no rule for.
        return None
    if not isinstance(result, dict) or result.get("type") not in ("time_point", "time_span"):
        return None  # durations ("3天") and periods ("每周一") are no moment
    times = result.get("time")
    if not isinstance(times, list) or not times:
        return None
    try:
        return datetime.strptime(str(times[0]), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return None


def _zh_time(expression: str, ref: datetime) -> datetime | None:
    if expression in ("刚才", "刚刚"):
        return ref.replace(second=0, microsecond=0)
    ago = _ZH_AGO_HEAD.match(expression)
    if ago and ago.end() == len(expression):
        return _zh_ago(ago, ref)
    if re.fullmatch(_ZH_MONTH_REL, expression):
        return _day_start(_months_back(ref, 2 if expression.startswith("上上") else 1))
    month_only = _ZH_MONTH_ONLY.fullmatch(expression)
    if month_only:
        return _month_only(month_only, ref)
    for short, full in _ZH_ABBREVIATIONS:
        expression = expression.replace(short, full)
    start = _jionlp_start(expression, ref)
    if start is None and ago:
        return _zh_ago(ago, ref)  # 三天前的下午: the day at least
    if start is None or start <= ref:
        return start
    return _past_instead(expression, start, ref)


def _month_only(match: re.Match[str], ref: datetime) -> datetime | None:
    month = parse_number(match["month"])
    if month is None or not 1 <= month <= 12:
        return None
    year_text = match["year"]
    offsets = {"去": -1, "今": 0, "前": -2}
    if not year_text:
        year = ref.year
    else:
        year = ref.year + offsets[year_text] if year_text in offsets else int(year_text)
    start = datetime(year, int(month), 1)
    if start > ref and not year_text:
        start = start.replace(year=year - 1)
    return start if start <= ref else None


def _past_instead(expression: str, start: datetime, ref: datetime) -> datetime | None:
    """The past date a customer means by an expression jionlp resolved into the future.

    A complaint is about something that happened: "12月20号" written in November is last year's,
    "周日" written on a Wednesday is last Sunday, "晚上8点" written in the morning is last night.
    Expressions that are plainly future (明天, 下周) or have an explicit year stay unresolved.
    """
    if "年" in expression or re.search(r"明天|后天|下周|下个", expression):
        return None
    if re.search(_ZH_FESTIVAL, expression):
        return _jionlp_start("去年" + expression, ref)
    if "月" in expression:
        candidate = _shift_year(start, -1)
    elif re.match(_ZH_WEEKDAY, expression):
        candidate = start - timedelta(days=7)
    elif re.match(_ZH_DAY, expression):
        first = _months_back(start, 1)
        day = min(start.day, _month_length(first))
        candidate = first.replace(day=day, hour=start.hour, minute=start.minute)
    elif re.match(rf"(?:{_ZH_PART}|[0-9]{{1,2}}[点时])", expression):
        candidate = start - timedelta(days=1)
    else:
        return None
    return candidate if candidate <= ref else None


def _shift_year(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


def _en_time(m: re.Match[str], ref: datetime) -> datetime | None:
    today = _day_start(ref)
    day: datetime | None
    if m["rel"]:
        rel = m["rel"].lower()
        if rel == "just now":
            return ref.replace(second=0, microsecond=0)
        back = {"the day before yesterday": 2, "yesterday": 1, "last night": 1}.get(rel, 0)
        day = today - timedelta(days=back)
        if rel in ("last night", "tonight"):
            day = day.replace(hour=18)
        elif rel.startswith("this "):
            day = day.replace(hour=_PART_HOURS[rel[5:]])
    elif m["unit"]:
        qty_text = m["qty"].lower()
        if qty_text in ("a few", "several"):
            return None
        qty = int(qty_text) if qty_text.isdigit() else _EN_NUMBERS[re.sub(r"\s+", " ", qty_text)]
        unit = m["unit"].lower()
        if unit in ("minute", "hour"):
            return ref.replace(second=0, microsecond=0) - timedelta(**{f"{unit}s": qty})
        if unit in ("day", "week"):
            return today - timedelta(days=qty * (7 if unit == "week" else 1))
        first = _months_back(ref, qty * (12 if unit == "year" else 1))
        return _day_start(first.replace(day=min(ref.day, _month_length(first))))
    elif m["last"]:
        day = _en_last(m["last"].lower(), today)
    elif m["weekday"]:
        target = _WEEKDAYS.index(m["weekday"].lower())
        day = today - timedelta(days=(today.weekday() - target) % 7)
    else:
        day = _en_date(m, ref)
    if day is None:
        return None
    return _with_clock(m, day)


def _en_last(word: str, today: datetime) -> datetime:
    monday = today - timedelta(days=today.weekday())
    if word == "week":
        return monday - timedelta(days=7)
    if word == "weekend":
        return monday - timedelta(days=2)
    if word == "month":
        return _months_back(today, 1)
    if word == "year":
        return today.replace(year=today.year - 1, month=1, day=1)
    target = _WEEKDAYS.index(word)
    return today - timedelta(days=(today.weekday() - target - 1) % 7 + 1)


def _en_date(m: re.Match[str], ref: datetime) -> datetime | None:
    year: int | None
    if m["iso"]:
        year, month, day = (int(x) for x in m["iso"].split("-"))
    elif m["slash"]:
        parts = [int(x) for x in m["slash"].split("/")]
        month, day = parts[0], parts[1]  # US order: customers writing English dates use it
        year = (parts[2] + 2000 if parts[2] < 100 else parts[2]) if len(parts) == 3 else None
    else:
        name = (m["mname"] or m["dname"]).lower()[:3]
        month = _MONTHS[name]
        day = int(m["mday"] or m["dday"])
        year_text = m["myear"] or m["dyear"]
        year = int(year_text) if year_text else None
    try:
        date = datetime(year or ref.year, month, day)
    except ValueError:
        return None
    if year is None and date > ref:
        date = _shift_year(date, -1)
    return date


def _with_clock(m: re.Match[str], day: datetime) -> datetime:
    if m["part"]:
        day = day.replace(hour=_PART_HOURS[m["part"].lower()])
    hour_text = m["hour"] or m["hour24"]
    if hour_text is None:
        return day
    hour = int(hour_text)
    ampm = (m["ampm"] or "").lower().replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    minute = int(m["minute"] or m["minute24"] or 0)
    if hour > 23 or minute > 59:
        return day
    return day.replace(hour=hour, minute=minute)


def find_incident_time(text: str, ref: datetime) -> str | None:
    """When the incident happened, as naive ISO time no later than `ref`, or None when unsure.

    The first few time expressions are tried in text order; the first one that resolves to a
    moment in the past wins.
    """
    candidates = [(m.start(), m, True) for m in _ZH_TIME.finditer(text)]
    candidates += [(m.start(), m, False) for m in _EN_TIME.finditer(text)]
    for _, match, chinese in sorted(candidates, key=lambda c: c[0])[:_MAX_TIME_CANDIDATES]:
        try:
            moment = _zh_time(match.group(0), ref) if chinese else _en_time(match, ref)
        except (ValueError, OverflowError):
            # Absurd dates leave datetime's range: 九千年前, 0000年5月, 999 years ago.
            continue
        if moment is not None and moment <= ref:
            return moment.isoformat(timespec="seconds")
    return None


def preload() -> None:
    """Import jionlp now instead of on the first time word."""
    _jionlp()
