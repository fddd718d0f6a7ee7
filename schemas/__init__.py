"""The contracts every other part of hwledger shares.

Avro event schemas and their codec, deterministic identities, GPU token rules, validation of
event content, and the SQL migrations of the read model. Nothing here talks to Kafka.
"""
