"""Features: the CRM data contract, readers, validation, snapshots and point-in-time builders.

Nothing here reads params.yaml, the environment or the clock: tables and snapshots in, frames out.
"""
