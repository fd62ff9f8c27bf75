"""Tests of cadft.data."""
