"""The m2e-sync worker core: config, Kafka runtime, coalescer, limiter, M2E client, models."""
