"""Operator commands: `python -m shared.admin init` creates topics and indexes, loads the catalog;
`rebuild`, `reconcile`, `dead-letters`, `load-campaign`, `load-services`, `import FILE`.

The same command initialises the local stack (`make run`) and a production deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared import bulk_import, replay
from shared.adapters.kafka import ensure_topics, kafka_client_options
from shared.adapters.mongo import Store, connect
from shared.adapters.registry_store import RegistryStore
from shared.domain.campaigns import Campaign, Target, validate_target
from shared.domain.events import SERVICE_ID_PATTERN
from shared.domain.units import UnitTree, bundled_catalog, load_catalog
from shared.progress import Progress
from shared.settings import Settings, get_settings


async def init(settings: Settings, catalog_file: Path | None = None) -> int:
    await ensure_topics(
        settings,
        {settings.events_topic: settings.event_partitions, settings.deadletter_topic: 1},
    )
    data = catalog_data(settings, catalog_file)
    units = load_catalog(data)
    UnitTree(units)  # refuse a broken catalog before writing any of it
    client = connect(settings.mongodb_uri, app_name="admin")
    try:
        store = Store(client, settings.mongodb_db)
        await store.ensure_indexes()
        await RegistryStore(store).install_shipped()
        await store.upsert_units(units)
        for data in bundled_campaigns():
            await load_campaign(store, data, only_if_new=True)
        await store.follow_generation()
        if await store.ledger_scheme() == "event":
            # Totals counted before event ids belonged to their unit: the log replays into
            # today's rules (same totals for the same events), while ingest goes on.
            print("the ledger predates unit-scoped event ids: rebuilding it from the log")
            generation, stats = await replay.rebuild(settings, store, through_log_end=True)
            print(f"rebuilt {stats.records} records into generation {generation!r}")
    finally:
        await client.close()
    return len(units)


DEFAULT_CATALOG_PROVINCES = ("70", "75")


def catalog_data(settings: Settings, catalog_file: Path | None = None) -> dict[str, Any]:
    """The catalog `init` loads: a file given, else the shipped one for the default provinces,
    else (CATALOG_PROVINCES) one generated from the official dataset for those provinces."""
    if catalog_file is not None:
        data: dict[str, Any] = json.loads(catalog_file.read_bytes())
        return data
    provinces = settings.catalog_province_codes
    if provinces == DEFAULT_CATALOG_PROVINCES:
        return bundled_catalog()
    try:
        from deploy.catalog.generate import DatasetMissing, build_catalog
    except ImportError as exc:  # an image without the generator
        raise SystemExit(
            f"CATALOG_PROVINCES={settings.catalog_provinces} needs deploy/catalog/generate.py "
            "and the vietnamadminunits dataset; or generate a file with it and pass --catalog"
        ) from exc
    try:
        return build_catalog(provinces)
    except (DatasetMissing, ValueError) as exc:
        raise SystemExit(f"CATALOG_PROVINCES={settings.catalog_provinces}: {exc}") from exc


def bundled_campaigns() -> list[dict[str, Any]]:
    folder = resources.files("shared.data").joinpath("campaigns")
    return [
        json.loads(item.read_text("utf-8"))
        for item in sorted(folder.iterdir(), key=lambda entry: entry.name)
        if item.name.endswith(".json")
    ]


async def load_campaign(store: Store, data: dict[str, Any], *, only_if_new: bool) -> bool:
    """Load a campaign and its targets. With `only_if_new`, a campaign that exists (perhaps
    changed by an admin since) is left as it is."""
    campaign = Campaign(
        data["id"],
        data["name"],
        date.fromisoformat(data["starts"]),
        date.fromisoformat(data["ends"]),
        float(data.get("lagging_threshold", 0.9)),
    )
    targets = [
        Target(t["unit_id"], t["metric"], Decimal(str(t["target"]))) for t in data["targets"]
    ]
    for target in targets:
        reason = validate_target(target.metric, target.target)
        if reason:
            raise ValueError(f"campaign {campaign.id}: {reason}")
    created = await store.put_campaign(campaign, only_if_new=only_if_new)
    if created or not only_if_new:
        await store.put_targets(campaign.id, targets)
    return created


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m shared.admin")
    commands = parser.add_subparsers(dest="command", required=True)
    init_cmd = commands.add_parser("init", help="create topics and indexes, load the catalog")
    init_cmd.add_argument("--catalog", type=Path, help="a catalog JSON file (default: bundled)")
    campaign_cmd = commands.add_parser("load-campaign", help="load (or reload) a campaign file")
    campaign_cmd.add_argument("file", type=Path)
    services_cmd = commands.add_parser(
        "load-services",
        help='load the online services units offer: {"unit_id": ["service_id", ...], ...}',
    )
    services_cmd.add_argument("file", type=Path)
    letters_cmd = commands.add_parser("dead-letters", help="list or re-drive dead letters")
    letters_cmd.add_argument("action", choices=["list", "redrive"])
    rebuild_cmd = commands.add_parser(
        "rebuild",
        help="recompute every total from the event log into new collections and switch to "
        "them atomically, while ingest goes on",
    )
    rebuild_cmd.add_argument(
        "--keep-old", action="store_true", help="keep the replaced collections (default: drop)"
    )
    rebuild_cmd.add_argument(
        "--grace-seconds",
        type=float,
        default=10.0,
        help="wait this long after the switch before dropping the replaced collections, so "
        "requests that began reading them finish (default 10)",
    )
    rebuild_cmd.add_argument(
        "--through-log-end",
        action="store_true",
        help="replay at least the whole log as it stands at the start, even where the served "
        "totals reflect less of it (their aggregator stopped); by default the switch comes as "
        "soon as the new totals reflect what the served ones do",
    )
    commands.add_parser(
        "reconcile",
        help="recount the log and print every (unit, metric, period) whose stored total "
        "differs, as JSON lines; exit 1 if any does",
    )
    import_cmd = commands.add_parser(
        "import",
        help="post a back office's CSV, XLSX or JSON Lines file through ingest, in batches; "
        "resumable; refused rows with their reasons in FILE.refused.csv",
    )
    import_cmd.add_argument("file", type=Path)
    import_cmd.add_argument(
        "--mapping", type=Path, help='a JSON file: {"columns": {FIELD: COLUMN}, "values": {...}}'
    )
    import_cmd.add_argument(
        "--map", action="append", default=[], metavar="FIELD=COLUMN", help="a column of a field"
    )
    import_cmd.add_argument(
        "--set", action="append", default=[], metavar="FIELD=VALUE", help="a field's fixed value"
    )
    import_cmd.add_argument("--sheet", help="the XLSX sheet (default: the first)")
    import_cmd.add_argument(
        "--ingest-url", help="ingest's base URL (default: http://127.0.0.1:INGEST_PORT)"
    )
    import_cmd.add_argument(
        "--token", help="a field or admin token (default: IMPORT_TOKEN, else ADMIN_TOKEN)"
    )
    import_cmd.add_argument("--batch-size", type=int, default=500, help="events per request")
    import_cmd.add_argument(
        "--retries", type=int, default=8, help="tries of a batch on 429/503/connection errors"
    )
    import_cmd.add_argument(
        "--stop-after-batches", type=int, help="stop after N batches (run again to resume)"
    )
    args = parser.parse_args()
    if args.command == "import":
        sys.exit(_import_file(get_settings(), args))
    if args.command in ("rebuild", "reconcile"):
        keep_old = bool(getattr(args, "keep_old", False))
        grace_s = float(getattr(args, "grace_seconds", 0.0))
        through = bool(getattr(args, "through_log_end", False))
        sys.exit(asyncio.run(_recount(get_settings(), args.command, keep_old, grace_s, through)))
    if args.command == "init":
        count = asyncio.run(init(get_settings(), args.catalog))
        print(f"catalog loaded: {count} units")
    elif args.command == "load-campaign":
        asyncio.run(_load_campaign_file(get_settings(), args.file))
    elif args.command == "dead-letters":
        settings = get_settings()
        if args.action == "list":
            for letter in asyncio.run(read_dead_letters(settings)):
                letter.pop("raw")
                print(json.dumps(letter, ensure_ascii=False))
        else:
            count = asyncio.run(redrive_dead_letters(settings))
            print(f"re-driven: {count} records")
    elif args.command == "load-services":
        asyncio.run(_load_services_file(get_settings(), args.file))


def _import_file(settings: Settings, args: argparse.Namespace) -> int:
    """0 when every row was taken, 1 when some were refused (see the report), 3 when it
    stopped before the end (run it again: it resumes)."""
    token = args.token or os.environ.get("IMPORT_TOKEN") or settings.admin_token
    if not token:
        raise SystemExit("no token: --token, IMPORT_TOKEN or ADMIN_TOKEN")
    if not 1 <= args.batch_size <= 1000:
        raise SystemExit("--batch-size: 1 to 1000 (ingest takes at most 1,000 events a request)")
    base = (args.ingest_url or f"http://127.0.0.1:{settings.ingest_port}").rstrip("/")
    try:
        mapping = bulk_import.ColumnMapping.load(args.mapping, args.map, args.set)
        outcome = bulk_import.run_import(
            args.file,
            mapping,
            bulk_import.http_post(f"{base}/v1/events", token),
            batch_size=args.batch_size,
            retries=args.retries,
            stop_after_batches=args.stop_after_batches,
            sheet=args.sheet,
            progress_every_s=settings.progress_every_s,
        )
    except (ValueError, OSError) as exc:
        raise SystemExit(f"import: {exc}") from exc
    except bulk_import.ImportFailed as exc:
        print(f"import stopped: {exc}; run it again to resume", file=sys.stderr)
        return 3
    report = bulk_import.report_path(args.file)
    print(
        f"{outcome.rows} rows: {outcome.accepted} accepted, {outcome.duplicates} already known"
        f" (duplicates), {len(outcome.refused)} refused (reasons in {report})"
    )
    if outcome.stopped:
        print(f"stopped after {outcome.batches} batches; run it again to resume", file=sys.stderr)
        return 3
    return 1 if outcome.refused else 0


async def _load_services_file(settings: Settings, path: Path) -> None:
    data = json.loads(path.read_bytes())  # noqa: ASYNC240
    pattern = re.compile(SERVICE_ID_PATTERN)
    client = connect(settings.mongodb_uri, app_name="admin")
    try:
        store = Store(client, settings.mongodb_db)
        tree = UnitTree(await store.load_units())
        for unit_id, services in data.items():
            if unit_id not in tree:
                raise SystemExit(f"unknown unit {unit_id!r}")
            bad = [s for s in services if not isinstance(s, str) or not pattern.fullmatch(s)]
            if bad:
                raise SystemExit(f"{unit_id}: invalid service ids {bad[:5]}")
            await store.put_service_catalog(unit_id, services)
        print(f"online services loaded for {len(data)} units")
    finally:
        await client.close()


async def _recount(
    settings: Settings, command: str, keep_old: bool, grace_s: float, through_log_end: bool
) -> int:
    client = connect(settings.mongodb_uri, app_name=f"admin-{command}", settings=settings)
    live = Store(client, settings.mongodb_db)
    # On stderr: reconcile's stdout is its differences, as JSON lines.
    progress = Progress(f"{command}: replaying the log", every_s=settings.progress_every_s)
    try:
        if command == "rebuild":
            with progress:
                name, stats = await replay.rebuild(
                    settings,
                    live,
                    keep_old=keep_old,
                    grace_s=grace_s,
                    through_log_end=through_log_end,
                    progress=progress,
                )
            print(
                f"rebuilt {stats.records} records in {stats.batches} batches"
                f" into generation {name!r}, now served"
            )
            return 0
        with progress:
            differences, stats = await replay.reconcile(settings, live, progress=progress)
        for difference in differences:
            print(json.dumps(difference.to_dict(), ensure_ascii=False))
        print(
            f"reconciled {stats.records} records in {stats.batches} batches:"
            f" {len(differences)} totals differ",
            file=sys.stderr,
        )
        return 1 if differences else 0
    finally:
        await client.close()


async def _load_campaign_file(settings: Settings, path: Path) -> None:
    client = connect(settings.mongodb_uri, app_name="admin")
    try:
        data = json.loads(path.read_bytes())  # noqa: ASYNC240
        await load_campaign(Store(client, settings.mongodb_db), data, only_if_new=False)
        print(f"campaign {data['id']} loaded")
    finally:
        await client.close()


async def read_dead_letters(
    settings: Settings, group_id: str | None = None
) -> list[dict[str, Any]]:
    """Every dead letter (or, with a group, those it has not consumed yet, committing them)."""
    consumer = AIOKafkaConsumer(
        settings.deadletter_topic,
        **kafka_client_options(settings),
        group_id=group_id,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    letters: list[dict[str, Any]] = []
    try:
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=500)
            idle = 0 if any(batch.values()) else idle + 1
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode(errors="replace") for k, v in record.headers}
                    letters.append(
                        {
                            "source": headers.get("source"),
                            "reason": headers.get("reason"),
                            "key": headers.get("key"),
                            "value": (record.value or b"").decode(errors="replace"),
                            "raw": record.value or b"",
                        }
                    )
        if group_id is not None:
            await consumer.commit()
    finally:
        await consumer.stop()
    return letters


async def redrive_dead_letters(settings: Settings) -> int:
    """Publish every dead letter not re-driven before back to the events topic, after a fix
    (a unit added, say). Counting stays exact: a record counted before is a duplicate by id."""
    letters = await read_dead_letters(settings, group_id=f"{settings.consumer_group}-redrive")
    producer = AIOKafkaProducer(**kafka_client_options(settings), acks="all")
    await producer.start()
    try:
        for letter in letters:
            # The producer's own key, so the record lands where ingest would have put it.
            key = letter["key"].encode() if letter["key"] is not None else None
            await producer.send_and_wait(settings.events_topic, letter["raw"], key=key)
    finally:
        await producer.stop()
    return len(letters)


if __name__ == "__main__":
    main()
