"""Managed Kafka and MongoDB: the TLS, SASL and authentication settings as the clients get
them (aiokafka's producer, consumer and admin client, FastStream's broker, PyMongo), refused
when incoherent; and every setting documented in the one table of docs/operations/settings.md."""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka.security import parse_security
from pydantic import ValidationError

from shared.adapters.kafka import (
    broker_security,
    kafka_client_options,
    make_broker,
    topic_configs,
)
from shared.adapters.mongo import connect, mongo_client_options
from shared.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def settings(**values: Any) -> Settings:
    """Settings from these values only, whatever this process's environment holds."""
    return Settings.model_validate(values)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed CA certificate, and a client certificate with an encrypted key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is missing")
    folder = tmp_path_factory.mktemp("tls")
    paths = {"cert": folder / "cert.pem", "key": folder / "key.pem"}
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-days", "1", "-subj", "/CN=test",
         "-keyout", str(paths["key"]), "-out", str(paths["cert"]), "-passout", "pass:secret"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return paths


# -- Kafka ----------------------------------------------------------------------------------


def test_plaintext_by_default_with_every_bootstrap_server() -> None:
    options = kafka_client_options(settings(kafka_bootstrap="k1:9092, k2:9092,k3:9092"))
    assert options == {
        "bootstrap_servers": ["k1:9092", "k2:9092", "k3:9092"],
        "security_protocol": "PLAINTEXT",
    }
    assert broker_security(options) is None


def test_sasl_scram_over_tls_with_a_private_ca_and_a_client_certificate(
    certificate: dict[str, Path],
) -> None:
    options = kafka_client_options(
        settings(
            kafka_bootstrap="broker.example:9096",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-512",
            kafka_sasl_username="tracker",
            kafka_sasl_password="s3cret",
            kafka_ssl_ca_file=str(certificate["cert"]),
            kafka_ssl_cert_file=str(certificate["cert"]),
            kafka_ssl_key_file=str(certificate["key"]),
            kafka_ssl_key_password="secret",
        )
    )
    context = options.pop("ssl_context")
    assert options == {
        "bootstrap_servers": ["broker.example:9096"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "tracker",
        "sasl_plain_password": "s3cret",
    }
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test"),),)]


def test_a_wrong_key_password_fails_at_start_not_at_the_first_publish(
    certificate: dict[str, Path],
) -> None:
    with pytest.raises(ssl.SSLError):
        kafka_client_options(
            settings(
                kafka_security_protocol="SSL",
                kafka_ssl_cert_file=str(certificate["cert"]),
                kafka_ssl_key_file=str(certificate["key"]),
                kafka_ssl_key_password="wrong",
            )
        )


def test_tls_without_a_ca_file_trusts_the_system_cas() -> None:
    options = kafka_client_options(settings(kafka_security_protocol="SSL"))
    assert options["security_protocol"] == "SSL"
    assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    assert "sasl_mechanism" not in options


@pytest.mark.parametrize(
    ("protocol", "mechanism"),
    [
        ("SSL", None),
        ("SASL_PLAINTEXT", "PLAIN"),
        ("SASL_PLAINTEXT", "SCRAM-SHA-256"),
        ("SASL_SSL", "SCRAM-SHA-512"),
    ],
)
def test_faststream_gets_the_same_options(protocol: str, mechanism: str | None) -> None:
    values: dict[str, Any] = {"kafka_security_protocol": protocol}
    if mechanism:
        values |= {
            "kafka_sasl_mechanism": mechanism,
            "kafka_sasl_username": "u",
            "kafka_sasl_password": "p",
        }
    options = kafka_client_options(settings(**values))
    # What FastStream turns the security object back into is exactly the security part of
    # the options every other client gets.
    parsed = {k: v for k, v in parse_security(broker_security(options)).items() if v is not None}
    assert parsed == {k: v for k, v in options.items() if k != "bootstrap_servers"}
    # And the broker's consumers are built with them (a TLS context of their own).
    built = make_broker(settings(**values), client_id="t").config.broker_config.builder.keywords
    context = parsed.pop("ssl_context", None)
    assert {k: built[k] for k in parsed} == parsed
    assert type(built["ssl_context"]) is type(context)


def test_the_publishers_producer_waits_for_every_replica_and_is_idempotent() -> None:
    """A batch resent after a lost acknowledgement is not written twice, nor out of order."""
    broker = make_broker(settings(), client_id="t")
    producer = broker._connection_kwargs  # what FastStream builds its AIOKafkaProducer from
    assert producer["acks"] == "all" and producer["enable_idempotence"] is True


async def test_aiokafka_clients_take_the_options_as_they_are() -> None:
    options = kafka_client_options(
        settings(
            kafka_bootstrap="k1:9092,k2:9092",
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_mechanism="SCRAM-SHA-256",
            kafka_sasl_username="u",
            kafka_sasl_password="p",
        )
    )
    producer = AIOKafkaProducer(**options, acks="all")
    consumer = AIOKafkaConsumer("topic", **options)
    admin = AIOKafkaAdminClient(**options)
    try:
        for client in (producer.client, consumer._client, admin._client):
            assert client._bootstrap_servers == ["k1:9092", "k2:9092"]
            assert client._security_protocol == "SASL_SSL"
            assert client._ssl_context is options["ssl_context"]
            assert client._sasl_mechanism == "SCRAM-SHA-256"
            assert (client._sasl_plain_username, client._sasl_plain_password) == ("u", "p")
    finally:
        await producer.stop()
        await consumer.stop()
        await admin.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "KAFKA_SASL"),
        ({"kafka_ssl_ca_file": "/ca.pem"}, "does not use TLS"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_key_file": "/k.pem"},
            "KAFKA_SSL_CERT_FILE",
        ),
        ({"kafka_replication_factor": 1, "kafka_min_insync_replicas": 2}, "no acks=all"),
        ({"mongodb_password": "p"}, "MONGODB_USERNAME"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "kafka_sasl_mechanism"),
    ],
)
def test_incoherent_security_is_refused_at_start(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**values)


