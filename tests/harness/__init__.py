"""The test harness: local servers and fakes the real client libraries talk to.

Every module named ``fixtures_*.py`` here is loaded as a pytest plugin by tests/conftest.py,
so its fixtures are available to every test.
"""
