"""Tests of cadft.cli."""
