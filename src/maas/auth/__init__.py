"""Who may call, in each gateway process: API keys turned into principals, and per-key request
rates shared by a host's gateway processes."""
