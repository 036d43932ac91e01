"""KAFKA_* environment variables reach every client as librdkafka keys."""
from contract.settings import Topics, client_config, consumer_config, producer_config


def test_kafka_env_maps_to_librdkafka_keys():
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b1:9093,b2:9093", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_SASL_MECHANISMS": "PLAIN", "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p",
           "KAFKA_SSL_CA_LOCATION": "/ca.pem", "KAFKA_HEAP_OPTS": "-Xmx1G", "PATH": "/bin"}
    assert client_config(env) == {"bootstrap.servers": "b1:9093,b2:9093", "security.protocol": "SASL_SSL",
                                  "sasl.mechanisms": "PLAIN", "sasl.username": "u", "sasl.password": "p",
                                  "ssl.ca.location": "/ca.pem"}
    assert producer_config(env)["security.protocol"] == "SASL_SSL"
    consumer = consumer_config("g", env)
    assert consumer["sasl.password"] == "p" and consumer["group.id"] == "g"
    assert consumer["enable.auto.commit"] is False and consumer["enable.auto.offset.store"] is False


def test_defaults_and_overrides():
    assert client_config({}) == {"bootstrap.servers": "localhost:9092"}
    assert Topics.from_env({}) == Topics("diamonds", "diamonds.labels", "diamonds.predictions", "diamonds.dlq")
    assert Topics.from_env({"DLQ_TOPIC": "bad"}).dlq == "bad"
