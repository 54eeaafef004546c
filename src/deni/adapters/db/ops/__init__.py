"""The operator console's storage: operators, their sessions and four-eyes proposals."""
