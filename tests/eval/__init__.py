"""Tests of cadft.eval."""
