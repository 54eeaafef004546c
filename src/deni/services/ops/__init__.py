"""The back office: operators, their console sessions, and four-eyes proposals."""
