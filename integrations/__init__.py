"""Channel adapters (360dialog, Uazapi, Z-PRO/Typebot) for chatwoot-mirror."""
