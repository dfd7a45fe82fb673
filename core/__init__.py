"""Shared foundation of ondata: settings, domain models, errors, storage."""
