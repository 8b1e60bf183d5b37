"""Live delivery between server processes: a broker (in memory or Redis) and the chat hub."""
