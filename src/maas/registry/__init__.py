"""The SQL registry: models, versions, aliases, history, audit events and API keys."""
