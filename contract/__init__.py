"""What the producer, scorer and monitor agree on: the record contract, topic names and Kafka settings."""
