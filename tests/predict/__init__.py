"""Tests of cadft.predict."""
