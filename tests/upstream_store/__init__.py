"""Running langgraph-checkpoint-postgres 3.2.0's store tests against PGSyncStore."""
