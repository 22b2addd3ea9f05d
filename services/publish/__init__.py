"""publish: delivers what the gate released, at most once per channel, and reports back."""
