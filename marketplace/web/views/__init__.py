"""Page views by audience: ``public`` (board, sign-in/up), ``provider``, ``buyer``, ``monitor``."""
