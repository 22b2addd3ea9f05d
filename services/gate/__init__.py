"""gate: decides what may be released, and when, for every tenant and item."""
