"""Helpers every test folder shares, by topic; test folders import from here, never from
each other."""
