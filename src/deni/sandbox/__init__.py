"""A local fake of Safaricom Daraja (see deni.sandbox.app)."""
