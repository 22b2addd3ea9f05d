"""ingest: turns untrusted HTTP and raw Kafka records into validated, deduplicated events."""
