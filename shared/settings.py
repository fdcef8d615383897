"""Settings, read from the environment only, so the same code runs against any Kafka and MongoDB."""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# Optional settings a compose file may pass through as `${VAR:-}`: empty means unset.
_OPTIONAL = (
    "kafka_ssl_ca_file",
    "kafka_ssl_cert_file",
    "kafka_ssl_key_file",
    "kafka_ssl_key_password",
    "kafka_min_insync_replicas",
    "mongodb_username",
    "mongodb_password",
    "mongodb_auth_source",
    "mongodb_tls",
    "mongodb_tls_ca_file",
    "mongodb_tls_certificate_key_file",
    "mongodb_tls_certificate_key_file_password",
)


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
    # Days ingest's database memory of accepted ids lasts (0: for ever, the contract's
    # `duplicates` for any re-post). Totals never depend on it: the ledger keeps every id.
    accepted_retention_days: int = Field(default=0, ge=0)
    # Consumer tuning; tests shorten the group timings (see INFRA: joins take half the session).
    kafka_session_timeout_ms: int = 10_000
    kafka_heartbeat_interval_ms: int = 3_000
    kafka_fetch_max_wait_ms: int = 100
    aggregator_max_batch: int = Field(default=5_000, ge=1)
    aggregator_batch_timeout_ms: int = 200
    # Records per transaction when `shared.admin` replays the log (rebuild, reconcile): bigger
    # than the live aggregator's, as a replay has the whole log behind it. Memory grows with it.
    # Not 100,000: faster on 800,000 events, slower on 10M, where the database's cache filled
    # and its CPU went to evicting pages (bench/analysis.md, Scale).
    replay_batch_records: int = Field(default=50_000, ge=1)
    # How often a long admin command (rebuild, reconcile, import) prints a progress line when
    # its stderr is not a terminal (on one it draws a bar): shared/progress.py.
    progress_every_s: float = Field(default=5.0, gt=0)
    # An aggregator silent this long is taken for dead and its open transaction aborted
    # (shared/adapters/sessions.py); a living one it was wrong about just redoes its batch.
    aggregator_stale_after_s: float = Field(default=5.0, gt=0)
    # The aggregator's /healthz answers 503 once a batch has waited this long to commit (the
    # database down, say): counting has stopped, whatever the process itself says.
    aggregator_unhealthy_after_s: float = Field(default=60.0, gt=0)

    # -- Kafka connection security, for managed clusters (shared/adapters/kafka.py turns these
    # into every client's options). PLAINTEXT is for a private network only.
    kafka_security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: KafkaSaslMechanism = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: SecretStr = SecretStr("")
    # PEM files; without a CA file the system's CAs verify the brokers (public managed services).
    kafka_ssl_ca_file: str | None = None
    kafka_ssl_cert_file: str | None = None  # client certificate, for mutual TLS
    kafka_ssl_key_file: str | None = None
    kafka_ssl_key_password: SecretStr | None = None

    # -- Topics as `init` creates them. A 3-broker cluster wants replication 3 and
    # min.insync.replicas 2: with acks=all, one broker may be down and nothing acknowledged is
    # lost. The local single broker keeps 1 and the broker's default.
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_min_insync_replicas: int | None = Field(default=None, ge=1)
    # The event log is the source of truth a rebuild replays: kept forever (-1) by default.
    kafka_retention_ms: int = Field(default=-1, ge=-1)

    # -- MongoDB authentication and TLS, besides what MONGODB_URI itself may say (settings win
    # over the URI; a password here needs no URL escaping).
    mongodb_username: str | None = None
    mongodb_password: SecretStr | None = None
    mongodb_auth_source: str | None = None
    mongodb_tls: bool | None = None
    mongodb_tls_ca_file: str | None = None
    mongodb_tls_certificate_key_file: str | None = None
    mongodb_tls_certificate_key_file_password: SecretStr | None = None

    @field_validator(*_OPTIONAL, mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        return None if value == "" else value

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        """Refuse, at start-up, combinations that would silently connect without the security
        the operator asked for, or create topics that acks=all can never write to."""
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password.get_secret_value()
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        ssl_files = (self.kafka_ssl_ca_file, self.kafka_ssl_cert_file, self.kafka_ssl_key_file)
        if any(ssl_files) and protocol not in ("SSL", "SASL_SSL"):
            raise ValueError(
                f"KAFKA_SSL_* files are set but KAFKA_SECURITY_PROTOCOL={protocol} "
                "does not use TLS: set it to SSL or SASL_SSL"
            )
        if self.kafka_ssl_key_file and not self.kafka_ssl_cert_file:
            raise ValueError("KAFKA_SSL_KEY_FILE needs KAFKA_SSL_CERT_FILE")
        if (
            self.kafka_min_insync_replicas is not None
            and self.kafka_min_insync_replicas > self.kafka_replication_factor
        ):
            raise ValueError(
                "KAFKA_MIN_INSYNC_REPLICAS exceeds KAFKA_REPLICATION_FACTOR: "
                "no acks=all write could ever succeed"
            )
        if self.mongodb_password is not None and not self.mongodb_username:
            raise ValueError("MONGODB_PASSWORD needs MONGODB_USERNAME")
        return self

    # The old provinces (GSO codes, comma-separated, or `all`) whose units `init` loads, with
    # the provinces of 1 July 2025 formed from them. The default is the shipped catalog (old
    # Bình Phước and old Đồng Nai, the new Đồng Nai, the departments); any other is generated
    # at init time from the `vietnamadminunits` dataset (`pip install '.[catalog]'`).
    catalog_provinces: str = Field(default="70,75", pattern=r"^(all|[0-9]{2}(,[0-9]{2})*)$")

    @property
    def catalog_province_codes(self) -> tuple[str, ...] | None:
        """The codes `catalog_provinces` names, in order; None for the whole country."""
        if self.catalog_provinces == "all":
            return None
        return tuple(sorted(set(self.catalog_provinces.split(",")), key=int))

    # -- security (issue 7): limits, rate limits, CORS, secrets from files --------------------
    # A file holding the admin token (a mounted secret), read when ADMIN_TOKEN is unset.
    admin_token_file: str = ""
    # The earliest local day (Asia/Ho_Chi_Minh) of `occurred_at` ingest accepts: events may be
    # late, not from another era.
    events_not_before: date = date(2000, 1, 1)
    # Requests per token per fixed window, counted in MongoDB so every instance shares them;
    # 0 = unlimited. A token may carry its own limit (POST /v1/tokens `rate_limit`).
    rate_limit_window_s: int = Field(default=60, ge=1, le=3600)
    rate_limit_field: int = Field(default=1200, ge=0)
    rate_limit_viewer: int = Field(default=6000, ge=0)
    rate_limit_admin: int = Field(default=0, ge=0)
    # How often an open `/v1/stream` re-checks its token (revoked or expired: the stream ends).
    stream_reauth_s: float = Field(default=2.0, gt=0)
    # Origins allowed to call the services from a browser, comma-separated; none by default
    # (the dashboard is served by the API itself, same origin).
    cors_origins: str = ""
    # Request bodies of the API (ingest's 1 MiB is the contract's).
    api_max_body_bytes: int = Field(default=1 << 20, ge=1024)
    # Seconds a request's headers may take to arrive (from its first byte), and its body (from
    # the end of its headers): a client slower than that is answered 408 and disconnected
    # (shared/adapters/serve.py). 30 s carries 1 MiB over 280 kbit/s.
    http_header_timeout_s: float = Field(default=10.0, gt=0)
    http_body_timeout_s: float = Field(default=30.0, gt=0)
    # How long a stopping service lets its in-flight requests finish (SIGTERM); those still
    # running then are answered 503 (serve.py). Keep it below what the supervisor waits before
    # a kill -9: 25 s in make run and the tests, the compose files' stop_grace_period.
    graceful_stop_s: int = Field(default=20, gt=0)

    @model_validator(mode="after")
    def _admin_token_from_file(self) -> Settings:
        if not self.admin_token and self.admin_token_file:
            self.admin_token = Path(self.admin_token_file).read_text().strip()
        return self

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
