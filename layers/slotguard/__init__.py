"""slotguard: booking that never double-books, webhooks never lost nor applied twice."""

__version__ = "0.1.0"
