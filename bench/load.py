"""Concurrent web-chat conversations against the real server, and against a bare echo server.

    python bench/load.py [--conversations 200] [--duration 30] [--think 0]
                         [--modes echo,embedded,redis-pg-1,redis-pg-2,redis-cluster-2]

Each mode starts its servers as subprocesses on free ports and stops them at the end:

- ``echo``: a bare aiohttp app with the web chat's POST route and answer shape
  (``bench/echo_server.py``): the ceiling this machine and this client allow;
- ``embedded``: one product process on the embedded defaults (SQLite, in-process sessions);
- ``redis-pg-1`` / ``redis-pg-2``: one or two product processes sharing Redis and a fresh
  PostgreSQL database. With two, the client spreads conversations over the two ports
  (conversation i goes to process i % 2), as a load balancer with sticky-free round robin
  would; every message of a conversation may go to either process in production, which Redis
  makes safe, but here a conversation stays on one port to keep the client simple.
  SQLite and in-process state cannot be shared, so two processes run only on Redis + PostgreSQL.
- ``redis-cluster-2``: two product processes on a Redis Cluster of three masters started for
  the run (``bench/redis_cluster.py``, ``INTAKEBOT_REDIS_CLUSTER=true``) and PostgreSQL; not in
  the default modes.

The product processes run `bot.app.create_app` exactly as ``intakebot serve`` does (logging with
the PII filter, the access log on), but through ``python bench/load.py serve`` so their Redis keys
get a unique prefix that the benchmark deletes afterwards (Redis is shared). Each process gets a
fresh INTAKEBOT_DATA_DIR whose ``models`` folder links to an already trained model cache
(``--model-cache``, default $INTAKEBOT_DATA_DIR or ~/.intakebot, trained on first use).

N conversation workers (default 200) each play scripted multi-turn complaints (Chinese and
English, ``SCRIPTS``), one message at a time: a turn is sent when the reply to the previous one
has arrived, after ``--think`` seconds. With ``--think 0`` the load is closed-loop and saturating:
the figures are then the maximum throughput, and latency is mostly queueing (N / throughput).
Printed per mode: messages/s, p50/p95/p99 latency, errors, the ratio to the echo server, the
server processes' CPU per message (from /proc; less noisy than latency on a shared machine) and
each server's event-loop lag (how late a 10 ms sleep wakes: work done on the loop).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.redis_cluster import running_cluster  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432")

# Realistic complaints, turn by turn, as customers type them: the story, then the facts the bot
# asks for (order, product, contact, demand), then the confirmation, with small talk and
# corrections here and there. The bot's questions are not checked: whatever it says, the next
# line is sent, as a real (impatient) customer would.
SCRIPTS: tuple[tuple[str, ...], ...] = (
    ("你好，我买的电饭煲用了两天就坏了，插上电一点反应都没有", "订单号是 2024051812345678",
     "美的电饭煲 MB-FB40", "手机 13812345678", "我要退货退款", "确认"),
    ("快递显示已签收，可是我根本没收到包裹！", "订单 7788123456", "一双耐克跑鞋",
     "13998765432", "要么补发要么退款", "对"),
    ("收到的牛奶已经过期了，孩子喝了还拉肚子，你们必须给个说法", "订单号 1029384756",
     "伊利纯牛奶 250ml*24", "我的电话 15600001111", "退款并赔偿", "确认"),
    ("客服态度太差了，问了三次都不理人", "订单是 5566778899", "就是一个蓝牙耳机",
     "邮箱 wang.li@example.com", "我要投诉这个客服，需要道歉", "确认"),
    ("请问怎么开发票？", "有帮助"),
    ("退款申请提交了一周还没到账，什么情况？", "订单号 3141592653", "小米手环 8",
     "13700001234", "尽快退款", "是的"),
    ("衣服和图片上的颜色完全不一样，货不对板", "订单 20240601998877", "连衣裙，M 码",
     "电话 18811112222", "换货", "确认"),
    ("My order arrived with a cracked screen.", "Order number 4455667788",
     "Samsung Galaxy tablet", "You can reach me at jane.doe@example.com", "I want a replacement",
     "confirm"),
    ("I was charged twice for the same order, please fix this", "order 9080706050",
     "a pair of running shoes", "+1 415 555 0100", "refund the second charge", "yes"),
    ("包裹在路上走了十天还没到，物流一直不更新", "订单号 6677889900", "一箱猕猴桃",
     "13566667777", "退款", "确认"),
    ("我怀疑买到的是假货，包装和官网的不一样", "订单号 1122334455", "兰蔻小黑瓶精华 50ml",
     "手机 13933334444", "退货退款，还要鉴定", "确认"),
    ("電熱水壺用了一次就漏電，差點出事！", "訂單號 8899001122", "電熱水壺",
     "電話 0912345678", "退款並賠償", "確認"),
    ("商品質量太差了，收到就是壞的", "訂單 2233445566", "藍牙音箱", "13812340000", "換貨", "確認"),
    ("保修期内手机坏了，售后却说不给修", "订单号 5544332211", "华为 Mate 60",
     "13655556666", "免费维修", "确认"),
    ("How do I return an item?", "yes"),
    ("The courier marked my parcel delivered but it never came", "order 1357924680",
     "wireless headphones", "my number is 13712345678", "resend it please", "ok"),
    ("答应给我的优惠券一直没发，说话不算数", "订单 2468013579", "洗衣液", "15012345678",
     "把优惠券补给我", "确认"),
    ("收到的杯子碎了，盒子也压扁了", "订单号 1212343456", "玻璃水杯 两个装", "13800138000",
     "补发", "确认", "谢谢"),
    ("我要投诉！冰箱买回来不制冷，打了好几次电话都没人管", "订单号 9988776655",
     "海尔冰箱 BCD-216", "电话 13511112222，地址就不说了", "上门维修或者换新", "确认"),
    ("鞋子穿了一天就开胶了", "订单号是 3344556677", "不对，订单号是 3344556678", "帆布鞋",
     "13798765432", "退货", "确认"),
)


# ---- servers -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    data_dir: Path | None = None
    log: Path | None = None


async def wait_healthy(port: int, process: subprocess.Popen[bytes], path: str,
                       timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"the server on port {port} exited with {process.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(f"http://127.0.0.1:{port}{path}") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not become healthy in {timeout:.0f} s")


def stop(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGINT)
        try:
            server.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    if server.data_dir is not None:
        shutil.rmtree(server.data_dir, ignore_errors=True)
    if server.log is not None and server.log.exists():
        for line in server.log.read_text(errors="replace").splitlines():
            if LAG_MARK in line:
                print(f"  {server.name}: {line.split(LAG_MARK, 1)[1].lstrip(': ')}")


async def start_echo(workdir: Path) -> Server:
    port = free_port()
    log = workdir / "echo.log"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "echo_server.py"), "--port", str(port)],
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server("echo", port, process, log=log)
    await wait_healthy(port, process, "/healthz", timeout=30)
    return server


async def start_product(workdir: Path, name: str, model_cache: Path, env: dict[str, str],
                        redis_prefix: str | None, profile_dir: Path | None = None) -> Server:
    port = free_port()
    data_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=workdir))
    (data_dir / "models").symlink_to(model_cache / "models", target_is_directory=True)
    for vectors in model_cache.glob("kb-vectors-*.npz"):  # the server saves its own copy back
        shutil.copy(vectors, data_dir / vectors.name)
    log = workdir / f"{name}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port)]
    if profile_dir is not None:  # sample the process with py-spy; folded stacks for a flame graph
        command = ["py-spy", "record", "--format", "raw", "--rate", "200", "--output",
                   str(profile_dir / f"{name}.folded"), "--", *command]
    if redis_prefix:
        command += ["--redis-prefix", redis_prefix]
    process = subprocess.Popen(
        command, env={**os.environ, **env, "INTAKEBOT_DATA_DIR": str(data_dir)},
        stdout=log.open("wb"), stderr=subprocess.STDOUT)
    server = Server(name, port, process, data_dir=data_dir, log=log)
    try:
        await wait_healthy(port, process, "/healthz")
    except BaseException:
        stop(server)
        raise
    return server


def serve(port: int, redis_prefix: str | None) -> None:
    """What `intakebot serve` runs (bot.app.run), with a Redis key prefix of our own."""
    import logging

    from aiohttp import web

    from bot.app import configure_logging, create_app
    from bot.settings import Settings

    configure_logging()  # INFO with the PII filter and the access log, as in production
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("bot.app")
    app = create_app(settings, redis_prefix=redis_prefix)
    app.cleanup_ctx.append(loop_lag)
    web.run_app(app, host="127.0.0.1", port=port, access_log=log,
                print=lambda text: log.info("%s", text))


LAG_PROBE = 0.01  # seconds between two looks at the event loop
LAG_MARK = "event loop lag"


async def loop_lag(_app: object) -> AsyncIterator[None]:
    """How late a 10 ms sleep wakes up: the time the loop was busy with something else.

    Logged at shutdown for the client to print: a long tail here is work done on the event loop
    (CPU, or a thread holding the GIL), not waiting for a database.
    """
    import logging

    lags: list[float] = []

    async def probe() -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(LAG_PROBE)
            lags.append((loop.time() - started - LAG_PROBE) * 1000)

    task = asyncio.create_task(probe())
    yield
    task.cancel()
    if len(lags) > 100:
        q = statistics.quantiles(lags, n=1000)
        logging.getLogger("bench").warning(
            "%s: p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms, max %.1f ms; %d of %d probes over "
            "50 ms", LAG_MARK, q[499], q[989], q[998], max(lags), sum(x > 50 for x in lags),
            len(lags))


def ensure_model(model_cache: Path) -> None:
    """The triage model and the knowledge base's passage vectors, made once into the cache.

    Without the vectors, every fresh server would embed the seed FAQ in the background (20-40 s
    of CPU on one of the two cores) during the measurement.
    """
    from knowledge_base.entries import PublishedEntry
    from knowledge_base.files import load_file
    from knowledge_base.service import SEED_FILE, make_searcher
    from nlp.models import ModelConfig, load_classical

    started = time.perf_counter()
    load_classical(ModelConfig(data_dir=model_cache))
    print(f"triage model ready in {time.perf_counter() - started:.1f} s "
          f"(trained if it was not cached in {model_cache})")
    searcher = make_searcher(embedding_model=os.environ.get("INTAKEBOT_KB_EMBEDDING_MODEL"))
    if searcher.embedder is not None:
        started = time.perf_counter()
        vectors = model_cache / f"kb-vectors-{searcher.embedder.name}.npz"
        searcher.load_vectors(vectors)
        searcher.rebuild([PublishedEntry(i, 1, c) for i, c in load_file(SEED_FILE)])
        searcher.save_vectors(vectors)
        print(f"knowledge-base vectors ready in {time.perf_counter() - started:.1f} s")


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    import asyncpg  # type: ignore[import-untyped]

    name = f"load_bench_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(f"{POSTGRES_URL}/test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"{POSTGRES_URL}/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def delete_redis_prefix(prefix: str) -> int:
    """Delete every key the benchmark's servers wrote (a bench may SCAN; the product never)."""
    from redis.asyncio import Redis

    redis = Redis.from_url(REDIS_URL)
    deleted = 0
    try:
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += await redis.delete(*batch)
                batch = []
        if batch:
            deleted += await redis.delete(*batch)
    finally:
        await redis.aclose()
    return deleted


