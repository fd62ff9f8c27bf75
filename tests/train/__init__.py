"""Tests of cadft.train."""
