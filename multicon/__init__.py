"""multicon."""
