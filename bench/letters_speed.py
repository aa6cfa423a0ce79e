"""Speed of letters: typst PDFs per CPU-second, as separate files and as print batches.

    .venv/bin/python bench/letters_speed.py [--letters N] [--batch N] [--workers W] [--locales L,...]
                                            [--measures separate,one-by-one,batch] [--as-before]

The letters are overdue reminders for the lint's sample account of each locale, each as a real batch has
them: a different account (so a different reference, portal link and QR code), customer, address (varied
Chinese names, streets and districts for zh-CN, so that the fonts hold as many different characters as a
real batch), postal code and amount. ``--as-before`` uses the data of the first figures in docs/performance.md
instead: one account for every letter (the same reference, link and QR code), the sample's name
with a number, its address, a different postal code and amount; typst then reuses far more of one
letter's layout for the next.

Measures, one line of JSON each:

- ``separate``: N letters rendered (``render_many``, one process) and each written to its own file;
- ``one-by-one``: N letters rendered one at a time (``render_data``, as the outbox composes letters);
- ``batch``: the print batch path of ``letters batch`` for zh-CN: N letters planned (not counted), then
  rendered (in 1 worker, then W worker processes) and stored in a SQLite database of their own
  (``render_batch``), and the batch files written from the store (``write_batch``: cover sheet, the
  merged PDF sorted by postal code, the manifest CSV). ``BENCH_DIR``: where the database and files go.

CPU seconds are this process's and its children's (worker processes, any tool it runs), so letters per
CPU-second is the per-core figure on a machine busy with other work; ``uptime`` load is printed with
each. Peak RSS: this process, and the largest child (a spawned worker is counted at the moment it is
forked, at its parent's size, so that figure is not the worker's own). The service layer is imported
before any measure (its imports cost seconds of CPU, which a measure should not count).
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any


def service() -> Any:
    """The letters service, imported when first used: worker processes (spawned) import this script
    again, and the service layer's imports cost seconds of CPU that ``letters batch`` workers do not pay."""
    from duecourse.services import letters

    return letters


NAMES = {"zh-CN": "王芳", "en-US": "Person A", "en-GB": "Jane Doe"}
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾萧田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"  # noqa: E501
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红文辉力玉萍鑫宇浩然欣怡梓涵子轩一诺思远雨萱佳琪俊杰晓东海燕春梅冬雪立新建华淑珍凤兰德胜振宇永福翠花瑞琳晨曦博文嘉怡"  # noqa: E501
PLACES = [
    ("北京市", "朝阳区"),
    ("北京市", "海淀区"),
    ("上海市", "浦东新区"),
    ("上海市", "徐汇区"),
    ("广东省广州市", "天河区"),
    ("广东省深圳市", "南山区"),
    ("浙江省杭州市", "西湖区"),
    ("江苏省南京市", "鼓楼区"),
    ("四川省成都市", "武侯区"),
    ("湖北省武汉市", "洪山区"),
    ("陕西省西安市", "雁塔区"),
    ("山东省济南市", "历下区"),
    ("福建省厦门市", "思明区"),
    ("湖南省长沙市", "岳麓区"),
    ("辽宁省沈阳市", "和平区"),
    ("河南省郑州市", "金水区"),
]
STREETS = "建国 人民 解放 中山 和平 长江 黄河 光明 幸福 青年 文化 体育 学院 科技 滨江 望京 龙华 新华 胜利 团结 友谊 民主 复兴 东风 红旗 朝阳 南京 北京 上海 天津 育才 花园 锦绣 金桥 银河 星光 翠湖 枫林 松柏 桃源".split()  # noqa: E501


def customer_for(locale: str, base: Any, n: int, plain: bool) -> Any:
    """The sample customer made the ``n``-th different one."""
    postal = f"{100000 + n * 7 % 900000}" if plain else f"{100000 + n * 7919 % 800000:06d}"
    if plain or locale != "zh-CN":
        return replace(base, name=f"{NAMES[locale]}{n}", postal_code=postal)
    pick = random.Random(n)
    name = pick.choice(SURNAMES) + "".join(pick.choice(GIVEN) for _ in range(pick.choice((1, 2, 2))))
    region, city = pick.choice(PLACES)
    street = f"{pick.choice(STREETS)}{pick.choice(('路', '街', '大道'))}{pick.randint(1, 999)}号"
    flat = f"{pick.randint(1, 30)}号楼{pick.randint(1, 6)}单元{pick.randint(101, 2808)}室"
    return replace(
        base,
        name=name,
        address_line1=street,
        address_line2=flat,
        city=city,
        region=region,
        postal_code=postal,
    )


def letters_data(locale: str, count: int, plain: bool = False) -> list[Any]:
    """``count`` letter data of one locale, each for a different customer and amount."""
    return list(letters_iter(locale, count, plain))


def letters_iter(locale: str, count: int, plain: bool = False) -> Iterator[Any]:
    """The letter data of :func:`letters_data`, one at a time."""
    # Imported here: worker processes (spawned) import this script again, as ``letters batch`` workers
    # import the CLI's small entry module, and should not pay for what only the parent uses.
    from duecourse.config import load_config
    from duecourse.domain import delinquency
    from duecourse.letters.data import letter_data
    from duecourse.letters.kinds import JURISDICTION_OF
    from duecourse.letters.samples import sample_for

    config = load_config(None)
    jurisdiction = JURISDICTION_OF[locale]
    base = sample_for(jurisdiction, config.terms.products)
    product = config.terms.products[base.account.product_code]
    for n in range(count):
        dues = [replace(d, amount=d.amount + Decimal(n)) for d in base.dues]
        customer = customer_for(locale, base.customer, n, plain)
        snap = delinquency.snapshot(
            base.account.account_id,
            product,
            config.terms.bucket_sets[product.bucket_set],
            config.terms.stages,
            dues,
            [],
            base.letter_date,
        )
        data = letter_data(
            kind_name="overdue_reminder",
            locale=locale,
            customer=customer,
            account=base.account
            if plain
            else replace(base.account, account_id=f"{base.account.account_id}{n:05d}"),
            product=product,
            snap=snap,
            dues=dues,
            payments=[],
            issuer=config.issuers[jurisdiction],
            settings=config.letters,
            letter_date=base.letter_date,
        )
        yield (data, base.letter_date, f"A{n}", f"C{n}")


