"""MongoDB adapter: totals, the ledger of counted events, log offsets, units and tokens.

Layout, chosen so a batch of many events touches few documents (INFRA: upserts cost per
document touched, not per event folded into them):
- `totals`: one document per (unit, local month) holding the month's totals (`t`) and each
  day's (`d.<DD>`). A year or all-time total is the sum of a few month documents.
- `ledger`: one document per applied batch (one per `LEDGER_CHUNK` ids in a replay's large
  batches), with the ids it counted (multikey index) and what each contributed, so duplicates
  and voids are found with one query per batch and remembered with one insert per batch, not
  one write per event.
- `offsets`: per topic partition, the next offset to apply, written in the same transaction
  as the totals: a redelivered record is recognised by its offset and never counted twice.
"""

from __future__ import annotations

import asyncio
import calendar
import hashlib
import time
from collections import defaultdict
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Hashable,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pymongo import AsyncMongoClient, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.asynchronous.client_session import AsyncClientSession
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern

from shared.domain.bounds import OWN_TOTAL_BOUND, OwnCell
from shared.domain.campaigns import Campaign, Target
from shared.domain.certification import StatusEntry, SubjectState
from shared.domain.ledger import CountedEvent, Known, Outcome
from shared.domain.periods import LocalDate
from shared.domain.registry import record_prefix
from shared.domain.units import Unit
from shared.settings import Settings, get_settings

# Ids per `$in` lookup by `_id`. The local server checks each document found against the whole
# list, so a lookup costs found × asked: 1,000 duplicate ids in one `$in` took 0.75 s, in
# chunks of 100 0.12 s (measured on SecantusDB with 784,000 accepted ids: `make demo` run
# twice). On MongoDB a chunk is one more round trip per 100 ids, nothing more.
IDS_PER_LOOKUP = 100


async def find_by_ids(
    collection: AsyncCollection[Document],
    ids: Sequence[str],
    projection: Mapping[str, Any] | None = None,
    session: AsyncClientSession | None = None,
) -> AsyncIterator[Document]:
    """The documents of `collection` whose `_id` is one of `ids`, looked up IDS_PER_LOOKUP at
    a time."""
    for start in range(0, len(ids), IDS_PER_LOOKUP):
        chunk = list(ids[start : start + IDS_PER_LOOKUP])
        async for doc in collection.find({"_id": {"$in": chunk}}, projection, session=session):
            yield doc


Document = dict[str, Any]


def metric_key(metric: str) -> str:
    """Metric names have dots; MongoDB field names must not, or they would nest. No metric
    name (nor service id) holds a colon, so the mapping is reversible."""
    return metric.replace(".", ":")


def metric_name(key: str) -> str:
    return key.replace(":", ".")


