"""Tests of cadft.synth."""
