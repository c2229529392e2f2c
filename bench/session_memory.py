"""Redis memory held by live conversation sessions.

    python bench/session_memory.py [--sessions 10000] [--redis redis://127.0.0.1:6379/0]

Writes `--sessions` realistic sessions, caught mid-conversation, through `RedisSessionStore`
(the product's own serialisation, Lua compare-and-set and TTL) under a unique key prefix, then
reports the growth of Redis's ``used_memory`` and ``MEMORY USAGE`` of a sample of keys, and
deletes every key it wrote. Redis is shared, so the ``used_memory`` delta also moves with other
clients' writes meanwhile; ``MEMORY USAGE`` (per key, incl. overhead) does not, and the two are
printed side by side.

A session is built from the load benchmark's scripted complaints (bench/load.py): two to seven
customer turns, the bot's real reply texts (bot/replies.yaml) in between, the form filled as far
as the conversation got, a triage assessment, and a unique conversation id, order number and
phone number per session.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load import SCRIPTS  # noqa: E402
from bot.keys import Keys  # noqa: E402
from bot.replies import default_replies  # noqa: E402
from bot.session import Ask, Assessment, Form, Line, RedisSessionStore, Session, State  # noqa: E402
from channels.messages import Author, ConversationRef  # noqa: E402
from nlp.labels import Category, Demand, Emotion, Lang, Priority  # noqa: E402

# What the bot says after each customer turn of a script, in order.
BOT_STEPS = ("apology", "ask_order_id", "ask_product", "ask_contact", "ask_demand",
             "evidence_hint", "thanks")
ASKS = (Ask.ORDER_ID, Ask.PRODUCT, Ask.CONTACT, Ask.DEMAND)


def make_session(number: int, rng: random.Random, run: str) -> Session:
    templates = default_replies().templates
    script = rng.choice([s for s in SCRIPTS if len(s) >= 3])
    turns = rng.randint(2, len(script))
    lang = Lang.EN if script[0].isascii() else Lang.ZH_HANS
    started = datetime.now(UTC) - timedelta(minutes=rng.randint(1, 600))
    at = started
    lines: list[Line] = []
    for turn, text in enumerate(script[:turns]):
        at += timedelta(seconds=rng.randint(5, 90))
        lines.append(Line(Author.CUSTOMER, text, at))
        key = BOT_STEPS[min(turn, len(BOT_STEPS) - 1)]
        lines.append(Line(Author.SYSTEM, templates[key][lang], at + timedelta(seconds=1), key=key))
    order = f"{rng.randrange(10**9, 10**10)}"
    form = Form(
        order_id=order if turns > 1 else None,
        product=script[2] if turns > 2 else None,
        phone=f"13{rng.randrange(10**8, 10**9)}" if turns > 3 else None,
        demand=rng.choice(list(Demand)) if turns > 4 else None,
    )
    conversation = ConversationRef("webchat", f"mem-{run}-{number}")
    return Session(
        key=conversation.key, channel=conversation.channel, chat_id=conversation.chat_id,
        updated_at=at, state=State.CONFIRMING if turns > 5 else State.COLLECTING, lang=lang,
        form=form, story=(script[0],),
        assessment=Assessment(category=rng.choice(list(Category)), subcategory=None,
                              priority=rng.choice(list(Priority)), reasons=("rule:quality",),
                              emotion=rng.choice(list(Emotion)), emotion_intensity=0.6),
        pending=ASKS[min(turns - 1, len(ASKS) - 1)], asked=frozenset(ASKS[:turns - 1]),
        transcript=tuple(lines), revision=turns,
    )


async def measure(args: argparse.Namespace) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(args.redis)
    run = uuid.uuid4().hex[:8]
    keys = Keys(f"sessmem-{run}:")
    store = RedisSessionStore(redis, keys=keys)
    rng = random.Random(args.seed)
    sessions = [make_session(n, rng, run) for n in range(args.sessions)]
    sizes = [len(s.dumps().encode()) for s in sessions]
    try:
        before = int((await redis.info("memory"))["used_memory"])
        started = time.perf_counter()
        for i in range(0, len(sessions), 50):
            await asyncio.gather(*(store.put(s) for s in sessions[i:i + 50]))
        seconds = time.perf_counter() - started
        after = int((await redis.info("memory"))["used_memory"])
        sample = rng.sample(sessions, min(500, len(sessions)))
        usage = [int(await redis.memory_usage(keys.session(s.key)) or 0) for s in sample]
        ttl = await redis.ttl(keys.session(sessions[0].key))
        per_key = statistics.mean(usage)
        print(f"{len(sessions):,} sessions written in {seconds:.1f} s "
              f"({len(sessions) / seconds:,.0f} writes/s through the Lua compare-and-set)")
        lines = statistics.mean(len(s.transcript) for s in sessions)
        print(f"session JSON: mean {statistics.mean(sizes):,.0f} bytes, "
              f"max {max(sizes):,} bytes, transcript {lines:.1f} lines on average")
        print(f"MEMORY USAGE per key (sample of {len(usage)}): mean {per_key:,.0f} bytes, "
              f"p95 {statistics.quantiles(usage, n=20)[18]:,.0f} bytes "
              f"-> {per_key * len(sessions) / 2**20:.1f} MiB for {len(sessions):,} sessions")
        print(f"used_memory delta: {(after - before) / 2**20:.1f} MiB "
              f"({(after - before) / len(sessions):,.0f} bytes per session; includes the "
              f"key table and other clients' writes meanwhile)")
        print(f"TTL of a session key: {ttl} s")
    finally:
        deleted = 0
        names = [keys.session(s.key) for s in sessions]
        for i in range(0, len(names), 1000):
            deleted += await redis.delete(*names[i:i + 1000])
        print(f"deleted {deleted:,} keys under {keys.prefix}")
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--seed", type=int, default=0)
    asyncio.run(measure(parser.parse_args()))


if __name__ == "__main__":
    main()