# ---- the client ----------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    conversations: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # of the server processes, from /proc

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def quantiles(self) -> tuple[float, float, float]:
        if len(self.latencies_ms) < 2:
            return (float("nan"),) * 3
        q = statistics.quantiles(self.latencies_ms, n=100)
        return q[49], q[94], q[98]


def conversations(worker: int, seed: int) -> Iterator[tuple[str, Sequence[str]]]:
    """An endless series of (conversation id, script) for one worker."""
    rng = random.Random(seed * 100_003 + worker)
    run = uuid.uuid4().hex[:6]
    number = 0
    while True:
        number += 1
        yield f"load-{run}-{worker}-{number}", rng.choice(SCRIPTS)


async def worker(http: aiohttp.ClientSession, ports: Sequence[int], index: int, result: Result,
                 stop_at: float, measure_from: float, think: float, seed: int) -> None:
    port = ports[index % len(ports)]
    rng = random.Random(index)
    if think:
        await asyncio.sleep(rng.uniform(0, think))  # spread the first messages out
    for chat_id, script in conversations(index, seed):
        url = f"http://127.0.0.1:{port}/api/webchat/{chat_id}/messages"
        for turn, text in enumerate(script):
            if time.monotonic() >= stop_at:
                return
            started = time.monotonic()
            try:
                async with http.post(url, json={"text": text,
                                                 "message_id": f"{chat_id}-{turn}"}) as response:
                    body = await response.read()
                    if response.status != 200:
                        kind = f"HTTP {response.status}"
                        result.errors[kind] = result.errors.get(kind, 0) + 1
                        if result.errors[kind] == 1:
                            print(f"  {result.mode}: {kind}: {body[:200]!r}")
                        continue
            except (TimeoutError, aiohttp.ClientError) as exc:
                kind = type(exc).__name__
                result.errors[kind] = result.errors.get(kind, 0) + 1
                continue
            finished = time.monotonic()
            if started >= measure_from:
                result.latencies_ms.append((finished - started) * 1000)
            if think:
                await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))
        result.conversations += 1


