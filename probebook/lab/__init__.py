"""Demo services and faults: a user of the agent like any service."""
