"""Investigation strategies: each a function of the investigator, a service and its entry points."""
