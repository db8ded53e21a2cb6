"""In-process emulators (KMS, object stores) the tests talk to with the real SDKs."""