def _add_into(target: dict[str, int], values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        target[metric_name(key)] += int(value)


def mongo_client_options(settings: Settings) -> dict[str, Any]:
    """PyMongo options from the MONGODB_* authentication and TLS settings: only those set, so
    whatever MONGODB_URI says (`tls=true`, `authSource=...`, a `mongodb+srv://` service) holds
    unless a setting overrides it."""
    options: dict[str, Any] = {}
    if settings.mongodb_username:
        options["username"] = settings.mongodb_username
    if settings.mongodb_password is not None:
        options["password"] = settings.mongodb_password.get_secret_value()
    if settings.mongodb_auth_source:
        options["authSource"] = settings.mongodb_auth_source
    if settings.mongodb_tls is not None:
        options["tls"] = settings.mongodb_tls
    if settings.mongodb_tls_ca_file:
        options["tlsCAFile"] = settings.mongodb_tls_ca_file
    if settings.mongodb_tls_certificate_key_file:
        options["tlsCertificateKeyFile"] = settings.mongodb_tls_certificate_key_file
    if settings.mongodb_tls_certificate_key_file_password is not None:
        key_password = settings.mongodb_tls_certificate_key_file_password
        options["tlsCertificateKeyFilePassword"] = key_password.get_secret_value()
    return options


def connect(
    uri: str, *, app_name: str, settings: Settings | None = None
) -> AsyncMongoClient[Document]:
    """A client for `uri` with the authentication and TLS options of `settings` (by default
    the environment's, as every service's are)."""
    options = mongo_client_options(settings if settings is not None else get_settings())
    return AsyncMongoClient(
        uri, appname=app_name, tz_aware=True, serverSelectionTimeoutMS=5000, **options
    )


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PartitionBatch:
    """The records of one partition in a consumed batch, already decoded."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int


@dataclass(frozen=True, slots=True)
class Position:
    """Where the served totals stand: `as_of` (see `Store.as_of`) and `version`, which is
    different whenever the totals may be. Every write of the served totals changes it: a
    batch moves its partitions' `next` offsets in the same transaction (`apply`), a
    reorganisation writes the new catalog version on every partition (`reorganise`), a
    rebuild switches the generation. The heartbeat's `as_of` alone does not. Totals written
    behind the aggregator's back (by hand in the database) do not change it either."""

    as_of: datetime | None
    version: Hashable


class Store:
    """Every collection the services share, behind names that say what they hold."""

    def __init__(
        self, client: AsyncMongoClient[Document], database: str, generation: str | None = None
    ) -> None:
        self.client = client
        self.db: AsyncDatabase[Document] = client.get_database(
            database, write_concern=WriteConcern("majority"), read_concern=ReadConcern("majority")
        )
        # What the aggregator derives from the log lives in one generation of collections; a
        # rebuild fills a new generation and switches every service to it in one transaction.
        # A store made with `generation=None` follows the switch; one made for a generation
        # stays on it (a rebuild or a reconcile writing its own).
        self._follows_switch = generation is None
        self._generation_checked_at = float("-inf")
        # The registry version the served generation's counting started from (see
        # `shared.domain.registry.indicator_status`), as last read with its name.
        self.counted_from = 1
        self._bind(generation or "")
        self.units = self.db["units"]
        self.tokens = self.db["tokens"]
        self.accepted = self.db["accepted"]
        self.campaigns = self.db["campaigns"]
        self.targets = self.db["targets"]
        self.service_catalogs = self.db["service_catalogs"]
        self.meta = self.db["meta"]

    def _bind(self, generation: str) -> None:
        self.generation = generation
        suffix = f"_{generation}" if generation else ""
        self.totals = self.db[f"totals{suffix}"]
        self.ledger = self.db[f"ledger{suffix}"]
        self.offsets = self.db[f"offsets{suffix}"]
        self.subjects = self.db[f"subjects{suffix}"]

    async def serving_generation(self, session: AsyncClientSession | None = None) -> str:
        return (await self.serving(session))[0]

    async def serving(self, session: AsyncClientSession | None = None) -> tuple[str, int]:
        """The served generation and the registry version its counting started from (1, the
        shipped registry's, for a generation switched to before registries were recorded)."""
        doc = await self.meta.find_one({"_id": "generation"}, session=session)
        if doc is None:
            return "", 1
        return str(doc["name"]), int(doc.get("registry_version", 1))

    async def stored_registry_version(self, session: AsyncClientSession | None = None) -> int:
        """The version of the registry stored as current (0 when none is)."""
        doc = await self.db["registry"].find_one(
            {"_id": "current"}, {"version": 1}, session=session
        )
        return 0 if doc is None else int(doc["version"])

    async def follow_generation(
        self, session: AsyncClientSession | None = None, max_age_s: float = 0.0
    ) -> None:
        """Point the derived collections at the generation being served. In a transaction
        (always re-read there), a switch committed meanwhile makes the transaction conflict and
        run again, so no batch is written to a generation after it was retired."""
        if not self._follows_switch:
            return
        now = time.monotonic()
        if session is None and now - self._generation_checked_at < max_age_s:
            return
        current, counted_from = await self.serving(session)
        if session is None:
            self._generation_checked_at = now
        if current != self.generation:
            self._bind(current)
        self.counted_from = counted_from

    def in_generation(self, generation: str) -> Store:
        """A store writing and reading `generation`'s derived collections only."""
        return Store(self.client, self.db.name, generation=generation)

    async def drop_generation(self, generation: str) -> None:
        if generation == await self.serving_generation():
            raise ValueError(f"generation {generation!r} is being served")
        old = self.in_generation(generation)
        for collection in (old.totals, old.ledger, old.offsets, old.subjects):
            await collection.drop()

    async def ledger_scheme(self) -> str:
        """How this generation's ledger tells events apart: `unit` (an id within its unit,
        `Event.key`), or `event` for a ledger written before ids belonged to their unit (its
        totals stay right, but it must be rebuilt before a re-post of its ids is known)."""
        marker = await self.meta.find_one({"_id": f"ledger-scheme:{self.generation}"})
        if marker is not None:
            return str(marker["scheme"])
        if await self.ledger.find_one({}, {"_id": 1}) is not None:
            return "event"
        await self.mark_ledger_scheme()
        return "unit"

    async def mark_ledger_scheme(self) -> None:
        await self.meta.update_one(
            {"_id": f"ledger-scheme:{self.generation}"}, {"$set": {"scheme": "unit"}}, upsert=True
        )

    async def ensure_indexes(self) -> None:
        await self.totals.create_index([("u", 1), ("m", 1)])
        await self.ledger.create_index("ids")
        await self.ledger.create_index("voided")
        await self.tokens.create_index("name", unique=True)
        await self.targets.create_index([("campaign", 1), ("unit_id", 1)])

    # -- units ---------------------------------------------------------------------------

    async def load_units(self) -> list[Unit]:
        return [Unit.from_dict({**doc, "id": doc["_id"]}) async for doc in self.units.find({})]

    async def catalog_version(self, session: AsyncClientSession | None = None) -> int:
        doc = await self.meta.find_one({"_id": "catalog"}, session=session)
        return int(doc["version"]) if doc else 0

    async def reorganise(
        self,
        unit: Unit,
        remove_from: Sequence[str],
        add_to: Sequence[str],
        topic: str,
        partitions: int,
    ) -> int:
        """Give `unit` its new place (and merge mark) and move its whole history between
        ancestors, in one transaction that also bumps the catalog version. Every partition's
        offset document is written too, so an aggregator batch counted with the old tree
        conflicts with this transaction and is redone with the new one."""

        async def transaction(session: AsyncClientSession) -> int:
            await self.follow_generation(session)
            operations: list[UpdateOne] = []
            async for doc in self.totals.find({"u": unit.id}, session=session):
                fields = {f"t.{k}": v for k, v in (doc.get("t") or {}).items()}
                for day_key, values in (doc.get("d") or {}).items():
                    fields.update({f"d.{day_key}.{k}": v for k, v in values.items()})
                for ancestor, sign in [(a, -1) for a in remove_from] + [(a, 1) for a in add_to]:
                    operations.append(
                        UpdateOne(
                            {"_id": f"{ancestor}|{doc['m']}"},
                            {
                                "$inc": {k: sign * int(v) for k, v in fields.items()},
                                "$setOnInsert": {"u": ancestor, "y": doc["y"], "m": doc["m"]},
                            },
                            upsert=True,
                        )
                    )
            if operations:
                await self.totals.bulk_write(operations, ordered=False, session=session)
            body = unit.to_dict()
            body.pop("id")
            await self.units.replace_one({"_id": unit.id}, body, upsert=True, session=session)
            meta = await self.meta.find_one_and_update(
                {"_id": "catalog"},
                {"$inc": {"version": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=session,
            )
            assert meta is not None  # upserted
            version = int(meta["version"])
            for partition in range(partitions):
                await self.offsets.update_one(
                    {"_id": f"{topic}:{partition}"},
                    {
                        "$set": {"catalog_version": version},
                        "$setOnInsert": {"topic": topic, "partition": partition},
                    },
                    upsert=True,
                    session=session,
                )
            return version

        async with self.client.start_session() as session:
            version: int = await session.with_transaction(transaction)
        return version

    async def upsert_units(self, units: Iterable[Unit]) -> int:
        """Add the units that are missing; a unit an admin has since moved or merged keeps its
        place (the catalog file is where the tree starts, not what it must stay)."""
        operations = []
        for unit in units:
            doc = unit.to_dict()
            unit_id = doc.pop("id")
            operations.append(UpdateOne({"_id": unit_id}, {"$setOnInsert": doc}, upsert=True))
            # A unit stored before units had codes and dates gets the catalog's (its place
            # and merge mark stay as an admin left them).
            operations.append(
                UpdateOne(
                    {"_id": unit_id, "code": {"$exists": False}},
                    {"$set": {name: doc[name] for name in UNIT_FIELDS_SINCE_CODES}},
                )
            )
        if not operations:
            return 0
        result = await self.units.bulk_write(operations, ordered=True)
        return result.upserted_count + result.modified_count

    # -- the aggregator's batch ----------------------------------------------------------

    async def next_offsets(
        self, topic: str, partitions: Iterable[int], session: AsyncClientSession | None = None
    ) -> dict[int, int]:
        ids = [f"{topic}:{partition}" for partition in partitions]
        found = {
            doc["partition"]: int(doc.get("next", 0))
            async for doc in self.offsets.find({"_id": {"$in": ids}}, session=session)
        }
        return {partition: found.get(partition, 0) for partition in partitions}

    async def applied_offsets(
        self, topic: str, session: AsyncClientSession | None = None
    ) -> dict[int, int]:
        """The next offset to apply of every partition this generation has a record of."""
        return {
            int(doc["partition"]): int(doc.get("next", 0))
            async for doc in self.offsets.find({"topic": topic}, session=session)
        }

    async def newest_catalog_version(
        self, topic: str, partitions: Iterable[int], session: AsyncClientSession
    ) -> int:
        """The catalog version the last reorganisation wrote on these partitions (in a batch's
        transaction, reading them makes a concurrent reorganisation a write conflict)."""
        ids = [f"{topic}:{partition}" for partition in partitions]
        versions = [
            int(doc.get("catalog_version", 0))
            async for doc in self.offsets.find({"_id": {"$in": ids}}, session=session)
        ]
        return max([await self.catalog_version(session), *versions])

    async def recorded_ids(self) -> AsyncIterator[str]:
        """Every id the ledger and the subjects hold: counted events, voided targets, subjects."""
        async for doc in self.ledger.find({}, {"ids": 1, "voided": 1}):
            for key in (*doc["ids"], *doc["voided"]):
                yield key
        async for doc in self.subjects.find({}, {"_id": 1}):
            yield doc["_id"]

    async def known(
        self,
        ids: Iterable[str],
        subjects_of: Callable[[Known], Iterable[str]] = lambda _: (),
        session: AsyncClientSession | None = None,
    ) -> Known:
        """What earlier batches recorded about `ids` (counted events, voided targets), and the
        history of the certification records `subjects_of` names once those are known."""
        wanted = set(ids)
        counted: dict[str, CountedEvent] = {}
        voided: set[str] = set()
        if wanted:
            # Two indexed queries, not one `$or`: the local server scans the whole collection
            # for an `$or` of two `$in`s (measured: minutes per batch at 500k events).
            query = {"ids": {"$in": list(wanted)}}
            async for doc in self.ledger.find(query, {"ev": 1}, session=session):
                for item in doc["ev"]:
                    key = item[0]
                    if key in wanted:
                        counted[key] = CountedEvent(
                            key,
                            item[1],
                            _parse_local_date(item[2]),
                            {metric_name(k): int(v) for k, v in item[3].items()},
                            item[4] if len(item) > 4 else None,
                        )
            query = {"voided": {"$in": list(wanted)}}
            async for doc in self.ledger.find(query, {"voided": 1}, session=session):
                voided.update(target for target in doc["voided"] if target in wanted)
        partial = Known(counted=counted, voided=frozenset(voided))
        subject_ids = sorted(set(subjects_of(partial)))
        if not subject_ids:
            return partial
        subjects = {
            doc["_id"]: _record(doc)
            async for doc in find_by_ids(self.subjects, subject_ids, session=session)
        }
        return Known(counted=counted, voided=frozenset(voided), subjects=subjects)

    async def apply(
        self,
        outcome: Outcome,
        partitions: Sequence[PartitionBatch],
        as_of: Mapping[int, datetime],
        session: AsyncClientSession,
    ) -> int:
        """Write one batch's outcome, its ledger and its offsets; call inside a transaction.
        Returns how many totals documents (one per unit and month touched) it wrote.

        `partitions` holds only records being applied now (none below their stored offset), so
        the first of them names this ledger entry uniquely.
        """
        updates = _total_updates(outcome)
        if updates:
            await self.totals.bulk_write(updates, ordered=False, session=session)
        if outcome.counted or outcome.newly_voided:
            first = partitions[0]
            entry_id = f"{first.topic}:{first.partition}:{first.first_offset}"
            counted, voided = outcome.counted, outcome.newly_voided
            starts = range(0, max(len(counted), len(voided), 1), LEDGER_CHUNK)
            await self.ledger.insert_many(
                [
                    {
                        # The first chunk keeps the batch's own id; the rest are numbered.
                        "_id": entry_id if number == 0 else f"{entry_id}+{number}",
                        "at": datetime.now(UTC),
                        "ids": [record.key for record in counted[start : start + LEDGER_CHUNK]],
                        "ev": [
                            [
                                record.key,
                                record.unit_id,
                                f"{record.day.year:04d}-{record.day.month:02d}-{record.day.day:02d}",
                                {metric_key(k): v for k, v in record.increments.items()},
                                record.subject_id,
                            ]
                            for record in counted[start : start + LEDGER_CHUNK]
                        ],
                        "voided": voided[start : start + LEDGER_CHUNK],
                    }
                    for number, start in enumerate(starts)
                ],
                ordered=True,
                session=session,
            )
        # ISO text in UTC, not a BSON date: BSON keeps milliseconds, and the order of two
        # statuses within one millisecond must survive the round trip.
        histories = [
            ReplaceOne(
                {"_id": state.subject_id},
                {
                    "entries": [
                        [
                            entry.occurred_at.astimezone(UTC).isoformat(),
                            entry.event_key,
                            entry.status,
                            entry.unit_id,
                            entry.event_type,
                        ]
                        for entry in state.entries
                    ],
                    "o": state.owner,
                },
                upsert=True,
            )
            for state in outcome.subjects.values()
        ]
        if histories:
            await self.subjects.bulk_write(histories, ordered=False, session=session)
        for part in partitions:
            await self.offsets.update_one(
                {"_id": f"{part.topic}:{part.partition}"},
                {
                    "$set": {
                        "topic": part.topic,
                        "partition": part.partition,
                        "next": part.last_offset + 1,
                        "as_of": as_of.get(part.partition),
                    }
                },
                upsert=True,
                session=session,
            )
        return len(updates)

    async def mark_caught_up(
        self, topic: str, as_of: Mapping[int, datetime], partition_count: int | None = None
    ) -> None:
        """Record that everything in these partitions before `as_of` is reflected in totals, and
        how many partitions the topic has (so a partition not yet read is known to lag)."""
        if partition_count is not None:
            await self.meta.update_one(
                {"_id": f"topic:{topic}"}, {"$set": {"partitions": partition_count}}, upsert=True
            )
        for partition, instant in as_of.items():
            await self.offsets.update_one(
                {"_id": f"{topic}:{partition}"},
                {
                    "$max": {"as_of": instant},
                    "$setOnInsert": {"topic": topic, "partition": partition},
                },
                upsert=True,
            )

    async def partition_count(self, topic: str, default: int) -> int:
        """The topic's partitions, as the aggregator last saw them (else `default`)."""
        doc = await self.meta.find_one({"_id": f"topic:{topic}"})
        return int(doc["partitions"]) if doc else default

    # -- reads ---------------------------------------------------------------------------

    async def as_of(self, topic: str, partition_count: int) -> datetime | None:
        """Up to when accepted events are reflected: the laggard partition's time. Unknown
        (None) while any partition has not been read, even one that holds no record yet.
        The first read of a response (see Views.as_of): it follows a rebuild's switch."""
        return (await self.position(topic, partition_count)).as_of

    async def position(self, topic: str, partition_count: int) -> Position:
        """`as_of`, and with it (from the same read) the version of the served totals."""
        await self.follow_generation(max_age_s=1.0)
        times: dict[int, datetime] = {}
        marks: list[tuple[int, int, int]] = []
        async for doc in self.offsets.find({"topic": topic}):
            partition = int(doc["partition"])
            if doc.get("as_of") is not None:
                times[partition] = doc["as_of"]
            mark = (int(doc.get("next", 0)), int(doc.get("catalog_version", 0)))
            if mark != (0, 0):  # a heartbeat's document for a partition never written
                marks.append((partition, *mark))
        version = (self.generation, tuple(sorted(marks)))
        if any(partition not in times for partition in range(partition_count)):
            return Position(None, version)
        return Position(min(times[partition] for partition in range(partition_count)), version)

    async def range_totals(
        self, unit_ids: Sequence[str], first: date | None, last: date | None
    ) -> dict[str, dict[str, int]]:
        """Every total of each unit (and everything under it) over local days [first, last];
        unbounded when both are None. Whole months come from the month total, partial months
        from their days."""
        result: dict[str, dict[str, int]] = {unit_id: defaultdict(int) for unit_id in unit_ids}
        units: Document = {"$in": list(unit_ids)}
        if first is None or last is None:
            async for doc in self.totals.find({"u": units}, {"u": 1, "t": 1}):
                _add_into(result[doc["u"]], doc.get("t") or {})
            return {unit_id: dict(values) for unit_id, values in result.items()}
        # Only the (at most two) months the range cuts need their days; the whole months in
        # between are read without them: a month document's days are most of its bytes.
        edges = sorted({first.strftime("%Y-%m"), last.strftime("%Y-%m")})
        whole_first = first if first.day == 1 else _next_month(first)
        whole_last = last if last == _month_end(last) else last.replace(day=1) - timedelta(1)
        if whole_first <= whole_last:
            whole: Document = {
                "$gte": whole_first.strftime("%Y-%m"),
                "$lte": whole_last.strftime("%Y-%m"),
            }
            async for doc in self.totals.find({"u": units, "m": whole}, {"u": 1, "t": 1}):
                _add_into(result[doc["u"]], doc.get("t") or {})
        cut = [
            m
            for m in edges
            if not (whole_first.strftime("%Y-%m") <= m <= whole_last.strftime("%Y-%m"))
            or whole_first > whole_last
        ]
        if cut:
            async for doc in self.totals.find(
                {"u": units, "m": {"$in": cut}}, {"u": 1, "m": 1, "d": 1}
            ):
                year, month = (int(part) for part in doc["m"].split("-"))
                for day_key, values in (doc.get("d") or {}).items():
                    if first <= date(year, month, int(day_key)) <= last:
                        _add_into(result[doc["u"]], values)
        return {unit_id: dict(values) for unit_id, values in result.items()}

    async def range_totals_many(
        self, unit_ids: Sequence[str], ranges: Sequence[tuple[date, date]]
    ) -> list[dict[str, dict[str, int]]]:
        """`range_totals` of the same units over each of several bounded ranges of local days,
        reading each month document at most once: a month whole in every range is read
        without its days (`t` only), one that any range cuts with them too.

        Documents are looked up by `_id` (`unit|YYYY-MM`, see `_total_updates`), in chunks:
        exact point reads, where `u` in a list and a range of `m` makes the local server
        fetch every month of every unit and test each against the whole list (measured: 1,212
        documents and 130 ms per query for a province and its 100 districts). Only more than
        `_MAX_MONTHS_BY_ID` whole months (a campaign of years) are read by unit instead."""
        plans = [_month_plan(first, last) for first, last in ranges]
        with_days = {m for plan in plans for m, whole in plan.items() if not whole}
        months = sorted({m for plan in plans for m in plan})
        results: list[dict[str, dict[str, int]]] = [
            {unit_id: defaultdict(int) for unit_id in unit_ids} for _ in ranges
        ]
        units = list(dict.fromkeys(unit_ids))
        whole_only = [m for m in months if m not in with_days]
        reads: list[Awaitable[list[Document]]] = []
        if len(whole_only) > _MAX_MONTHS_BY_ID:
            # Years of whole months: one query by unit, as `range_totals` reads them, rather
            # than an `_id` per unit and month.
            reads.append(self._whole_months(units, whole_only))
            whole_only = []
        for wanted, days in ((whole_only, False), (sorted(with_days), True)):
            ids = [f"{u}|{m}" for m in wanted for u in units]
            reads += [
                self._month_documents(ids[i : i + _ID_CHUNK], days)
                for i in range(0, len(ids), _ID_CHUNK)
            ]
        found = await asyncio.gather(*reads)
        for doc in (doc for docs in found for doc in docs):
            unit_id, month = doc["u"], doc["m"]
            for (first, last), plan, result in zip(ranges, plans, results, strict=True):
                whole = plan.get(month)
                if whole is None:
                    continue
                if whole:
                    _add_into(result[unit_id], doc.get("t") or {})
                    continue
                year, month_number = (int(part) for part in month.split("-"))
                for day_key, values in (doc.get("d") or {}).items():
                    if first <= date(year, month_number, int(day_key)) <= last:
                        _add_into(result[unit_id], values)
        return [{unit_id: dict(values) for unit_id, values in result.items()} for result in results]

    async def _whole_months(self, units: list[str], months: list[str]) -> list[Document]:
        """The month documents of `units` for `months` (sorted), without their days."""
        query = {"u": {"$in": units}, "m": {"$gte": months[0], "$lte": months[-1]}}
        wanted = set(months)
        return [
            doc
            async for doc in self.totals.find(query, {"u": 1, "m": 1, "t": 1})
            if doc["m"] in wanted
        ]

    async def _month_documents(self, ids: list[str], days: bool) -> list[Document]:
        """The month documents of `ids` that exist, with their days only if asked (a
        document's days are most of its bytes)."""
        projection = {"u": 1, "m": 1, "t": 1, **({"d": 1} if days else {})}
        return [doc async for doc in find_by_ids(self.totals, ids, projection)]

    async def daily_totals(
        self, unit_id: str, first: date, last: date
    ) -> dict[date, dict[str, int]]:
        """Each local day's totals of a unit (and everything under it) in [first, last], for
        the dashboard's daily chart: one query over the month documents, days read from `d`."""
        query: Document = {
            "u": unit_id,
            "m": {"$gte": first.strftime("%Y-%m"), "$lte": last.strftime("%Y-%m")},
        }
        days: dict[date, dict[str, int]] = {}
        async for doc in self.totals.find(query, {"m": 1, "d": 1}):
            year, month = (int(part) for part in doc["m"].split("-"))
            for day_key, values in (doc.get("d") or {}).items():
                day = date(year, month, int(day_key))
                if first <= day <= last:
                    _add_into(days.setdefault(day, defaultdict(int)), values)
        return {day: dict(values) for day, values in days.items()}

    # -- campaigns and targets -----------------------------------------------------------

    async def put_campaign(self, campaign: Campaign, *, only_if_new: bool = False) -> bool:
        doc = {
            "name": campaign.name,
            "starts": campaign.starts.isoformat(),
            "ends": campaign.ends.isoformat(),
            "lagging_threshold": campaign.lagging_threshold,
        }
        update = {"$setOnInsert": doc} if only_if_new else {"$set": doc}
        result = await self.campaigns.update_one({"_id": campaign.id}, update, upsert=True)
        return result.upserted_id is not None

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        doc = await self.campaigns.find_one({"_id": campaign_id})
        if doc is None:
            return None
        return Campaign(
            doc["_id"],
            doc["name"],
            date.fromisoformat(doc["starts"]),
            date.fromisoformat(doc["ends"]),
            float(doc.get("lagging_threshold", 0.9)),
        )

    async def list_campaigns(self) -> list[Campaign]:
        ids = [doc["_id"] async for doc in self.campaigns.find({}, {"_id": 1})]
        return [c for c in [await self.get_campaign(i) for i in ids] if c is not None]

    async def put_targets(self, campaign_id: str, targets: Iterable[Target]) -> int:
        """Set these (unit, metric) targets; targets of other pairs stay as they are."""
        operations = [
            UpdateOne(
                {"_id": f"{campaign_id}|{t.unit_id}|{t.metric}"},
                {
                    "$set": {
                        "campaign": campaign_id,
                        "unit_id": t.unit_id,
                        "metric": t.metric,
                        "target": str(t.target),
                    }
                },
                upsert=True,
            )
            for t in targets
        ]
        if not operations:
            return 0

        async def transaction(session: AsyncClientSession) -> None:
            await self.targets.bulk_write(operations, ordered=True, session=session)
            await self.meta.update_one(
                {"_id": f"targets:{campaign_id}"},
                {"$inc": {"version": 1}},
                upsert=True,
                session=session,
            )

        async with self.client.start_session() as session:
            await session.with_transaction(transaction)
        return len(operations)

    async def targets_version(self, campaign_id: str) -> int:
        """Moves (in the same transaction) with every `put_targets` of the campaign."""
        doc = await self.meta.find_one({"_id": f"targets:{campaign_id}"})
        return int(doc["version"]) if doc else 0

    async def targets_of(self, campaign_id: str) -> list[Target]:
        return [
            Target(doc["unit_id"], doc["metric"], Decimal(doc["target"]))
            async for doc in self.targets.find({"campaign": campaign_id})
        ]

    # -- online services each unit offers ----------------------------------------------------

    async def put_service_catalog(self, unit_id: str, service_ids: Iterable[str]) -> None:
        await self.service_catalogs.replace_one(
            {"_id": unit_id}, {"services": sorted(set(service_ids))}, upsert=True
        )

    async def service_catalogs_by_unit(self) -> dict[str, frozenset[str]]:
        return {
            doc["_id"]: frozenset(doc["services"]) async for doc in self.service_catalogs.find({})
        }

    # -- tokens ----------------------------------------------------------------------------

    async def create_token(self, token: str, name: str, role: str, scope: list[str]) -> bool:
        try:
            await self.tokens.insert_one(
                {
                    "_id": hash_token(token),
                    "name": name,
                    "role": role,
                    "scope": scope,
                    "created_at": datetime.now(UTC),
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def find_token(self, token: str) -> Document | None:
        return await self.tokens.find_one({"_id": hash_token(token)})

    async def revoke_token(self, name: str) -> bool:
        result = await self.tokens.delete_one({"name": name})
        return result.deleted_count == 1

    # -- ingest's memory of accepted ids -------------------------------------------------------

    async def keep_accepted_for(self, days: int) -> None:
        """How long ingest remembers an accepted id (0: for ever), as a TTL index on `at`.
        Only ingest's answer depends on it: a re-post after the window is published again
        and reported as accepted, and the aggregator, whose ledger keeps every id, counts it
        nothing. Changing it later changes the index in place (`collMod`)."""
        existing = {index["name"]: index async for index in await self.accepted.list_indexes()}.get(
            ACCEPTED_TTL_INDEX
        )
        if days <= 0:
            if existing is not None:
                await self.accepted.drop_index(ACCEPTED_TTL_INDEX)
            return
        seconds = days * 86_400
        if existing is None:
            await self.accepted.create_index(
                "at", name=ACCEPTED_TTL_INDEX, expireAfterSeconds=seconds
            )
        elif existing.get("expireAfterSeconds") != seconds:
            await self.db.command(
                {
                    "collMod": self.accepted.name,
                    "index": {"name": ACCEPTED_TTL_INDEX, "expireAfterSeconds": seconds},
                }
            )

    async def own_totals(self, cells: Iterable[OwnCell]) -> dict[OwnCell, dict[str, int]]:
        """Each unit's own share of these months (`shared.domain.bounds`), by metric."""
        ids = sorted({f"{unit_id}|{month}" for unit_id, month in cells})
        result: dict[OwnCell, dict[str, int]] = {}
        async for doc in find_by_ids(self.totals, ids, {"u": 1, "m": 1, "o": 1}):
            own = doc.get("o") or {}
            result[(doc["u"], doc["m"])] = {metric_name(k): int(v) for k, v in own.items()}
        return result

    async def records_of(self, event_type: str) -> list[SubjectState]:
        """Every record (`subject_id`) of `event_type` with its whole history, as counted."""
        prefix = record_prefix(event_type)
        if prefix is None:
            raise ValueError(f"{event_type}'s records are kept under bare ids: not listed")
        await self.follow_generation(max_age_s=1.0)
        # The keys that start with the prefix, as one range of the `_id` index.
        query = {"_id": {"$gte": prefix, "$lt": prefix[:-1] + chr(ord(prefix[-1]) + 1)}}
        return [_record(doc) async for doc in self.subjects.find(query)]

    async def record_owners(self, subject_ids: Iterable[str]) -> dict[str, str]:
        """The unit each of these records (by `record_key`) belongs to, as counted so far."""
        wanted = sorted(set(subject_ids))
        if not wanted:
            return {}
        await self.follow_generation(max_age_s=1.0)
        owners = {}
        async for doc in find_by_ids(self.subjects, wanted):
            # A record stored before owners were kept: its first entry's unit owns it.
            owner = doc.get("o") or (doc["entries"][0][3] if doc.get("entries") else None)
            if owner is not None:
                owners[doc["_id"]] = str(owner)
        return owners

    async def already_accepted(self, ids: Sequence[str]) -> set[str]:
        if not ids:
            return set()
        # One small document per id: a batch-sized document would be returned whole for every
        # id found in it (measured: 7.9 s instead of 0.5 s for 900 duplicates of 1,000).
        return {
            doc["_id"] async for doc in find_by_ids(self.accepted, sorted(set(ids)), {"_id": 1})
        }

    async def remember_accepted(self, ids: Sequence[str]) -> None:
        if not ids:
            return
        at = datetime.now(UTC)  # what an optional retention expires by (keep_accepted_for)
        try:
            await self.accepted.insert_many(
                [{"_id": event_id, "at": at} for event_id in ids], ordered=False
            )
        except BulkWriteError as exc:
            # Another replica remembered some of them first; anything else is a real failure.
            if any(error.get("code") != 11000 for error in exc.details.get("writeErrors", [])):
                raise


ACCEPTED_TTL_INDEX = "at_ttl"
# Unit fields a database initialised before units had codes and dates lacks (`upsert_units`).
UNIT_FIELDS_SINCE_CODES = ("code", "valid_from", "valid_to", "successors")
# Ledger entries per document: at most 128-character ids, each entry stays far below 1 KB, so a
# document stays far below MongoDB's 16 MB whatever the batch size.
LEDGER_CHUNK = 5_000
# Whole months per unit up to which `range_totals_many` reads them by `_id` (beyond, a long
# campaign's, by unit and month range: a few queries rather than one per chunk of ids).
_MAX_MONTHS_BY_ID = 36
# `_id`s per query of `range_totals_many`: the local server tests each document it fetches
# against the whole `$in` list, so a long list costs (documents × list), and a short one a
# round trip. Measured for 1,010 month documents: chunks of 1 took 510 ms, of 10-40
# 110-160 ms, of 100 130-150 ms.
_ID_CHUNK = 25


def _month_plan(first: date, last: date) -> dict[str, bool]:
    """The months ("YYYY-MM") that local days [first, last] touch, each True if the range
    covers it whole (its month total is enough) and False if the range cuts it (its days
    are needed). Empty when first > last."""
    plan: dict[str, bool] = {}
    start = first.replace(day=1)
    while start <= last:
        end = _month_end(start)
        plan[start.strftime("%Y-%m")] = first <= start and end <= last
        start = end + timedelta(1)
    return plan


def _month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def _next_month(day: date) -> date:
    return _month_end(day) + timedelta(1)


def _parse_local_date(text: str) -> LocalDate:
    year, month, day = (int(part) for part in text.split("-"))
    return LocalDate(year, month, day)


class OverBound(ValueError):
    """A batch would take a unit's own share of a month past `OWN_TOTAL_BOUND`."""

    def __init__(self, totals_id: str) -> None:
        super().__init__(f"would take a unit's own share of {totals_id!r} past {OWN_TOTAL_BOUND:,}")


def _record(doc: Mapping[str, Any]) -> SubjectState:
    """A record's history as `apply` stores it."""
    entries = [StatusEntry(datetime.fromisoformat(e[0]), *e[1:5]) for e in doc["entries"]]
    return SubjectState(doc["_id"], entries, doc.get("o"))


def _total_updates(outcome: Outcome) -> list[UpdateOne]:
    months: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (unit_id, day), increments in outcome.cells.items():
        fields = months[(unit_id, day.month_key)]
        for metric, value in increments.items():
            if value == 0:
                continue
            key = metric_key(metric)
            fields[f"t.{key}"] = fields.get(f"t.{key}", 0) + value
            fields[f"d.{day.day_key}.{key}"] = fields.get(f"d.{day.day_key}.{key}", 0) + value
    # A unit's own share of each month ("o"), which `OWN_TOTAL_BOUND` bounds (readers sum "t"
    # and "d" only).
    for (unit_id, day), increments in outcome.own_cells.items():
        fields = months[(unit_id, day.month_key)]
        for metric, value in increments.items():
            if value != 0:
                key = f"o.{metric_key(metric)}"
                fields[key] = fields.get(key, 0) + value
    updates = []
    for (unit_id, month_key), fields in months.items():
        if not fields:
            continue
        # The bound is checked by the write: a unit whose own share this increment would take
        # past OWN_TOTAL_BOUND matches no document, so the upsert tries to insert a second
        # document with the same `_id` and fails with a duplicate key, which
        # `shared.aggregation` isolates to the events that cause it.
        bounded = {
            path: {"$not": {"$gt": OWN_TOTAL_BOUND - value}}
            for path, value in fields.items()
            if path.startswith("o.") and value > 0
        }
        if any(value > OWN_TOTAL_BOUND for value in fields.values()):
            # Past the bound on its own: an upsert creating the document would not check it.
            raise OverBound(f"{unit_id}|{month_key}")
        updates.append(
            UpdateOne(
                {"_id": f"{unit_id}|{month_key}", **bounded},
                {
                    "$inc": fields,
                    "$setOnInsert": {"u": unit_id, "y": int(month_key[:4]), "m": month_key},
                },
                upsert=True,
            )
        )
    return updates
