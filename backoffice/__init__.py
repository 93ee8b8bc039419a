"""The back office's process code: settings, logging, telemetry, connecting to Temporal, sending orders their
messages, the embedded dev stack and the `backoffice` command."""