def server_pids(pids: Sequence[int]) -> list[int]:
    """The product processes: under --py-spy, the children of py-spy, not py-spy itself."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == "py-spy":
                for task in Path(f"/proc/{pid}/task").iterdir():
                    found += [int(c) for c in (task / "children").read_text().split()]
                continue
        found.append(pid)
    return found


def process_cpu_seconds(pids: Sequence[int]) -> float:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for pid in server_pids(pids):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


async def drive(mode: str, ports: Sequence[int], pids: Sequence[int], args: argparse.Namespace
                ) -> Result:
    result = Result(mode)
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        now = time.monotonic()
        measure_from = now + args.warmup
        stop_at = measure_from + args.duration
        cpu_before = 0.0
        tasks = [asyncio.create_task(worker(http, ports, i, result, stop_at, measure_from,
                                            args.think, args.seed))
                 for i in range(args.conversations)]
        await asyncio.sleep(args.warmup)
        cpu_before = process_cpu_seconds(pids)
        await asyncio.gather(*tasks)
        result.cpu_seconds = process_cpu_seconds(pids) - cpu_before
        result.seconds = time.monotonic() - measure_from
    return result


def report(result: Result, echo: Result | None) -> str:
    p50, p95, p99 = result.quantiles()
    ratio = f"{result.rate / echo.rate:6.1%}" if echo and echo.rate else "     -"
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(result.errors.items())) or "none"
    cpu = result.cpu_seconds / len(result.latencies_ms) * 1000 if result.latencies_ms else 0.0
    return (f"{result.mode:11} {result.rate:8.1f} msg/s  p50 {p50:7.1f} ms  p95 {p95:7.1f} ms  "
            f"p99 {p99:7.1f} ms  vs echo {ratio}  server CPU {cpu:5.2f} ms/msg  "
            f"{len(result.latencies_ms)} messages, {result.conversations} conversations done, "
            f"errors: {errors}")


async def run_mode(mode: str, args: argparse.Namespace, workdir: Path) -> Result:
    if mode == "echo":
        server = await start_echo(workdir)
        try:
            return await drive(mode, [server.port], [server.process.pid], args)
        finally:
            stop(server)
    if mode == "embedded":
        server = await start_product(workdir, mode, args.model_cache, {}, None, args.py_spy)
        try:
            return await drive(mode, [server.port], [server.process.pid], args)
        finally:
            stop(server)
    if mode == "redis-cluster-2":
        with running_cluster(workdir / "redis-cluster") as cluster_url:
            return await run_shared(mode, args, workdir, {
                "REDIS_URL": cluster_url, "INTAKEBOT_REDIS_CLUSTER": "true"}, prefix=None)
    if mode not in ("redis-pg-1", "redis-pg-2"):
        raise SystemExit(f"unknown mode {mode!r}")
    prefix = f"loadbench-{uuid.uuid4().hex[:8]}:"
    return await run_shared(mode, args, workdir, {"REDIS_URL": REDIS_URL}, prefix=prefix)


async def run_shared(mode: str, args: argparse.Namespace, workdir: Path, redis: dict[str, str],
                     *, prefix: str | None) -> Result:
    """The mode's processes (as many as its last digit) on Redis and a fresh PostgreSQL
    database; the Redis keys under `prefix` are deleted afterwards (a throw-away cluster needs
    no prefix)."""
    servers: list[Server] = []
    async with postgres_database() as database_url:
        env = {"DATABASE_URL": database_url, **redis}
        try:
            # One after the other: the first start migrates and seeds the fresh database.
            for number in range(int(mode[-1])):
                servers.append(await start_product(workdir, f"{mode}-{number}", args.model_cache,
                                                   env, prefix, args.py_spy))
            return await drive(mode, [s.port for s in servers],
                               [s.process.pid for s in servers], args)
        finally:
            for server in servers:
                stop(server)
            if prefix is not None:
                deleted = await delete_redis_prefix(prefix)
                print(f"  deleted {deleted} Redis keys under {prefix}")


async def main_async(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="intakebot-load-"))
    results: dict[str, Result] = {}
    try:
        for mode in args.modes:
            print(f"{mode}: {args.conversations} conversations, {args.warmup:.0f} s warm-up, "
                  f"{args.duration:.0f} s measured, think {args.think} s ...", flush=True)
            results[mode] = await run_mode(mode, args, workdir)
            print("  " + report(results[mode], results.get("echo")), flush=True)
    finally:
        if args.keep_logs:
            print(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for result in results.values():
        print(report(result, results.get("echo")))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        parser = argparse.ArgumentParser(description="run one product process (internal)")
        parser.add_argument("serve")
        parser.add_argument("--port", type=int, required=True)
        parser.add_argument("--redis-prefix")
        ns = parser.parse_args()
        serve(ns.port, ns.redis_prefix)
        return
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=200,
                        help="concurrent conversations (workers)")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds per mode")
    parser.add_argument("--warmup", type=float, default=5.0, help="unmeasured seconds first")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a customer waits before the next turn (0: none)")
    parser.add_argument("--modes", type=lambda s: s.split(","),
                        default=["echo", "embedded", "redis-pg-1", "redis-pg-2"])
    parser.add_argument("--model-cache", type=Path, default=Path(
        os.environ.get("INTAKEBOT_DATA_DIR") or Path.home() / ".intakebot").expanduser())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-logs", action="store_true")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="run the product processes under py-spy; folded stacks go to DIR")
    args = parser.parse_args()
    args.model_cache.mkdir(parents=True, exist_ok=True)
    ensure_model(args.model_cache)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
