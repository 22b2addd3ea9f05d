"""gatekeeper services: ingest, gate and publish, and the runtime they share."""
