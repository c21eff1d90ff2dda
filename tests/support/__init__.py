"""Test support that ships with the tests, not the package."""
