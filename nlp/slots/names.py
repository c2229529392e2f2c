"""The customer-name slot: person names introduced in the text (我叫张三, my name is John Smith).

jieba's dictionary, which tells names from common words, is read on first use.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

from nlp.slots.text import Span, is_han

# Common surnames; a name is only taken when it starts with one (better empty than wrong).
_SURNAMES: Final = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫"
    "孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅"
    "童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车"
    "项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛"
    "仲虞敖巩明佘池查麻苑迟邝"
)
COMPOUND_SURNAMES: Final = frozenset(
    {"欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "慕容", "司徒", "令狐", "夏侯", "公孙", "长孙",
     "尉迟", "宇文", "独孤", "端木", "南宫", "西门", "轩辕", "呼延"}
)
TITLES: Final = re.compile(r"先生|女士|小姐|太太|老师|师傅")
"""Polite forms that follow a surname: 李女士, 王先生."""
_NAME_ANCHOR = re.compile(
    r"(?P<customer>我叫|我的名字[是叫]|名字[是叫]|姓名[是为]?|联系人[是为]?|本人|我是)"
    r"|(?P<recipient>收件人[是为]?|收货人[是为]?)"
    r"|(?P<english>\bmy name is\b|\bmy name's\b|\bname\s*:)",
    re.IGNORECASE,
)
_ANCHOR_GAP = re.compile(r"[\s:：]*")
# Characters that never belong to a given name but often follow one.
_NOT_GIVEN: Final = frozenset("我你他她它的了是在和跟也都就还从这那吗呢吧啊呀哦么个们买卖要想说用")
_AFTER_NAME: Final = frozenset(
    "我你他她的了是在和跟也都就还从这那吗呢吧啊呀哦么买卖要想说用今昨前上下这订电手联住家因之刚去来已对有请帮给但可所"
)
# Words jieba's dictionary tags as person names that are roles or things here.
_NOT_NAMES: Final = frozenset({"白领", "文明", "林子", "叶子", "石头"})
# Two letters at least: "J*** S***", a name masked by nlp.pii, is no name to find again.
_LATIN_NAME = re.compile(r"[A-Za-z][A-Za-z'\-]+(?:\s+[A-Z][A-Za-z'\-]+){0,2}(?![*])")
_ENGLISH_NOT_NAME: Final = frozenset(
    {"and", "i", "my", "from", "the", "order", "is", "was", "but", "not", "a", "an", "here",
     "please"}
)


@lru_cache(maxsize=1)
def _word_tags() -> dict[str, str]:
    """jieba's dictionary of words and their part of speech, to tell 高价/江苏 from names."""
    import jieba.posseg

    tags: dict[str, str] = jieba.posseg.dt.word_tag_tab
    return tags


def _is_common_word(word: str) -> bool:
    tag = _word_tags().get(word)
    return word in _NOT_NAMES or (tag is not None and not tag.startswith("nr"))


def _chinese_name(text: str, pos: int) -> Span | None:
    surname_len = 2 if text[pos : pos + 2] in COMPOUND_SURNAMES else 1
    if surname_len == 1 and text[pos : pos + 1] not in _SURNAMES:
        return None
    after_surname = pos + surname_len
    title = TITLES.match(text, after_surname)
    if title:
        return Span(pos, title.end(), text[pos : title.end()], "name")
    for given in (2, 1):
        end = after_surname + given
        name = text[pos:end]
        if len(name) < surname_len + given or not all(
            is_han(c) and c not in _NOT_GIVEN for c in name[surname_len:]
        ):
            continue
        follow = text[end : end + 1]
        ends_there = not follow or not is_han(follow) or follow in _AFTER_NAME
        if not ends_there and not TITLES.match(text, end):
            continue
        if _is_common_word(name) or (surname_len == 1 and given == 2 and _is_common_word(name[:2])):
            continue
        return Span(pos, end, name, "name")
    return None


def _latin_name(text: str, pos: int) -> Span | None:
    m = _LATIN_NAME.match(text, pos)
    if m is None:
        return None
    words = list(re.finditer(r"[A-Za-z][A-Za-z'\-]+", m.group(0)))
    if not words[0].group(0)[0].isupper():
        words = words[:1]  # typed in lower case: only the first word is surely part of the name
    if words[0].group(0).lower() in _ENGLISH_NOT_NAME:
        return None
    end = pos + words[-1].end()
    return Span(pos, end, text[pos:end], "name")


def find_names(text: str, *, recipients: bool = True) -> list[Span]:
    """Person names introduced in canonical text, in text order.

    我叫张三, 我是李女士, 本人王小明, 姓名：赵六, "my name is John Smith" give kind "name";
    收件人/收货人 give kind "recipient" (left out with recipients=False: the parcel may be for
    someone else). A name must start with a common surname and not be a dictionary word
    (我是高价买的, 我是江苏人).
    """
    found: list[Span] = []
    for anchor in _NAME_ANCHOR.finditer(text):
        if anchor["recipient"] and not recipients:
            continue
        pos = _ANCHOR_GAP.match(text, anchor.end())
        start = pos.end() if pos else anchor.end()
        if start >= len(text):
            continue
        latin_allowed = anchor["english"] or anchor.group(0) == "我叫"
        if anchor["english"] or (text[start].isascii() and text[start].isalpha()):
            span = _latin_name(text, start) if latin_allowed else None
        else:
            span = _chinese_name(text, start)
        if span is not None:
            kind = "recipient" if anchor["recipient"] else "name"
            found.append(Span(span.start, span.end, span.value, kind))
    return found


def preload() -> None:
    """Read jieba's dictionary now instead of on the first name found."""
    _word_tags()

