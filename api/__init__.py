"""The HTTP API: `create_app(config)` in `api.app`; nothing outside `api` imports it."""
