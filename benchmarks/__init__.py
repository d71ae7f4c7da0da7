"""Overhead benchmark: the guard against a bare request and the alternatives (``make bench``)."""
