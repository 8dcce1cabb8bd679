"""The operator's client: keys, signed requests, capabilities, and the ``was-admin`` commands.

It signs exactly as the spec's wallets do (did:key Ed25519, zCap invocations
with a Digest, Ed25519Signature2020 delegations), so an operator can
provision, read, write, share and smoke-test a deployment without writing a
client.  The server's tests verify what it makes with independent libraries.
"""