def cpu() -> float:
    """CPU seconds of this process and its finished children (worker processes, tools it ran)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def peak_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"peak_rss_mb": round(own / 1024, 1), "peak_rss_child_mb": round(child / 1024, 1)}


def figures(what: str, locale: str, count: int, seconds: float, cpu_seconds: float) -> dict[str, Any]:
    return {
        "measure": what,
        "locale": locale,
        "letters": count,
        "load": load(),
        "seconds": round(seconds, 2),
        "letters_per_second": round(count / seconds, 1),
        "cpu_seconds": round(cpu_seconds, 2),
        "letters_per_cpu_second": round(count / cpu_seconds, 1),
    }


def separate(locale: str, count: int, folder: Path, plain: bool) -> dict[str, Any]:
    jobs = letters_data(locale, count + 3, plain)
    service().render_many(jobs[:3], workers=1)  # the fonts and templates load once per process: not counted
    jobs = jobs[3:]
    started, cpu_started = time.perf_counter(), cpu()
    rendered = service().render_many(jobs, workers=1)
    for letter in rendered:
        (folder / f"{letter.account_id}.pdf").write_bytes(letter.pdf)
    result = figures(
        "separate files, 1 process", locale, count, time.perf_counter() - started, cpu() - cpu_started
    )
    result["kb_per_letter"] = round(sum(len(r.pdf) for r in rendered) / count / 1024, 1)
    return result


def one_by_one(locale: str, count: int, plain: bool) -> dict[str, Any]:
    jobs = letters_data(locale, count + 3, plain)
    templates = service().shipped_templates()
    for job in jobs[:3]:
        service().render_data(job[0], templates, job[1], job[2], job[3])
    jobs = jobs[3:]
    started, cpu_started = time.perf_counter(), cpu()
    for data, day, account, customer in jobs:
        service().render_data(data, templates, day, account, customer)
    return figures(
        "one at a time (render_data), 1 process",
        locale,
        count,
        time.perf_counter() - started,
        cpu() - cpu_started,
    )


def batch(locale: str, count: int, workers: int, plain: bool) -> dict[str, Any]:
    from duecourse.store.db import init_db, make_engine

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        url = f"sqlite:///{tmp}/letters.db"
        init_db(url)
        engine = make_engine(url)
        # Planning (the letters' data, spilled to a file as ``letters batch`` does) is not counted.
        jobs = letters_iter(locale, count, plain)
        first = next(jobs)
        day = first[1]
        with service().PlannedLetters(day) as planned:
            for data, _, account, customer in itertools.chain([first], jobs):
                planned.add(data, account, customer)
            started, cpu_started = time.perf_counter(), cpu()
            entries = service().render_batch(engine, planned, workers, dt.datetime.now(dt.UTC))
        rendered_at, cpu_rendered = time.perf_counter(), cpu()
        pdf_path, _, pages, _, _, _ = service().write_batch(engine, day, entries, Path(tmp) / "out")
        seconds, cpu_seconds = time.perf_counter() - started, cpu() - cpu_started
        size = pdf_path.stat().st_size
        stored = Path(f"{tmp}/letters.db").stat().st_size
        engine.dispose()
    result = figures(f"print batch, {workers} worker(s)", locale, count, seconds, cpu_seconds)
    result |= {
        "render_and_store_cpu_seconds": round(cpu_rendered - cpu_started, 2),
        "join_cpu_seconds": round(cpu_seconds - (cpu_rendered - cpu_started), 2),
        "render_and_store_seconds": round(rendered_at - started, 2),
        "pages": pages,
        "batch_mb": round(size / 2**20, 1),
        "database_mb": round(stored / 2**20, 1),
    }
    return result | peak_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--letters", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--locales", default="zh-CN,en-US,en-GB")
    parser.add_argument("--measures", default="separate,one-by-one,batch")
    parser.add_argument("--as-before", action="store_true")
    parser.add_argument(
        "--no-one-worker",
        action="store_true",
        help="the batch measure with W workers only (peak RSS is the process's: one measure per run)",
    )
    args = parser.parse_args()
    measures = set(args.measures.split(","))
    service().shipped_templates()  # imports the service layer and loads the templates: not counted
    with tempfile.TemporaryDirectory() as tmp:
        for locale in args.locales.split(","):
            if "separate" in measures:
                print(
                    json.dumps(separate(locale, args.letters, Path(tmp), args.as_before), ensure_ascii=False),
                    flush=True,
                )
            if "one-by-one" in measures:
                print(
                    json.dumps(one_by_one(locale, args.letters, args.as_before), ensure_ascii=False),
                    flush=True,
                )
    if "batch" in measures:
        if not args.no_one_worker or args.workers == 1:
            print(json.dumps(batch("zh-CN", args.batch, 1, args.as_before), ensure_ascii=False), flush=True)
        if args.workers > 1:
            print(
                json.dumps(batch("zh-CN", args.batch, args.workers, args.as_before), ensure_ascii=False),
                flush=True,
            )


if __name__ == "__main__":
    main()
