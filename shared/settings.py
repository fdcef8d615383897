"""Settings, read from the environment only, so the same code runs against any Kafka and MongoDB."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    mongodb_uri: str = "mongodb://127.0.0.1:27017/?directConnection=true"
    mongodb_db: str = "campaigns"

    events_topic: str = "campaign.events.v1"
    deadletter_topic: str = "campaign.events.v1.deadletter"
    event_partitions: int = Field(default=4, ge=1)
    consumer_group: str = "aggregator"

    admin_token: str = ""

    ingest_port: int = 8081
    api_port: int = 8080
    aggregator_port: int = 8082

    # How long ingest waits for the broker's acknowledgement before answering 503.
    publish_timeout_s: float = Field(default=10.0, gt=0)
    # Ids each ingest process remembers in memory (about 150 bytes each) to answer re-posts
    # without asking the database; older ids are still found there.
    ingest_recent_ids: int = Field(default=200_000, ge=0)
    # Consumer tuning; tests shorten the group timings (see INFRA: joins take half the session).
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_fetch_max_wait_ms: int = 100
    aggregator_max_batch: int = Field(default=5_000, ge=1)
    aggregator_batch_timeout_ms: int = 200


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
