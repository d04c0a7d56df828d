"""docpulse's tests; shared helpers live in tests.helpers, fixtures in tests/conftest.py."""
