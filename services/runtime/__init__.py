"""What the three services share: the plumbing (Kafka, HTTP, settings, logs,
metrics, the embedded broker) and the few rules more than one service applies
(an item's key, who an operator is, the audit record of an acceptance, what a
Swedish identity number looks like). A rule that one service alone applies
lives in that service."""
