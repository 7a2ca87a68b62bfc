"""The kit that tests and benchmarks share: real gateways in temporary directories, partners on
loopback, Kafka nodes and clusters, the ebMS peer, records and messages made to measure.

It imports the gateway and nothing of ``tests`` or ``benchmarks`` (both import it), and it is
not part of the wheel: it checks the gateway, it does not run it. Modules:

- ``kit.harness``: free ports, an HTTP sink, a demo gateway run as ``ggk serve``, a Kafka node,
  a stored message record;
- ``kit.kafka_cluster``: a three-node Kafka cluster on loopback;
- ``kit.gateway``: a ``ggk init`` setup, the gateway in-process or as a subprocess, a partner
  sink, REST/SOAP/portal clients;
- ``kit.ebms``: CPAs, signing keys and a capturing partner MSH for the ebMS tests;
- ``kit.ebmspeer``: the independent ebMS peer (ebms-core) and a gateway linked to it;
- ``kit.messages``: compact samples and a valid declaratie of any size;
- ``kit.retours``: a gemeente's retour (306, 308, 316, 318) or 325 built from the message
  it received.
"""
