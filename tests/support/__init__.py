"""Helpers shared by the test suite: real servers, protocol fakes, worlds and drivers."""
