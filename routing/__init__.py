"""Partner registry and route table: who may send what, and where a message goes."""
