"""Digikoppeling ebMS2: the gateway as a message service handler (MSH) in the chain.

``cpa`` reads and checks Collaboration Protocol Agreements; ``cpastore`` keeps the imported
ones; further modules (the ebMS message, the inbound endpoint, the outbound adapter) build on
them (issue 13).
"""
