"""Tests of cadft.config."""
