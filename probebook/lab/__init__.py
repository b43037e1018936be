"""The incident lab: a live shop of services under the agent, its customers, Prometheus and
Alertmanager, and scenarios that break it reproducibly, each with a ground truth (docs/lab.md).

The lab is a user of the agent like any service; `probebook lab ...` (`probebook.cli.lab`) is its command.
"""
