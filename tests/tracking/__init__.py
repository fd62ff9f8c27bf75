"""Tests of cadft.tracking."""
