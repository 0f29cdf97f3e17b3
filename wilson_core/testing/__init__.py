"""Helpers for testing apps and plugins against Wilson: real local servers, no mocks."""
