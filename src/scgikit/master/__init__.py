"""The master process: it binds the listeners, forks the workers and keeps them going."""