def test_from_the_environment_empty_means_unset_and_secrets_stay_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "tracker")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "kafka-password")
    monkeypatch.setenv("KAFKA_SSL_CA_FILE", "")  # `${KAFKA_SSL_CA_FILE:-}` in a compose file
    monkeypatch.setenv("MONGODB_USERNAME", "campaigns")
    monkeypatch.setenv("MONGODB_PASSWORD", "mongo-password")
    monkeypatch.setenv("MONGODB_TLS", "true")
    monkeypatch.setenv("KAFKA_MIN_INSYNC_REPLICAS", "")
    loaded = Settings()
    assert loaded.kafka_ssl_ca_file is None and loaded.kafka_min_insync_replicas is None
    assert loaded.mongodb_tls is True
    for secret in ("kafka-password", "mongo-password"):
        assert secret not in repr(loaded) and secret not in str(loaded.model_dump())


def test_topics_keep_the_log_and_require_two_copies_in_production() -> None:
    assert topic_configs(settings()) == {"retention.ms": "-1"}
    production = settings(
        kafka_replication_factor=3, kafka_min_insync_replicas=2, kafka_retention_ms=86_400_000
    )
    assert topic_configs(production) == {"retention.ms": "86400000", "min.insync.replicas": "2"}


# -- MongoDB --------------------------------------------------------------------------------


def test_mongodb_options_are_only_those_set() -> None:
    assert mongo_client_options(settings()) == {}


async def test_mongodb_authentication_and_tls_reach_pymongo(certificate: dict[str, Path]) -> None:
    chosen = settings(
        mongodb_username="campaigns",
        mongodb_password="p@ss:word/",  # no URL escaping needed outside the URI
        mongodb_auth_source="admin",
        mongodb_tls_ca_file=str(certificate["cert"]),
        mongodb_tls_certificate_key_file=str(certificate["cert"]),
        mongodb_tls_certificate_key_file_password="secret",
    )
    # A PEM holding both the certificate and its key, as PyMongo wants it.
    combined = certificate["cert"].parent / "client.pem"
    combined.write_text(certificate["cert"].read_text() + certificate["key"].read_text())
    chosen = chosen.model_copy(update={"mongodb_tls_certificate_key_file": str(combined)})
    client = connect("mongodb://db1:27017,db2:27017/?replicaSet=rs0", app_name="t", settings=chosen)
    try:
        pool = client.options.pool_options
        credentials = pool._credentials
        assert credentials is not None
        assert (credentials.username, credentials.password, credentials.source) == (
            "campaigns",
            "p@ss:word/",
            "admin",
        )
        assert pool._ssl_context is not None
        assert client.options.replica_set_name == "rs0"
    finally:
        await client.close()


async def test_the_uri_decides_what_the_settings_do_not() -> None:
    uri = "mongodb://u:p@db:27017/?tls=true&authSource=other"
    from_uri = connect(uri, app_name="t", settings=settings())
    overridden = connect(uri, app_name="t", settings=settings(mongodb_tls=False))
    try:
        assert from_uri.options.pool_options._ssl_context is not None
        assert from_uri.options.pool_options._credentials.source == "other"
        assert overridden.options.pool_options._ssl_context is None
    finally:
        await from_uri.close()
        await overridden.close()


# -- the docs' one table -------------------------------------------------------------------


def test_every_setting_is_in_the_settings_table() -> None:
    page = (REPO / "docs" / "operations" / "settings.md").read_text()
    # The page's first table (the services' settings); `make run`'s own variables follow it.
    table = re.search(r"^\| variable \|.*?\n(?=\n)", page, re.DOTALL | re.MULTILINE)
    assert table, "docs/operations/settings.md has no table of variables"
    rows = [line for line in table[0].splitlines() if line.startswith("| `")]
    documented = {
        name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]*)`", row.split("|")[1])
    }
    missing = sorted(
        name.upper() for name in Settings.model_fields if name.upper() not in documented
    )
    assert not missing, f"settings missing from docs/operations/settings.md: {missing}"
