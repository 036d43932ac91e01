"""KAFKA_* environment variables reach every client as librdkafka keys."""

from contract.settings import Topics, client_config, consumer_config, producer_config


def test_kafka_env_maps_to_librdkafka_keys():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISMS": "PLAIN",
        "KAFKA_SASL_USERNAME": "u",
        "KAFKA_SASL_PASSWORD": "p",
        "KAFKA_SSL_CA_LOCATION": "/ca.pem",
        "KAFKA_HEAP_OPTS": "-Xmx1G",
        "PATH": "/bin",
    }
    assert client_config(env) == {
        "bootstrap.servers": "b1:9093,b2:9093",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": "u",
        "sasl.password": "p",
        "ssl.ca.location": "/ca.pem",
    }
    assert producer_config(env)["security.protocol"] == "SASL_SSL"
    consumer = consumer_config("g", env)
    assert consumer["sasl.password"] == "p" and consumer["group.id"] == "g"
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False


def test_defaults_and_overrides():
    assert client_config({}) == {"bootstrap.servers": "localhost:9092"}
    assert Topics.from_env({}) == Topics(
        "diamonds",
        "diamonds.labels",
        "diamonds.predictions",
        "diamonds.dlq",
        "diamonds.monitor-dlq",
        "diamonds.monitor-state",
        "diamonds.monitor-panes",
    )
    assert Topics.from_env({"DLQ_TOPIC": "bad"}).dlq == "bad"


def test_consumer_only_settings_reach_consumers_only_and_producer_only_ones_producers_only():
    env = {
        "KAFKA_SESSION_TIMEOUT_MS": "6000",
        "KAFKA_FETCH_WAIT_MAX_MS": "500",
        "KAFKA_LINGER_MS": "20",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
    }
    consumer, producer, admin = consumer_config("g", env), producer_config(env), client_config(env)
    assert consumer["session.timeout.ms"] == "6000" and consumer["fetch.wait.max.ms"] == "500"
    assert "linger.ms" not in consumer and "enable.idempotence" not in consumer
    assert (
        producer["linger.ms"] == "20"
        and "session.timeout.ms" not in producer
        and "fetch.wait.max.ms" not in producer
    )
    assert set(admin) == {
        "bootstrap.servers",
        "security.protocol",
    }  # shared settings reach every client
    assert client_config(env, "consumer")["session.timeout.ms"] == "6000"


def test_topics_follow_the_model_name_unless_the_environment_names_them():
    assert Topics.for_model("affairs", {}) == Topics(
        "affairs",
        "affairs.labels",
        "affairs.predictions",
        "affairs.dlq",
        "affairs.monitor-dlq",
        "affairs.monitor-state",
        "affairs.monitor-panes",
    )
    assert (
        Topics.for_model("affairs", {"MONITOR_STATE_TOPIC": "s", "LABELS_TOPIC": "l"}).monitor_state
        == "s"
    )
    assert Topics.for_model("affairs", {"LABELS_TOPIC": "l"}).labels == "l"
    assert "MONITOR_STATE_TOPIC" in Topics.help(("monitor_state",))
