"""The ``ggk`` commands, one module per group; cli.py (the entry point) assembles them.

``common`` (options, configuration, the gateway client, output, exit codes), ``checks``
(validate, schemas, rules, routes: no gateway needed), ``setup`` (init, serve), ``messages``
(submit, status, overdue), ``inbox``, ``dead_letters`` (dlq, replay), ``figures`` (stats),
``audit_trail`` (audit verify/search/export/checkpoint), ``keys``, ``cpas``, ``kafka``,
``certs``.
"""
